package audit_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// keyedHash is the keyed hash recomputed from its definition, independently
// of the package: HMAC-SHA-256 of msg under key, as hmac-sha256:<id>:<hex>.
func keyedHash(key audit.ParamKey, msg ...[]byte) string {
	m := hmac.New(sha256.New, key.Secret)
	for _, b := range msg {
		m.Write(b)
	}
	return "hmac-sha256:" + key.ID + ":" + hex.EncodeToString(m.Sum(nil))
}

// The log reuses HMAC states and encoding buffers across values, calls and
// goroutines; every hash must still be that of its own value alone, as the
// records it wrote before and the offline checks (CheckParam, CheckInput)
// compute it.
func TestLogKeyedHashesMatchDefinition(t *testing.T) {
	l := openLog(t, audittest.NewStore(), nil)
	key := audittest.ParamKey()
	params := map[string]any{
		"amount":   json.Number("10.0"),
		"customer": "ACME \"Corp\"",
		"tags":     []any{"a", 1.5, nil},
		"nested":   map[string]any{"b": true, "a": "x"},
		"secret":   "hunter2",
		"odd":      make(chan int), // unencodable
	}
	want := map[string]string{
		"amount":   keyedHash(key, []byte(`10`)),
		"customer": keyedHash(key, []byte(`"ACME \"Corp\""`)),
		"tags":     keyedHash(key, []byte(`["a",1.5,null]`)),
		"nested":   keyedHash(key, []byte(`{"a":"x","b":true}`)),
		"secret":   audit.ParamRedacted,
		"odd":      keyedHash(key, []byte("unencodable:chan int")),
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				got := l.HashParams(params, []string{"secret"})
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("goroutine %d, call %d: HashParams = %v, want %v", g, i, got, want)
					return
				}
				input := fmt.Appendf(nil, `{"call":%d,"goroutine":%d}`, i, g)
				r := &audit.Record{Kind: audit.KindDecision, CorrelationID: "c"}
				if _, err := l.AppendWithInput(t.Context(), r, input); err != nil {
					t.Error(err)
					return
				}
				if w := keyedHash(key, []byte("sqlgate decision input v1\x00"), input); r.InputHMAC != w {
					t.Errorf("InputHMAC of %s = %s, want %s", input, r.InputHMAC, w)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := audit.HashParams(key, params, []string{"secret"}); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("audit.HashParams = %v, want %v", got, want)
	}
}
