package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
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

// refusalAudited reports whether the audit log (exported by auditor) holds
// the decision record of a NATS credential for userKey refused to
// principalID because its sign-in was revoked.
func refusalAudited(t *testing.T, auditor *api.Client, principalID, userKey string) bool {
	t.Helper()
	ctx := t.Context()
	var buf bytes.Buffer
	if err := auditor.AuditExport(ctx, &buf, 0, 0); err != nil {
		t.Fatalf("audit export: %v", err)
	}
	b, err := audit.OpenBundle(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	origins, err := b.Origins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, origin := range origins {
		from, to, err := b.Bounds(ctx, origin)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Records(ctx, origin, from, to, func(_ int64, data []byte, _ *tlog.Hash) error {
			r, err := audit.DecodeRecord(data)
			if err != nil {
				return err
			}
			found = found || (r.Kind == audit.KindDecision && r.Actor != nil && r.Actor.Issuer+" "+r.Actor.Subject == principalID &&
				r.Credential != nil && r.Credential.UserKey == userKey && r.Allow != nil && !*r.Allow &&
				r.Result != nil && r.Result.Status == "unauthenticated" && slices.ContainsFunc(r.Reasons, func(s string) bool { return strings.Contains(s, "offboarding") }))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return found
}

// TestRevokeAllEndsAPIAccess: after a revoke-all (offboarding) the
// principal's unexpired bearer token no longer works on any endpoint — an
// offboarded admin loses admin and auditor powers at once, not when the
// token expires — while other principals are unaffected and a sign-in
// after the revoke-all works again. A refused request for credentials is
// audited (a decision record).
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

	// A mistyped id (the issuer with a trailing slash) is refused, and
	// alice keeps her access until the right one is given: the daemon
	// tells the dashboard which issuers it trusts.
	issuer, subject, _ := strings.Cut(aliceID, " ")
	var se *api.StatusError
	if _, err := dave.RevokeAll(ctx, issuer+"/ "+subject, "typo"); !errors.As(err, &se) || se.Status != http.StatusBadRequest ||
		se.Body.Code != "invalid_request" || !strings.Contains(se.Body.Message, "configured identity issuers") {
		t.Fatalf("revoke-all of an issuer with a trailing slash: %v, want 400 invalid_request naming the configured issuers", err)
	}
	if _, err := alice.WhoAmI(ctx); err != nil {
		t.Fatalf("alice whoami after a refused revoke-all: %v", err)
	}

	if _, err := dave.RevokeAll(ctx, aliceID, "left the company"); err != nil {
		t.Fatalf("revoke-all alice: %v", err)
	}
	_, err := alice.WhoAmI(ctx)
	wantSignInRevoked(t, "alice whoami", err)
	_, err = alice.Leases(ctx)
	wantSignInRevoked(t, "alice leases", err)
	_, err = alice.Routes(ctx)
	wantSignInRevoked(t, "alice routes", err)
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	_, err = alice.NATSCreds(ctx, api.NATSCredsRequest{PublicKey: pub})
	wantSignInRevoked(t, "alice nats creds", err)
	if !refusalAudited(t, dave, aliceID, pub) {
		t.Error("alice's refused NATS credential left no decision record in the audit log")
	}
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
