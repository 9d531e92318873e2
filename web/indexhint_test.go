package web

import (
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
)

// TestDashboardCredsHintOnlyWithRoutes: the dashboard suggests `sqlgate
// creds nats` to a user without credentials only when policy allows them a
// route: the policy refuses a NATS credential to one it allows none (the
// demo's carol gets 403), so the hint would send them into a refusal.
func TestDashboardCredsHintOnlyWithRoutes(t *testing.T) {
	const hint = "sqlgate creds nats -o me.creds"
	s, fb := newTestServer(t, false)
	// carol holds no credential (newTestServer's issuances are alice's and bob's).
	sess := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "carol", Groups: []string{"auditors"}}, time.Now().Add(time.Hour))
	dashboard := func() string {
		t.Helper()
		rec := do(t, s, "GET", "/", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id})
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "No credentials yet.") {
			t.Fatalf("dashboard = %d, want carol's page without credentials:\n%s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}

	if page := dashboard(); !strings.Contains(page, "Policy allows you no routes.") || strings.Contains(page, hint) {
		t.Errorf("with no routes the dashboard suggests %q (which policy refuses):\n%s", hint, page)
	}
	fb.routes = []*route.Route{{Subject: "orders.v1.get", Kind: route.Procedure, Target: "orders.get_order", Database: "orders"}}
	if page := dashboard(); !strings.Contains(page, hint) {
		t.Errorf("with a route the dashboard does not suggest %q:\n%s", hint, page)
	}
}
