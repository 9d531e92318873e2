package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/web/api"
)

// wantSignInRevoked checks that err is the API's answer to a revoked
// sign-in: 401 unauthenticated, telling to sign in again.
func wantSignInRevoked(t *testing.T, what string, err error) {
	t.Helper()
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || se.Body.Code != "unauthenticated" ||
		!strings.Contains(se.Body.Message, "revoked") || !strings.Contains(se.Body.Message, "sign in again") {
		t.Errorf("%s after revoke-all = %v; want 401 unauthenticated telling to sign in again", what, err)
	}
}

// TestRevokeAllEndsAPIAccess: after a revoke-all (offboarding) the
// principal's unexpired bearer token no longer works on any endpoint — an
// offboarded admin loses admin and auditor powers at once, not when the
// token expires — while other principals are unaffected and a sign-in
// after the revoke-all works again.
func TestRevokeAllEndsAPIAccess(t *testing.T) {
	s := startDev(t, t.TempDir())
	ctx := t.Context()
	alice, _ := s.login(t, "alice")
	bob, _ := s.login(t, "bob")
	dave, _ := s.login(t, "dave") // admin and auditor
	idOf := func(c *api.Client) string {
		t.Helper()
		who, err := c.WhoAmI(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return who.Issuer + " " + who.Subject
	}
	aliceID, bobID, daveID := idOf(alice), idOf(bob), idOf(dave)

	if _, err := dave.RevokeAll(ctx, aliceID, "left the company"); err != nil {
		t.Fatalf("revoke-all alice: %v", err)
	}
	_, err := alice.WhoAmI(ctx)
	wantSignInRevoked(t, "alice whoami", err)
	_, err = alice.Leases(ctx)
	wantSignInRevoked(t, "alice leases", err)
	_, err = alice.Routes(ctx)
	wantSignInRevoked(t, "alice routes", err)
	if _, err := bob.WhoAmI(ctx); err != nil {
		t.Errorf("bob whoami after alice's revoke-all: %v", err)
	}

	// The admin is offboarded (by themselves here: dev mode has one admin).
	if _, err := dave.RevokeAll(ctx, daveID, "left the company"); err != nil {
		t.Fatalf("revoke-all dave: %v", err)
	}
	revokedAt := time.Now()
	_, err = dave.RevokeAll(ctx, bobID, "by an offboarded admin")
	wantSignInRevoked(t, "dave revoke-all", err)
	_, err = dave.AuditCheckpoint(ctx)
	wantSignInRevoked(t, "dave audit checkpoint", err)
	var buf bytes.Buffer
	err = dave.AuditExport(ctx, &buf, 0, 0)
	wantSignInRevoked(t, "dave audit export", err)
	_, err = dave.PolicyEval(ctx, "call", json.RawMessage(`{}`), false)
	wantSignInRevoked(t, "dave policy eval", err)

	// Token times are whole seconds: a sign-in in the next second is newer
	// than the revoke-all.
	time.Sleep(time.Until(revokedAt.Truncate(time.Second).Add(time.Second)))
	alice, _ = s.login(t, "alice")
	if _, err := alice.WhoAmI(ctx); err != nil {
		t.Errorf("alice whoami after signing in again: %v", err)
	}
}
