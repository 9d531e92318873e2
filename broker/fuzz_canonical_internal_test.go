package broker

import (
	"encoding/json"
	"math/big"
	"strconv"
	"strings"
	"testing"
)

// FuzzCanonicalDecimal: the request hash of a retry must not depend on how
// the client wrote a number. For every JSON number route.Decode lets through
// (exponent within ±400), canonicalDecimal gives the same exact value, in
// plain decimal form (no exponent, no trailing fraction zero, no -0), is a
// fixed point, and gives the same form for the number rewritten with an
// exponent and a moved decimal point.
func FuzzCanonicalDecimal(f *testing.F) {
	for _, s := range []string{
		"0", "-0", "250", "250.50", "2.505e2", "2505E-1", "1e-400", "1E+400", "-0.000", "0.1e-2",
		"123456789012345678901234567890.000100", "-9.99e-3", "1e0", "0e5", "-0.0e-0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !jsonNumber(s) || !boundedExponent(s, 400) {
			return
		}
		want, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("big.Rat cannot read the JSON number %q", s)
		}
		c := canonicalDecimal(s)
		got, ok := new(big.Rat).SetString(c)
		if !ok || got.Cmp(want) != 0 {
			t.Fatalf("canonicalDecimal(%q) = %q, another value", s, c)
		}
		if strings.ContainsAny(c, "eE+") || c == "-0" || !jsonNumber(c) {
			t.Fatalf("canonicalDecimal(%q) = %q, not a plain decimal", s, c)
		}
		if strings.Contains(c, ".") && (strings.HasSuffix(c, "0") || strings.HasSuffix(c, ".")) {
			t.Fatalf("canonicalDecimal(%q) = %q keeps trailing fraction zeros", s, c)
		}
		if again := canonicalDecimal(c); again != c {
			t.Fatalf("canonicalDecimal(%q) = %q, but canonicalDecimal(%q) = %q", s, c, c, again)
		}
		if v := shifted(s); v != "" {
			if cv := canonicalDecimal(v); cv != c {
				t.Fatalf("%q and %q are one value, canonical %q and %q", s, v, c, cv)
			}
		}
	})
}

// jsonNumber reports whether s is exactly one JSON number.
func jsonNumber(s string) bool {
	if s == "" || strings.TrimSpace(s) != s {
		return false
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return false
	}
	_, ok := v.(json.Number)
	return ok && dec.InputOffset() == int64(len(s))
}

func boundedExponent(s string, limit int) bool {
	_, exp, ok := strings.Cut(strings.ToLower(s), "e")
	if !ok {
		return true
	}
	e, err := strconv.Atoi(exp)
	return err == nil && e >= -limit && e <= limit
}

// shifted writes the JSON number s as integer digits with an exponent
// (12.50 -> 1250e-2), or "" when the exponent would leave route.Decode's
// bound.
func shifted(s string) string {
	mant, exp, _ := strings.Cut(strings.ToLower(s), "e")
	e := 0
	if exp != "" {
		e, _ = strconv.Atoi(exp)
	}
	ip, frac, _ := strings.Cut(mant, ".")
	e -= len(frac)
	if e < -400 || e > 400 {
		return ""
	}
	digits := strings.TrimLeft(strings.TrimPrefix(ip, "-")+frac, "0")
	if digits == "" {
		digits = "0"
	}
	if strings.HasPrefix(ip, "-") {
		digits = "-" + digits
	}
	return digits + "E" + strconv.Itoa(e)
}
