package sqlserver

import (
	"encoding/json"
	"errors"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker/route"
)

// FuzzBindValue feeds message-controlled text to every typed conversion:
// it never panics, and a rejection is an InvalidError that does not quote
// the value.
func FuzzBindValue(f *testing.F) {
	for _, s := range []string{"0190e9a5-1234-7abc-8def-0123456789ab", "2026-01-02T03:04:05Z", "2026-01-02", "12:30:00", "AAEC", "12.50", "'; DROP TABLE x; --", "\xff"} {
		f.Add(s)
	}
	types := []string{"", "uniqueidentifier", "datetime2", "datetimeoffset", "date", "time", "varbinary(max)", "decimal(12,2)", "int", "float", "bit", "nvarchar(10)"}
	f.Fuzz(func(t *testing.T, s string) {
		for _, typ := range types {
			for _, v := range []any{s, json.Number(s)} {
				jt := "string"
				if _, ok := v.(json.Number); ok {
					jt = "number"
				}
				p := &route.Param{Name: "f", Type: jt, SQLType: typ}
				_, err := bindValue(p, "f", v)
				if err == nil {
					continue
				}
				var inv *route.InvalidError
				if !errors.As(err, &inv) {
					t.Fatalf("bindValue(%q as %s) = %v, want an InvalidError", s, typ, err)
				}
				if len(s) >= 3 && strings.Contains(err.Error(), s) {
					t.Fatalf("bindValue(%q as %s) error %q quotes the value", s, typ, err)
				}
			}
		}
	})
}

// FuzzPlainDecimal checks that the plain notation sent for a JSON number
// has the number's exact value and no exponent.
func FuzzPlainDecimal(f *testing.F) {
	for _, s := range []string{"1e-05", "1E+21", "-2.50E+1", "0.0e7", "123.456e-1", "12.50", "-0", "9e400", "1e-400"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !jsonNumber.MatchString(s) {
			return
		}
		plain, ok := plainDecimal(s)
		if !ok {
			if saneExponent(s) {
				t.Fatalf("plainDecimal(%q) refused a number whose exponent is within ±%d", s, maxExponent)
			}
			return
		}
		if strings.ContainsAny(plain, "eE+") {
			t.Fatalf("plainDecimal(%q) = %q, still in exponent form", s, plain)
		}
		want, _ := new(big.Rat).SetString(s)
		got, ok := new(big.Rat).SetString(plain)
		if !ok || got.Cmp(want) != 0 {
			t.Fatalf("plainDecimal(%q) = %q, a different value", s, plain)
		}
	})
}

// jsonNumber is the JSON number grammar (RFC 8259 section 6).
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// saneExponent reports whether s's exponent, if any, is within ±maxExponent.
func saneExponent(s string) bool {
	i := strings.IndexAny(s, "eE")
	if i < 0 {
		return true
	}
	e, err := strconv.Atoi(s[i+1:])
	return err == nil && e >= -maxExponent && e <= maxExponent
}
