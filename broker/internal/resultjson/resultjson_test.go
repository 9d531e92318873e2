package resultjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
)

var stringCases = []string{
	"", "plain", `quote " and backslash \`, "tab\tnewline\n", "\x00\x1f control",
	"<html> & 'apostrophes'", "Grüße, 日本語, emoji 🎉", "\u2028\u2029", "x'); DROP TABLE orders; --",
	"\xff\xfe invalid \u2028\u2029 \x00", "Zoë Ångström 北京 😀 \u00e9\u0301 \u200b",
	"tab\there\nnewline\r\x01\x07\x1b\x1f\x7f", `\' \\' \n \x00 \u0000`,
	"GO\nEXEC xp_cmdshell 'dir'; SHUTDOWN WITH NOWAIT",
}

// FuzzAppendString checks that every string, whatever bytes it holds,
// encodes to JSON that decodes back to what encoding/json's encoding
// decodes to (the same text, each invalid UTF-8 byte replaced by U+FFFD).
func FuzzAppendString(f *testing.F) {
	for _, s := range stringCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("AppendString(%q) = %s: not JSON: %v", s, b, err)
		}
		std, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(std, &want)
		if got != want {
			t.Fatalf("round trip of %q = %q, want %q", s, got, want)
		}
	})
}

func TestAppendValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want string
	}{
		{nil, "null"},
		{int64(-5), "-5"},
		{uint64(18446744073709551615), "18446744073709551615"},
		{json.Number("12.50"), "12.50"},
		{json.Number(""), "null"},
		{json.Number("-1.5e-3"), "-1.5e-3"},
		{json.Number(`1,"admin":true`), `"1,\"admin\":true"`}, // not a number: never JSON structure
		{json.Number("NaN"), `"NaN"`},
		{json.Number("01"), `"01"`},
		{true, "true"},
		{[]byte{0, 1, 2}, `"AAEC"`},
		{0.1, "0.1"},
		{1e21, "1e+21"},
		{float32(0.5), "0.5"},
		{[]any{int64(1), "a", nil}, `[1,"a",null]`},
		{json.RawMessage(`{"k":1}`), `{"k":1}`},
		{time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)), `"2026-01-02T02:04:05.000000006Z"`},
	}
	for _, tc := range tests {
		got, err := AppendValue(nil, tc.in)
		if err != nil || string(got) != tc.want {
			t.Errorf("AppendValue(%#v) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := AppendValue(nil, struct{}{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("AppendValue(struct{}{}) error = %v, want ErrUnsupported", err)
	}
}

func TestWriter(t *testing.T) {
	t.Parallel()
	w := NewWriter(3)
	w.BeginSet([]string{"id", "name"})
	for _, r := range [][]any{{int64(1), "a"}, {int64(2), nil}} {
		if err := w.Row(r); err != nil {
			t.Fatal(err)
		}
	}
	w.EndSet()
	w.BeginSet([]string{"n"})
	if err := w.Row([]any{int64(7)}); err != nil {
		t.Fatal(err)
	}
	if err := w.Row([]any{int64(8)}); !errors.Is(err, broker.ErrTooManyRows) {
		t.Fatalf("fourth row error = %v, want ErrTooManyRows", err)
	}
	w.EndSet()
	rv := int64(0)
	got, err := w.Finish([]Output{{Name: "total", Value: json.Number("9.5")}}, true, &rv, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"rows":[{"id":1,"name":"a"},{"id":2,"name":null}],"output":{"total":9.5},"return_value":0,"rows_affected":2,"result_sets":[[{"id":1,"name":"a"},{"id":2,"name":null}],[{"n":7}]]}`
	if string(got) != want {
		t.Errorf("Finish = %s\nwant     %s", got, want)
	}
	empty, err := NewWriter(0).Finish(nil, false, nil, 0)
	if err != nil || string(empty) != `{"rows":[],"rows_affected":0}` {
		t.Errorf("empty Finish = %s, %v", empty, err)
	}
}

// TestWriterColumnNames: column names are written as JSON strings, escaped
// where needed, each with its own value, however many columns a set has.
func TestWriterColumnNames(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3, 16, 17, 40} {
		cols := make([]string, n)
		row := make([]any, n)
		want := []byte(`{"rows":[{`)
		for i := range n {
			cols[i] = fmt.Sprintf("c%d \"q\" \\ \n é", i)
			row[i] = int64(i)
			if i > 0 {
				want = append(want, ',')
			}
			name, _ := json.Marshal(cols[i])
			want = fmt.Appendf(want, "%s:%d", name, i)
		}
		want = append(want, `}],"rows_affected":1}`...)
		w := NewWriter(0)
		w.BeginSet(cols)
		if err := w.Row(row); err != nil {
			t.Fatal(err)
		}
		w.EndSet()
		got, err := w.Finish(nil, false, nil, 1)
		if err != nil || string(got) != string(want) {
			t.Errorf("%d columns: Finish = %s, %v\nwant %s", n, got, err, want)
		}
	}
}

// BenchmarkWriterRow is the result of a call returning one row of five
// columns.
func BenchmarkWriterRow(b *testing.B) {
	cols := []string{"id", "customer", "amount", "status", "created_at"}
	row := []any{int64(42), "ACME", json.Number("12.50"), "open", "2026-01-01T00:00:00Z"}
	b.ReportAllocs()
	for b.Loop() {
		w := NewWriter(0)
		w.BeginSet(cols)
		if err := w.Row(row); err != nil {
			b.Fatal(err)
		}
		w.EndSet()
		if _, err := w.Finish(nil, false, nil, 1); err != nil {
			b.Fatal(err)
		}
	}
}
