package audit

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

var testParamKey = ParamKey{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}

func TestCanonicalValue(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"nil", nil, `null`},
		{"bool", true, `true`},
		{"string", "a\"b\n<é>", `"a\"b\n<é>"`},
		{"int", 42, `42`},
		{"int64_min", int64(math.MinInt64), `-9223372036854775808`},
		{"uint64_max", uint64(math.MaxUint64), `18446744073709551615`},
		{"float_integral", 3.0, `3`},
		{"float_fraction", 2.5, `2.5`},
		{"float_negzero", math.Copysign(0, -1), `0`},
		{"number_int", json.Number("17"), `17`},
		{"number_fraction_integral", json.Number("17.0"), `17`},
		{"number_exponent", json.Number("1.7e1"), `17`},
		{"number_big", json.Number("123456789012345678901234567890"), `123456789012345678901234567890`},
		{"number_fraction", json.Number("0.10"), `0.1`},
		{"time", time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), `"2026-01-02T02:04:05Z"`},
		{"bytes", []byte{1, 2, 3}, `"AQID"`},
		{"array", []any{1.0, "x", nil}, `[1,"x",null]`},
		{"object_sorted", map[string]any{"b": 1.0, "a": map[string]any{"d": false, "c": true}}, `{"a":{"c":true,"d":false},"b":1}`},
		{"struct_via_json", struct {
			B int    `json:"b"`
			A string `json:"a"`
		}{2, "x"}, `{"a":"x","b":2}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CanonicalValue(tc.in)
			if err != nil {
				t.Fatalf("CanonicalValue(%v) = %v", tc.in, err)
			}
			if string(got) != tc.want {
				t.Errorf("CanonicalValue(%v) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
	for _, bad := range []any{math.NaN(), math.Inf(1), json.Number("1e99999"), json.Number("abc"), make(chan int), "\xff"} {
		if got, err := CanonicalValue(bad); err == nil {
			t.Errorf("CanonicalValue(%v) = %s, want error", bad, got)
		}
	}
	deep := any("x")
	for range 100 {
		deep = []any{deep}
	}
	if _, err := CanonicalValue(deep); err == nil {
		t.Error("CanonicalValue(100 nested arrays) = nil error, want too deep")
	}
}

func TestHashParams(t *testing.T) {
	params := map[string]any{"amount": json.Number("10.0"), "customer": "c-42", "password": "hunter2"}
	got := HashParams(testParamKey, params, []string{"password"})
	if got["password"] != ParamRedacted {
		t.Errorf("password = %q, want %q", got["password"], ParamRedacted)
	}
	for _, name := range []string{"amount", "customer"} {
		if !strings.HasPrefix(got[name], "hmac-sha256:k1:") || len(got[name]) != len("hmac-sha256:k1:")+64 {
			t.Errorf("%s = %q, want hmac-sha256:k1:<64 hex>", name, got[name])
		}
	}
	for name, h := range got {
		if strings.Contains(h, "hunter2") || strings.Contains(h, "c-42") {
			t.Errorf("%s leaks the value: %q", name, h)
		}
	}
	// Same value, same hash; 10.0 and 10 agree; another key differs.
	if HashValue(testParamKey, 10) != got["amount"] {
		t.Error("HashValue(10) differs from the hash of json.Number(10.0)")
	}
	other := ParamKey{ID: "k2", Secret: []byte("another-secret-0123456789")}
	if h := HashValue(other, "c-42"); h == got["customer"] || !strings.HasPrefix(h, "hmac-sha256:k2:") {
		t.Errorf("HashValue under k2 = %q", h)
	}
	if HashParams(testParamKey, nil, nil) != nil {
		t.Error("HashParams(nil) != nil")
	}
}

func TestCheckParamAcrossRotation(t *testing.T) {
	old := testParamKey
	cur := ParamKey{ID: "k2", Secret: []byte("another-secret-0123456789")}
	hOld := HashValue(old, "c-42")
	hCur := HashValue(cur, "c-42")
	keys := []ParamKey{cur, old}
	for _, h := range []string{hOld, hCur} {
		ok, err := CheckParam(keys, "c-42", h)
		if err != nil || !ok {
			t.Errorf("CheckParam(%q) = %v, %v; want true", h, ok, err)
		}
		ok, err = CheckParam(keys, "c-43", h)
		if err != nil || ok {
			t.Errorf("CheckParam(wrong value) = %v, %v; want false", ok, err)
		}
	}
	if _, err := CheckParam([]ParamKey{cur}, "c-42", hOld); err == nil {
		t.Error("CheckParam with the old key missing = nil error, want unknown key id")
	}
	if _, err := CheckParam(keys, "c-42", "redacted"); err == nil {
		t.Error("CheckParam(redacted) = nil error")
	}
}

func TestParamKeyValidateAndRedaction(t *testing.T) {
	if err := testParamKey.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
	for _, k := range []ParamKey{{}, {ID: "a b", Secret: make([]byte, 32)}, {ID: "ok", Secret: []byte("short")}} {
		if err := k.Validate(); err == nil {
			t.Errorf("Validate(%v) = nil, want error", k)
		}
	}
	s := fmt.Sprintf("%v %s %+v %#v", testParamKey, testParamKey, testParamKey, testParamKey)
	if strings.Contains(s, string(testParamKey.Secret)) {
		t.Errorf("formatting leaks the secret: %s", s)
	}
	if v := testParamKey.LogValue().String(); strings.Contains(v, string(testParamKey.Secret)) {
		t.Errorf("LogValue leaks the secret: %s", v)
	}
}
