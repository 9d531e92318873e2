package control_test

import (
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/identity"
)

// TestRegistryCountLive: CountLive counts what the broker holds against
// maxNATSCredentialsPerPrincipal: the principal's keys that are neither
// revoked nor expired at t, not another principal's, and a key issued
// again once; a revocation by another instance (past this one's cache)
// counts at once.
func TestRegistryCountLive(t *testing.T) {
	for name, db := range openDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			reg := control.NewRegistry(db, time.Hour, func() time.Time { return now })
			other := control.NewRegistry(db, time.Hour, func() time.Time { return now })
			alice := identity.Principal{Issuer: "https://idp.example", Subject: "alice"}
			bob := identity.Principal{Issuer: "https://idp.example", Subject: "bob"}
			for _, iss := range []broker.Issuance{
				{UserKey: "ULIVE1", Principal: alice, ExpiresAt: now.Add(time.Hour)},
				{UserKey: "ULIVE2", Principal: alice, ExpiresAt: now.Add(time.Minute)},
				{UserKey: "UEXPIRED", Principal: alice, ExpiresAt: now.Add(-time.Second)},
				{UserKey: "UENDSNOW", Principal: alice, ExpiresAt: now},
				{UserKey: "UREVOKED", Principal: alice, ExpiresAt: now.Add(time.Hour), RevokedAt: now.Add(-time.Minute)},
				{UserKey: "UBOB", Principal: bob, ExpiresAt: now.Add(time.Hour)},
				// ULIVE1 issued again (a refresh): still one key.
				{UserKey: "ULIVE1", Principal: alice, ExpiresAt: now.Add(2 * time.Hour)},
			} {
				iss.IssuedAt = now.Add(-time.Hour)
				if err := reg.Put(ctx, iss); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := reg.CountLive(ctx, alice.ID(), now); err != nil || got != 2 {
				t.Errorf("CountLive(alice) = %d, %v; want 2 (ULIVE1, ULIVE2)", got, err)
			}
			if got, err := reg.CountLive(ctx, alice.ID(), now.Add(30*time.Minute)); err != nil || got != 1 {
				t.Errorf("CountLive(alice, in 30m) = %d, %v; want 1 (ULIVE2 expired)", got, err)
			}
			if got, err := reg.CountLive(ctx, "https://idp.example nobody", now); err != nil || got != 0 {
				t.Errorf("CountLive(unknown principal) = %d, %v; want 0", got, err)
			}
			if _, err := reg.Get(ctx, "ULIVE2"); err != nil { // cached here
				t.Fatal(err)
			}
			if err := other.Revoke(ctx, "ULIVE2", now); err != nil {
				t.Fatal(err)
			}
			if got, err := reg.CountLive(ctx, alice.ID(), now); err != nil || got != 1 {
				t.Errorf("CountLive(alice) after another instance revoked ULIVE2 = %d, %v; want 1", got, err)
			}
		})
	}
}
