package broker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
)

// byEntry sends SQL credential decisions to sql and the rest to rest.
type byEntry struct{ sql, rest broker.Authorizer }

func (a byEntry) Decide(ctx context.Context, e policy.Entry, in *policy.Input) (policy.Decision, error) {
	if e == policy.SQLCredentials {
		return a.sql.Decide(ctx, e, in)
	}
	return a.rest.Decide(ctx, e, in)
}

// tokens is a token verifier: each token names its principal.
type tokens map[string]identity.Principal

func (v tokens) Verify(_ context.Context, raw string) (identity.Principal, error) {
	p, ok := v[raw]
	if !ok {
		return p, identity.Unauthenticated("unknown token", nil)
	}
	return p, nil
}

// TestRevokeAllCutsOffSignIns: after a revoke-all (offboarding) the
// principal's existing sign-in gets no new credential on any path (NATS
// creds, the auth callout, a SQL login, a renewal), with an unauthenticated
// error telling it to sign in again and an audit record; a sign-in after
// the revoke-all works again, and other principals are not affected.
func TestRevokeAllCutsOffSignIns(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	engine := sqlEngine(t, "reader")
	cutoffs, err := control.OpenSignInCutoffs(ctx, openControl(t))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{base: time.Now().Truncate(time.Second)}
	offboarded := clock.base
	signedIn := func(issued, auth time.Time) identity.Principal {
		p := alice
		p.IssuedAt, p.AuthTime = issued, auth
		return p
	}
	principals := map[string]identity.Principal{
		"signed_in_before":    signedIn(offboarded.Add(-time.Minute), time.Time{}),
		"signed_in_at":        signedIn(offboarded, time.Time{}),
		"refreshed_after":     signedIn(offboarded.Add(30*time.Second), offboarded.Add(-time.Hour)), // new token, old interactive sign-in
		"no_issue_time":       signedIn(time.Time{}, time.Time{}),
		"signed_in_after":     signedIn(offboarded.Add(30*time.Second), time.Time{}),
		"signed_in_again_mfa": signedIn(offboarded.Add(40*time.Second), offboarded.Add(40*time.Second)),
	}
	svc := e.serviceWith(t, func(c *broker.Config) {
		pub := keys.Public()
		c.Authorizer = byEntry{sql: engine, rest: e.authz}
		c.Minter, c.UsersAccount, c.SigningKeys = natsauth.NewMinter(keys), pub.Users, pub.UsersSigning
		c.Verifier, c.Cutoffs, c.Now = tokens(principals), cutoffs, clock.now
	})
	leases := e.leasesOver(t, svc)

	// The user holds a SQL login from before; the admin offboards them.
	held, err := leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: principals["signed_in_before"], Database: "orders", Role: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	admin := identity.Principal{Issuer: "https://idp.test", Subject: "dana", Email: "dana@example.com", Groups: []string{"admins"}}
	before := len(e.records(t))
	if _, err := leases.RevokeAll(ctx, admin, alice.ID(), "left the company"); err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	// A lease of the new sign-in, for the renewal cases.
	fresh, err := leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: principals["signed_in_after"], Database: "orders", Role: "reader"})
	if err != nil {
		t.Fatalf("IssueSQL after signing in again: %v", err)
	}

	paths := map[string]func(token string) error{
		"nats_creds": func(token string) error {
			_, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: principals[token], UserKey: userKey(t), Via: "creds"})
			return err
		},
		"auth_callout": func(token string) error {
			_, err := svc.Callout(ctx, broker.CalloutRequest{Token: token, UserKey: userKey(t)})
			return err
		},
		"sql_creds": func(token string) error {
			_, err := leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: principals[token], Database: "orders", Role: "reader"})
			return err
		},
		"renew": func(token string) error {
			_, err := leases.RenewLease(ctx, principals[token], fresh.LeaseID, 10*time.Minute)
			return err
		},
	}
	refused := 0
	for _, token := range []string{"signed_in_before", "signed_in_at", "refreshed_after", "no_issue_time"} {
		for path, try := range paths {
			t.Run(token+"/"+path, func(t *testing.T) {
				err := try(token)
				var sre *broker.SignInRevokedError
				if !errors.As(err, &sre) || !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "sign in again") {
					t.Fatalf("%s = %v; want unauthenticated, telling to sign in again", path, err)
				}
				refused++
			})
		}
	}
	for _, token := range []string{"signed_in_after", "signed_in_again_mfa"} {
		for path, try := range paths {
			t.Run(token+"/"+path, func(t *testing.T) {
				if err := try(token); err != nil {
					t.Errorf("%s after signing in again = %v, want a credential", path, err)
				}
			})
		}
	}
	if _, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: bob, UserKey: userKey(t), Via: "creds"}); err != nil {
		t.Errorf("another principal's credential = %v, want it issued", err)
	}
	if l, err := leases.Lease(ctx, held.LeaseID); err != nil || l.State != broker.LeaseRevoked {
		t.Errorf("the login held before = %+v, %v; want it revoked", l, err)
	}

	// Audited: the cutoff, by the admin, and each refusal.
	var cutoffRecords, refusals int
	for _, r := range e.records(t)[before:] {
		switch {
		case r.Kind == audit.KindCredential && r.Credential.Type == "signin" && r.Credential.Action == "revoke":
			if r.Actor.Subject != "dana" || !strings.Contains(r.Credential.Detail, alice.ID()) || !strings.Contains(r.Credential.Detail, "left the company") {
				t.Errorf("cutoff record = %+v %+v, want the admin, the principal and the reason", r.Actor, r.Credential)
			}
			cutoffRecords++
		case r.Kind == audit.KindDecision && r.Result != nil && r.Result.Status == broker.CodeUnauthenticated &&
			r.Actor.Subject == alice.Subject && len(r.Reasons) == 1 && strings.Contains(r.Reasons[0], "offboarding"):
			refusals++
		}
	}
	if cutoffRecords != 1 || refusals != refused || refused != 16 {
		t.Errorf("audit: %d cutoff records and %d refusals (of %d refused), want 1 and 16", cutoffRecords, refusals, refused)
	}
}

// gate holds a credential issuance between its first sign-in check and the
// store that a revoke-all reads (the issuance registry, the lease store)
// until release is closed; entered is closed when it holds.
type gate struct{ entered, release chan struct{} }

func newGate() *gate { return &gate{entered: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) hold() {
	close(g.entered)
	<-g.release
}

// gatedMinter holds MintUser at the gate.
type gatedMinter struct {
	broker.NATSMinter
	g *gate
}

func (m gatedMinter) MintUser(ctx context.Context, spec broker.UserSpec) (broker.MintedUser, error) {
	m.g.hold()
	return m.NATSMinter.MintUser(ctx, spec)
}

// gatedAuthorizer holds SQL credential decisions at the gate.
type gatedAuthorizer struct {
	broker.Authorizer
	g *gate
}

func (a gatedAuthorizer) Decide(ctx context.Context, e policy.Entry, in *policy.Input) (policy.Decision, error) {
	if e == policy.SQLCredentials {
		a.g.hold()
	}
	return a.Authorizer.Decide(ctx, e, in)
}

// TestIssueRacingRevokeAll: an issuance whose sign-in passed the cutoff
// check before a revoke-all, and that stores its credential after the
// revoke-all listed the principal's credentials, is refused like a sign-in
// after the cutoff, and what it stored is revoked: no credential issued
// during an offboarding survives it.
func TestIssueRacingRevokeAll(t *testing.T) {
	type parts struct {
		e      *env
		svc    *broker.Service
		leases *broker.Leases
		rev    *flakyRevoker
	}
	tests := []struct {
		name string
		// issue issues a credential to p and returns a check that what it
		// stored is still live.
		issue func(t *testing.T, x parts, p identity.Principal) (live func() bool, err error)
	}{
		{"nats_creds", func(t *testing.T, x parts, p identity.Principal) (func() bool, error) {
			key := userKey(t)
			cred, err := x.svc.IssueNATS(t.Context(), broker.NATSRequest{Principal: p, UserKey: key, Via: "creds", TTL: time.Hour})
			if cred != nil {
				t.Errorf("IssueNATS released a credential expiring %v", cred.ExpiresAt)
			}
			return func() bool {
				iss, err := x.e.registry.Lookup(t.Context(), key)
				_, enforced := x.rev.state(key)
				return err != nil || iss.RevokedAt.IsZero() || !enforced
			}, err
		}},
		{"sql_creds", func(t *testing.T, x parts, p identity.Principal) (func() bool, error) {
			cred, err := x.leases.IssueSQL(t.Context(), broker.SQLCredRequest{Principal: p, Database: "orders", Role: "reader"})
			if cred != nil {
				t.Errorf("IssueSQL released login %s", cred.Username)
			}
			return func() bool {
				held, err := x.leases.Leases(t.Context(), p.ID())
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range held {
					if !l.State.Final() {
						return true
					}
				}
				return false
			}, err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := t.Context()
			engine := sqlEngine(t, "reader")
			keys, err := natsauth.GenerateKeys()
			if err != nil {
				t.Fatal(err)
			}
			g := newGate()
			rev := newFlakyRevoker(0)
			clock := &testClock{base: time.Now().Truncate(time.Second)}
			svc := e.serviceWith(t, func(c *broker.Config) {
				pub := keys.Public()
				c.Authorizer = gatedAuthorizer{byEntry{sql: engine, rest: e.authz}, g}
				c.Minter, c.UsersAccount, c.SigningKeys = gatedMinter{natsauth.NewMinter(keys), g}, pub.Users, pub.UsersSigning
				c.Cutoffs, c.Revoker, c.Now = openCutoffs(t), rev, clock.now
			})
			leases := e.leasesOver(t, svc)
			p := alice
			p.IssuedAt = clock.base.Add(-time.Minute)

			type issued struct {
				live func() bool
				err  error
			}
			done := make(chan issued)
			go func() {
				live, err := tc.issue(t, parts{e, svc, leases, rev}, p)
				done <- issued{live, err}
			}()
			<-g.entered // past the sign-in check, before the store
			admin := identity.Principal{Issuer: "https://idp.test", Subject: "dana"}
			if _, err := leases.RevokeAll(ctx, admin, alice.ID(), "left"); err != nil {
				t.Fatal(err)
			}
			close(g.release)
			got := <-done
			var sre *broker.SignInRevokedError
			if !errors.As(got.err, &sre) {
				t.Errorf("issue during a revoke-all = %v, want a SignInRevokedError", got.err)
			}
			if got.live() {
				t.Error("the credential stored during the revoke-all is still live")
			}
			refusals := 0
			for _, r := range e.records(t) {
				if r.Kind == audit.KindDecision && r.Result != nil && r.Result.Status == broker.CodeUnauthenticated && r.Actor.Subject == alice.Subject {
					refusals++
				}
			}
			if refusals != 1 {
				t.Errorf("audit: %d refusals of the issuance, want 1", refusals)
			}
		})
	}
}

// openCutoffs opens a sign-in cutoff store on a fresh control database.
func openCutoffs(t *testing.T) *control.SignInCutoffs {
	t.Helper()
	cutoffs, err := control.OpenSignInCutoffs(t.Context(), openControl(t))
	if err != nil {
		t.Fatal(err)
	}
	return cutoffs
}

// brokenCutoffs is a sign-in cutoff store that cannot be read.
type brokenCutoffs struct{}

func (brokenCutoffs) SetCutoff(context.Context, string, time.Time) error {
	return errors.New("control database down")
}

func (brokenCutoffs) Cutoff(context.Context, string) (time.Time, error) {
	return time.Time{}, errors.New("control database down")
}

// TestCheckSignIn: the check the HTTP API runs on every request refuses
// the sign-ins up to a revoke-all, telling the user to sign in again,
// accepts later ones and other principals, and refuses as unavailable
// when the cutoffs cannot be read.
func TestCheckSignIn(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	clock := &testClock{base: time.Now().Truncate(time.Second)}
	svc := e.serviceWith(t, func(c *broker.Config) { c.Cutoffs, c.Now = openCutoffs(t), clock.now })
	at := func(issued, auth time.Time) identity.Principal {
		p := alice
		p.IssuedAt, p.AuthTime = issued, auth
		return p
	}
	before := at(clock.base.Add(-time.Minute), time.Time{})
	if err := svc.CheckSignIn(ctx, before); err != nil {
		t.Fatalf("CheckSignIn without a cutoff = %v", err)
	}
	admin := identity.Principal{Issuer: "https://idp.test", Subject: "dana", Groups: []string{"admins"}}
	if _, err := svc.RevokeAll(ctx, admin, alice.ID(), "left the company"); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]identity.Principal{
		"signed_in_before": before,
		"refreshed_after":  at(clock.base.Add(time.Minute), clock.base.Add(-time.Hour)),
		"no_times":         at(time.Time{}, time.Time{}),
	} {
		err := svc.CheckSignIn(ctx, p)
		var sre *broker.SignInRevokedError
		if !errors.As(err, &sre) || !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "sign in again") {
			t.Errorf("%s: CheckSignIn = %v, want unauthenticated, telling to sign in again", name, err)
		}
	}
	if err := svc.CheckSignIn(ctx, at(clock.base.Add(time.Minute), clock.base.Add(time.Minute))); err != nil {
		t.Errorf("a sign-in after the revoke-all: CheckSignIn = %v", err)
	}
	if err := svc.CheckSignIn(ctx, bob); err != nil {
		t.Errorf("another principal: CheckSignIn = %v", err)
	}

	broken := e.serviceWith(t, func(c *broker.Config) { c.Cutoffs = brokenCutoffs{} })
	if err := broken.CheckSignIn(ctx, bob); !errors.Is(err, broker.ErrUnavailable) || errors.Is(err, identity.ErrUnauthenticated) {
		t.Errorf("CheckSignIn with an unreadable cutoff store = %v, want unavailable", err)
	}
}

// TestRevokeAllRefusesMalformedPrincipal: a revoke-all of something that
// cannot be a principal id (an e-mail address, a bare subject, an issuer
// that is not an absolute URL) is refused as invalid and changes nothing:
// no cutoff, no audit record. Accepting it would report an offboarding
// while the real principal keeps its access.
func TestRevokeAllRefusesMalformedPrincipal(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	cutoffs := openCutoffs(t)
	svc := e.serviceWith(t, func(c *broker.Config) { c.Cutoffs = cutoffs })
	admin := identity.Principal{Issuer: "https://idp.test", Subject: "dana", Groups: []string{"admins"}}
	before := len(e.records(t))
	for _, id := range []string{
		"",
		"alice@example.com",
		"alice",
		"https://idp.test",
		"https://idp.test ",
		"alice https://idp.test",
		"idp.test alice",
		"https:///path alice",
		"ftp://idp.test alice",
		"https://idp.test?x=1 alice",
		"https://idp.test  alice",
		"https://idp.test alice ",
		"https://idp.test ali\nce",
	} {
		_, err := svc.RevokeAll(ctx, admin, id, "left the company")
		if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "<issuer> <subject>") {
			t.Errorf("RevokeAll(%q) = %v, want invalid, naming the shape", id, err)
		}
		if cut, err := cutoffs.Cutoff(ctx, id); err != nil || !cut.IsZero() {
			t.Errorf("RevokeAll(%q) recorded a cutoff %s (%v)", id, cut, err)
		}
	}
	if n := len(e.records(t)) - before; n != 0 {
		t.Errorf("refused revoke-alls wrote %d audit records, want none", n)
	}
	for _, id := range []string{alice.ID(), "http://127.0.0.1:5556/dex 0a1b-2c3d", "https://login.example.com/tenant/v2.0 user with space"} {
		if _, err := svc.RevokeAll(ctx, admin, id, "left the company"); err != nil {
			t.Errorf("RevokeAll(%q) = %v, want it done", id, err)
		}
	}
}
