package control_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/identity"
)

var leaseOwner = identity.Principal{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com", Groups: []string{"sales"}}

func openLeaseStores(t *testing.T) map[string]*control.LeaseStore {
	t.Helper()
	out := map[string]*control.LeaseStore{}
	for name, db := range openDBs(t) {
		s, err := control.OpenLeaseStore(t.Context(), db)
		if err != nil {
			t.Fatal(err)
		}
		// Opening twice is harmless (a second instance starting).
		if _, err := control.OpenLeaseStore(t.Context(), db); err != nil {
			t.Fatalf("second OpenLeaseStore: %v", err)
		}
		out[name] = s
	}
	return out
}

func newLease(id string, p identity.Principal, issued time.Time, ttl time.Duration) *broker.Lease {
	return &broker.Lease{
		ID: id, Principal: p, Database: "orders", Role: "reader", Username: "sg_" + id,
		IssuedAt: issued, ExpiresAt: issued.Add(ttl), MaxExpiry: issued.Add(4 * ttl), DecisionID: "dec-" + id,
	}
}

func claim(token string, until time.Time) broker.Claim {
	return broker.Claim{Token: token, Owner: "instance-" + token, Until: until}
}

func mustOK(t *testing.T, what string, ok bool, err error, want bool) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if ok != want {
		t.Fatalf("%s applied = %v, want %v", what, ok, want)
	}
}

func TestLeaseLifecycle(t *testing.T) {
	for name, s := range openLeaseStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			t0 := time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC)
			l := newLease("l1", leaseOwner, t0, time.Hour)
			if err := s.Create(ctx, l, claim("tok", t0.Add(time.Minute))); err != nil {
				t.Fatal(err)
			}
			if err := s.Create(ctx, l, claim("tok", t0.Add(time.Minute))); err == nil {
				t.Error("Create with a duplicate id succeeded")
			}
			got, err := s.Get(ctx, "l1")
			if err != nil {
				t.Fatal(err)
			}
			want := *l
			want.State, want.NextAttempt, want.UpdatedAt = broker.LeaseCreating, t0, t0
			if d := cmp.Diff(want, got); d != "" {
				t.Fatalf("Get after Create (-want +got):\n%s", d)
			}
			if _, err := s.Get(ctx, "nope"); !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("Get(unknown) error = %v, want ErrNotFound", err)
			}

			ok, err := s.Activate(ctx, "l1", "other-token", t0)
			mustOK(t, "Activate with another token", ok, err, false)
			ok, err = s.Renew(ctx, "l1", t0.Add(2*time.Hour), t0)
			mustOK(t, "Renew while creating", ok, err, false)
			ok, err = s.Activate(ctx, "l1", "tok", t0.Add(time.Second))
			mustOK(t, "Activate", ok, err, true)
			ok, err = s.Activate(ctx, "l1", "tok", t0.Add(time.Second))
			mustOK(t, "Activate twice", ok, err, false)

			ok, err = s.Renew(ctx, "l1", t0.Add(5*time.Hour), t0.Add(time.Minute))
			mustOK(t, "Renew past the maximum expiry", ok, err, false)
			ok, err = s.Renew(ctx, "l1", t0.Add(2*time.Hour), t0.Add(time.Minute))
			mustOK(t, "Renew", ok, err, true)
			ok, err = s.Renew(ctx, "l1", t0.Add(3*time.Hour), t0.Add(2*time.Hour))
			mustOK(t, "Renew after expiry", ok, err, false)

			// A revoking lease cannot be claimed before it is marked.
			ok, err = s.Claim(ctx, "l1", claim("r1", t0.Add(time.Hour)), t0.Add(time.Minute))
			mustOK(t, "Claim of an active lease", ok, err, false)
			ok, err = s.MarkRevoking(ctx, "l1", "revoked by alice", t0.Add(time.Minute))
			mustOK(t, "MarkRevoking", ok, err, true)
			ok, err = s.MarkRevoking(ctx, "l1", "again", t0.Add(time.Minute))
			mustOK(t, "MarkRevoking twice", ok, err, false)
			ok, err = s.Claim(ctx, "l1", claim("r1", t0.Add(2*time.Minute)), t0.Add(time.Minute))
			mustOK(t, "Claim", ok, err, true)
			ok, err = s.Claim(ctx, "l1", claim("r2", t0.Add(2*time.Minute)), t0.Add(time.Minute))
			mustOK(t, "Claim of a claimed lease", ok, err, false)
			ok, err = s.RetryLater(ctx, "l1", "r1", t0.Add(10*time.Minute), "database unavailable", t0.Add(time.Minute))
			mustOK(t, "RetryLater", ok, err, true)
			got, _ = s.Get(ctx, "l1")
			if got.State != broker.LeaseRevoking || got.Attempts != 1 || got.LastError != "database unavailable" ||
				!got.NextAttempt.Equal(t0.Add(10*time.Minute)) || got.Reason != "revoked by alice" {
				t.Errorf("after RetryLater = %+v", got)
			}
			// The claim was released: another instance may claim at once.
			ok, err = s.Claim(ctx, "l1", claim("r2", t0.Add(3*time.Minute)), t0.Add(time.Minute))
			mustOK(t, "Claim after RetryLater", ok, err, true)
			ok, err = s.Finish(ctx, "l1", "r1", broker.LeaseRevoked, t0.Add(2*time.Minute))
			mustOK(t, "Finish with a stale token", ok, err, false)
			if _, err := s.Finish(ctx, "l1", "r2", broker.LeaseActive, t0.Add(2*time.Minute)); err == nil {
				t.Error("Finish to a non-final state succeeded")
			}
			ok, err = s.Finish(ctx, "l1", "r2", broker.LeaseRevoked, t0.Add(2*time.Minute))
			mustOK(t, "Finish", ok, err, true)
			got, _ = s.Get(ctx, "l1")
			if got.State != broker.LeaseRevoked || !got.RevokedAt.Equal(t0.Add(2*time.Minute)) || got.LastError != "" {
				t.Errorf("after Finish = %+v", got)
			}
			ok, err = s.MarkRevoking(ctx, "l1", "again", t0.Add(3*time.Minute))
			mustOK(t, "MarkRevoking a revoked lease", ok, err, false)
		})
	}
}

func TestLeaseReaperQueries(t *testing.T) {
	for name, s := range openLeaseStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			// l-exp expired, l-live not; l-stale's creator died, l-new's is working.
			for _, c := range []struct {
				id  string
				ttl time.Duration
			}{{"l-exp", time.Minute}, {"l-live", time.Hour}} {
				if err := s.Create(ctx, newLease(c.id, leaseOwner, t0, c.ttl), claim("c-"+c.id, t0.Add(time.Second))); err != nil {
					t.Fatal(err)
				}
				ok, err := s.Activate(ctx, c.id, "c-"+c.id, t0)
				mustOK(t, "Activate", ok, err, true)
			}
			if err := s.Create(ctx, newLease("l-stale", leaseOwner, t0, time.Hour), claim("c-stale", t0.Add(time.Minute))); err != nil {
				t.Fatal(err)
			}
			if err := s.Create(ctx, newLease("l-new", leaseOwner, t0.Add(2*time.Minute), time.Hour), claim("c-new", t0.Add(4*time.Minute))); err != nil {
				t.Fatal(err)
			}
			now := t0.Add(2 * time.Minute)
			exp, err := s.ExpireDue(ctx, now, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(exp) != 1 || exp[0].ID != "l-exp" || exp[0].State != broker.LeaseRevoking || exp[0].Reason != "expired" {
				t.Fatalf("ExpireDue = %+v, want l-exp revoking (expired)", exp)
			}
			if again, err := s.ExpireDue(ctx, now, 10); err != nil || len(again) != 0 {
				t.Errorf("second ExpireDue = %v, %v; want nothing", again, err)
			}
			stale, err := s.AbandonStale(ctx, now, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(stale) != 1 || stale[0].ID != "l-stale" || stale[0].State != broker.LeaseRevoking {
				t.Fatalf("AbandonStale = %+v, want l-stale", stale)
			}
			// The creator of l-stale comes back too late: it may not activate.
			ok, err := s.Activate(ctx, "l-stale", "c-stale", now)
			mustOK(t, "Activate an abandoned lease", ok, err, false)

			due, err := s.ClaimDue(ctx, claim("reaper", now.Add(time.Minute)), now, 10)
			if err != nil {
				t.Fatal(err)
			}
			ids := sortedIDs(due)
			if !slices.Equal(ids, []string{"l-exp", "l-stale"}) {
				t.Fatalf("ClaimDue = %v, want [l-exp l-stale]", ids)
			}
			if again, _ := s.ClaimDue(ctx, claim("other", now.Add(time.Minute)), now, 10); len(again) != 0 {
				t.Errorf("ClaimDue while claimed = %v, want nothing", leaseIDs(again))
			}
			// The reaper dies; after its claim expires another instance takes over.
			later := now.Add(2 * time.Minute)
			if taken, _ := s.ClaimDue(ctx, claim("other", later.Add(time.Minute)), later, 10); len(taken) != 2 {
				t.Errorf("ClaimDue after the claim expired = %v, want both", leaseIDs(taken))
			}
			// Startup recovery releases the claims of this instance at once.
			n, err := s.ReleaseClaims(ctx, "instance-other")
			if err != nil || n != 2 {
				t.Fatalf("ReleaseClaims = %d, %v; want 2", n, err)
			}
			if taken, _ := s.ClaimDue(ctx, claim("third", later.Add(time.Minute)), later, 10); len(taken) != 2 {
				t.Errorf("ClaimDue after ReleaseClaims = %v, want both", leaseIDs(taken))
			}

			list, err := s.ByPrincipal(ctx, leaseOwner.ID())
			if err != nil {
				t.Fatal(err)
			}
			if got := leaseIDs(list); !slices.Equal(got, []string{"l-new", "l-stale", "l-live", "l-exp"}) {
				t.Errorf("ByPrincipal = %v, want newest first", got)
			}
			if other, _ := s.ByPrincipal(ctx, "https://idp.test bob"); len(other) != 0 {
				t.Errorf("ByPrincipal(bob) = %v", leaseIDs(other))
			}
		})
	}
}

// TestLeaseClaimsDoNotCollide has several reapers claim the same due
// leases at once: each lease must be claimed exactly once.
func TestLeaseClaimsDoNotCollide(t *testing.T) {
	for name, s := range openLeaseStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			const leases = 40
			for i := range leases {
				id := fmt.Sprintf("c%02d", i)
				if err := s.Create(ctx, newLease(id, leaseOwner, t0, time.Minute), claim("x", t0)); err != nil {
					t.Fatal(err)
				}
				ok, err := s.MarkRevoking(ctx, id, "test", t0)
				mustOK(t, "MarkRevoking", ok, err, true)
			}
			now := t0.Add(time.Minute)
			var (
				mu      sync.Mutex
				claimed = map[string]string{}
				wg      sync.WaitGroup
				errs    = make(chan error, 4)
			)
			for w := range 4 {
				wg.Go(func() {
					c := claim(fmt.Sprintf("w%d", w), now.Add(time.Hour))
					for {
						got, err := s.ClaimDue(ctx, c, now, 3)
						if err != nil {
							errs <- err
							return
						}
						if len(got) == 0 {
							return
						}
						mu.Lock()
						for _, l := range got {
							if prev, dup := claimed[l.ID]; dup {
								errs <- fmt.Errorf("lease %s claimed by %s and %s", l.ID, prev, c.Token)
							}
							claimed[l.ID] = c.Token
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if len(claimed) != leases {
				t.Errorf("%d leases claimed, want %d", len(claimed), leases)
			}
		})
	}
}

// leaseIDs lists the ids in order.
func leaseIDs(ls []broker.Lease) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

// sortedIDs lists the ids sorted.
func sortedIDs(ls []broker.Lease) []string {
	out := leaseIDs(ls)
	slices.Sort(out)
	return out
}

// TestLeaseByPrincipalPage: following pages lists each of a principal's
// leases once, newest first (ties by id, bytewise), never more rows than
// the page asks; live leases are the active unexpired ones.
func TestLeaseByPrincipalPage(t *testing.T) {
	for name, s := range openLeaseStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			at := t0.Add(30 * time.Second)
			bob := identity.Principal{Issuer: "https://idp.test", Subject: "bob"}
			var all, live, ended []broker.ListCursor
			for i := range 30 {
				id := fmt.Sprintf("%s%02d", pageKeys[i%len(pageKeys)], i/len(pageKeys))
				ttl := time.Hour
				if i%4 == 1 {
					ttl = 20 * time.Second // expired at t0+30s, yet still active
				}
				l := newLease(id, leaseOwner, t0.Add(time.Duration(i/3)*time.Second), ttl)
				if err := s.Create(ctx, l, claim("tok"+id, t0.Add(time.Minute))); err != nil {
					t.Fatal(err)
				}
				if err := s.Create(ctx, newLease("bob"+id, bob, l.IssuedAt, time.Hour), claim("tok", t0)); err != nil {
					t.Fatal(err)
				}
				isLive := false
				switch i % 4 {
				case 0, 1:
					ok, err := s.Activate(ctx, id, "tok"+id, t0)
					mustOK(t, "activate", ok, err, true)
					isLive = i%4 == 0
				case 2:
					ok, err := s.MarkRevoking(ctx, id, "test", t0)
					mustOK(t, "mark revoking", ok, err, true)
				} // 3: still creating
				c := broker.ListCursor{IssuedAt: l.IssuedAt.UnixNano(), Key: id}
				all = append(all, c)
				if isLive {
					live = append(live, c)
				} else {
					ended = append(ended, c)
				}
			}
			for _, tc := range []struct {
				filter broker.ListFilter
				want   []string
			}{{broker.ListAll, newestFirst(all)}, {broker.ListLive, newestFirst(live)}, {broker.ListEnded, newestFirst(ended)}} {
				for _, limit := range []int{1, 4, 30, 100} {
					got := walkPages(t, limit, func(before *broker.ListCursor) ([]broker.ListCursor, error) {
						list, err := s.ByPrincipalPage(ctx, leaseOwner.ID(), broker.ListPage{Before: before, Limit: limit, Filter: tc.filter, At: at})
						var out []broker.ListCursor
						for _, l := range list {
							if l.Principal.ID() != leaseOwner.ID() {
								t.Fatalf("alice's page lists %s of %s", l.ID, l.Principal.ID())
							}
							out = append(out, broker.ListCursor{IssuedAt: l.IssuedAt.UnixNano(), Key: l.ID})
						}
						return out, err
					})
					if d := cmp.Diff(tc.want, got); d != "" {
						t.Errorf("filter %d, pages of %d (-want +got):\n%s", tc.filter, limit, d)
					}
				}
			}
			if _, err := s.ByPrincipalPage(ctx, leaseOwner.ID(), broker.ListPage{}); !errors.Is(err, broker.ErrInvalid) {
				t.Errorf("ByPrincipalPage(limit 0) = %v, want ErrInvalid", err)
			}
		})
	}
}

// leaseIn puts a lease of p issued at t in state: creating, active,
// revoking (attempts failed attempts with lastErr), revoked or failed (at
// t).
func leaseIn(t *testing.T, s *control.LeaseStore, id string, p identity.Principal, at time.Time, state broker.LeaseState, attempts int, lastErr string) {
	t.Helper()
	ctx := t.Context()
	if err := s.Create(ctx, newLease(id, p, at, time.Hour), claim("c"+id, at.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	switch state {
	case broker.LeaseCreating:
	case broker.LeaseFailed:
		ok, err := s.Finish(ctx, id, "c"+id, broker.LeaseFailed, at)
		mustOK(t, "finish failed", ok, err, true)
	default:
		ok, err := s.Activate(ctx, id, "c"+id, at)
		mustOK(t, "activate", ok, err, true)
		if state == broker.LeaseActive {
			return
		}
		ok, err = s.MarkRevoking(ctx, id, "test", at)
		mustOK(t, "mark revoking", ok, err, true)
		for i := range attempts {
			ok, err = s.Claim(ctx, id, claim(fmt.Sprint("r", id, i), at.Add(time.Minute)), at)
			mustOK(t, "claim", ok, err, true)
			ok, err = s.RetryLater(ctx, id, fmt.Sprint("r", id, i), at, lastErr, at)
			mustOK(t, "retry later", ok, err, true)
		}
		if state == broker.LeaseRevoked {
			ok, err = s.Claim(ctx, id, claim("f"+id, at.Add(time.Minute)), at)
			mustOK(t, "claim", ok, err, true)
			ok, err = s.Finish(ctx, id, "f"+id, broker.LeaseRevoked, at)
			mustOK(t, "finish revoked", ok, err, true)
		}
	}
}

// TestLeaseCountHeldAndUnfinished: what the lease limit counts and what a
// revoke-all revokes are the principal's unfinished leases only: not the
// final ones, not another principal's, and (for the count) not a revoking
// lease whose access ended (enough attempts, the ended prefix).
func TestLeaseCountHeldAndUnfinished(t *testing.T) {
	const ended = "login disabled, sessions ended; removal failed: "
	for name, s := range openLeaseStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			bob := identity.Principal{Issuer: "https://idp.test", Subject: "bob"}
			for i, l := range []struct {
				id       string
				state    broker.LeaseState
				attempts int
				lastErr  string
			}{
				{"creating", broker.LeaseCreating, 0, ""},
				{"active", broker.LeaseActive, 0, ""},
				{"revoking", broker.LeaseRevoking, 0, ""},
				{"unreachable", broker.LeaseRevoking, 6, "database unavailable"},
				{"ended_early", broker.LeaseRevoking, 4, ended + "sql error 2BP01"},
				{"ended", broker.LeaseRevoking, 5, ended + "sql error 2BP01"},
				{"revoked", broker.LeaseRevoked, 1, "database unavailable"},
				{"failed", broker.LeaseFailed, 0, ""},
			} {
				leaseIn(t, s, l.id, leaseOwner, t0.Add(time.Duration(i)*time.Second), l.state, l.attempts, l.lastErr)
			}
			leaseIn(t, s, "bob", bob, t0, broker.LeaseActive, 0, "")
			// creating, active, revoking, unreachable and ended_early.
			if n, err := s.CountHeld(ctx, leaseOwner.ID(), 5, ended); err != nil || n != 5 {
				t.Errorf("CountHeld(alice) = %d, %v; want 5", n, err)
			}
			// The prefix is matched literally: _ and % are not wildcards.
			if n, err := s.CountHeld(ctx, leaseOwner.ID(), 5, "login_disabled%"); err != nil || n != 6 {
				t.Errorf("CountHeld(alice, a prefix with wildcards) = %d, %v; want 6", n, err)
			}
			if n, err := s.CountHeld(ctx, "https://idp.test nobody", 5, ended); err != nil || n != 0 {
				t.Errorf("CountHeld(unknown) = %d, %v; want 0", n, err)
			}
			list, err := s.UnfinishedByPrincipal(ctx, leaseOwner.ID())
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff([]string{"ended", "ended_early", "unreachable", "revoking", "active", "creating"}, leaseIDs(list)); d != "" {
				t.Errorf("UnfinishedByPrincipal(alice), newest first (-want +got):\n%s", d)
			}
		})
	}
}

// TestLeasePruneFinal deletes final leases that ended before the cut,
// oldest first and at most limit at a time, and never an unfinished one.
func TestLeasePruneFinal(t *testing.T) {
	for name, s := range openLeaseStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			old := t0.Add(-40 * 24 * time.Hour)
			leaseIn(t, s, "old_revoked1", leaseOwner, old, broker.LeaseRevoked, 0, "")
			leaseIn(t, s, "old_revoked2", leaseOwner, old.Add(time.Minute), broker.LeaseRevoked, 0, "")
			leaseIn(t, s, "old_failed", leaseOwner, old.Add(2*time.Minute), broker.LeaseFailed, 0, "")
			leaseIn(t, s, "old_revoking", leaseOwner, old, broker.LeaseRevoking, 7, "database unavailable")
			leaseIn(t, s, "old_active", leaseOwner, old, broker.LeaseActive, 0, "")
			leaseIn(t, s, "old_creating", leaseOwner, old, broker.LeaseCreating, 0, "")
			leaseIn(t, s, "recent_revoked", leaseOwner, t0, broker.LeaseRevoked, 0, "")
			cut := t0.Add(-30 * 24 * time.Hour)
			if n, err := s.PruneFinal(ctx, cut, 2); err != nil || n != 2 {
				t.Fatalf("PruneFinal(limit 2) = %d, %v; want 2", n, err)
			}
			if _, err := s.Get(ctx, "old_failed"); err != nil {
				t.Errorf("the newest old lease went first: %v", err)
			}
			if n, err := s.PruneFinal(ctx, cut, 2); err != nil || n != 1 {
				t.Fatalf("PruneFinal again = %d, %v; want 1", n, err)
			}
			if n, err := s.PruneFinal(ctx, cut, 2); err != nil || n != 0 {
				t.Fatalf("PruneFinal once more = %d, %v; want 0", n, err)
			}
			list, err := s.ByPrincipal(ctx, leaseOwner.ID())
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff([]string{"old_active", "old_creating", "old_revoking", "recent_revoked"}, sortedIDs(list)); d != "" {
				t.Errorf("after pruning (-want +got):\n%s", d)
			}
		})
	}
}
