package main

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestCLIServiceScopes: identity.cli.serviceScopes is validated, and GET
// /api/v1/config publishes it, or when it is unset the scopes derived from
// identity.cli.scopes (the example's api://sqlgate/access gives Entra's
// api://sqlgate/.default, which a client credentials sign-in needs).
func TestCLIServiceScopes(t *testing.T) {
	base, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const scopesLine = "    scopes: [openid, profile, email, offline_access, api://sqlgate/access]\n"
	text := string(base)
	if !strings.Contains(text, scopesLine) {
		t.Fatalf("example lacks %q", scopesLine)
	}
	with := func(serviceScopes string) string {
		return strings.Replace(text, scopesLine, scopesLine+"    serviceScopes: "+serviceScopes+"\n", 1)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"[openid]", "identity.cli.serviceScopes: scope openid is an OpenID Connect scope"},
		{"[api://sqlgate/.default, offline_access]", "identity.cli.serviceScopes: scope offline_access is an OpenID Connect scope"},
		{`["api://sqlgate/.default sqlgate.call"]`, `identity.cli.serviceScopes: scope "api://sqlgate/.default sqlgate.call" contains whitespace`},
		{`[""]`, "identity.cli.serviceScopes: empty scope"},
	} {
		if _, err := parseConfig([]byte(with(tc.yaml))); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serviceScopes: %s: %v, want %q", tc.yaml, err, tc.want)
		}
	}

	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"derived", text, []string{"api://sqlgate/.default"}},
		{"configured", with("[sqlgate.call, sqlgate.read]"), []string{"sqlgate.call", "sqlgate.read"}},
	} {
		cfg, err := parseConfig([]byte(tc.yaml))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		d := cliDiscovery(cfg)
		if !slices.Equal(d.ServiceScopes, tc.want) {
			t.Errorf("%s: discovery service scopes %q, want %q", tc.name, d.ServiceScopes, tc.want)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(tc.want)
		if !strings.Contains(string(b), `"service_scopes":`+string(want)) {
			t.Errorf("%s: GET /api/v1/config body %s lacks service_scopes %s", tc.name, b, want)
		}
	}
}
