package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/identity/oidc"
)

// TestConfigCLIClientAllowed: the example configuration lists only a
// service in the entra issuer's allowedClients, not identity.cli.clientID.
// The CLI is sqlgate's own application: its users' tokens (azp = the CLI's
// client id) verify, where they used to be refused with client_not_allowed
// after a successful `sqlgate login` while --check and serve accepted the
// configuration. An unrelated application is still refused, and the CLI's
// client id opens no issuer the CLI does not sign in with.
func TestConfigCLIClientAllowed(t *testing.T) {
	const (
		entraIssuer = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"
		oktaIssuer  = "https://contractors.okta.com/oauth2/aus1sqlgate"
		cliID       = "22222222-2222-2222-2222-222222222222"
		serviceID   = "33333333-3333-3333-3333-333333333333"
		otherID     = "44444444-4444-4444-4444-444444444444"
	)
	base, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(base)
	for _, want := range []string{entraIssuer, oktaIssuer, "clientID: " + cliID, "allowedClients: [" + serviceID + "]"} {
		if !strings.Contains(text, want) {
			t.Fatalf("example lacks %q", want)
		}
	}
	alice := devidp.User{Username: "alice", Password: "alice-password", Email: "alice@example.com", Groups: []string{"sales"}}
	entra := devidptest.Start(t, devidp.WithShape(devidp.ShapeEntra), devidp.WithUsers(alice), devidp.WithAudience("api://sqlgate"))
	okta := devidptest.Start(t, devidp.WithShape(devidp.ShapeOkta), devidp.WithUsers(alice), devidp.WithAudience("api://sqlgate"))
	secret := filepath.Join(t.TempDir(), "entra-client-secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text = strings.NewReplacer(entraIssuer, entra.Issuer(), oktaIssuer, okta.Issuer(), "/etc/sqlgate/secrets/entra-client-secret", secret).Replace(text)
	// What serve and --check read.
	cfg, err := parseConfig([]byte(text))
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	v, err := oidc.Open(t.Context(), cfg.Identity.Config, nil)
	if err != nil {
		t.Fatalf("oidc.Open: %v", err)
	}
	mint := func(idp *devidptest.Server, client string) string {
		t.Helper()
		c, err := idp.AccessTokenClaims("alice", "")
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"azp", "cid", "client_id", "appid"} {
			delete(c, k)
		}
		c[map[bool]string{true: "cid", false: "azp"}[idp == okta]] = client
		tok, err := idp.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct {
		name    string
		idp     *devidptest.Server
		client  string
		allowed bool
	}{
		{"cli", entra, cliID, true},
		{"service", entra, serviceID, true},
		{"dashboard_clientID", entra, "11111111-1111-1111-1111-111111111111", true},
		{"unrelated", entra, otherID, false},
		// The CLI signs in with the entra issuer only.
		{"cli_at_okta", okta, cliID, false},
		{"okta_cli_app", okta, "0oa1sqlgatecli2b3c4d5", true},
	} {
		p, err := v.Verify(t.Context(), mint(tc.idp, tc.client))
		if tc.allowed && (err != nil || p.Email != "alice@example.com") {
			t.Errorf("%s: token of client %s: %+v, %v; want it accepted", tc.name, tc.client, p, err)
		}
		var ae *identity.AuthError
		if !tc.allowed && (!errors.As(err, &ae) || ae.Reason != oidc.ReasonClientNotAllowed) {
			t.Errorf("%s: token of client %s: %v; want %s", tc.name, tc.client, err, oidc.ReasonClientNotAllowed)
		}
	}
}

// TestConfigCLIClientIssuers: identity.cli.clientID joins allowedClients
// only on the issuers the CLI signs in with (as cliAuthContext matches
// them: the issuer, an Entra template it fills in, the discovery URL), and
// only where allowedClients is set (unset accepts any client already).
func TestConfigCLIClientIssuers(t *testing.T) {
	const tenant = "https://login.microsoftonline.com/3d8e1f27-6c4b-4a9e-b1f0-5e7d2c8a9b36/v2.0"
	for _, tc := range []struct {
		name, cli string
		ic        oidc.IssuerConfig
		want      []string
	}{
		{"issuer", tenant, oidc.IssuerConfig{Issuer: tenant, AllowedClients: []string{"svc"}}, []string{"svc", "cli"}},
		{
			"template", "https://login.microsoftonline.com/organizations/v2.0",
			oidc.IssuerConfig{Issuer: "https://login.microsoftonline.com/{tenantid}/v2.0", AllowedClients: []string{"svc"}},
			[]string{"svc", "cli"},
		},
		{
			"discovery_url", "https://idp.example/discovery",
			oidc.IssuerConfig{Issuer: "https://idp.example", DiscoveryURL: "https://idp.example/discovery/", AllowedClients: []string{"svc"}},
			[]string{"svc", "cli"},
		},
		{"listed_already", tenant, oidc.IssuerConfig{Issuer: tenant, AllowedClients: []string{"cli", "svc"}}, []string{"cli", "svc"}},
		{"any_client", tenant, oidc.IssuerConfig{Issuer: tenant}, nil},
		{"other_issuer", "https://contoso.okta.com/oauth2/aus1", oidc.IssuerConfig{Issuer: tenant, AllowedClients: []string{"svc"}}, []string{"svc"}},
	} {
		ic := IdentityConfig{CLI: CLIConfig{Issuer: tc.cli, ClientID: "cli"}}
		ic.Issuers = []oidc.IssuerConfig{tc.ic}
		ic.allowCLIClient()
		if got := ic.Issuers[0].AllowedClients; !slices.Equal(got, tc.want) {
			t.Errorf("%s: allowedClients %v, want %v", tc.name, got, tc.want)
		}
	}
}
