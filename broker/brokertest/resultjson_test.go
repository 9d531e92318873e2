package brokertest

import (
	"encoding/json"
	"testing"
)

// FuzzAppendJSONString checks that every string, whatever bytes it holds,
// encodes to JSON that decodes back to what encoding/json's encoding
// decodes to (the same text, each invalid UTF-8 byte replaced by U+FFFD).
func FuzzAppendJSONString(f *testing.F) {
	for _, tc := range verbatimCases {
		f.Add(tc.value)
	}
	f.Add("\xff\xfe invalid \u2028\u2029 \x00")
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("appendJSONString(%q) = %s: not JSON: %v", s, b, err)
		}
		std, _ := json.Marshal(s)
		var want string
		_ = json.Unmarshal(std, &want)
		if got != want {
			t.Fatalf("round trip of %q = %q, want %q", s, got, want)
		}
	})
}

func TestAppendJSONValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   any
		want string
	}{
		{nil, "null"},
		{int64(-5), "-5"},
		{json.Number("12.50"), "12.50"},
		{true, "true"},
		{[]byte{0, 1, 2}, `"AAEC"`},
		{0.1, "0.1"},
		{1e21, "1e+21"},
		{float32(0.5), "0.5"},
		{[]any{int64(1), "a", nil}, `[1,"a",null]`},
		{json.RawMessage(`{"k":1}`), `{"k":1}`},
	}
	for _, tc := range tests {
		got, err := appendJSONValue(nil, tc.in)
		if err != nil || string(got) != tc.want {
			t.Errorf("appendJSONValue(%#v) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := appendJSONValue(nil, struct{}{}); err == nil {
		t.Error("appendJSONValue(struct{}{}) succeeded, want an unsupported-type error")
	}
}
