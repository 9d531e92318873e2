package audit

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzCanonicalValue canonicalizes arbitrary JSON parameter values, as
// [Log.HashParams] does for every call. Encoding never panics; an encoded
// value is valid JSON that means the same value (read as float64s), encodes
// to itself again (so 1, 1.0 and 1e0 hash alike whatever the writer's
// spelling), and its keyed hash checks against the re-read value.
func FuzzCanonicalValue(f *testing.F) {
	f.Add([]byte(`{"b":[1,1.0,1e0,-0,0.1,1e21,123456789012345678901234567890],"a":"\u00e9\u2028<>&\"\\","c":null,"d":true}`))
	f.Add([]byte(`{"z":{"y":{"x":[{"w":"v"}]}},"":"","\u0000":"\ud800"}`))
	f.Add([]byte(`[1.7976931348623157e308,5e-324,1e-400,-9223372036854775808,9223372036854775808,1e400]`))
	f.Add([]byte(`"` + strings.Repeat(`\u0001`, 10) + "\xff\xfe" + `"`))
	f.Add([]byte(strings.Repeat("[", 64) + strings.Repeat("]", 64)))
	f.Add([]byte(strings.Repeat("[", 66) + strings.Repeat("]", 66)))
	f.Add([]byte(`{"a":1,"a":2}`))
	f.Add([]byte(`0.30000000000000004`))
	keys := []ParamKey{testParamKey}
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if dec.Decode(&v) != nil {
			return
		}
		out, err := CanonicalValue(v)
		if err != nil {
			if h := HashValue(testParamKey, v); !strings.HasPrefix(h, paramHashPrefix+testParamKey.ID+":") {
				t.Fatalf("hash of an unencodable value is %q", h)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("canonical form %q of %q is not JSON", out, data)
		}
		var asFloat, outAsFloat any
		if json.Unmarshal(data[:dec.InputOffset()], &asFloat) != nil || json.Unmarshal(out, &outAsFloat) != nil ||
			!reflect.DeepEqual(asFloat, outAsFloat) {
			t.Fatalf("canonical form %q means something else than %q", out, data)
		}
		dec = json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		var again any
		if err := dec.Decode(&again); err != nil {
			t.Fatal(err)
		}
		out2, err := CanonicalValue(again)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("canonical form is not stable: %q -> %q (%v)", out, out2, err)
		}
		if ok, err := CheckParam(keys, again, HashValue(testParamKey, v)); !ok || err != nil {
			t.Fatalf("hash of %q does not check against its canonical form (%v)", data, err)
		}
	})
}
