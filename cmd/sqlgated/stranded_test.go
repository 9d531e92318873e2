package main

import (
	"database/sql"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/identity"
)

// TestReportStranded: at start, the unfinished SQL leases of a database no
// longer configured to issue logins are logged as an error naming the
// database and the count (nothing can revoke them); none is logged while
// the database issues logins.
func TestReportStranded(t *testing.T) {
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(t.TempDir(), "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cdb, err := control.Open(t.Context(), db, control.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	store, err := control.OpenLeaseStore(t.Context(), cdb)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, id := range []string{"0193a5c2-0000-7000-8000-000000000001", "0193a5c2-0000-7000-8000-000000000002"} {
		l := &broker.Lease{
			ID: id, Principal: identity.Principal{Issuer: "https://idp", Subject: "alice"}, Database: "orders", Role: "reader",
			Username: "sg_alice_" + id[len(id)-10:], State: broker.LeaseActive, IssuedAt: now, ExpiresAt: now.Add(time.Hour), MaxExpiry: now.Add(time.Hour),
			DecisionID: "d",
		}
		if err := store.Create(t.Context(), l, broker.Claim{Token: "t", Owner: "test", Until: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	for name, tc := range map[string]struct {
		issuers map[string]broker.SQLLoginIssuer
		want    string
	}{
		"configured": {map[string]broker.SQLLoginIssuer{"orders": nil}, ""},
		"removed":    {nil, `database=orders leases=2`},
	} {
		t.Run(name, func(t *testing.T) {
			var out strings.Builder
			log := slog.New(slog.NewTextHandler(&out, nil))
			if err := reportStranded(t.Context(), log, store, tc.issuers); err != nil {
				t.Fatal(err)
			}
			if tc.want == "" && out.Len() > 0 {
				t.Errorf("logged %q with the database configured", out.String())
			}
			if tc.want != "" && (!strings.Contains(out.String(), "level=ERROR") || !strings.Contains(out.String(), tc.want)) {
				t.Errorf("logged %q, want an error naming %s", out.String(), tc.want)
			}
		})
	}
}
