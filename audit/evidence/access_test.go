package evidence_test

import (
	"bytes"
	"context"
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
// is in the access population as revocation_pending and is an exception.
func TestAccessListsPendingRevocations(t *testing.T) {
	store := audittest.NewStore()
	in := openInstance(t, store, origin)
	other := openInstance(t, store, "sqlgate.test/other-instance")
	in.lease(t, day(2, 8), "issue", "stuck", day(2, 20), "")
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
	in.close(t)
	other.close(t)

	files, m := evidenceOf(t, store, in, other)
	access := table(t, files["csv/access_population.csv"])
	if got := column(access, "lease_id"); strings.Join(got, "|") != "stuck|revoking" {
		t.Fatalf("access population leases = %q, want the two logins not removed", got)
	}
	for _, row := range access {
		if row["status"] != "revocation_pending" || row["email"] != "alice@example.com" || row["login"] != "v_"+row["lease_id"] || row["issued_at"] != "2026-03-02T08:00:00.000000Z" {
			t.Errorf("pending row = %v, want status revocation_pending, alice's login issued at 08:00", row)
		}
	}
	pending := map[string]string{}
	for _, row := range table(t, files["csv/exceptions.csv"]) {
		if row["code"] == "revocation_pending" {
			pending[row["log_origin"]+" "+row["log_index"]] = row["message"]
		}
	}
	if len(pending) != 2 || !strings.Contains(pending[access[0]["log_origin"]+" "+access[0]["log_index"]], `login "v_stuck"`) {
		t.Errorf("revocation_pending exceptions = %q, want one per pending login, at its last record", pending)
	}
	if n := m.Verification.ExceptionCount["revocation_pending"]; n != 2 {
		t.Errorf("manifest counts %d revocation_pending exceptions, want 2", n)
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
