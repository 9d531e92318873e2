package evidence

import (
	"fmt"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
)

// TestEndedCredentialsKeepOnlyTheirOrder: a revoked SQL lease and a NATS
// user key that ended with no JWT left are kept as their newest event's
// order only (in ended), not as full states, and that order still stops an
// older grant read later from another origin; a lease whose grant expired
// keeps its holder but lets the grant's record go.
func TestEndedCredentialsKeepOnlyTheirOrder(t *testing.T) {
	defer SetSweepEvery(1)()
	base := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	c, err := newCollector(t.TempDir(), base, base.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	actor := &audit.Actor{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com"}
	index := int64(0)
	record := func(at time.Time, typ, action, id string, expires time.Time) *audit.Record {
		cr := &audit.Credential{Type: typ, Action: action, ExpiresAt: expires}
		if typ == "sql" {
			cr.LeaseID = id
		} else {
			cr.UserKey = id
		}
		r := &audit.Record{Kind: audit.KindCredential, Time: at, Actor: actor, Credential: cr}
		c.trackAccess(ref{origin: "a", index: index}, r)
		index++
		return r
	}
	const n = 50
	for i := range n {
		at := base.Add(time.Duration(i) * time.Minute)
		for _, typ := range []string{"sql", "nats"} {
			id := fmt.Sprintf("%s-%d", typ, i)
			record(at, typ, "issue", id, base.Add(48*time.Hour))
			record(at.Add(time.Second), typ, "revoke", id, time.Time{})
		}
	}
	expired := record(base, "sql", "issue", "expired", base.Add(time.Hour))
	record(base.Add(2*time.Hour), "sql", "issue", "later", base.Add(48*time.Hour)) // sweeps "expired"
	if len(c.ended) != 2*n || len(c.natsCreds) != 0 || len(c.creds) != 2 {
		t.Fatalf("after %d revoked leases and %d ended keys: %d ended, %d NATS states, %d SQL states; want %d, 0 and 2 (expired, later)",
			n, n, len(c.ended), len(c.natsCreds), len(c.creds), 2*n)
	}
	st := c.creds[keyOf(expired.Credential)]
	if st.phase != phaseEnded || st.grant == nil || st.grant.r == expired || st.grant.r.Actor != actor || !st.grant.r.Time.Equal(base) {
		t.Errorf("expired grant: phase %d, grant %+v; want ended, keeping only its holder and time", st.phase, st.grant)
	}
	// Older grants of another origin, read later, stay ended.
	c.rank = 1
	for _, typ := range []string{"sql", "nats"} {
		record(base.Add(-time.Hour), typ, "issue", typ+"-0", base.Add(48*time.Hour))
	}
	if len(c.ended) != 2*n || len(c.natsCreds) != 0 || len(c.creds) != 2 {
		t.Errorf("older grants read later: %d ended, %d NATS states, %d SQL states; want them still ended", len(c.ended), len(c.natsCreds), len(c.creds))
	}
	// A newer one brings a key back, out of ended.
	record(base.Add(time.Hour), "nats", "issue", "nats-0", base.Add(48*time.Hour))
	if _, ok := c.ended[keyOf(&audit.Credential{Type: "nats", UserKey: "nats-0"})]; ok || len(c.natsCreds) != 1 {
		t.Errorf("a newer JWT: %d ended, %d NATS states; want the key valid again", len(c.ended), len(c.natsCreds))
	}
}
