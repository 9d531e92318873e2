package broker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
)

// TestSQLLeaseCappedAtTokenExpiry: a SQL login never outlives the sign-in
// token it was issued on (identity.Principal.Expiry), neither when issued
// nor when renewed; a renewal with a fresh token may extend it.
func TestSQLLeaseCappedAtTokenExpiry(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	ctx := t.Context()
	p := alice
	p.Expiry = le.clock.now().Add(time.Minute)
	cred := le.issue(t, p, "reader", 50*time.Minute)
	if cred.ExpiresAt.After(p.Expiry) || !strings.Contains(cred.Capped, "capped at the sign-in token's expiry") {
		t.Errorf("credential expires %s (capped %q); the token expires %s", cred.ExpiresAt, cred.Capped, p.Expiry)
	}
	if l, _ := fake.get(cred.Username); l.expires.After(p.Expiry) {
		t.Errorf("the database login is valid until %s, after the token's expiry %s", l.expires, p.Expiry)
	}

	// Renewing with the same token: no further than the token.
	le.clock.advance(30 * time.Second)
	r, err := le.leases.RenewLease(ctx, p, cred.LeaseID, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r.Lease.ExpiresAt.After(p.Expiry) || !strings.Contains(r.Capped, "sign-in token") {
		t.Errorf("renewed to %s (capped %q); the token expires %s", r.Lease.ExpiresAt, r.Capped, p.Expiry)
	}
	// A fresh token (signed in again) may renew it further.
	fresh := alice
	fresh.Expiry = le.clock.now().Add(2 * time.Hour)
	r, err = le.leases.RenewLease(ctx, fresh, cred.LeaseID, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := le.clock.now().Add(30 * time.Minute).Truncate(time.Second); !r.Lease.ExpiresAt.Equal(want) {
		t.Errorf("renewal with a fresh token: expires %s, want %s", r.Lease.ExpiresAt, want)
	}

	// A token about to expire gets nothing, and nothing is created.
	dying := alice
	dying.Expiry = le.clock.now().Add(500 * time.Millisecond)
	n := fake.count()
	if _, err := le.leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: dying, Database: "orders", Role: "reader"}); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Errorf("issue on a token expiring in 500ms = %v, want unauthenticated", err)
	}
	if _, err := le.leases.RenewLease(ctx, dying, cred.LeaseID, time.Minute); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Errorf("renew on a token expiring in 500ms = %v, want unauthenticated", err)
	}
	if fake.count() != n {
		t.Errorf("%d logins, want %d", fake.count(), n)
	}
}

// TestLeaseLimitConcurrent: concurrent requests cannot pass
// maxLeasesPerPrincipal together; the refused ones leave no login and no
// unrevoked lease.
func TestLeaseLimitConcurrent(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", func(c *broker.LeasesConfig) { c.MaxLeasesPerPrincipal = 2 })
	ctx := t.Context()
	var wg sync.WaitGroup
	var mu sync.Mutex
	issued := 0
	for range 20 {
		wg.Go(func() {
			_, err := le.leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: alice, Database: "orders", Role: "reader"})
			switch {
			case err == nil:
				mu.Lock()
				issued++
				mu.Unlock()
			case !errors.Is(err, broker.ErrTooManyLeases):
				t.Errorf("IssueSQL = %v, want success or too many", err)
			}
		})
	}
	wg.Wait()
	if issued > 2 {
		t.Errorf("limit 2, but %d concurrent issues succeeded", issued)
	}
	unrevoked := func() int {
		list, err := le.leases.Leases(ctx, alice.ID())
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range list {
			if !l.State.Final() {
				n++
			}
		}
		return n
	}
	if n := unrevoked(); n != issued || fake.count() != issued {
		t.Errorf("%d issued, but %d unrevoked leases and %d logins", issued, n, fake.count())
	}
	// The refused ones do not count: the limit is reached one by one.
	for i := issued; i < 2; i++ {
		le.issue(t, alice, "reader", 0)
	}
	if _, err := le.leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: alice, Database: "orders", Role: "reader"}); !errors.Is(err, broker.ErrTooManyLeases) {
		t.Errorf("third lease = %v, want too many", err)
	}
	if n := unrevoked(); n != 2 || fake.count() != 2 {
		t.Errorf("%d unrevoked leases and %d logins, want 2", n, fake.count())
	}
}

// syncBuffer is a log sink safe for the reaper's concurrent workers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestStuckRevocation: a login that was disabled (sessions ended) but
// cannot be removed keeps its lease revoking; after StuckAttempts failed
// attempts a warning asks an operator once, and the lease stops counting
// toward maxLeasesPerPrincipal. A lease whose database is unreachable
// (access not ended) keeps counting.
func TestStuckRevocation(t *testing.T) {
	fake := newFakeLogins()
	logs := &syncBuffer{}
	le := newLeaseEnv(t, fake, "reader", func(c *broker.LeasesConfig) {
		c.MaxLeasesPerPrincipal = 1
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	ctx := t.Context()
	cred := le.issue(t, alice, "reader", 0)
	fake.undroppable.Store(true)
	l, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, "")
	if err != nil || l.State != broker.LeaseRevoking || !strings.HasPrefix(l.LastError, "login disabled, sessions ended; removal failed: ") {
		t.Fatalf("RevokeLease = %+v, %v; want revoking, the login disabled", l, err)
	}
	tooMany := func() bool {
		_, err := le.leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: alice, Database: "orders", Role: "reader"})
		if err != nil && !errors.Is(err, broker.ErrTooManyLeases) {
			t.Fatalf("IssueSQL = %v", err)
		}
		return err != nil
	}
	for l.Attempts < broker.StuckAttempts {
		if !tooMany() {
			t.Fatalf("after %d failed attempts the lease no longer counts; want it counted until %d", l.Attempts, broker.StuckAttempts)
		}
		le.clock.advance(time.Hour)
		if _, err := le.leases.Reap(ctx); err != nil {
			t.Fatal(err)
		}
		got := le.lease(t, cred.LeaseID)
		l = &got
	}
	for range 3 { // more failures: still one warning
		le.clock.advance(time.Hour)
		if _, err := le.leases.Reap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := le.lease(t, cred.LeaseID); got.State != broker.LeaseRevoking {
		t.Fatalf("stuck lease = %s, want revoking", got.State)
	}
	if n := strings.Count(logs.String(), "an operator must finish it"); n != 1 {
		t.Errorf("%d operator warnings, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "access_ended=true") {
		t.Errorf("the warning does not say access ended:\n%s", logs)
	}
	if tooMany() {
		t.Error("a stuck lease whose access ended still counts toward the limit")
	}

	// Unreachable database: access may not have ended; it keeps counting.
	fake.undroppable.Store(false)
	bobCred := le.issue(t, bob, "reader", 0)
	fake.down.Store(true)
	if _, err := le.leases.RevokeLease(ctx, bob, bobCred.LeaseID, ""); err != nil {
		t.Fatal(err)
	}
	for range broker.StuckAttempts + 1 {
		le.clock.advance(time.Hour)
		if _, err := le.leases.Reap(ctx); err != nil {
			t.Fatal(err)
		}
	}
	fake.down.Store(false)
	if _, err := le.leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: bob, Database: "orders", Role: "reader"}); !errors.Is(err, broker.ErrTooManyLeases) {
		t.Errorf("bob's unreachable revocation: issue = %v, want too many (access may not have ended)", err)
	}
}

// TestStrandedLeases: unfinished leases of a database that is no longer
// configured are reported, per database, so that the app can refuse to
// start or warn.
func TestStrandedLeases(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	ctx := t.Context()
	cred := le.issue(t, alice, "reader", 0)
	le.issue(t, bob, "reader", 0)
	if got, err := le.leases.Stranded(ctx); err != nil || len(got) != 0 {
		t.Errorf("Stranded with orders configured = %v, %v; want none", got, err)
	}
	renamed, err := broker.NewLeases(broker.LeasesConfig{
		Service: le.svc, Store: le.store, Now: le.clock.now,
		Issuers: map[string]broker.SQLLoginIssuer{"billing": newFakeLogins()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := renamed.Stranded(ctx); err != nil || len(got) != 1 || got["orders"] != 2 {
		t.Errorf("Stranded after orders was removed = %v, %v; want orders: 2", got, err)
	}
	if got, err := broker.StrandedLeases(ctx, le.store, nil); err != nil || got["orders"] != 2 {
		t.Errorf("StrandedLeases without any issuer = %v, %v; want orders: 2", got, err)
	}
	if _, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := broker.StrandedLeases(ctx, le.store, nil); err != nil || got["orders"] != 1 {
		t.Errorf("StrandedLeases after one revocation = %v, %v; want orders: 1", got, err)
	}
}

// clientAuthz records the client of every policy input.
type clientAuthz struct {
	broker.Authorizer
	mu      sync.Mutex
	clients []policy.Client
}

func (a *clientAuthz) Decide(ctx context.Context, e policy.Entry, in *policy.Input) (policy.Decision, error) {
	a.mu.Lock()
	a.clients = append(a.clients, in.Request.Client)
	a.mu.Unlock()
	return a.Authorizer.Decide(ctx, e, in)
}

// TestLeaseClient: a renewal is decided and audited with the client's
// address and user agent (broker.WithClient), like an issue; a revocation
// is audited with the address.
func TestLeaseClient(t *testing.T) {
	le := newLeaseEnv(t, newFakeLogins(), "reader", nil)
	rec := &clientAuthz{Authorizer: le.authz.Authorizer}
	le.authz.Authorizer = rec
	client := policy.Client{Host: "203.0.113.7:5555", Name: "sqlgate-cli/1.2"}
	cred, err := le.leases.IssueSQL(t.Context(), broker.SQLCredRequest{Principal: alice, Database: "orders", Role: "reader", TTL: time.Minute, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	before := len(le.records(t))
	ctx := broker.WithClient(t.Context(), client)
	if _, err := le.leases.RenewLease(ctx, alice, cred.LeaseID, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, ""); err != nil {
		t.Fatal(err)
	}
	if len(rec.clients) != 2 || rec.clients[1] != client {
		t.Errorf("policy saw clients %+v, want %+v for the renewal too", rec.clients, client)
	}
	recs := le.credentialRecords(t, before)
	if got := actions(recs); strings.Join(got, ",") != "credential:renew,credential:revoke" {
		t.Fatalf("audit = %v", got)
	}
	for _, r := range recs {
		if r.Actor == nil || r.Actor.ClientHost != client.Host {
			t.Errorf("%s record: actor %+v, want host %s", r.Credential.Action, r.Actor, client.Host)
		}
	}
}

// historyStore counts the reads of a principal's whole lease history.
type historyStore struct {
	broker.LeaseStore
	reads atomic.Int32
}

func (s *historyStore) ByPrincipal(ctx context.Context, principalID string) ([]broker.Lease, error) {
	s.reads.Add(1)
	return s.LeaseStore.ByPrincipal(ctx, principalID)
}

// TestLeaseLimitIgnoresHistory: the lease limit (at every issue) and a
// revoke-all read only the principal's unfinished leases, never the whole
// history of revoked and failed ones, which grows with every credential
// (200,000 revoked leases made an issue take seconds).
func TestLeaseLimitIgnoresHistory(t *testing.T) {
	fake := newFakeLogins()
	var hs *historyStore
	le := newLeaseEnv(t, fake, "reader", func(c *broker.LeasesConfig) {
		hs = &historyStore{LeaseStore: c.Store}
		c.Store = hs
		c.MaxLeasesPerPrincipal = 2
	})
	ctx := t.Context()
	for range 3 {
		cred := le.issue(t, alice, "reader", 0)
		if _, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, ""); err != nil {
			t.Fatal(err)
		}
	}
	le.issue(t, alice, "reader", 0)
	le.issue(t, alice, "reader", 0)
	if _, err := le.leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: alice, Database: "orders", Role: "reader"}); !errors.Is(err, broker.ErrTooManyLeases) ||
		!strings.Contains(err.Error(), "you hold 2 unrevoked") {
		t.Errorf("third unrevoked lease = %v, want too many (2 held; the 3 revoked do not count)", err)
	}
	res, err := le.leases.RevokeAll(ctx, alice, alice.ID(), "offboarding")
	if err != nil || len(res.Leases) != 2 || res.Pending() != 0 {
		t.Fatalf("RevokeAll = %+v, %v; want the two unrevoked leases revoked", res, err)
	}
	if n := hs.reads.Load(); n != 0 {
		t.Errorf("the principal's whole lease history was read %d times", n)
	}
}

// TestLeaseRetention: the reaper deletes leases that have been revoked or
// failed for longer than the retention (default 30 days), once an hour;
// unfinished leases stay whatever their age, and the audit log keeps the
// deleted leases' history.
func TestLeaseRetention(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		le := newLeaseEnv(t, newFakeLogins(), "reader", nil)
		ctx := t.Context()
		cred := le.issue(t, alice, "reader", 0)
		if _, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, ""); err != nil {
			t.Fatal(err)
		}
		le.clock.advance(broker.DefaultLeaseRetention - time.Hour)
		if st, err := le.leases.Reap(ctx); err != nil || st.Pruned != 0 {
			t.Fatalf("Reap before the retention = %+v, %v; want nothing pruned", st, err)
		}
		le.clock.advance(2 * time.Hour)
		if st, err := le.leases.Reap(ctx); err != nil || st.Pruned != 1 {
			t.Fatalf("Reap after the retention = %+v, %v; want the revoked lease pruned", st, err)
		}
		if _, err := le.leases.Lease(ctx, cred.LeaseID); !errors.Is(err, broker.ErrNotFound) {
			t.Errorf("pruned lease = %v, want not found", err)
		}
	})

	t.Run("configured", func(t *testing.T) {
		fake := newFakeLogins()
		le := newLeaseEnv(t, fake, "reader", func(c *broker.LeasesConfig) { c.Retention = 48 * time.Hour })
		ctx := t.Context()
		before := len(le.records(t))
		revoked := le.issue(t, alice, "reader", 0)
		if _, err := le.leases.RevokeLease(ctx, alice, revoked.LeaseID, ""); err != nil {
			t.Fatal(err)
		}
		fake.failCreate.Store(true) // a failed lease, nothing left
		if _, err := le.leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: alice, Database: "orders", Role: "reader"}); err == nil {
			t.Fatal("IssueSQL with a failing database succeeded")
		}
		fake.failCreate.Store(false)
		stuck := le.issue(t, bob, "reader", 0)
		fake.down.Store(true) // revoking, retried
		if _, err := le.leases.RevokeLease(ctx, bob, stuck.LeaseID, ""); err != nil {
			t.Fatal(err)
		}

		le.clock.advance(47 * time.Hour)
		if st, err := le.leases.Reap(ctx); err != nil || st.Pruned != 0 {
			t.Fatalf("Reap after 47h = %+v, %v; want nothing pruned yet", st, err)
		}
		le.clock.advance(90 * time.Minute)
		if st, err := le.leases.Reap(ctx); err != nil || st.Pruned != 2 {
			t.Fatalf("Reap after 48h30m = %+v, %v; want the revoked and the failed lease pruned", st, err)
		}
		if list, err := le.leases.Leases(ctx, alice.ID()); err != nil || len(list) != 0 {
			t.Errorf("alice's leases after the retention = %v, %v; want none", list, err)
		}
		if l := le.lease(t, stuck.LeaseID); l.State != broker.LeaseRevoking {
			t.Errorf("bob's unfinished lease = %s, want kept (revoking)", l.State)
		}
		got := strings.Join(actions(le.credentialRecords(t, before)), ",")
		if !strings.HasPrefix(got, "credential:issue,credential:revoke,credential:issue") {
			t.Errorf("audit after pruning = %s; want the pruned leases' records kept", got)
		}
	})

	t.Run("forever", func(t *testing.T) {
		le := newLeaseEnv(t, newFakeLogins(), "reader", func(c *broker.LeasesConfig) { c.Retention = -1 })
		ctx := t.Context()
		cred := le.issue(t, alice, "reader", 0)
		if _, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, ""); err != nil {
			t.Fatal(err)
		}
		le.clock.advance(10 * broker.DefaultLeaseRetention)
		if st, err := le.leases.Reap(ctx); err != nil || st.Pruned != 0 {
			t.Fatalf("Reap = %+v, %v; want nothing pruned (retention negative)", st, err)
		}
		if l := le.lease(t, cred.LeaseID); l.State != broker.LeaseRevoked {
			t.Errorf("lease = %s, want kept", l.State)
		}
	})
}
