package control_test

import (
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/identity"
)

// TestPrincipalsDifferingInCaseStayApart: principal ids are
// "<issuer> <subject>", and subjects are case-sensitive (Okta's are
// base62): two principals whose ids differ only in case are two people.
// Each store keeps them apart on SQLite and PostgreSQL (their principal_id
// columns compare exactly); SQL Server's statements are checked in
// TestSQLServerPrincipalComparedExactly.
func TestPrincipalsDifferingInCaseStayApart(t *testing.T) {
	upper := identity.Principal{Issuer: "https://idp.example", Subject: "00uAbC"}
	lower := identity.Principal{Issuer: "https://idp.example", Subject: "00uabc"}
	for name, db := range openDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

			leases, err := control.OpenLeaseStore(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range []*broker.Lease{newLease("L-UPPER", upper, now, time.Hour), newLease("L-LOWER", lower, now, time.Hour)} {
				if err := leases.Create(ctx, l, claim("tok", now.Add(time.Minute))); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := leases.ByPrincipal(ctx, lower.ID()); err != nil || len(got) != 1 || got[0].ID != "L-LOWER" {
				t.Errorf("leases ByPrincipal(lower) = %v, %v; want L-LOWER only", leaseIDs(got), err)
			}
			if got, err := leases.UnfinishedByPrincipal(ctx, lower.ID()); err != nil || len(got) != 1 || got[0].ID != "L-LOWER" {
				t.Errorf("UnfinishedByPrincipal(lower) (revoke-all) = %v, %v; want L-LOWER only", leaseIDs(got), err)
			}
			if n, err := leases.CountHeld(ctx, lower.ID(), broker.StuckAttempts, "x"); err != nil || n != 1 {
				t.Errorf("CountHeld(lower) (the limit) = %d, %v; want 1", n, err)
			}
			if got, err := leases.ByPrincipalPage(ctx, lower.ID(), broker.ListPage{Limit: 10, Filter: broker.ListAll}); err != nil || len(got) != 1 || got[0].ID != "L-LOWER" {
				t.Errorf("leases ByPrincipalPage(lower) = %v, %v; want L-LOWER only", leaseIDs(got), err)
			}

			reg := control.NewRegistry(db, time.Nanosecond, func() time.Time { return now })
			for key, p := range map[string]identity.Principal{"UKEYUPPER": upper, "UKEYLOWER": lower} {
				if err := reg.Put(ctx, broker.Issuance{
					UserKey: key, Principal: p, SigningKey: "ASIGNING", Account: "AUSERS", Via: "creds",
					IssuedAt: now, ExpiresAt: now.Add(time.Hour), DecisionID: "d-" + key, Pub: []string{},
				}); err != nil {
					t.Fatal(err)
				}
			}
			keys := func(is []broker.Issuance) []string {
				var out []string
				for _, i := range is {
					out = append(out, i.UserKey)
				}
				return out
			}
			if got, err := reg.ByPrincipal(ctx, lower.ID()); err != nil || len(got) != 1 || got[0].UserKey != "UKEYLOWER" {
				t.Errorf("registry ByPrincipal(lower) (revoke-all) = %v, %v; want UKEYLOWER only", keys(got), err)
			}
			if n, err := reg.CountLive(ctx, lower.ID(), now); err != nil || n != 1 {
				t.Errorf("CountLive(lower) (the limit) = %d, %v; want 1", n, err)
			}
			if got, err := reg.ByPrincipalPage(ctx, lower.ID(), broker.ListPage{Limit: 10, Filter: broker.ListAll}); err != nil || len(got) != 1 || got[0].UserKey != "UKEYLOWER" {
				t.Errorf("registry ByPrincipalPage(lower) = %v, %v; want UKEYLOWER only", keys(got), err)
			}

			cutoffs, err := control.OpenSignInCutoffs(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if err := cutoffs.SetCutoff(ctx, upper.ID(), now); err != nil {
				t.Fatal(err)
			}
			if got, err := cutoffs.Cutoff(ctx, lower.ID()); err != nil || !got.IsZero() {
				t.Errorf("Cutoff(lower) after offboarding upper = %v, %v; want none", got, err)
			}
			if err := cutoffs.SetCutoff(ctx, lower.ID(), now.Add(time.Hour)); err != nil {
				t.Fatalf("SetCutoff(lower) with upper's recorded: %v", err)
			}
			if got, err := cutoffs.Cutoff(ctx, upper.ID()); err != nil || !got.Equal(now) {
				t.Errorf("Cutoff(upper) = %v, %v; want %s (lower's did not replace it)", got, err, now)
			}

			sessions, err := control.OpenSessionStore(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			for key, p := range map[string]identity.Principal{"S-UPPER": upper, "S-LOWER": lower} {
				if err := sessions.Put(ctx, control.WebSession{Key: key, Principal: p, CSRF: "c", Expires: now.Add(time.Hour)}, now); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := sessions.DeletePrincipal(ctx, lower.ID()); err != nil || n != 1 {
				t.Errorf("DeletePrincipal(lower) = %d, %v; want 1", n, err)
			}
			if _, found, err := sessions.Get(ctx, "S-UPPER"); err != nil || !found {
				t.Errorf("upper's session after lower's offboarding: found %v, %v; want kept", found, err)
			}
		})
	}
}

// TestListingsRecheckThePrincipal: a row whose principal_id says one
// principal and whose recorded principal says another (what a
// case-insensitive comparison would have let through) is not listed as the
// first one's: revoke-all and the listings re-check in Go.
func TestListingsRecheckThePrincipal(t *testing.T) {
	owner := identity.Principal{Issuer: "https://idp.example", Subject: "00uAbC"}
	asker := "https://idp.example 00uabc"
	for name, db := range openDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			leases, err := control.OpenLeaseStore(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if err := leases.Create(ctx, newLease("L1", owner, now, time.Hour), claim("tok", now.Add(time.Minute))); err != nil {
				t.Fatal(err)
			}
			reg := control.NewRegistry(db, time.Nanosecond, func() time.Time { return now })
			if err := reg.Put(ctx, broker.Issuance{
				UserKey: "UKEY1", Principal: owner, SigningKey: "ASIGNING", Account: "AUSERS", Via: "creds",
				IssuedAt: now, ExpiresAt: now.Add(time.Hour), DecisionID: "d1", Pub: []string{},
			}); err != nil {
				t.Fatal(err)
			}
			for _, table := range []string{"sqlgate_lease", "sqlgate_issuance"} {
				q := "UPDATE " + table + " SET principal_id = $1"
				if name == "sqlite" {
					q = "UPDATE " + table + " SET principal_id = ?"
				}
				if _, err := db.SQL().ExecContext(ctx, q, asker); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := leases.ByPrincipal(ctx, asker); err != nil || len(got) != 0 {
				t.Errorf("leases ByPrincipal = %v, %v; want none (the lease is %s's)", leaseIDs(got), err, owner.ID())
			}
			if got, err := leases.UnfinishedByPrincipal(ctx, asker); err != nil || len(got) != 0 {
				t.Errorf("UnfinishedByPrincipal = %v, %v; want none", leaseIDs(got), err)
			}
			if got, err := leases.ByPrincipalPage(ctx, asker, broker.ListPage{Limit: 10, Filter: broker.ListAll}); err != nil || len(got) != 0 {
				t.Errorf("leases ByPrincipalPage = %v, %v; want none", leaseIDs(got), err)
			}
			if got, err := reg.ByPrincipal(ctx, asker); err != nil || len(got) != 0 {
				t.Errorf("registry ByPrincipal = %d issuances, %v; want none", len(got), err)
			}
			if got, err := reg.ByPrincipalPage(ctx, asker, broker.ListPage{Limit: 10, Filter: broker.ListAll}); err != nil || len(got) != 0 {
				t.Errorf("registry ByPrincipalPage = %d issuances, %v; want none", len(got), err)
			}
		})
	}
}
