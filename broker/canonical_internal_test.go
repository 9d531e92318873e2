package broker

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCanonicalDecimal: every way of writing one value gives one form, and
// different values stay different.
func TestCanonicalDecimal(t *testing.T) {
	for in, want := range map[string]string{
		"250":      "250",
		"250.5":    "250.5",
		"250.50":   "250.5",
		"2.505e2":  "250.5",
		"2505E-1":  "250.5",
		"25050e-2": "250.5",
		"1.0":      "1",
		"1e2":      "100",
		"1E+2":     "100",
		"-0":       "0",
		"-0.000":   "0",
		"0.1e-2":   "0.001",
		"-1.25e1":  "-12.5",
		"1e-400":   "0." + strings.Repeat("0", 399) + "1",
	} {
		if got := canonicalDecimal(in); got != want {
			t.Errorf("canonicalDecimal(%s) = %s, want %s", in, got, want)
		}
	}
	if canonicalDecimal("250.5") == canonicalDecimal("250.05") {
		t.Error("250.5 and 250.05 hash alike")
	}
}

// TestCanonicalNumbersLeavesOthers: strings that look like numbers are data,
// nested numbers are rewritten, and a document with nothing to rewrite is
// returned unchanged.
func TestCanonicalNumbersLeavesOthers(t *testing.T) {
	in := map[string]any{"s": "250.50", "n": json.Number("250.50"), "i": int64(7), "a": []any{json.Number("1.0"), map[string]any{"x": json.Number("2e0")}}}
	out, changed := canonicalNumbers(in)
	got, _ := json.Marshal(out)
	if want := `{"a":[1,{"x":2}],"i":7,"n":250.5,"s":"250.50"}`; string(got) != want || !changed {
		t.Errorf("canonicalNumbers = %s (changed %v), want %s", got, changed, want)
	}
	if orig, _ := json.Marshal(in); string(orig) != `{"a":[1.0,{"x":2e0}],"i":7,"n":250.50,"s":"250.50"}` {
		t.Errorf("the input was modified: %s", orig)
	}
	if _, changed := canonicalNumbers(map[string]any{"s": "x", "n": json.Number("3")}); changed {
		t.Error("a document without numbers to rewrite was copied")
	}
}
