package postgres

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
)

// FuzzBindParam binds arbitrary caller values (what route.Decode passed:
// any string, any JSON number) to parameters of every declared SQL type.
// A value is bound as the client sent it, but for binary types (base64,
// decoded) and for varchar(n) and char(n), which refuse a value longer
// than n characters, which the cast would cut without an error; a refusal
// is a *route.InvalidError naming the parameter and not quoting the value;
// nothing panics.
func FuzzBindParam(f *testing.F) {
	types := []string{"", "text", "varchar(5)", "nvarchar(max)", "char(3)", "varbinary(max)", "binary(16)", "int", "decimal(12,2)", "float", "uuid"}
	for i := range types {
		for _, v := range []string{"abc", "abcdef", "日本語です", "aGVsbG8=", "aGVsbG8", "", "12.50", "-1e400"} {
			f.Add(uint8(i), v)
		}
	}
	f.Fuzz(func(t *testing.T, ti uint8, v string) {
		sqlType := types[int(ti)%len(types)]
		spec := route.Spec{
			Subject: "t.v1.call", Database: "d", Statement: &route.StatementSpec{Name: "s", SQL: "SELECT :s, :n"},
			Params: map[string]any{"type": "object", "properties": map[string]any{"s": map[string]any{"type": "string"}, "n": map[string]any{"type": "number"}}},
		}
		if sqlType != "" {
			spec.SQLTypes = map[string]string{"s": sqlType, "n": sqlType}
		}
		c, err := route.New([]route.Spec{spec})
		if err != nil {
			return // a type the catalog refuses for one of them
		}
		r, _ := c.Lookup("t.v1.call")
		call := &broker.Call{Route: r, Params: map[string]any{"s": v}}
		if json.Valid([]byte(v)) && strings.TrimLeft(v, "-0123456789") != v {
			var n json.Number
			if json.Unmarshal([]byte(v), &n) == nil {
				call.Params["n"] = n
			}
		}
		got, err := bindParam(call, "s")
		if err != nil {
			var ie *route.InvalidError
			if !errors.As(err, &ie) || ie.Field != "s" {
				t.Fatalf("bindParam(%s %q): %v, want an InvalidError for s", sqlType, v, err)
			}
			if len(v) >= 3 && strings.Contains(err.Error(), v) {
				t.Fatalf("bindParam(%s %q): %v quotes the value", sqlType, v, err)
			}
		}
		lower := strings.ToLower(sqlType)
		switch {
		case strings.HasPrefix(lower, "varbinary") || strings.HasPrefix(lower, "binary"):
			want, derr := base64.StdEncoding.DecodeString(v)
			if (err == nil) != (derr == nil) || err == nil && !bytes.Equal(got.([]byte), want) {
				t.Fatalf("bindParam(%s %q) = %v, %v", sqlType, v, got, err)
			}
		case err != nil:
			n, ok := declaredChars(sqlType)
			if !ok || utf8.RuneCountInString(v) <= n {
				t.Fatalf("bindParam(%s %q) refused: %v", sqlType, v, err)
			}
		default:
			if n, ok := declaredChars(sqlType); ok && utf8.RuneCountInString(v) > n {
				t.Fatalf("bindParam(%s %q) = %q: longer than %d characters", sqlType, v, got, n)
			}
			if got != v {
				t.Fatalf("bindParam(%s %q) = %#v, want the value as sent", sqlType, v, got)
			}
		}
		if n, ok := call.Params["n"]; ok {
			if got, err := bindParam(call, "n"); err != nil || got != string(n.(json.Number)) {
				t.Fatalf("bindParam(%s, the number %s) = %#v, %v: want its exact text", sqlType, n, got, err)
			}
		}
	})
}
