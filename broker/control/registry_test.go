package control_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/identity"
)

// openDBs returns the control databases to test: SQLite always, PostgreSQL
// when SQLGATE_TEST_POSTGRES_DSN is set.
func openDBs(t *testing.T) map[string]*control.DB {
	t.Helper()
	out := map[string]*control.DB{}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "control.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := control.Open(t.Context(), db, control.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	out["sqlite"] = c
	if dsn := os.Getenv("SQLGATE_TEST_POSTGRES_DSN"); dsn != "" {
		out["postgres"] = openPostgres(t, dsn)
	} else {
		t.Log("PostgreSQL cases skipped: SQLGATE_TEST_POSTGRES_DSN is not set")
	}
	return out
}

func openPostgres(t *testing.T, dsn string) *control.DB {
	t.Helper()
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	name := fmt.Sprintf("sqlgate_control_test_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	db, err := sql.Open("pgx", replaceDatabase(t, dsn, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := control.Open(t.Context(), db, control.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRegistry(t *testing.T) {
	for name, db := range openDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			tick := now
			clock := func() time.Time { tick = tick.Add(time.Millisecond); return tick }
			reg := control.NewRegistry(db, time.Hour, clock)
			other := control.NewRegistry(db, time.Nanosecond, clock) // another instance whose cache is always stale

			alice := identity.Principal{Issuer: "https://idp.example", Subject: "alice-1", Email: "alice@example.com", Groups: []string{"sales"}}
			iss := broker.Issuance{
				UserKey: "UKEYALICE", Principal: alice, SigningKey: "ASIGNINGKEY", Account: "AUSERS", Via: "creds",
				IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute), DecisionID: "d1", Pub: []string{"orders.v1.get"},
			}
			if err := reg.Put(ctx, iss); err != nil {
				t.Fatal(err)
			}
			got, err := other.Get(ctx, "UKEYALICE")
			if err != nil {
				t.Fatalf("Get from another instance: %v", err)
			}
			if diff := cmp.Diff(iss, got, cmpopts.EquateApproxTime(0)); diff != "" {
				t.Errorf("Get mismatch (-want +got):\n%s", diff)
			}
			if _, err := other.Get(ctx, "UNKNOWN"); !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
			}

			// A revocation by another instance is seen once the cache entry is stale.
			if err := other.Revoke(ctx, "UKEYALICE", now); err != nil {
				t.Fatal(err)
			}
			got, err = other.Get(ctx, "UKEYALICE")
			if err != nil || got.RevokedAt.IsZero() || got.Active(now) {
				t.Errorf("after Revoke: %+v, %v; want revoked", got, err)
			}
			fresh := control.NewRegistry(db, time.Nanosecond, clock)
			if got, _ := fresh.Get(ctx, "UKEYALICE"); got.Active(now) {
				t.Error("revoked issuance still active for a fresh instance")
			}

			list, err := reg.ByPrincipal(ctx, alice.ID())
			if err != nil || len(list) != 1 {
				t.Fatalf("ByPrincipal = %d, %v; want 1", len(list), err)
			}
			n, err := reg.Prune(ctx, now.Add(time.Hour))
			if err != nil || n != 1 {
				t.Errorf("Prune = %d, %v; want 1", n, err)
			}
			if _, err := fresh.Get(ctx, "UKEYALICE"); !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("Get after prune = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestRegistryRevokedActive(t *testing.T) {
	db := openDBs(t)["sqlite"]
	now := time.Now()
	reg := control.NewRegistry(db, time.Nanosecond, nil)
	p := identity.Principal{Issuer: "https://idp.example", Subject: "s"}
	for _, iss := range []broker.Issuance{
		{UserKey: "UACTIVE", ExpiresAt: now.Add(time.Hour)},
		{UserKey: "UREVOKED", ExpiresAt: now.Add(time.Hour), RevokedAt: now},
		{UserKey: "UREVOKEDEXPIRED", ExpiresAt: now.Add(-time.Hour), RevokedAt: now.Add(-2 * time.Hour)},
	} {
		iss.Principal, iss.IssuedAt = p, now.Add(-3*time.Hour)
		if err := reg.Put(t.Context(), iss); err != nil {
			t.Fatal(err)
		}
	}
	got, err := reg.RevokedActive(t.Context(), now)
	if err != nil || len(got) != 1 || got[0].UserKey != "UREVOKED" {
		t.Errorf("RevokedActive = %v, %v; want only UREVOKED", got, err)
	}
}

// TestRegistryPutRefusesRevokedOrTaken: Put never clears a revocation and
// never hands a key to another principal, whatever the caller checked
// before (its cache may be stale); it still renews a key's own active
// issuance.
func TestRegistryPutRefusesRevokedOrTaken(t *testing.T) {
	for name, db := range openDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			reg := control.NewRegistry(db, time.Hour, func() time.Time { return now })
			alice := identity.Principal{Issuer: "https://idp.example", Subject: "alice"}
			bob := identity.Principal{Issuer: "https://idp.example", Subject: "bob"}
			issue := func(p identity.Principal, key string, expires time.Time) error {
				return reg.Put(ctx, broker.Issuance{
					UserKey: key, Principal: p, SigningKey: "ASIGNINGKEY", Account: "AUSERS", Via: "creds",
					IssuedAt: now, ExpiresAt: expires, DecisionID: "d",
				})
			}
			if err := issue(alice, "UKEY", now.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			// The same principal may have its active key issued again.
			if err := issue(alice, "UKEY", now.Add(time.Hour)); err != nil {
				t.Fatalf("re-issue of an active key: %v", err)
			}
			if got, _ := reg.Lookup(ctx, "UKEY"); !got.ExpiresAt.Equal(now.Add(time.Hour)) {
				t.Errorf("re-issued expiry = %s, want %s", got.ExpiresAt, now.Add(time.Hour))
			}
			if err := issue(bob, "UKEY", now.Add(time.Hour)); !errors.Is(err, broker.ErrInvalid) {
				t.Errorf("Put of alice's key for bob = %v, want ErrInvalid", err)
			}
			if err := reg.Revoke(ctx, "UKEY", now); err != nil {
				t.Fatal(err)
			}
			if err := issue(alice, "UKEY", now.Add(time.Hour)); !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "revoked") {
				t.Errorf("Put of a revoked key = %v, want ErrInvalid saying it was revoked", err)
			}
			got, err := reg.Lookup(ctx, "UKEY")
			if err != nil || !got.RevokedAt.Equal(now) || got.Principal.ID() != alice.ID() {
				t.Errorf("after the refused Puts: %+v, %v; want alice's key, revoked at %s", got, err, now)
			}
		})
	}
}

// TestRegistryReissueKeepsLatestExpiry: a key issued again with a shorter
// lifetime keeps the expiry of its earlier, longer-lived JWT and what that
// one may publish, so that it is still found live (revoke-all) and its
// revocation still enforced (RevokedActive) until that JWT expires; once
// every earlier JWT has expired, a new issuance replaces them.
func TestRegistryReissueKeepsLatestExpiry(t *testing.T) {
	for name, db := range openDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			reg := control.NewRegistry(db, time.Hour, func() time.Time { return now })
			other := control.NewRegistry(db, time.Nanosecond, func() time.Time { return now })
			alice := identity.Principal{Issuer: "https://idp.example", Subject: "alice"}
			issue := func(key string, at, expires time.Time, pub ...string) {
				t.Helper()
				if err := reg.Put(ctx, broker.Issuance{
					UserKey: key, Principal: alice, SigningKey: "ASIGNINGKEY", Account: "AUSERS", Via: "creds",
					IssuedAt: at, ExpiresAt: expires, DecisionID: "d", Pub: pub,
				}); err != nil {
					t.Fatal(err)
				}
			}
			first := now.Add(10 * time.Minute)
			issue("UKEY", now, first, "orders.v1.get", "orders.v1.create")
			issue("UKEY", now.Add(time.Second), now.Add(3*time.Second), "orders.v1.get")
			for name, r := range map[string]*control.Registry{"this instance (cache)": reg, "another instance": other} {
				got, err := r.Get(ctx, "UKEY")
				if err != nil || !got.ExpiresAt.Equal(first) {
					t.Errorf("%s: expiry after a shorter re-issue = %s, %v; want the first JWT's %s", name, got.ExpiresAt, err, first)
				}
				if want := []string{"orders.v1.get", "orders.v1.create"}; !cmp.Equal(got.Pub, want) {
					t.Errorf("%s: pub = %v, want %v (the first JWT is valid)", name, got.Pub, want)
				}
			}
			later := now.Add(time.Minute) // the short JWT has expired, the first has not
			list, err := reg.ByPrincipal(ctx, alice.ID())
			if err != nil || len(list) != 1 || !list[0].Active(later) {
				t.Errorf("ByPrincipal at %s = %+v, %v; want the key active", later, list, err)
			}
			if err := reg.Revoke(ctx, "UKEY", later); err != nil {
				t.Fatal(err)
			}
			if got, err := reg.RevokedActive(ctx, later); err != nil || len(got) != 1 || got[0].UserKey != "UKEY" {
				t.Errorf("RevokedActive = %+v, %v; want UKEY, whose first JWT is valid", got, err)
			}

			// Every earlier JWT expired: the new issuance replaces them.
			issue("UKEY2", now, now.Add(time.Minute), "orders.v1.create")
			issue("UKEY2", now.Add(2*time.Minute), now.Add(3*time.Minute), "orders.v1.get")
			got, err := other.Lookup(ctx, "UKEY2")
			if err != nil || !got.ExpiresAt.Equal(now.Add(3*time.Minute)) || !cmp.Equal(got.Pub, []string{"orders.v1.get"}) {
				t.Errorf("after the earlier JWT expired: %+v, %v; want only the new issuance", got, err)
			}
		})
	}
}

// TestRegistryCalloutTokens: revoking a callout credential refuses the
// token that obtained it (and no other) until the token expires, then the
// record is pruned; a key issued by nats/creds has no token to refuse.
func TestRegistryCalloutTokens(t *testing.T) {
	for name, db := range openDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			reg := control.NewRegistry(db, time.Hour, func() time.Time { return now })
			other := control.NewRegistry(db, time.Hour, func() time.Time { return now })
			tokenExp, keyExp := now.Add(time.Hour), now.Add(10*time.Minute)
			for key, token := range map[string]string{"UK1": "hash-t", "UK2": "hash-t", "UK3": "hash-u"} {
				if err := reg.BindCalloutToken(ctx, key, token, keyExp, tokenExp); err != nil {
					t.Fatal(err)
				}
			}
			if err := reg.BindCalloutToken(ctx, "UK4", "hash-forever", keyExp, time.Time{}); err != nil {
				t.Fatal(err)
			}
			refused := func(r *control.Registry, hash string) bool {
				t.Helper()
				got, err := r.CalloutTokenRefused(ctx, hash)
				if err != nil {
					t.Fatal(err)
				}
				return got
			}
			if refused(other, "hash-t") {
				t.Fatal("a token is refused before any revocation")
			}
			if err := other.RefuseCalloutTokens(ctx, []string{"UK1", "UK4", "UCREDS"}, now); err != nil {
				t.Fatal(err)
			}
			for hash, want := range map[string]bool{"hash-t": true, "hash-forever": true, "hash-u": false, "hash-unknown": false} {
				if got := refused(reg, hash); got != want {
					t.Errorf("CalloutTokenRefused(%s) = %v, want %v", hash, got, want)
				}
			}
			// Several hashes (a token's and its legacy hash): refused when
			// one of them is.
			for _, tc := range []struct {
				hashes []string
				want   bool
			}{
				{[]string{"hash-unknown", "hash-t"}, true},
				{[]string{"hash-forever", "hash-unknown"}, true},
				{[]string{"hash-u", "hash-unknown"}, false},
				{[]string{"hash-u", "hash-unknown", "hash-t"}, true},
				{nil, false},
			} {
				if got, err := reg.CalloutTokenRefused(ctx, tc.hashes...); err != nil || got != tc.want {
					t.Errorf("CalloutTokenRefused(%v) = %v, %v; want %v", tc.hashes, got, err, tc.want)
				}
			}
			// A key whose token is refused is not bound again.
			if err := reg.BindCalloutToken(ctx, "UK1", "hash-v", keyExp, tokenExp); err == nil {
				t.Error("BindCalloutToken of a key whose token is refused succeeded")
			}

			// Past the keys' expiry: only the refusals are kept.
			if _, err := reg.Prune(ctx, keyExp.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if !refused(reg, "hash-t") || !refused(reg, "hash-forever") {
				t.Error("a refusal was pruned before its token expired")
			}
			if _, err := reg.Prune(ctx, tokenExp.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if refused(reg, "hash-t") {
				t.Error("the refusal of an expired token was not pruned")
			}
			if !refused(reg, "hash-forever") {
				t.Error("the refusal of a token without expiry was pruned")
			}
		})
	}
}

// TestRegistryConcurrentReissue: concurrent issuances of one key (two
// refreshes racing, or two instances) all succeed, and the key keeps the
// latest expiry and every subject of them.
func TestRegistryConcurrentReissue(t *testing.T) {
	for name, db := range openDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			alice := identity.Principal{Issuer: "https://idp.example", Subject: "alice"}
			const n = 8
			errs := make(chan error, n)
			var want []string
			for i := range n {
				subject := fmt.Sprintf("orders.v1.s%d", i)
				want = append(want, subject)
				reg := control.NewRegistry(db, time.Hour, func() time.Time { return now }) // an instance each
				go func() {
					errs <- reg.Put(ctx, broker.Issuance{
						UserKey: "UKEY", Principal: alice, SigningKey: "ASIGNINGKEY", Account: "AUSERS", Via: "creds",
						IssuedAt: now, ExpiresAt: now.Add(time.Duration(i+1) * time.Minute), DecisionID: "d", Pub: []string{subject},
					})
				}()
			}
			for range n {
				if err := <-errs; err != nil {
					t.Errorf("concurrent Put: %v", err)
				}
			}
			got, err := control.NewRegistry(db, 0, nil).Lookup(ctx, "UKEY")
			if err != nil {
				t.Fatal(err)
			}
			if !got.ExpiresAt.Equal(now.Add(n * time.Minute)) {
				t.Errorf("expiry = %s, want the latest %s", got.ExpiresAt, now.Add(n*time.Minute))
			}
			if diff := cmp.Diff(want, got.Pub, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("pub (-want +got):\n%s", diff)
			}
		})
	}
}

// pageKeys are keys whose bytewise order differs from a language
// collation's (case, hyphens): rows issued at the same time must still
// list in the web layer's bytewise order.
var pageKeys = []string{"UB", "Ua", "U-B", "UA", "Ub"}

// walkPages reads every page of size limit through list, following the
// last row of each page, and fails when a page is longer than limit.
func walkPages(t *testing.T, limit int, list func(*broker.ListCursor) ([]broker.ListCursor, error)) []string {
	t.Helper()
	var (
		out    []string
		before *broker.ListCursor
	)
	for range 100 {
		page, err := list(before)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > limit {
			t.Fatalf("a page of limit %d has %d rows", limit, len(page))
		}
		for _, c := range page {
			out = append(out, c.Key)
		}
		if len(page) < limit {
			return out
		}
		before = &page[len(page)-1]
	}
	t.Fatal("paging did not end")
	return nil
}

// newestFirst sorts cursors as the web layer lists them and returns their
// keys.
func newestFirst(cs []broker.ListCursor) []string {
	slices.SortFunc(cs, func(a, b broker.ListCursor) int {
		switch {
		case a.IssuedAt > b.IssuedAt:
			return -1
		case a.IssuedAt < b.IssuedAt:
			return 1
		}
		return strings.Compare(b.Key, a.Key)
	})
	var out []string
	for _, c := range cs {
		out = append(out, c.Key)
	}
	return out
}

// TestRegistryByPrincipalPage: following pages lists each of a principal's
// issuances once, newest first (ties by key, bytewise), never more rows
// than the page asks; the live and ended filters split them as the
// dashboard shows them; a bad page is refused.
func TestRegistryByPrincipalPage(t *testing.T) {
	for name, db := range openDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			reg := control.NewRegistry(db, time.Nanosecond, nil)
			now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			alice := identity.Principal{Issuer: "https://idp.example", Subject: "alice"}
			bob := identity.Principal{Issuer: "https://idp.example", Subject: "bob"}
			var all, live, ended []broker.ListCursor
			for i := range 40 {
				iss := broker.Issuance{
					UserKey: fmt.Sprintf("%s%02d", pageKeys[i%len(pageKeys)], i/len(pageKeys)), Principal: alice,
					IssuedAt: now.Add(time.Duration(i/3) * time.Second), ExpiresAt: now.Add(time.Hour), Pub: []string{},
				}
				switch i % 4 {
				case 1:
					iss.ExpiresAt = now.Add(20 * time.Second) // expired at now+30s
				case 2:
					iss.RevokedAt = now.Add(time.Minute)
				}
				if err := reg.Put(ctx, iss); err != nil {
					t.Fatal(err)
				}
				c := broker.ListCursor{IssuedAt: iss.IssuedAt.UnixNano(), Key: iss.UserKey}
				all = append(all, c)
				if iss.RevokedAt.IsZero() && iss.ExpiresAt.After(now.Add(30*time.Second)) {
					live = append(live, c)
				} else {
					ended = append(ended, c)
				}
				if err := reg.Put(ctx, broker.Issuance{UserKey: "UBOB" + iss.UserKey, Principal: bob, IssuedAt: iss.IssuedAt, ExpiresAt: iss.ExpiresAt, Pub: []string{}}); err != nil {
					t.Fatal(err)
				}
			}
			at := now.Add(30 * time.Second)
			for _, tc := range []struct {
				filter broker.ListFilter
				want   []string
			}{{broker.ListAll, newestFirst(all)}, {broker.ListLive, newestFirst(live)}, {broker.ListEnded, newestFirst(ended)}} {
				for _, limit := range []int{1, 7, 40, 100} {
					got := walkPages(t, limit, func(before *broker.ListCursor) ([]broker.ListCursor, error) {
						list, err := reg.ByPrincipalPage(ctx, alice.ID(), broker.ListPage{Before: before, Limit: limit, Filter: tc.filter, At: at})
						var out []broker.ListCursor
						for _, iss := range list {
							if iss.Principal.ID() != alice.ID() {
								t.Fatalf("alice's page lists %s of %s", iss.UserKey, iss.Principal.ID())
							}
							out = append(out, broker.ListCursor{IssuedAt: iss.IssuedAt.UnixNano(), Key: iss.UserKey})
						}
						return out, err
					})
					if d := cmp.Diff(tc.want, got); d != "" {
						t.Errorf("filter %d, pages of %d (-want +got):\n%s", tc.filter, limit, d)
					}
				}
			}
			for _, bad := range []broker.ListPage{{Limit: 0}, {Limit: broker.MaxListPage + 1}, {Limit: 5, Filter: broker.ListLive}, {Limit: 5, Filter: 9, At: at}} {
				if _, err := reg.ByPrincipalPage(ctx, alice.ID(), bad); !errors.Is(err, broker.ErrInvalid) {
					t.Errorf("ByPrincipalPage(%+v) = %v, want ErrInvalid", bad, err)
				}
			}
		})
	}
}
