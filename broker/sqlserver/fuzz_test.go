package sqlserver

import (
	"encoding/json"
	"errors"
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
