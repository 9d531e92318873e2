package sqlite

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
)

// FuzzBindParam binds arbitrary caller values (what route.Decode passed:
// any string, any JSON number, a boolean) to parameters of every declared
// SQL type. A value is bound as the client sent it, but for binary types
// (base64, decoded), float types (a finite float64, the number as
// strconv reads it) and booleans (0 or 1); a refusal is a
// *route.InvalidError naming the parameter and not quoting the value;
// nothing panics.
func FuzzBindParam(f *testing.F) {
	types := []string{"", "text", "varchar(5)", "varbinary(max)", "binary(16)", "int", "decimal(12,2)", "float", "real", "double precision", "bit"}
	for i := range types {
		for _, v := range []string{"abc", "aGVsbG8=", "aGVsbG8", "", "12.50", "-1e400", "1e308", "0.1", "true"} {
			f.Add(uint8(i), v)
		}
	}
	f.Fuzz(func(t *testing.T, ti uint8, v string) {
		sqlType := types[int(ti)%len(types)]
		spec := route.Spec{
			Subject: "t.v1.call", Database: "d", Statement: &route.StatementSpec{Name: "s", SQL: "SELECT :s, :n, :b"},
			Params: map[string]any{"type": "object", "properties": map[string]any{
				"s": map[string]any{"type": "string"}, "n": map[string]any{"type": "number"}, "b": map[string]any{"type": "boolean"},
			}},
		}
		if sqlType != "" {
			spec.SQLTypes = map[string]string{"s": sqlType, "n": sqlType}
		}
		c, err := route.New([]route.Spec{spec})
		if err != nil {
			return
		}
		r, _ := c.Lookup("t.v1.call")
		call := &broker.Call{Route: r, Params: map[string]any{"s": v, "b": v == "true"}}
		var num json.Number
		if strings.TrimLeft(v, "-0123456789") != v && json.Unmarshal([]byte(v), &num) == nil {
			call.Params["n"] = num
		}
		check := func(name string, got any, err error) {
			t.Helper()
			if err == nil {
				return
			}
			var ie *route.InvalidError
			if !errors.As(err, &ie) || ie.Field != name {
				t.Fatalf("bindParam(%s %s=%q): %v, want an InvalidError for %s", sqlType, name, v, err, name)
			}
			if len(v) >= 3 && strings.Contains(err.Error(), v) {
				t.Fatalf("bindParam(%s %q): %v quotes the value", sqlType, v, err)
			}
		}
		lower := strings.ToLower(sqlType)
		binary := strings.HasPrefix(lower, "varbinary") || strings.HasPrefix(lower, "binary")
		float := strings.HasPrefix(lower, "float") || lower == "real" || lower == "double precision"

		got, err := bindParam(call, "s")
		check("s", got, err)
		if binary {
			want, derr := base64.StdEncoding.DecodeString(v)
			if (err == nil) != (derr == nil) || err == nil && !bytes.Equal(got.([]byte), want) {
				t.Fatalf("bindParam(%s %q) = %v, %v", sqlType, v, got, err)
			}
		} else if err != nil || got != v {
			t.Fatalf("bindParam(%s %q) = %#v, %v: want the string as sent", sqlType, v, got, err)
		}

		if got, err := bindParam(call, "b"); err != nil || got != map[bool]int64{false: 0, true: 1}[v == "true"] {
			t.Fatalf("bindParam(%s, boolean) = %#v, %v", sqlType, got, err)
		}

		if _, ok := call.Params["n"]; !ok {
			return
		}
		got, err = bindParam(call, "n")
		check("n", got, err)
		if !float {
			if err != nil || got != string(num) {
				t.Fatalf("bindParam(%s, the number %s) = %#v, %v: want its exact text", sqlType, num, got, err)
			}
			return
		}
		want, perr := strconv.ParseFloat(string(num), 64)
		if (err == nil) != (perr == nil) {
			t.Fatalf("bindParam(%s, the number %s) = %#v, %v", sqlType, num, got, err)
		}
		if err == nil && (got != want || math.IsInf(want, 0)) {
			t.Fatalf("bindParam(%s, the number %s) = %#v", sqlType, num, got)
		}
	})
}
