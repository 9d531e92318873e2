package oidc

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
)

// TestWebLoginClientNotInAllowedClients: the dashboard signs in with its
// own client (WebLoginConfig.ClientID), which differs from the issuer's
// clientID (here there is none) and is not in allowedClients, listing only
// the CLI. Its ID tokens name it (by azp, or, from Entra, by their single
// audience): the sign-in succeeds instead of failing with
// client_not_allowed after the user signed in at the provider. Other
// applications' tokens are still refused.
func TestWebLoginClientNotInAllowedClients(t *testing.T) {
	t.Parallel()
	for _, shape := range []devidp.Shape{devidp.ShapeGeneric, devidp.ShapeEntra} {
		t.Run(string(shape), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpt{shape: shape, issuer: func(ic *IssuerConfig) {
				ic.ClientID, ic.ClientSecretFile = "", ""
				ic.AllowedClients = []string{clientCLI.ID}
				ic.Audiences = append(ic.Audiences, "hr-portal")
			}})
			if !slices.Contains(e.cfg.Issuers[0].Audiences, clientWeb.ID) {
				t.Fatalf("audiences %v lack the web client", e.cfg.Issuers[0].Audiences)
			}
			d := newDashboardWith(t, e, func(c *WebLoginConfig) { c.ClientID, c.ClientSecret = clientWeb.ID, webSecret })
			b := newBrowser(t)
			loc, err := b.signIn(d.startLogin(t, b, "/"), "alice", alicePassword, "login")
			if err != nil {
				t.Fatal(err)
			}
			got := decodeCallback(t, b.get(loc.String()))
			if got["status"] != 200 || got["email"] != "alice@example.com" {
				t.Fatalf("dashboard sign-in with a web client not in allowedClients: callback = %v, want alice signed in", got)
			}

			// Another application's token for one of the audiences is
			// still refused, by the verifier and so by the API.
			c := e.claims("alice")
			c["azp"] = "hr-portal"
			if _, err := e.v.Verify(t.Context(), e.mint(c)); reasonOf(err) != ReasonClientNotAllowed {
				t.Errorf("Verify(hr-portal's token) = %v, want %s", err, ReasonClientNotAllowed)
			}
			id, err := e.idp.IDTokenClaims("alice", "hr-portal", "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.v.Verify(t.Context(), e.mint(id)); reasonOf(err) != ReasonClientNotAllowed {
				t.Errorf("Verify(hr-portal's ID token) = %v, want %s", err, ReasonClientNotAllowed)
			}
		})
	}
}

// TestSeveralIssuersRoles: policies grant routes by role name (data.yaml
// roles: [orders.writer]), whichever issuer sent it. With several issuers
// every issuer must set dropUnmappedRoles, as for groups; then a role one
// issuer's administrators named orders.writer is dropped, and only what an
// issuer's roleMap names is granted.
func TestSeveralIssuersRoles(t *testing.T) {
	t.Parallel()
	people := newEnv(t, envOpt{shape: devidp.ShapeEntra, issuer: func(ic *IssuerConfig) {
		ic.DropUnmappedGroups, ic.DropUnmappedRoles = true, true
		ic.RoleMap = map[string]string{"Orders.Write": "orders.writer"}
	}})
	clk := people.clock
	contractors := devidptest.Start(t, devidp.WithShape(devidp.ShapeOkta), devidp.WithUsers(userBob), devidp.WithClock(clk.Now), devidp.WithAudience("api://sqlgate"))
	cfg := people.cfg
	cfg.Issuers = append(slices.Clone(cfg.Issuers), IssuerConfig{
		Name: "contractors", Issuer: contractors.Issuer(), Preset: PresetOkta, Audiences: []string{"api://sqlgate"},
		DropUnmappedGroups: true, RoleMap: map[string]string{"orders-reader": "orders.reader"},
	})
	// The second issuer's roles passing through by name: refused before
	// anything starts.
	if _, err := Open(t.Context(), cfg, nil, WithClock(clk.Now)); err == nil ||
		!strings.Contains(err.Error(), `issuer "contractors": with several issuers every issuer needs dropUnmappedRoles: true`) {
		t.Fatalf("Open(contractors' roles passing through) = %v, want a refusal naming dropUnmappedRoles", err)
	}
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), `issuer "test": with several issuers every issuer needs dropUnmappedRoles`) {
		t.Errorf("Validate = %v, want only the contractors' issuer named", err)
	}
	cfg.Issuers[1].DropUnmappedRoles = true
	v, err := Open(t.Context(), cfg, nil, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	c, err := contractors.AccessTokenClaims("bob", "")
	if err != nil {
		t.Fatal(err)
	}
	c["roles"] = []string{"orders.writer", "orders-reader", "sqlgate-admins"}
	tok, err := contractors.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := v.Verify(t.Context(), tok); err != nil || !cmp.Equal(p.Roles, []string{"orders.reader"}) {
		t.Errorf("contractor with a role named orders.writer: roles %v (%v), want only the mapped orders.reader", p.Roles, err)
	}
	// The people's issuer maps its app role; an unmapped one is dropped.
	c = people.claims("alice")
	c["roles"] = []string{"Orders.Write", "Orders.Admin"}
	if p, err := v.Verify(t.Context(), people.mint(c)); err != nil || !cmp.Equal(p.Roles, []string{"orders.writer"}) {
		t.Errorf("Entra user with Orders.Write and Orders.Admin: roles %v (%v), want [orders.writer]", p.Roles, err)
	}
}

// TestRoleMapOneIssuer: with one issuer, roles pass through unless
// dropUnmappedRoles, and roleMap renames them.
func TestRoleMapOneIssuer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ic   IssuerConfig
		want []string
	}{
		{"pass_through", IssuerConfig{}, []string{"Orders.Admin", "Orders.Write"}},
		{"mapped_and_passed", IssuerConfig{RoleMap: map[string]string{"Orders.Write": "orders.writer"}}, []string{"Orders.Admin", "orders.writer"}},
		{"mapped_and_dropped", IssuerConfig{RoleMap: map[string]string{"Orders.Write": "orders.writer"}, DropUnmappedRoles: true}, []string{"orders.writer"}},
		{"all_dropped", IssuerConfig{DropUnmappedRoles: true}, nil},
	} {
		m := newMapper(tc.ic.withDefaults())
		p, _, err := m.principal(map[string]any{"sub": "u1", "roles": []any{"Orders.Write", "Orders.Admin", "Orders.Write"}})
		if err != nil || !cmp.Equal(p.Roles, tc.want) {
			t.Errorf("%s: roles %v (%v), want %v", tc.name, p.Roles, err, tc.want)
		}
	}
}
