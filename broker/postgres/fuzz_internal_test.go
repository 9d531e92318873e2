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

// FuzzScanTextRows: whatever scanTextRows accepts, json.Unmarshal decodes
// to the same rows and values (it is a fast path for the rows PostgreSQL
// writes, not another decoder).
func FuzzScanTextRows(f *testing.F) {
	for _, s := range []string{
		`[]`, `[[]]`, ` [ ] `, `[["1"]]`, `[["1", null, "a b"], ["2", "x", null]]`,
		"[[\"1\"], \n [\"2\"]]", `[["é ✓ \u00e9"]]`, `[["a\"b"]]`, `[["a\\b"]]`, "[[\"\xff\"]]",
		"[[\"a\tb\"]]", `[[null]]`, `[null]`, `[[1]]`, `[["a"],]`, `[["a"]] x`, `[["a"`, `[[nul]]`,
		`[["a"]`, `{"a":1}`, `[[true]]`, `[["\ufffd"]]`, "[[\"\xef\xbf\xbd\"]]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rows string) {
		got, ok := scanTextRows(rows)
		if !ok {
			return
		}
		var want [][]*string
		if err := json.Unmarshal([]byte(rows), &want); err != nil {
			t.Fatalf("scanTextRows accepted %q, which json.Unmarshal refuses: %v", rows, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d rows, json.Unmarshal %d", rows, len(got), len(want))
		}
		for i := range want {
			if len(got[i]) != len(want[i]) {
				t.Fatalf("%q row %d: %d values, json.Unmarshal %d", rows, i, len(got[i]), len(want[i]))
			}
			for j := range want[i] {
				g, w := got[i][j], want[i][j]
				if (g == nil) != (w == nil) || (g != nil && *g != *w) {
					t.Fatalf("%q row %d value %d: %v, json.Unmarshal %v", rows, i, j, deref(g), deref(w))
				}
			}
		}
	})
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// TestRenderRowsForm: rows as json_agg writes them (values with spaces,
// nulls, rows on lines of their own) take the fast path; rows it does not
// take (an escaped quote) render the same way through json.Unmarshal.
func TestRenderRowsForm(t *testing.T) {
	cols := []rowColumn{{Name: "id", Kind: kindNumber}, {Name: "name", Kind: kindString}}
	for _, tc := range []struct {
		rows, want string
		fast       bool
	}{
		{"[[\"1\", \"ACME Corp\"], \n [\"2\", null]]", `{"rows":[{"id":1,"name":"ACME Corp"},{"id":2,"name":null}],"rows_affected":2}`, true},
		{`[["1", "say \"hi\""]]`, `{"rows":[{"id":1,"name":"say \"hi\""}],"rows_affected":1}`, false},
		{`[]`, `{"rows":[],"rows_affected":0}`, true},
	} {
		if _, ok := scanTextRows(tc.rows); ok != tc.fast {
			t.Errorf("scanTextRows(%q) ok = %v, want %v", tc.rows, ok, tc.fast)
		}
		out, n, err := renderRows(cols, tc.rows)
		if err != nil || string(out) != tc.want {
			t.Errorf("renderRows(%q) = %s, %d, %v; want %s", tc.rows, out, n, err, tc.want)
		}
	}
}

// BenchmarkScanTextRows compares the fast path with json.Unmarshal on the
// rows of a one-row, four-column call.
func BenchmarkScanTextRows(b *testing.B) {
	rows := `[["42", "ACME Corp", "12.50", "2026-01-01T00:00:00.000000"]]`
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := scanTextRows(rows); !ok {
				b.Fatal("not scanned")
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var texts [][]*string
			if err := json.Unmarshal([]byte(rows), &texts); err != nil {
				b.Fatal(err)
			}
		}
	})
}
