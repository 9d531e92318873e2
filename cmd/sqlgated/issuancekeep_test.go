package main

import (
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/identity"
)

// TestHousekeepingKeepsIssuancesForQueuedRequests: a queued async request
// is judged by the credential that was valid when the stream stored it, and
// retried for up to nats.asyncMaxAge. Housekeeping used to prune every
// issuance a day after it expired, so with asyncMaxAge 72h a retry after a
// 30-hour outage was refused unauthenticated for good. The issuance stays
// while such a request may still be retried, and goes after that.
func TestHousekeepingKeepsIssuancesForQueuedRequests(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(t.TempDir(), "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	cdb, err := control.Open(ctx, db, control.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	reg := control.NewRegistry(cdb, time.Second, func() time.Time { return now })
	put := func() string {
		t.Helper()
		signing, account, user := newNKey(t, nkeys.CreateAccount), newNKey(t, nkeys.CreateAccount), newNKey(t, nkeys.CreateUser)
		stored := now.Add(-30 * time.Hour) // the request was queued 30 hours ago, on a 15-minute credential
		if err := reg.Put(ctx, broker.Issuance{
			UserKey: user, Principal: identity.Principal{Issuer: "https://idp.test", Subject: "alice"}, SigningKey: signing, Account: account,
			Via: "creds", IssuedAt: stored.Add(-time.Minute), ExpiresAt: stored.Add(14 * time.Minute), DecisionID: "d-" + user,
		}); err != nil {
			t.Fatal(err)
		}
		return user
	}
	for _, tc := range []struct {
		asyncMaxAge time.Duration
		kept        bool
	}{
		{72 * time.Hour, true},
		{0, false}, // the default, 24h: the request was given up before the prune
		{24 * time.Hour, false},
	} {
		user := put()
		if _, err := reg.Prune(ctx, now.Add(-issuanceKeep(tc.asyncMaxAge))); err != nil {
			t.Fatal(err)
		}
		_, err := reg.Lookup(ctx, user)
		switch {
		case tc.kept && err != nil:
			t.Errorf("asyncMaxAge %s: the issuance of a request still retried was pruned: %v", tc.asyncMaxAge, err)
		case !tc.kept && !errors.Is(err, broker.ErrNotFound):
			t.Errorf("asyncMaxAge %s: an issuance no queued request can use any more was kept: %v", tc.asyncMaxAge, err)
		}
	}
}

func newNKey(t *testing.T, create func() (nkeys.KeyPair, error)) string {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
