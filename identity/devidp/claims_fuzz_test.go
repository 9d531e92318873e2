package devidp

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// acrsRequested lists the acrs values a claims request names for one
// token (value, then values), read without devidp's code; ok is false
// when the request is not an object of objects or its acrs request is not
// null or an object whose value is a string (or null) and whose values
// are strings (or null).
func acrsRequested(raw, token string) (out []string, ok bool) {
	var doc map[string]any
	if json.Unmarshal([]byte(raw), &doc) != nil || doc == nil {
		return nil, false
	}
	body, present := doc[token]
	if !present || body == nil {
		return nil, true
	}
	claims, isObject := body.(map[string]any)
	if !isObject {
		return nil, false
	}
	req, present := claims["acrs"]
	if !present || req == nil {
		return nil, true
	}
	r, isObject := req.(map[string]any)
	if !isObject {
		return nil, false
	}
	if e, set := r["essential"]; set && e != nil {
		if _, isBool := e.(bool); !isBool {
			return nil, false
		}
	}
	if v, set := r["value"]; set && v != nil {
		s, isString := v.(string)
		if !isString {
			return nil, false
		}
		out = append(out, s)
	}
	if vs, set := r["values"]; set && vs != nil {
		list, isList := vs.([]any)
		if !isList {
			return nil, false
		}
		for _, v := range list {
			s, isString := v.(string)
			if !isString {
				return nil, false
			}
			out = append(out, s)
		}
	}
	return out, true
}

// FuzzClaimsRequest reads arbitrary OpenID Connect claims request
// parameters (the `claims` of an authorization, device authorization or
// refresh request to the entra-shaped devidp). A request is read when it
// is a JSON object whose access_token and id_token are objects of claim
// requests (or null), each acrs request null or {essential, value,
// values}: its acrs are then the values it names, in order, once each,
// none empty, at most 25 per token; a request that is not is refused as
// invalid_request by the device authorization endpoint (a 400 naming the
// claims parameter), as by the others; nothing panics.
func FuzzClaimsRequest(f *testing.F) {
	for _, s := range []string{
		`{"access_token":{"acrs":{"essential":true,"value":"c1"}},"id_token":{"acrs":{"essential":true,"value":"c1"}}}`,
		`{"access_token":{"acrs":{"values":["c1","c2","c1"]}}}`, `{"id_token":{"acrs":null}}`, `{"access_token":null}`,
		`{"access_token":{"acrs":{"value":""}}}`, `{"access_token":{"acrs":{"value":1}}}`, `{"access_token":{"acrs":"c1"}}`,
		`{"access_token":[]}`, `{"userinfo":{"email":null}}`, `{"access_token":{"acrs":{"essential":"yes","value":"c1"}}}`,
		`{"access_token":{"acrs":{"values":["c1","c2","c3","c4","c5","c6","c7","c8","c9","c10","c11","c12","c13","c14","c15","c16","c17","c18","c19","c20","c21","c22","c23","c24","c25","c26"]}}}`,
		`{"access_token":{"acrs":{"value":"c1"},"acrs":{"value":"c2"}}}`, `{}`, `null`, `[]`, `"x"`, `{"access_token":{"ACRS":{"value":"c1"}}}`,
		`{"access_token":{"acrs":{"VALUE":"c1"}}}`, `{"id_token":{"acrs":{"Values":["c1"],"Essential":true}}}`,
	} {
		f.Add(s)
	}
	p, err := New(WithIssuer("http://127.0.0.1:9/idp"), WithShape(ShapeEntra), WithLogger(slog.New(slog.DiscardHandler)),
		WithUsers(User{Username: "alice", Password: "alice-password-0123", MFA: true}),
		WithClients(Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := parseClaimsRequest(raw)
		var want requestedACRS
		readable := true
		for _, tok := range []struct {
			name string
			dst  *[]string
		}{{"access_token", &want.access}, {"id_token", &want.id}} {
			values, ok := acrsRequested(raw, tok.name)
			readable = readable && ok
			for _, v := range values {
				readable = readable && v != ""
				if !slices.Contains(*tok.dst, v) {
					*tok.dst = append(*tok.dst, v)
				}
			}
			readable = readable && len(*tok.dst) <= maxRequestedACRS
		}
		if (err == nil) != readable {
			t.Fatalf("parseClaimsRequest(%q) = %+v, %v; want it read: %v", raw, got, err, readable)
		}
		if err == nil && (!slices.Equal(got.access, want.access) || !slices.Equal(got.id, want.id)) {
			t.Fatalf("parseClaimsRequest(%q) = %+v, want %+v", raw, got, want)
		}

		form := url.Values{"client_id": {"sqlgate-cli"}, "scope": {"openid"}, "claims": {raw}}
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9/idp"+pathDeviceCode, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if jerr := json.Unmarshal(w.Body.Bytes(), &body); jerr != nil {
			t.Fatalf("device authorization with claims %q: status %d, body %q", raw, w.Code, w.Body)
		}
		switch {
		case raw == "":
			if w.Code != http.StatusOK {
				t.Fatalf("device authorization without claims: status %d %+v", w.Code, body)
			}
		case err == nil:
			if w.Code != http.StatusOK {
				t.Fatalf("device authorization with claims %q: status %d %+v", raw, w.Code, body)
			}
		case w.Code != http.StatusBadRequest || body.Error != "invalid_request" || !strings.HasPrefix(body.Description, "claims: "):
			t.Fatalf("device authorization with the unreadable claims %q: status %d %+v, want a 400 invalid_request", raw, w.Code, body)
		}
	})
}
