package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/identity/oidc"
)

// TestCLIDiscoveryAuthContext: GET /api/v1/config publishes the Entra
// authentication context the CLI's sign-ins must ask for (Entra adds acrs
// to a token only when asked): the first mfaACRValues of the entra issuer
// entry the CLI signs in with, whether that entry is the tenant's issuer or
// the {tenantid} template; nothing for another issuer, another preset or
// an issuer without mfaACRValues.
func TestCLIDiscoveryAuthContext(t *testing.T) {
	const tenant = "https://login.microsoftonline.com/3d8e1f27-6c4b-4a9e-b1f0-5e7d2c8a9b36/v2.0"
	entra := func(issuer string, acr ...string) oidc.IssuerConfig {
		return oidc.IssuerConfig{Name: "corp", Issuer: issuer, Preset: oidc.PresetEntra, MFAACRValues: acr}
	}
	okta := oidc.IssuerConfig{Name: "okta", Issuer: "https://contoso.okta.com/oauth2/aus1", Preset: oidc.PresetOkta, MFAACRValues: []string{"urn:okta:loa:2fa:any"}}
	for _, tc := range []struct {
		name, cli string
		issuers   []oidc.IssuerConfig
		want      string
	}{
		{"tenant", tenant, []oidc.IssuerConfig{okta, entra(tenant, "c1", "c2")}, "c1"},
		{"tenant_trailing_slash", tenant + "/", []oidc.IssuerConfig{entra(tenant, "c3")}, "c3"},
		{
			"template_organizations", "https://login.microsoftonline.com/organizations/v2.0",
			[]oidc.IssuerConfig{entra("https://login.microsoftonline.com/{tenantid}/v2.0", "c1")},
			"c1",
		},
		{"template_tenant", tenant, []oidc.IssuerConfig{entra("https://login.microsoftonline.com/{tenantid}/v2.0", "c1")}, "c1"},
		{"no_mfa_acr_values", tenant, []oidc.IssuerConfig{entra(tenant)}, ""},
		{"other_issuer", "https://login.microsoftonline.com/other/v2.0", []oidc.IssuerConfig{entra(tenant, "c1")}, ""},
		{"not_entra", okta.Issuer, []oidc.IssuerConfig{okta}, ""},
	} {
		cfg := &Config{}
		cfg.Identity.Issuers = tc.issuers
		cfg.Identity.CLI = CLIConfig{Issuer: tc.cli, ClientID: "sqlgate-cli"}
		d := cliDiscovery(cfg)
		if d.AuthContext != tc.want {
			t.Errorf("%s: discovery auth context %q, want %q", tc.name, d.AuthContext, tc.want)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(string(b), `"auth_context":"`+tc.want+`"`); has != (tc.want != "") || (tc.want == "" && strings.Contains(string(b), "auth_context")) {
			t.Errorf("%s: GET /api/v1/config body %s, want auth_context %q", tc.name, b, tc.want)
		}
	}
}
