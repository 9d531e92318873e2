package opa

import (
	"math/big"
	"regexp"
	"strconv"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestWholeNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"-0", 0, true},
		{"0e999999999999999999999", 0, true},
		{"0.000e-5", 0, true},
		{"100", 100, true},
		{"1e2", 100, true},
		{"1E+2", 100, true},
		{"100.0", 100, true},
		{"10000e-2", 100, true},
		{"0.25e4", 2500, true},
		{"00100", 100, true}, // not JSON, but OPA numbers are decimal strings
		{"2147483647", 2147483647, true},
		{"2.147483647e9", 2147483647, true},
		{"2147483648", 0, false},
		{"1e30", 0, false},
		{"1e999999999", 0, false},
		{"1e99999999999999999999", 0, false},
		{"1.5", 0, false},
		{"1.5e0", 0, false},
		{"15e-1", 0, false},
		{"1e-999999999", 0, false},
		{"-1", 0, false},
		{"-1e2", 0, false},
		{"1.", 0, false},
		{".5", 0, false},
		{"0x10", 0, false},
		{"NaN", 0, false},
		{"", 0, false},
	} {
		got, ok := wholeNumber(tc.in, maxCount)
		if got != tc.want || ok != tc.ok {
			t.Errorf("wholeNumber(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// shortExponent matches the numbers big.Rat can parse without building a
// huge value, which the oracle is limited to.
var shortExponent = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]{1,3})?$`)

// FuzzWholeNumber checks wholeNumber against exact rational arithmetic.
func FuzzWholeNumber(f *testing.F) {
	for _, s := range []string{"0", "1e2", "100.0", "10000e-2", "1.5", "-0", "2147483647", "2147483648", "0.25e4", "1e-3", "-5", "+1", "1.", ".", ".0", "9223372036854775808", "00100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := wholeNumber(s, maxCount)
		if ok && (got < 0 || got > maxCount) {
			t.Fatalf("wholeNumber(%q) = %d, out of range", s, got)
		}
		// count's fast path for plain integers agrees with the parser.
		if n, err := count("max_rows", ast.Number(s)); (err == nil) != ok || int64(n) != got {
			t.Fatalf("count(%q) = %d, %v; wholeNumber = %d, %v", s, n, err, got, ok)
		}
		if !shortExponent.MatchString(s) {
			return
		}
		r, valid := new(big.Rat).SetString(s)
		if !valid {
			t.Fatalf("big.Rat cannot parse %q", s)
		}
		want := r.IsInt() && r.Sign() >= 0 && r.Cmp(big.NewRat(maxCount, 1)) <= 0
		if ok != want {
			t.Fatalf("wholeNumber(%q) ok = %v, want %v (%s)", s, ok, want, r.RatString())
		}
		if ok && strconv.FormatInt(got, 10) != r.RatString() {
			t.Fatalf("wholeNumber(%q) = %d, want %s", s, got, r.RatString())
		}
	})
}

// TestCountPlainIntegerAllocs: max_rows and timeout_ms are decoded on every
// decision; a plain integer, as policies write them, costs no allocation.
func TestCountPlainIntegerAllocs(t *testing.T) {
	var v ast.Value = ast.Number("1000")
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := count("max_rows", v); err != nil || n != 1000 {
			t.Fatalf("count = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("count of a plain integer: %v allocations, want 0", allocs)
	}
}

func BenchmarkCount(b *testing.B) {
	for _, s := range []string{"1000", "1e3"} {
		var v ast.Value = ast.Number(s)
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := count("max_rows", v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
