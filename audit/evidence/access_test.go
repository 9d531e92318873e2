package evidence_test

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

// instance is the log of one sqlgated instance in a store the instances
// share, with its own clock.
type instance struct {
	log  *audit.Log
	at   *clock
	vkey string
}

func openInstance(t *testing.T, store *audittest.Store, org string) *instance {
	t.Helper()
	c := &clock{t: day(1, 9)}
	cfg := audittest.Config(t, org)
	cfg.Now, cfg.CheckpointInterval, cfg.Heartbeat = c.now, time.Hour, 24*time.Hour
	l, err := audit.Open(context.Background(), store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, vkey := audittest.Key(t, org, 1)
	return &instance{log: l, at: c, vkey: vkey}
}

// lease appends a credential record of SQL lease id; status "" is a
// success.
func (in *instance) lease(t *testing.T, at time.Time, action, id string, expires time.Time, status string) {
	t.Helper()
	r := &audit.Record{
		Kind: audit.KindCredential, Actor: alice, Allow: &allow,
		Credential: &audit.Credential{Type: "sql", Action: action, LeaseID: id, Login: "v_" + id, Database: "orders", ExpiresAt: expires},
	}
	if status != "" {
		r.Result = &audit.Result{Status: status}
	}
	in.at.set(at)
	if _, err := in.log.Append(t.Context(), r); err != nil {
		t.Fatal(err)
	}
}

// close writes a last record at 3 March 02:00, so the log covers the
// period of [options].
func (in *instance) close(t *testing.T) {
	t.Helper()
	in.at.set(day(3, 2))
	if _, err := in.log.Append(t.Context(), &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load", Detail: "revision r1"}}); err != nil {
		t.Fatal(err)
	}
	if err := in.log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// evidenceOf writes the evidence of 2 March from the logs of the instances.
func evidenceOf(t *testing.T, store audit.Source, instances ...*instance) (map[string][]byte, *evidence.Manifest) {
	t.Helper()
	opts := options(instances[0].vkey)
	opts.Verify.Keys = nil
	for _, in := range instances {
		opts.Verify.Keys = append(opts.Verify.Keys, in.vkey)
	}
	var buf bytes.Buffer
	m, err := evidence.Write(t.Context(), &buf, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	return audittest.Unzip(t, buf.Bytes()), m
}

// TestAccessAcrossOrigins: instances share the lease store, the reaper and
// the revoke API, so one instance may issue a lease that another renews or
// revokes. The access population follows each lease in time order across
// the logs, whichever origin sorts first, also when expired grants are
// dropped after every record.
func TestAccessAcrossOrigins(t *testing.T) {
	for _, sweep := range []int{1, 10000} {
		store := audittest.NewStore()
		// "z" issues, "a" (read first) renews or revokes.
		z := openInstance(t, store, "sqlgate.test/z-instance")
		a := openInstance(t, store, "sqlgate.test/a-instance")
		z.lease(t, day(2, 8), "issue", "revoked", day(5, 0), "")
		a.lease(t, day(2, 12), "revoke", "revoked", day(5, 0), "")
		z.lease(t, day(2, 8), "issue", "renewed", day(2, 20), "")
		a.lease(t, day(2, 18), "renew", "renewed", day(5, 0), "")
		// and the other way round: renewed by z after a issued it
		a.lease(t, day(2, 9), "issue", "renewed-by-z", day(2, 21), "")
		z.lease(t, day(2, 19), "renew", "renewed-by-z", day(6, 0), "")
		z.close(t)
		a.close(t)

		restore := evidence.SetSweepEvery(sweep)
		files, _ := evidenceOf(t, store, z, a)
		restore()
		access := table(t, files["csv/access_population.csv"])
		if got := column(access, "lease_id"); strings.Join(got, "|") != "renewed|renewed-by-z" {
			t.Errorf("sweep every %d: access population leases = %q, want the two renewed ones and not the revoked one", sweep, got)
		}
		if got := column(access, "expires_at"); strings.Join(got, "|") != "2026-03-05T00:00:00.000000Z|2026-03-06T00:00:00.000000Z" {
			t.Errorf("sweep every %d: expiries = %q, want those of the renewals", sweep, got)
		}
		if got := column(access, "log_origin"); strings.Join(got, "|") != "sqlgate.test/a-instance|sqlgate.test/z-instance" {
			t.Errorf("sweep every %d: rows come from %q, want the renewal records", sweep, got)
		}
	}
}

// TestAccessListsPendingRevocations: a SQL login that expired, or whose
// revocation was requested, exists until a revocation succeeds (SQL Server
// has no login expiry). While revoke_failed is all the log says, the login
// is in the access population as revocation_pending and is an exception,
// with who held it, also when expired grants are dropped after every
// record before the reaper records the expiry.
func TestAccessListsPendingRevocations(t *testing.T) {
	for _, sweep := range []int{1, 10000} {
		testPendingRevocations(t, sweep)
	}
}

func testPendingRevocations(t *testing.T, sweep int) {
	store := audittest.NewStore()
	in := openInstance(t, store, origin)
	other := openInstance(t, store, "sqlgate.test/other-instance")
	in.lease(t, day(2, 8), "issue", "stuck", day(2, 20), "")
	// expired at 20:00, but the reaper records it only after other
	// records of that time
	in.lease(t, day(2, 8), "issue", "late", day(2, 20), "")
	in.lease(t, day(2, 20), "expire", "stuck", day(2, 20), "")
	in.lease(t, day(2, 20), "revoke_failed", "stuck", day(2, 20), "unavailable")
	in.lease(t, day(2, 22), "revoke_failed", "stuck", day(2, 20), "unavailable")
	// expired, then removed by another instance's reaper
	in.lease(t, day(2, 8), "issue", "removed", day(2, 20), "")
	in.lease(t, day(2, 20), "expire", "removed", day(2, 20), "")
	other.lease(t, day(2, 21), "revoke", "removed", day(2, 20), "")
	// an early revocation that failed, before the lease's expiry
	in.lease(t, day(2, 8), "issue", "revoking", day(2, 10), "")
	other.lease(t, day(2, 9), "revoke_failed", "revoking", day(2, 10), "db_error")
	in.lease(t, day(2, 22), "expire", "late", day(2, 20), "")
	in.lease(t, day(2, 22), "revoke_failed", "late", day(2, 20), "unavailable")
	in.close(t)
	other.close(t)

	restore := evidence.SetSweepEvery(sweep)
	files, m := evidenceOf(t, store, in, other)
	restore()
	access := table(t, files["csv/access_population.csv"])
	if got := column(access, "lease_id"); strings.Join(got, "|") != "stuck|late|revoking" {
		t.Fatalf("sweep every %d: access population leases = %q, want the three logins not removed", sweep, got)
	}
	for _, row := range access {
		if row["status"] != "revocation_pending" || row["email"] != "alice@example.com" || row["subject"] == "" || row["login"] != "v_"+row["lease_id"] || row["issued_at"] != "2026-03-02T08:00:00.000000Z" {
			t.Errorf("sweep every %d: pending row = %v, want status revocation_pending, alice's login issued at 08:00", sweep, row)
		}
	}
	pending := map[string]string{}
	for _, row := range table(t, files["csv/exceptions.csv"]) {
		if row["code"] == "revocation_pending" {
			pending[row["log_origin"]+" "+row["log_index"]] = row["message"]
		}
	}
	if len(pending) != 3 || !strings.Contains(pending[access[0]["log_origin"]+" "+access[0]["log_index"]], `login "v_stuck"`) {
		t.Errorf("sweep every %d: revocation_pending exceptions = %q, want one per pending login, at its last record", sweep, pending)
	}
	if n := m.Verification.ExceptionCount["revocation_pending"]; n != 3 {
		t.Errorf("sweep every %d: manifest counts %d revocation_pending exceptions, want 3", sweep, n)
	}
}

// TestAccessListsValidStatus: a credential valid at the period's end says
// so.
func TestAccessListsValidStatus(t *testing.T) {
	store, vkey := buildLog(t)
	var buf bytes.Buffer
	if _, err := evidence.Write(t.Context(), &buf, store, options(vkey)); err != nil {
		t.Fatal(err)
	}
	access := table(t, audittest.Unzip(t, buf.Bytes())["csv/access_population.csv"])
	if got := column(access, "status"); strings.Join(got, "|") != "valid|valid" {
		t.Errorf("access population status = %q, want valid for both", got)
	}
}

// TestWriteSaysWhenThePeriodIsNotCovered: a period that ends after the
// newest signed checkpoint (a bundle exported with --to, a cut tail, a
// period that has not ended) or starts before the log's first record is
// incomplete, and the evidence says what the log covers.
func TestWriteSaysWhenThePeriodIsNotCovered(t *testing.T) {
	store, vkey := buildLog(t) // records from 1 March 09:00 to 3 March 02:00
	write := func(from, to time.Time) (*evidence.Manifest, []map[string]string) {
		t.Helper()
		opts := options(vkey)
		opts.From, opts.To = from, to
		var buf bytes.Buffer
		m, err := evidence.Write(t.Context(), &buf, store, opts)
		if err != nil {
			t.Fatal(err)
		}
		var rows []map[string]string
		for _, row := range table(t, audittest.Unzip(t, buf.Bytes())["csv/exceptions.csv"]) {
			if row["code"] == string(evidence.ExceptionNotCovered) {
				rows = append(rows, row)
			}
		}
		return m, rows
	}

	m, rows := write(day(2, 0), day(3, 0))
	if len(m.Incomplete) != 0 || len(rows) != 0 {
		t.Errorf("a covered period: incomplete = %q, exceptions %v", m.Incomplete, rows)
	}

	// The newest checkpoint is from 3 March 02:00: a period ending then is
	// covered, one ending minutes later is not (coverage ended 11 minutes
	// after the last covered record, the heartbeat bound, although nothing
	// signed vouches for that time).
	if m, rows := write(day(2, 0), day(3, 2)); len(m.Incomplete) != 0 || len(rows) != 0 {
		t.Errorf("a period ending at the newest checkpoint: incomplete = %q, exceptions %v", m.Incomplete, rows)
	}
	m, rows = write(day(2, 0), day(3, 2).Add(5*time.Minute))
	if len(m.Incomplete) != 1 || len(rows) != 1 || !strings.Contains(m.Incomplete[0], "the period ends at 2026-03-03T02:05:00.000000Z, but the log covers only records up to 2026-03-03T02:00:00") {
		t.Errorf("a period ending 5 minutes after the newest checkpoint: incomplete = %q, exceptions %v", m.Incomplete, rows)
	}

	m, rows = write(day(2, 0), time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
	if len(m.Incomplete) != 1 || !strings.Contains(m.Incomplete[0], "the period ends at 2026-04-01T00:00:00.000000Z, but the log covers only records up to 2026-03-03T02:") {
		t.Errorf("a period past the log's end: incomplete = %q", m.Incomplete)
	}
	if len(rows) != 1 || rows[0]["log_origin"] != origin || m.Verification.ExceptionCount[string(evidence.ExceptionNotCovered)] != 1 {
		t.Errorf("a period past the log's end: exceptions = %v, counts %v", rows, m.Verification.ExceptionCount)
	}

	m, rows = write(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), day(3, 0))
	if len(m.Incomplete) != 1 || !strings.Contains(m.Incomplete[0], "the period starts at 2026-02-01T00:00:00.000000Z, but the log's first record (index 0 of "+origin+") is from 2026-03-01T09:00:00") {
		t.Errorf("a period before the log's start: incomplete = %q", m.Incomplete)
	}
	if len(rows) != 1 || rows[0]["log_index"] != "0" {
		t.Errorf("a period before the log's start: exceptions = %v", rows)
	}
}

// natsKey appends a credential record of NATS user key; expires zero is a
// JWT without expiry.
func (in *instance) natsKey(t *testing.T, at time.Time, action, key string, expires time.Time) {
	t.Helper()
	in.at.set(at)
	if _, err := in.log.Append(t.Context(), &audit.Record{
		Kind: audit.KindCredential, Actor: alice, Allow: &allow,
		Credential: &audit.Credential{Type: "nats", Action: action, UserKey: key, ExpiresAt: expires},
	}); err != nil {
		t.Fatal(err)
	}
}

// natsAccess returns the NATS rows of the access population by user key,
// each as "issued_at expires_at".
func natsAccess(t *testing.T, files map[string][]byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, row := range table(t, files["csv/access_population.csv"]) {
		if row["type"] != "nats" {
			continue
		}
		if row["status"] != "valid" || row["email"] != "alice@example.com" {
			t.Errorf("NATS row = %v, want status valid, alice's", row)
		}
		out[row["user_key"]] = row["issued_at"] + " " + row["expires_at"]
	}
	return out
}

// TestAccessNATSKeyIssuedAgainShorter: sqlgate may issue a NATS user key
// again (a refresh re-issues on the same key) with an earlier expiry, a
// client asking a short TTL or a lower policy TTL; the earlier JWT stays
// valid on NATS until its own expiry. So the key is in the access
// population while any of its JWTs is valid at the period's end, with the
// latest expiry, also when expired grants are dropped after every record.
func TestAccessNATSKeyIssuedAgainShorter(t *testing.T) {
	for _, sweep := range []int{1, 10000} {
		store := audittest.NewStore()
		in := openInstance(t, store, origin)
		// valid until 4 March; re-issued at 20:00 until 22:00
		in.natsKey(t, day(2, 8), "issue", "UREFRESHED", day(4, 0))
		// issued before the period, re-issued in it until 23:00
		in.natsKey(t, day(1, 23), "issue", "UBEFORE", day(3, 6))
		// three JWTs: the second expires last
		in.natsKey(t, day(2, 8), "issue", "UTHREE", day(3, 6))
		in.natsKey(t, day(2, 9), "issue", "UTHREE", day(4, 0))
		in.natsKey(t, day(2, 10), "issue", "UTHREE", day(3, 1))
		// every JWT expired before the period's end
		in.natsKey(t, day(2, 8), "issue", "UGONE", day(2, 21))
		// a JWT without expiry, re-issued with one
		in.natsKey(t, day(2, 8), "issue", "UFOREVER", time.Time{})
		in.natsKey(t, day(2, 18), "issue", "UGONE", day(2, 22))
		in.natsKey(t, day(2, 19), "renew", "UFOREVER", day(2, 23))
		in.natsKey(t, day(2, 20), "issue", "UREFRESHED", day(2, 22))
		in.natsKey(t, day(2, 21), "issue", "UBEFORE", day(2, 23))
		in.natsKey(t, day(2, 22), "issue", "UTHREE", day(2, 23))
		in.close(t)

		restore := evidence.SetSweepEvery(sweep)
		files, _ := evidenceOf(t, store, in)
		restore()
		got := natsAccess(t, files)
		want := map[string]string{
			"UREFRESHED": "2026-03-02T08:00:00.000000Z 2026-03-04T00:00:00.000000Z",
			"UBEFORE":    "2026-03-01T23:00:00.000000Z 2026-03-03T06:00:00.000000Z",
			"UTHREE":     "2026-03-02T09:00:00.000000Z 2026-03-04T00:00:00.000000Z",
			"UFOREVER":   "2026-03-02T08:00:00.000000Z ",
		}
		if !maps.Equal(got, want) {
			t.Errorf("sweep every %d: NATS access population = %q, want %q (the JWT of each key expiring last, UGONE not listed)", sweep, got, want)
		}
	}
}

// TestAccessNATSKeyIssuedAgainAcrossOrigins: the JWTs and revocations of
// a NATS user key may be recorded by different instances, and the evidence
// reads the logs origin by origin. Whatever the reading order, a
// revocation ends every JWT of the key issued before it, and only the JWTs
// issued after the key's last revocation count. Each key below spreads its
// events over the origins in another order, so every reading order of its
// events is tried.
func TestAccessNATSKeyIssuedAgainAcrossOrigins(t *testing.T) {
	type event struct {
		at      time.Time
		action  string
		expires time.Time
	}
	cases := []struct {
		prefix string
		events []event
		want   string // "issued_at expires_at", "" when not listed
	}{{
		// a long JWT, then a short one: the long one is valid at the end
		prefix: "UPAIR",
		events: []event{{day(2, 8), "issue", day(4, 0)}, {day(2, 20), "issue", day(2, 22)}},
		want:   "2026-03-02T08:00:00.000000Z 2026-03-04T00:00:00.000000Z",
	}, {
		// revoked between the two JWTs: only the short one counts, and it
		// expired before the end
		prefix: "UREVOKED",
		events: []event{{day(2, 8), "issue", day(4, 0)}, {day(2, 10), "revoke", time.Time{}}, {day(2, 20), "issue", day(2, 23)}},
	}, {
		// expired (the key's latest expiry passed), then issued again
		prefix: "UEXPIRED",
		events: []event{{day(2, 8), "issue", day(2, 9)}, {day(2, 9), "expire", day(2, 9)}, {day(2, 20), "issue", day(2, 23)}},
	}, {
		// revoked, then issued twice, the second shorter: the first JWT
		// after the revocation is valid at the end, not the revoked one
		prefix: "UREISSUED",
		events: []event{
			{day(2, 8), "issue", day(5, 0)},
			{day(2, 10), "revoke", time.Time{}},
			{day(2, 12), "issue", day(3, 12)},
			{day(2, 20), "issue", day(2, 23)},
		},
		want: "2026-03-02T12:00:00.000000Z 2026-03-03T12:00:00.000000Z",
	}}
	names := []string{"a", "b", "c", "d"} // read in this order
	for _, sweep := range []int{1, 10000} {
		store := audittest.NewStore()
		var instances []*instance
		for _, n := range names {
			instances = append(instances, openInstance(t, store, "sqlgate.test/"+n+"-instance"))
		}
		type appendAt struct {
			ev  event
			key string
			in  *instance
		}
		var appends []appendAt
		want := map[string]string{}
		for _, c := range cases {
			// every assignment of the events to distinct origins
			var assign func(used []int)
			assign = func(used []int) {
				if len(used) == len(c.events) {
					key := c.prefix
					for _, i := range used {
						key += "-" + names[i]
					}
					for j, i := range used {
						appends = append(appends, appendAt{c.events[j], key, instances[i]})
					}
					if c.want != "" {
						want[key] = c.want
					}
					return
				}
				for i := range names {
					if !slices.Contains(used, i) {
						assign(append(slices.Clone(used), i))
					}
				}
			}
			assign(nil)
		}
		if len(want) != 12+24 || len(appends) != 12*2+24*3+24*3+24*4 {
			t.Fatalf("%d keys listed of %d events, want 36 of 264: the test lost its cases", len(want), len(appends))
		}
		// each instance records in time order
		slices.SortStableFunc(appends, func(x, y appendAt) int { return x.ev.at.Compare(y.ev.at) })
		for _, a := range appends {
			a.in.natsKey(t, a.ev.at, a.ev.action, a.key, a.ev.expires)
		}
		for _, in := range instances {
			in.close(t)
		}

		restore := evidence.SetSweepEvery(sweep)
		files, _ := evidenceOf(t, store, instances...)
		restore()
		got := natsAccess(t, files)
		for key, w := range want {
			if got[key] != w {
				t.Errorf("sweep every %d: %s listed as %q, want %q", sweep, key, got[key], w)
			}
		}
		for key, g := range got {
			if _, ok := want[key]; !ok {
				t.Errorf("sweep every %d: %s listed as %q, want it not listed", sweep, key, g)
			}
		}
	}
}
