package web

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/web/api"
)

// TestDecodeJSONStrictNames: a request body that names a field twice (the
// last one won: revoke-all offboarded "second" for
// {"principal":"first","principal":"second"}) or by a name that matches
// only when case is ignored is refused as invalid_request before anything
// is done; the exact names are accepted.
func TestDecodeJSONStrictNames(t *testing.T) {
	fb := &fakeBroker{}
	s, err := New(Config{Broker: fb, Auth: tokenAuth{}, Issuances: fakeIssuances{}, AdminGroups: []string{"sales"}})
	if err != nil {
		t.Fatal(err)
	}
	bearer := map[string]string{"Authorization": "Bearer token-dana"}
	refused := []struct{ path, body string }{
		{api.Prefix + "/leases/revoke-all", `{"principal":"https://idp first","principal":"https://idp second"}`},
		{api.Prefix + "/leases/revoke-all", `{"PRINCIPAL":"https://idp alice"}`},
		{api.Prefix + "/leases/revoke-all", `{"principal":"https://idp alice","Reason":"left"}`},
		{api.Prefix + "/leases/revoke-all", `{"principal":"https://idp alice","reason":"a","reason":"b"}`},
		{api.Prefix + "/leases/revoke-all", `{"principaL":"https://idp alice","principal":"https://idp bob"}`},
		{api.Prefix + "/nats/creds", `{"public_key":"U","public_key":"bad"}`},
		{api.Prefix + "/nats/creds", `{"Public_Key":"U"}`},
		{api.Prefix + "/nats/creds", `{"public_key":"U","ttl_ſeconds":60}`}, // U+017F folds to s
	}
	for _, tc := range refused {
		rec := do(t, s, "POST", tc.path, tc.body, bearer)
		if rec.Code != http.StatusBadRequest || errorBody(t, rec).Code != "invalid_request" {
			t.Errorf("POST %s %s = %d %s, want 400 invalid_request", tc.path, tc.body, rec.Code, rec.Body)
		}
	}
	if len(fb.offboarded) != 0 {
		t.Fatalf("offboarded %q for refused bodies", fb.offboarded)
	}
	if rec := do(t, s, "POST", api.Prefix+"/leases/revoke-all", `{"principal":"https://idp first","reason":"left"}`, bearer); rec.Code != http.StatusOK || len(fb.offboarded) != 1 || fb.offboarded[0] != "https://idp first" {
		t.Errorf("revoke-all with exact names = %d %s, offboarded %q", rec.Code, rec.Body, fb.offboarded)
	}
	if rec := do(t, s, "POST", api.Prefix+"/nats/creds", `{"public_key":"U","ttl_seconds":60}`, bearer); rec.Code != http.StatusOK {
		t.Errorf("nats/creds with exact names = %d %s", rec.Code, rec.Body)
	}
	// The message names the field (ours), not what the request sent.
	rec := do(t, s, "POST", api.Prefix+"/leases/revoke-all", `{"PRINCIPAL":"https://idp alice"}`, bearer)
	if msg := errorBody(t, rec).Message; !strings.Contains(msg, `"principal"`) || strings.Contains(msg, "PRINCIPAL") {
		t.Errorf("message %q, want it to name the field principal", msg)
	}
}

// TestDecodeJSONNested: names are checked at every depth, also inside a
// document decoded as raw JSON (a policy evaluation's input), and within
// arrays; the same name in different objects is fine.
func TestDecodeJSONNested(t *testing.T) {
	type inner struct {
		Name string `json:"name"`
	}
	type outer struct {
		Items []inner        `json:"items"`
		Doc   map[string]any `json:"doc"`
		In    *inner         `json:"in"`
	}
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"items":[{"name":"a"},{"name":"b"}],"doc":{"name":1,"x":{"name":2}},"in":{"name":"c"}}`, true},
		{`{"items":[{"name":"a","name":"b"}]}`, false},
		{`{"items":[{"NAME":"a"}]}`, false},
		{`{"in":{"Name":"a"}}`, false},
		{`{"doc":{"x":1,"x":2}}`, false},
		{`{"doc":{"x":{"y":[{"z":1,"z":1}]}}}`, false},
		{`{"doc":{"NAME":1,"name":2}}`, true}, // a map's keys are data: case matters
	}
	for _, tc := range tests {
		r, err := http.NewRequest("POST", "/", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		var v outer
		if err := decodeJSON(r, maxBody, &v); (err == nil) != tc.ok {
			t.Errorf("decodeJSON(%s) = %v, want ok %v", tc.body, err, tc.ok)
		}
	}
	// A policy evaluation's input document is raw JSON inside the body.
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Policy: fakePolicy{}, AdminGroups: []string{"sales"}})
	if err != nil {
		t.Fatal(err)
	}
	rec := do(t, s, "POST", "/api/v1/policy/eval", `{"entry":"call","input":{"principal":{"subject":"a","subject":"b"}}}`, map[string]string{"Authorization": "Bearer token-alice"})
	if rec.Code != http.StatusBadRequest {
		t.Errorf("policy eval with a name twice in its input = %d %s, want 400", rec.Code, rec.Body)
	}
}
