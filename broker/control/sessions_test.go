package control_test

import (
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/identity"
)

// TestSessionStore: sessions round-trip with their principal, expired ones
// are dropped as new ones arrive, a sign-out and an offboarding end them,
// and a store opened again (another instance) sees the same sessions.
func TestSessionStore(t *testing.T) {
	for name, db := range openDBs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			st, err := control.OpenSessionStore(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			other, err := control.OpenSessionStore(ctx, db) // a second instance: the schema step is idempotent
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			alice := identity.Principal{Issuer: "https://idp", Subject: "alice", Email: "alice@example.com", Groups: []string{"sales"}}
			bob := identity.Principal{Issuer: "https://idp", Subject: "bob"}
			for _, ws := range []control.WebSession{
				{Key: "k-old", Principal: bob, CSRF: "c0", Expires: now.Add(-time.Minute)},
				{Key: "k-alice-1", Principal: alice, CSRF: "c1", Expires: now.Add(time.Hour)},
				{Key: "k-alice-2", Principal: alice, CSRF: "c2", Expires: now.Add(time.Hour)},
				{Key: "k-bob", Principal: bob, CSRF: "c3", Expires: now.Add(time.Hour)},
			} {
				if err := st.Put(ctx, ws, now); err != nil {
					t.Fatal(err)
				}
			}
			got, found, err := other.Get(ctx, "k-alice-1")
			if err != nil || !found || got.Principal.Email != "alice@example.com" || got.Principal.Groups[0] != "sales" || got.CSRF != "c1" || !got.Expires.Equal(now.Add(time.Hour)) {
				t.Fatalf("Get = %+v, %v, %v", got, found, err)
			}
			if _, found, _ := other.Get(ctx, "k-old"); found {
				t.Error("an expired session was kept past the next Put")
			}
			if err := other.Delete(ctx, "k-bob"); err != nil {
				t.Fatal(err)
			}
			if _, found, _ := st.Get(ctx, "k-bob"); found {
				t.Error("a deleted session is still there")
			}
			if n, err := st.DeletePrincipal(ctx, alice.ID()); err != nil || n != 2 {
				t.Errorf("DeletePrincipal = %d, %v; want alice's 2 sessions", n, err)
			}
			if _, found, _ := other.Get(ctx, "k-alice-2"); found {
				t.Error("an offboarded principal's session is still there")
			}
		})
	}
}
