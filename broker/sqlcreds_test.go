package broker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy/opa"
)

// sqlPolicy is the test policy of data.sqlgate.sql_credentials: sales may
// have role %[1]s on orders for up to an hour, support for ten minutes,
// admins role %[1]s for two hours (more than the configured maximum).
// `ttl` is the longest lifetime granted.
const sqlPolicy = `package sqlgate.sql_credentials

default allow := false

_grants := {
	"sales": {"orders": {"%[1]s": 3600}},
	"support": {"orders": {"%[1]s": 600}},
	"admins": {"orders": {"%[1]s": 7200}},
}

_ttls contains t if {
	some g in input.principal.groups
	t := _grants[g][input.credential.database][input.credential.role]
}

allow if count(_ttls) > 0

ttl := max(_ttls) if allow

reasons contains sprintf("role %%s on database %%s is not granted to your groups", [input.credential.role, input.credential.database]) if not allow
`

// testClock stands still unless the test moves it forward.
type testClock struct {
	base   time.Time
	offset atomic.Int64
}

func (c *testClock) now() time.Time          { return c.base.Add(time.Duration(c.offset.Load())) }
func (c *testClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// fakeLogins is an in-memory SQLLoginIssuer: logins with their role,
// password, expiry and open sessions; it can be made unreachable.
type fakeLogins struct {
	mu         sync.Mutex
	logins     map[string]*fakeLogin
	down       atomic.Bool
	failCreate atomic.Bool
	// refuseRole: creation refuses the role as the provisioners do when
	// it does not exist (ErrInvalid).
	refuseRole atomic.Bool
	// undroppable: revocation disables the login and ends its sessions,
	// then fails to remove it (like PostgreSQL 2BP01).
	undroppable atomic.Bool
	// onCreate, if set, runs inside CreateLogin after the login exists.
	onCreate func(spec broker.LoginSpec)
	revokes  atomic.Int64
}

type fakeLogin struct {
	role, password string
	expires        time.Time
	sessions       int
}

var _ broker.SQLLoginIssuer = (*fakeLogins)(nil)

func newFakeLogins() *fakeLogins { return &fakeLogins{logins: map[string]*fakeLogin{}} }

func (f *fakeLogins) CreateLogin(_ context.Context, spec broker.LoginSpec) error {
	if f.down.Load() {
		return fmt.Errorf("%w: fake database unreachable", broker.ErrUnavailable)
	}
	if f.failCreate.Load() {
		return &broker.DBError{Number: 15151, Message: "Cannot alter the role, because it does not exist or you do not have permission."}
	}
	if f.refuseRole.Load() {
		return fmt.Errorf("%w: role %q does not exist in database orders", broker.ErrInvalid, spec.Role)
	}
	if !broker.ValidLoginName(broker.DefaultLoginPrefix, spec.Username) || spec.Password == "" {
		return fmt.Errorf("%w: bad spec", broker.ErrInvalid)
	}
	f.mu.Lock()
	f.logins[spec.Username] = &fakeLogin{role: spec.Role, password: spec.Password, expires: spec.ExpiresAt}
	f.mu.Unlock()
	if f.onCreate != nil {
		f.onCreate(spec)
	}
	return nil
}

func (f *fakeLogins) RenewLogin(_ context.Context, spec broker.LoginSpec) error {
	if f.down.Load() {
		return fmt.Errorf("%w: fake database unreachable", broker.ErrUnavailable)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.logins[spec.Username]
	if !ok {
		return &broker.DBError{Number: 42704, Message: "role does not exist"}
	}
	l.expires = spec.ExpiresAt
	return nil
}

func (f *fakeLogins) RevokeLogin(_ context.Context, spec broker.LoginSpec) error {
	f.revokes.Add(1)
	if f.down.Load() {
		return fmt.Errorf("%w: fake database unreachable", broker.ErrUnavailable)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.logins[spec.Username]; ok && f.undroppable.Load() {
		l.sessions, l.password = 0, ""
		return fmt.Errorf("%w: %w", broker.ErrLoginDisabled,
			&broker.DBError{State: "2BP01", Message: "role cannot be dropped because some objects depend on it"})
	}
	delete(f.logins, spec.Username)
	return nil
}

func (f *fakeLogins) ClientDSN(username string) string { return "fake://" + username + "@db/orders" }

func (f *fakeLogins) get(username string) (fakeLogin, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.logins[username]
	if !ok {
		return fakeLogin{}, false
	}
	return *l, true
}

func (f *fakeLogins) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.logins)
}

// leaseEnv is the broker test environment (real OPA, audit log and control
// database) with a lease manager over it.
type leaseEnv struct {
	*env
	leases *broker.Leases
	store  *control.LeaseStore
	clock  *testClock
}

// sqlEngine is a policy engine over sqlPolicy granting role.
func sqlEngine(t *testing.T, role string) *opa.Engine {
	t.Helper()
	engine, err := opa.Open(t.Context(), opa.Config{FS: fstest.MapFS{"sql_credentials.rego": {Data: fmt.Appendf(nil, sqlPolicy, role)}}, EvalTimeout: testEvalTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	return engine
}

// newLeaseEnv builds the lease manager for database "orders" served by
// issuer, granting role (see sqlPolicy).
func newLeaseEnv(t *testing.T, issuer broker.SQLLoginIssuer, role string, tweak func(*broker.LeasesConfig)) *leaseEnv {
	t.Helper()
	e := newEnv(t)
	ctx := t.Context()
	e.authz.Authorizer = sqlEngine(t, role)

	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "leases.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cdb, err := control.Open(ctx, db, control.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	store, err := control.OpenLeaseStore(ctx, cdb)
	if err != nil {
		t.Fatal(err)
	}
	le := &leaseEnv{env: e, store: store, clock: &testClock{base: time.Now().Truncate(time.Second)}}
	cfg := broker.LeasesConfig{
		Service: e.svc, Store: store, Issuers: map[string]broker.SQLLoginIssuer{"orders": issuer},
		Instance: "test-instance", Now: le.clock.now, RetryBase: time.Minute, RetryMax: 10 * time.Minute,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	le.leases, err = broker.NewLeases(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return le
}

func (le *leaseEnv) issue(t *testing.T, p identity.Principal, role string, ttl time.Duration) *broker.SQLCredential {
	t.Helper()
	cred, err := le.leases.IssueSQL(t.Context(), broker.SQLCredRequest{Principal: p, Database: "orders", Role: role, TTL: ttl})
	if err != nil {
		t.Fatalf("IssueSQL(%s, %s, %s): %v", p.Subject, role, ttl, err)
	}
	return cred
}

func (le *leaseEnv) lease(t *testing.T, id string) broker.Lease {
	t.Helper()
	l, err := le.leases.Lease(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// credentialRecords returns the credential and decision records about SQL
// credentials written after index from.
func (le *leaseEnv) credentialRecords(t *testing.T, from int) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	for _, r := range le.records(t)[from:] {
		if r.Credential != nil && r.Credential.Type == "sql" {
			out = append(out, r)
		}
	}
	return out
}

func actions(recs []*audit.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Kind)+":"+r.Credential.Action)
	}
	return out
}

func TestIssueSQL(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	before := len(le.records(t))
	start := le.clock.now()
	cred := le.issue(t, alice, "reader", 0)

	if !broker.ValidLoginName("sg_", cred.Username) || !strings.HasPrefix(cred.Username, "sg_alice_") {
		t.Errorf("username %q: want sg_alice_ and a random part", cred.Username)
	}
	if len(cred.Password) != 32 || cred.DSN != "fake://"+cred.Username+"@db/orders" || cred.Capped != "" {
		t.Errorf("credential = %v (password length %d)", cred, len(cred.Password))
	}
	if d := cred.ExpiresAt.Sub(start); d < broker.DefaultSQLTTL-2*time.Second || d > broker.DefaultSQLTTL {
		t.Errorf("expires in %s, want the default %s", d, broker.DefaultSQLTTL)
	}
	if d := cred.MaxExpiry.Sub(start); d < time.Hour-2*time.Second || d > time.Hour {
		t.Errorf("max expiry in %s, want the policy's hour", d)
	}
	login, ok := fake.get(cred.Username)
	if !ok || login.role != "reader" || login.password != cred.Password || !login.expires.Equal(cred.ExpiresAt) {
		t.Fatalf("database login = %+v, %v", login, ok)
	}
	l := le.lease(t, cred.LeaseID)
	if l.State != broker.LeaseActive || l.Username != cred.Username || l.Principal.ID() != alice.ID() || l.DecisionID != cred.Decision.ID {
		t.Errorf("lease = %+v", l)
	}
	recs := le.credentialRecords(t, before)
	if len(recs) != 1 || recs[0].Kind != audit.KindCredential || recs[0].Credential.Action != "issue" {
		t.Fatalf("audit = %v, want one credential issue record", actions(recs))
	}
	r := recs[0]
	if r.Credential.LeaseID != cred.LeaseID || r.Credential.Login != cred.Username || r.Credential.Role != "reader" ||
		r.Credential.Database != "orders" || r.Actor.Subject != "alice" || r.Actor.SQLLogin != cred.Username ||
		r.Allow == nil || !*r.Allow || r.Entry != "sql_credentials" || r.Index != cred.AuditIndex {
		t.Errorf("issue record = %+v / %+v", r, r.Credential)
	}
	enc, _ := json.Marshal(le.records(t))
	if strings.Contains(string(enc), cred.Password) {
		t.Error("the audit log contains the password")
	}
	if strings.Contains(cred.String(), cred.Password) || strings.Contains(fmt.Sprint(cred.LogValue()), cred.Password) {
		t.Error("the credential's String or LogValue shows the password")
	}
	list, err := le.leases.Leases(t.Context(), alice.ID())
	if err != nil || len(list) != 1 || list[0].ID != cred.LeaseID {
		t.Errorf("Leases(alice) = %v, %v", list, err)
	}
}

func TestIssueSQLCapped(t *testing.T) {
	le := newLeaseEnv(t, newFakeLogins(), "reader", nil)
	admin := identity.Principal{Issuer: "https://idp.test", Subject: "dana", Groups: []string{"admins"}}
	tests := []struct {
		name     string
		p        identity.Principal
		ttl      time.Duration
		want     time.Duration
		capped   string
		maxValid time.Duration
	}{
		{"shorter_than_max", alice, 20 * time.Minute, 20 * time.Minute, "", time.Hour},
		{"above_policy_max", alice, 3 * time.Hour, time.Hour, "exceeds the maximum 1h0m0s policy grants", time.Hour},
		{"support_max", bob, time.Hour, 10 * time.Minute, "exceeds the maximum 10m0s policy grants", 10 * time.Minute},
		{"default_within_short_max", bob, 0, 10 * time.Minute, "", 10 * time.Minute},
		{"above_configured_max", admin, 2 * time.Hour, time.Hour, "exceeds the configured maximum 1h0m0s", time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := le.clock.now()
			cred := le.issue(t, tc.p, "reader", tc.ttl)
			if got := cred.ExpiresAt.Sub(start); got != tc.want {
				t.Errorf("lifetime = %s, want %s", got, tc.want)
			}
			if got := cred.MaxExpiry.Sub(start); got != tc.maxValid {
				t.Errorf("max lifetime = %s, want %s", got, tc.maxValid)
			}
			if (tc.capped == "") != (cred.Capped == "") || !strings.Contains(cred.Capped, tc.capped) {
				t.Errorf("Capped = %q, want %q", cred.Capped, tc.capped)
			}
			recs := le.credentialRecords(t, 0)
			if last := recs[len(recs)-1]; last.Credential.Detail != cred.Capped {
				t.Errorf("audit detail = %q, want the capping note %q", last.Credential.Detail, cred.Capped)
			}
		})
	}
}

func TestIssueSQLDenied(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	for _, tc := range []struct {
		name string
		p    identity.Principal
		role string
	}{{"group_without_grant", carol, "reader"}, {"role_not_granted", bob, "writer"}} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(le.records(t))
			_, err := le.leases.IssueSQL(t.Context(), broker.SQLCredRequest{Principal: tc.p, Database: "orders", Role: tc.role})
			var denied *broker.DeniedError
			if !errors.As(err, &denied) || !errors.Is(err, broker.ErrDenied) || !strings.Contains(strings.Join(denied.Reasons, ";"), "not granted") {
				t.Fatalf("IssueSQL = %v, want denied with the policy's reason", err)
			}
			recs := le.credentialRecords(t, before)
			if len(recs) != 1 || recs[0].Kind != audit.KindDecision || recs[0].Allow == nil || *recs[0].Allow ||
				recs[0].Credential.Role != tc.role || recs[0].Credential.Action != "issue" || recs[0].Result.Status != broker.CodeForbidden {
				t.Fatalf("audit = %v, want one denied decision record", actions(recs))
			}
			if fake.count() != 0 {
				t.Error("a login was created although policy refused")
			}
			if list, _ := le.leases.Leases(t.Context(), tc.p.ID()); len(list) != 0 {
				t.Errorf("leases = %v, want none", list)
			}
		})
	}
	t.Run("policy_error_fails_closed", func(t *testing.T) {
		le.authz.fail.Store(true)
		defer le.authz.fail.Store(false)
		_, err := le.leases.IssueSQL(t.Context(), broker.SQLCredRequest{Principal: alice, Database: "orders", Role: "reader"})
		if !errors.Is(err, broker.ErrDenied) || fake.count() != 0 {
			t.Fatalf("IssueSQL with a failing policy = %v, want denied and no login", err)
		}
	})
}

// TestIssueSQLBadInput: names that try to break out of SQL are refused
// before policy and before any database.
func TestIssueSQLBadInput(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	before := len(le.records(t))
	tests := []struct {
		name, database, role string
		ttl                  time.Duration
		want                 string
	}{
		{"role_quote", "orders", `reader"; DROP ROLE x; --`, 0, "role must be"},
		{"role_brackets", "orders", "[reader]", 0, "role must be"},
		{"role_bracket_breakout", "orders", "reader]; DROP LOGIN sa; --", 0, "role must be"},
		{"role_semicolon", "orders", "reader;", 0, "role must be"},
		{"role_single_quote", "orders", "reader'", 0, "role must be"},
		{"role_unicode", "orders", "rеader", 0, "role must be"},
		{"role_space", "orders", "db reader", 0, "role must be"},
		{"role_empty", "orders", "", 0, "role must be"},
		{"role_too_long", "orders", strings.Repeat("r", 64), 0, "role must be"},
		{"database_unknown", "billing", "reader", 0, `database "billing" does not issue`},
		{"database_injection", "orders]; DROP DATABASE orders; --", "reader", 0, "not a configured database"},
		{"database_quote", `orders"`, "reader", 0, `database "orders\"" does not issue`},
		{"database_control_chars", "orders\n\x00", "reader", 0, "not a configured database"},
		{"negative_ttl", "orders", "reader", -time.Second, "ttl must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := le.leases.IssueSQL(t.Context(), broker.SQLCredRequest{Principal: alice, Database: tc.database, Role: tc.role, TTL: tc.ttl})
			if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("IssueSQL = %v, want invalid (%s)", err, tc.want)
			}
		})
	}
	if fake.count() != 0 {
		t.Error("a login was created")
	}
	if recs := le.credentialRecords(t, before); len(recs) != 0 {
		t.Errorf("audit = %v, want nothing (refused before policy)", actions(recs))
	}
	if _, err := le.leases.IssueSQL(t.Context(), broker.SQLCredRequest{Principal: identity.Principal{Subject: "x"}, Database: "orders", Role: "reader"}); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Errorf("IssueSQL without issuer = %v, want unauthenticated", err)
	}
}

func TestRenewLease(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	ctx := t.Context()
	cred := le.issue(t, alice, "reader", 10*time.Minute)
	before := len(le.records(t))

	le.clock.advance(5 * time.Minute)
	r, err := le.leases.RenewLease(ctx, alice, cred.LeaseID, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := le.clock.now().Add(30 * time.Minute)
	if d := r.Lease.ExpiresAt.Sub(want); d < -2*time.Second || d > 0 || r.Capped != "" {
		t.Errorf("renewed to %s (capped %q), want about %s", r.Lease.ExpiresAt, r.Capped, want)
	}
	if login, _ := fake.get(cred.Username); !login.expires.Equal(r.Lease.ExpiresAt) {
		t.Errorf("database expiry = %s, want %s", login.expires, r.Lease.ExpiresAt)
	}
	if got := le.lease(t, cred.LeaseID); !got.ExpiresAt.Equal(r.Lease.ExpiresAt) {
		t.Errorf("stored expiry = %s, want %s", got.ExpiresAt, r.Lease.ExpiresAt)
	}
	// Beyond the maximum expiry (an hour after issue): capped and said so.
	le.clock.advance(20 * time.Minute)
	r, err = le.leases.RenewLease(ctx, alice, cred.LeaseID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Lease.ExpiresAt.Equal(cred.MaxExpiry) || !strings.Contains(r.Capped, "maximum expiry") {
		t.Errorf("renewal past the maximum = %s (%q), want %s capped", r.Lease.ExpiresAt, r.Capped, cred.MaxExpiry)
	}
	// A shorter request never shortens the lease.
	r, err = le.leases.RenewLease(ctx, alice, cred.LeaseID, time.Minute)
	if err != nil || !r.Lease.ExpiresAt.Equal(cred.MaxExpiry) {
		t.Errorf("shorter renewal = %v, %v; want the expiry kept", r, err)
	}
	recs := le.credentialRecords(t, before)
	if got := actions(recs); strings.Join(got, ",") != "credential:renew,credential:renew,credential:renew" {
		t.Errorf("audit = %v, want three renew records", got)
	}

	if _, err := le.leases.RenewLease(ctx, bob, cred.LeaseID, 0); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("bob renewing alice's lease = %v, want not found", err)
	}
	if _, err := le.leases.RenewLease(ctx, alice, "not-a-lease", 0); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("renew unknown = %v, want not found", err)
	}
	// Alice left the sales group: policy refuses the renewal, audited.
	left := alice
	left.Groups = nil
	n := len(le.records(t))
	if _, err := le.leases.RenewLease(ctx, left, cred.LeaseID, 0); !errors.Is(err, broker.ErrDenied) {
		t.Errorf("renew without the group = %v, want denied", err)
	}
	if recs := le.credentialRecords(t, n); len(recs) != 1 || recs[0].Kind != audit.KindDecision || recs[0].Credential.Action != "renew" {
		t.Errorf("audit = %v, want a denied renew decision", actions(recs))
	}
	if _, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := le.leases.RenewLease(ctx, alice, cred.LeaseID, 0); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("renew a revoked lease = %v, want invalid", err)
	}
	// An expired lease cannot be renewed either.
	c2 := le.issue(t, alice, "reader", time.Minute)
	le.clock.advance(2 * time.Minute)
	if _, err := le.leases.RenewLease(ctx, alice, c2.LeaseID, 0); !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("renew an expired lease = %v, want invalid (expired)", err)
	}
}

func TestRevokeLease(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	ctx := t.Context()
	cred := le.issue(t, alice, "reader", 0)
	before := len(le.records(t))
	l, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, "")
	if err != nil {
		t.Fatal(err)
	}
	if l.State != broker.LeaseRevoked || l.RevokedAt.IsZero() || l.Reason != "revoked by alice@example.com" {
		t.Errorf("lease = %+v, want revoked by alice", l)
	}
	if _, ok := fake.get(cred.Username); ok {
		t.Error("the login still exists")
	}
	recs := le.credentialRecords(t, before)
	if len(recs) != 1 || recs[0].Credential.Action != "revoke" || recs[0].Actor.Subject != "alice" || recs[0].Credential.LeaseID != cred.LeaseID {
		t.Fatalf("audit = %v, want one revoke record by alice", actions(recs))
	}
	again, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, "")
	if err != nil || again.State != broker.LeaseRevoked || len(le.credentialRecords(t, before)) != 1 {
		t.Errorf("second revoke = %+v, %v; want a no-op", again, err)
	}
	if _, err := le.leases.RevokeLease(ctx, alice, "00000000-0000-0000-0000-000000000000", ""); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("revoke unknown = %v, want not found", err)
	}
}

// TestRevokeUnreachable: the database is down during revocation; the lease
// stays revoking, the reaper retries with backoff, and once the database is
// back the login is gone.
func TestRevokeUnreachable(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	ctx := t.Context()
	cred := le.issue(t, alice, "reader", 0)
	before := len(le.records(t))
	fake.down.Store(true)
	l, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, "")
	if err != nil {
		t.Fatal(err)
	}
	if l.State != broker.LeaseRevoking || l.Attempts != 1 || l.LastError != "database unavailable" || !l.NextAttempt.After(le.clock.now()) {
		t.Fatalf("lease = %+v, want revoking with one failed attempt", l)
	}
	if _, ok := fake.get(cred.Username); !ok {
		t.Fatal("login vanished while the database was down")
	}
	// Not due yet: the reaper leaves it.
	if st, err := le.leases.Reap(ctx); err != nil || st.Revoked+st.Failed != 0 {
		t.Errorf("Reap before the backoff = %+v, %v; want nothing", st, err)
	}
	le.clock.advance(time.Minute)
	if st, err := le.leases.Reap(ctx); err != nil || st.Failed != 1 {
		t.Errorf("Reap while down = %+v, %v; want one failed attempt", st, err)
	}
	if got := le.lease(t, cred.LeaseID); got.State != broker.LeaseRevoking || got.Attempts != 2 || !got.NextAttempt.After(le.clock.now().Add(90*time.Second)) {
		t.Errorf("after the second failure = %+v, want revoking, 2 attempts, backoff doubled", got)
	}
	fake.down.Store(false)
	le.clock.advance(3 * time.Minute)
	if st, err := le.leases.Reap(ctx); err != nil || st.Revoked != 1 {
		t.Fatalf("Reap when back = %+v, %v; want one revoked", st, err)
	}
	if got := le.lease(t, cred.LeaseID); got.State != broker.LeaseRevoked {
		t.Errorf("lease = %+v, want revoked", got)
	}
	if fake.count() != 0 {
		t.Error("orphaned login after the database came back")
	}
	got := strings.Join(actions(le.credentialRecords(t, before)), ",")
	if got != "credential:revoke_failed,credential:revoke_failed,credential:revoke" {
		t.Errorf("audit = %s", got)
	}
}

func TestReaperExpires(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	ctx := t.Context()
	short := le.issue(t, alice, "reader", 10*time.Minute)
	long := le.issue(t, alice, "reader", time.Hour)
	before := len(le.records(t))
	le.clock.advance(11 * time.Minute)
	st, err := le.leases.Reap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Expired != 1 || st.Revoked != 1 {
		t.Errorf("Reap = %+v, want one expired and revoked", st)
	}
	if l := le.lease(t, short.LeaseID); l.State != broker.LeaseRevoked || l.Reason != "expired" {
		t.Errorf("short lease = %+v, want revoked (expired)", l)
	}
	if l := le.lease(t, long.LeaseID); l.State != broker.LeaseActive {
		t.Errorf("long lease = %+v, want active", l)
	}
	if _, ok := fake.get(short.Username); ok {
		t.Error("expired login still exists")
	}
	recs := le.credentialRecords(t, before)
	if got := strings.Join(actions(recs), ","); got != "credential:expire,credential:revoke" || recs[0].Actor.Transport != "system" {
		t.Errorf("audit = %s (actor %+v), want expire then revoke by the system", got, recs[0].Actor)
	}
}

// TestRunReaper runs the loop and waits for an expired lease to be
// revoked by it.
func TestRunReaper(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	cred := le.issue(t, alice, "reader", time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- le.leases.RunReaper(ctx, 10*time.Millisecond) }()
	le.clock.advance(2 * time.Minute)
	waitFor(t, func() bool { return le.lease(t, cred.LeaseID).State == broker.LeaseRevoked }, "the reaper to revoke the expired lease")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunReaper = %v, want nil after cancel", err)
	}
}

// TestCrashRecovery: a lease left in creating by a process that died after
// the login was made is undone; Recover takes this instance's own claims
// over at once.
func TestCrashRecovery(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	ctx := t.Context()
	now := le.clock.now()
	mk := func(id, owner string, until time.Time) broker.Lease {
		p := alice
		l := broker.Lease{
			ID: id, Principal: p, Database: "orders", Role: "reader", Username: broker.LoginName("sg_", &p),
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), MaxExpiry: now.Add(time.Hour), DecisionID: "d",
		}
		if err := le.store.Create(ctx, &l, broker.Claim{Token: "dead-" + id, Owner: owner, Until: until}); err != nil {
			t.Fatal(err)
		}
		if err := fake.CreateLogin(ctx, broker.LoginSpec{Username: l.Username, Password: "x", Role: "reader", ExpiresAt: l.ExpiresAt}); err != nil {
			t.Fatal(err)
		}
		return l
	}
	mine := mk("00000000-0000-7000-8000-000000000001", "test-instance", now.Add(time.Hour))
	other := mk("00000000-0000-7000-8000-000000000002", "other-instance", now.Add(time.Hour))
	st, err := le.leases.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Abandoned != 1 || st.Revoked != 1 {
		t.Errorf("Recover = %+v, want this instance's half-done lease undone", st)
	}
	if l := le.lease(t, mine.ID); l.State != broker.LeaseRevoked || l.Reason != "creation did not finish" {
		t.Errorf("own lease = %+v", l)
	}
	if l := le.lease(t, other.ID); l.State != broker.LeaseCreating {
		t.Errorf("other instance's lease = %+v, want left alone while its claim lasts", l)
	}
	le.clock.advance(2 * time.Hour)
	if _, err := le.leases.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	if l := le.lease(t, other.ID); l.State != broker.LeaseRevoked {
		t.Errorf("other lease after its claim expired = %+v, want revoked", l)
	}
	if fake.count() != 0 {
		t.Error("logins of half-done leases remain")
	}
}

// TestRevokeDuringCreate: revoke-all lands while a login is being created;
// the password is never released and the login does not survive.
func TestRevokeDuringCreate(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	ctx := t.Context()
	fake.onCreate = func(broker.LoginSpec) {
		if _, err := le.leases.RevokeAll(ctx, carol, alice.ID(), "offboarding"); err != nil {
			t.Errorf("RevokeAll: %v", err)
		}
	}
	_, err := le.leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: alice, Database: "orders", Role: "reader"})
	if err == nil {
		t.Fatal("IssueSQL succeeded although the lease was revoked during creation")
	}
	fake.onCreate = nil
	list, _ := le.leases.Leases(ctx, alice.ID())
	if len(list) != 1 || list[0].State != broker.LeaseRevoked || fake.count() != 0 {
		t.Errorf("leases = %+v, logins = %d; want one revoked lease and no login", list, fake.count())
	}
}

func TestRevokeAll(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", nil)
	ctx := t.Context()
	c1 := le.issue(t, alice, "reader", 0)
	c2 := le.issue(t, alice, "reader", 0)
	c3 := le.issue(t, alice, "reader", 0)
	if _, err := le.leases.RevokeLease(ctx, alice, c3.LeaseID, ""); err != nil {
		t.Fatal(err)
	}
	bobs := le.issue(t, bob, "reader", 0)
	natsKey := le.keys["alice"]
	expired := le.register(t, alice, -time.Minute, false)
	before := len(le.records(t))
	admin := identity.Principal{Issuer: "https://idp.test", Subject: "dana", Email: "dana@example.com", Groups: []string{"admins"}}
	res, err := le.leases.RevokeAll(ctx, admin, alice.ID(), "offboarding")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.NATSKeys) != 1 || res.NATSKeys[0] != natsKey {
		t.Errorf("revoked NATS keys = %v, want only the unexpired %s (not %s)", res.NATSKeys, natsKey, expired)
	}
	if iss, _ := le.registry.Get(ctx, natsKey); iss.RevokedAt.IsZero() {
		t.Error("alice's NATS credential is not revoked")
	}
	if len(res.Leases) != 2 || res.Pending() != 0 {
		t.Errorf("revoked leases = %+v, want two, none pending", res.Leases)
	}
	for _, c := range []*broker.SQLCredential{c1, c2} {
		if l := le.lease(t, c.LeaseID); l.State != broker.LeaseRevoked || l.Reason != "offboarding" {
			t.Errorf("lease %s = %+v", c.LeaseID, l)
		}
	}
	if l := le.lease(t, bobs.LeaseID); l.State != broker.LeaseActive {
		t.Errorf("bob's lease = %+v, want untouched", l)
	}
	if fake.count() != 1 {
		t.Errorf("%d logins remain, want bob's only", fake.count())
	}
	var natsRevokes, sqlRevokes int
	for _, r := range le.records(t)[before:] {
		if r.Kind == audit.KindCredential && r.Credential.Action == "revoke" && r.Actor.Subject == "dana" {
			if r.Credential.Type == "nats" {
				natsRevokes++
			} else {
				sqlRevokes++
			}
		}
	}
	if natsRevokes != 1 || sqlRevokes != 2 {
		t.Errorf("audit: %d nats and %d sql revoke records by the admin, want 1 and 2", natsRevokes, sqlRevokes)
	}
	// Offboarding while the database is down: pending, retried by the reaper.
	c4 := le.issue(t, bob, "reader", 0)
	fake.down.Store(true)
	res, err = le.leases.RevokeAll(ctx, admin, bob.ID(), "offboarding")
	if err != nil || res.Pending() != 2 {
		t.Fatalf("RevokeAll while down = %+v, %v; want two pending", res, err)
	}
	fake.down.Store(false)
	le.clock.advance(2 * time.Minute)
	if st, _ := le.leases.Reap(ctx); st.Revoked != 2 {
		t.Errorf("Reap = %+v, want the two pending revocations done", st)
	}
	if l := le.lease(t, c4.LeaseID); l.State != broker.LeaseRevoked {
		t.Errorf("lease = %+v", l)
	}
}

// TestIssueSQLFailures: a login that cannot be created, an audit log that
// is down, too many leases.
func TestIssueSQLFailures(t *testing.T) {
	fake := newFakeLogins()
	le := newLeaseEnv(t, fake, "reader", func(c *broker.LeasesConfig) { c.MaxLeasesPerPrincipal = 2 })
	ctx := t.Context()
	req := broker.SQLCredRequest{Principal: alice, Database: "orders", Role: "reader"}

	t.Run("create_fails", func(t *testing.T) {
		fake.failCreate.Store(true)
		defer fake.failCreate.Store(false)
		before := len(le.records(t))
		_, err := le.leases.IssueSQL(ctx, req)
		var dbe *broker.DBError
		if !errors.As(err, &dbe) || dbe.Number != 15151 {
			t.Fatalf("IssueSQL = %v, want the database error", err)
		}
		recs := le.credentialRecords(t, before)
		if len(recs) != 1 || recs[0].Credential.Action != "issue" || recs[0].Result == nil || recs[0].Result.Status != broker.CodeDBError ||
			!strings.Contains(recs[0].Credential.Detail, "nothing remains") {
			t.Fatalf("audit = %+v", recs)
		}
		list, _ := le.leases.Leases(ctx, alice.ID())
		if len(list) != 1 || list[0].State != broker.LeaseFailed {
			t.Errorf("leases = %+v, want one failed", list)
		}
	})
	t.Run("role_refused", func(t *testing.T) {
		// The provisioner refuses the request itself (the role does not
		// exist, or is privileged): the API answers invalid_request, and
		// so does the audit record.
		fake.refuseRole.Store(true)
		defer fake.refuseRole.Store(false)
		before := len(le.records(t))
		_, err := le.leases.IssueSQL(ctx, req)
		if !errors.Is(err, broker.ErrInvalid) {
			t.Fatalf("IssueSQL = %v, want ErrInvalid", err)
		}
		recs := le.credentialRecords(t, before)
		if len(recs) != 1 || recs[0].Credential.Action != "issue" || recs[0].Result == nil || recs[0].Result.Status != broker.CodeInvalidRequest ||
			!strings.Contains(recs[0].Credential.Detail, "does not exist") {
			t.Fatalf("audit = %+v, want one issue record with status invalid_request", recs)
		}
	})
	t.Run("audit_down", func(t *testing.T) {
		le.recorder.fail.Store(true)
		_, err := le.leases.IssueSQL(ctx, req)
		le.recorder.fail.Store(false)
		if !errors.Is(err, broker.ErrUnavailable) {
			t.Fatalf("IssueSQL with the audit log down = %v, want unavailable", err)
		}
		if fake.count() != 0 {
			t.Error("a login survives although its issue record is not durable")
		}
	})
	t.Run("too_many", func(t *testing.T) {
		le.issue(t, alice, "reader", 0)
		le.issue(t, alice, "reader", 0)
		before := len(le.records(t))
		_, err := le.leases.IssueSQL(ctx, req)
		if !errors.Is(err, broker.ErrTooManyLeases) {
			t.Fatalf("third lease = %v, want ErrTooManyLeases", err)
		}
		// The refusal is audited like a policy deny, with the limit's
		// message as its reason.
		recs := le.records(t)[before:]
		if len(recs) != 1 {
			t.Fatalf("%d audit records for the refusal, want 1: %+v", len(recs), recs)
		}
		if r := recs[0]; r.Kind != audit.KindDecision || r.Allow == nil || *r.Allow || r.Result == nil ||
			r.Result.Status != broker.CodeRateLimited || r.Credential == nil || r.Credential.Type != "sql" ||
			r.Credential.Database != "orders" || len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "the limit is 2") {
			t.Errorf("refusal record = %+v, want a rate_limited sql issue decision with the limit as its reason", r)
		}
	})
}

func TestNewLeasesValidates(t *testing.T) {
	e := newEnv(t)
	_, err := broker.NewLeases(broker.LeasesConfig{Service: e.svc, LoginPrefix: "Bad-Prefix", OpTimeout: -1})
	for _, want := range []string{"lease store", "login issuer", "loginPrefix", "opTimeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewLeases = %v, want a problem about %s", err, want)
		}
	}
}

func TestValidRoleName(t *testing.T) {
	t.Parallel()
	for _, tc := range roleCases {
		if got := broker.ValidRoleName(tc.role); got != tc.ok {
			t.Errorf("ValidRoleName(%q) = %v, want %v", tc.role, got, tc.ok)
		}
	}
}

var roleCases = []struct {
	role string
	ok   bool
}{
	{"reader", true},
	{"db_datareader", true},
	{"_x", true},
	{"Role$1", true},
	{"sales-reader", true},
	{strings.Repeat("r", 63), true},
	{"", false},
	{"1reader", false},
	{"-x", false},
	{"reader'", false},
	{`reader"`, false},
	{"[reader]", false},
	{"reader;", false},
	{"read er", false},
	{"rеader", false},
	{"reader\x00", false},
	{strings.Repeat("r", 64), false},
	{"a.b", false},
}

// FuzzValidRoleName: whatever is accepted contains only the characters no
// SQL dialect needs to quote specially.
func FuzzValidRoleName(f *testing.F) {
	for _, tc := range roleCases {
		f.Add(tc.role)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !broker.ValidRoleName(s) {
			return
		}
		if strings.ContainsAny(s, "'\"[];` \t\n\\/*%{}") || len(s) > 63 {
			t.Fatalf("ValidRoleName(%q) accepted a dangerous name", s)
		}
		for _, r := range s {
			if r > 127 {
				t.Fatalf("ValidRoleName(%q) accepted non-ASCII", s)
			}
		}
	})
}

func TestLoginNameAndPassword(t *testing.T) {
	t.Parallel()
	for _, p := range []identity.Principal{
		{Subject: "00uAbC123", Email: "Zoë.O'Brien+test@example.com"},
		{Subject: "7c9e6679-7425-40de-944b-e07fc1f90ae7"},
		{Subject: "日本語"},
		{Subject: strings.Repeat("x", 100)},
	} {
		n := broker.LoginName("sg_", &p)
		if !broker.ValidLoginName("sg_", n) {
			t.Errorf("LoginName(%+v) = %q, not a valid login name", p, n)
		}
		if broker.LoginName("sg_", &p) == n {
			t.Errorf("LoginName(%+v) repeated %q", p, n)
		}
	}
	for _, bad := range []string{"postgres", "sa", "sg_admin", "sg_x_abcdefghij1", "sg_x_ABCDEFGHIJ", "xsg_x_abcdefghij", "sg_" + strings.Repeat("a", 50) + "_abcdefghij"} {
		if broker.ValidLoginName("sg_", bad) {
			t.Errorf("ValidLoginName(%q) = true", bad)
		}
	}
	seen := map[string]bool{}
	for range 100 {
		pw, err := broker.GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) != 32 || !strings.ContainsAny(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") || !strings.ContainsAny(pw, "abcdefghijklmnopqrstuvwxyz") ||
			!strings.ContainsAny(pw, "0123456789") || strings.Trim(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" || seen[pw] {
			t.Fatalf("GeneratePassword() = %q", pw)
		}
		seen[pw] = true
	}
}

// waitFor polls cond until it holds or the test's patience runs out.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkGeneratePassword and BenchmarkLoginName: the per-credential
// randomness (crypto/rand).
func BenchmarkGeneratePassword(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := broker.GeneratePassword(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoginName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = broker.LoginName("sg_", &alice)
	}
}
