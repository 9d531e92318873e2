package postgres

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzStoredResult feeds arbitrary text to the decoder of the results the
// one-round-trip form stores: it never panics, and what it accepts is one
// JSON object, whatever a damaged or edited record holds.
func FuzzStoredResult(f *testing.F) {
	for _, s := range []string{
		`{"pg_rows":1,"columns":[{"name":"id","kind":"number"}],"rows":[["1"]]}`,
		`{"pg_rows":1,"columns":[{"name":"t","kind":"time"},{"name":"b","kind":"bytes"},{"name":"j","kind":"json"}],"rows":[["2026-01-01T00:00:00.000000","00ff","{\"a\":1}"],[null,null,null]]}`,
		`{"pg_rows":1,"columns":[{"name":"n","kind":"numeric"},{"name":"f","kind":"bool"}],"rows":[["NaN","true"],["-1.50","false"]]}`,
		`{"pg_rows":1,"columns":[{"name":"id","kind":"number"}],"rows":[["1; DROP TABLE orders"]]}`,
		`{"pg_rows":1,"columns":[],"rows":[[1]]}`,
		`{"pg_rows":1,`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stored string) {
		out, err := storedResult(stored)
		if err != nil || !strings.HasPrefix(stored, storedRowsPrefix) {
			return // other forms are returned as stored
		}
		var obj map[string]any
		if err := json.Unmarshal(out, &obj); err != nil {
			t.Fatalf("stored %q rendered as %q, not a JSON object: %v", stored, out, err)
		}
	})
}
