package policy

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestObligationsJSONUnits(t *testing.T) {
	o := Obligations{MaxRows: 5, Timeout: 1500 * time.Millisecond, TTL: 15 * time.Minute, RedactParams: []string{"note"}, Pub: []string{"a.b"}}
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"max_rows":5,"timeout_ms":1500,"redact_params":["note"],"ttl":900,"pub":["a.b"]}`; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
	var back Obligations
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(o, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}
