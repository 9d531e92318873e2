package broker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/postgres"
)

// envPasswordDSN names a superuser on a PostgreSQL cluster with password
// authentication (deploy/ci/pg-password-cluster.sh), where an issued
// password must work and a revoked or expired one must fail.
const envPasswordDSN = "SQLGATE_TEST_POSTGRES_PASSWORD_DSN"

// pgTarget is a throwaway database on the password cluster: role
// sg_reader_<suffix> may read public.granted, not public.secret.
type pgTarget struct {
	admin *pgx.Conn
	base  *pgconn.Config
	name  string
	role  string
	pool  *pgxpool.Pool
	down  atomic.Bool
}

func newPGTarget(t *testing.T) *pgTarget {
	t.Helper()
	dsn := os.Getenv(envPasswordDSN)
	if dsn == "" {
		t.Skip(envPasswordDSN + " is not set: PostgreSQL credential tests skipped (create a cluster with deploy/ci/pg-password-cluster.sh)")
	}
	ctx := t.Context()
	base, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("%s: invalid connection string", envPasswordDSN)
	}
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", envPasswordDSN, err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	pt := &pgTarget{admin: admin, base: base, name: "sqlgate_broker_" + suffix, role: "sg_reader_" + suffix}
	pgExec(t, admin, "CREATE DATABASE "+pt.name)
	pgExec(t, admin, "CREATE ROLE "+pt.role+" NOLOGIN")
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pt.name+" WITH (FORCE)")
		// Issued logins are members of the role: drop them, then the role.
		rows, err := admin.Query(ctx, `SELECT r.rolname FROM pg_roles r JOIN pg_auth_members m ON m.member = r.oid
			JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = $1`, pt.role)
		if err == nil {
			names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
			for _, n := range names {
				_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{n}.Sanitize())
			}
		}
		_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+pt.role)
	})
	c := pt.connect(t, base.User, base.Password)
	for _, s := range []string{
		"CREATE TABLE public.granted (id int PRIMARY KEY, note text)",
		"INSERT INTO public.granted VALUES (1, 'visible')",
		"CREATE TABLE public.secret (id int PRIMARY KEY, note text)",
		"INSERT INTO public.secret VALUES (1, 'hidden')",
		"GRANT SELECT ON public.granted TO " + pt.role,
	} {
		pgExec(t, c, s)
	}
	c.Close(ctx)
	pc, err := pgxpool.ParseConfig(pt.dsn(base.User, base.Password))
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 4
	var d net.Dialer
	pc.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if pt.down.Load() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused (test)")}
		}
		return d.DialContext(ctx, network, addr)
	}
	if pt.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pt.pool.Close)
	return pt
}

func (pt *pgTarget) issuer(t *testing.T) *postgres.LoginIssuer {
	t.Helper()
	li, err := postgres.NewLoginIssuer(pt.pool, postgres.LoginConfig{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	return li
}

// setDown makes the database unreachable for sqlgated (pooled connections
// closed, new ones refused) or reachable again.
func (pt *pgTarget) setDown(down bool) {
	pt.down.Store(down)
	if down {
		pt.pool.Reset()
	}
}

func (pt *pgTarget) dsn(user, password string) string {
	u := url.URL{
		Scheme: "postgres", User: url.UserPassword(user, password), Host: net.JoinHostPort(pt.base.Host, strconv.Itoa(int(pt.base.Port))),
		Path: "/" + pt.name, RawQuery: "sslmode=disable",
	}
	return u.String()
}

func (pt *pgTarget) connect(t *testing.T, user, password string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), pt.dsn(user, password))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (pt *pgTarget) loginWorks(t *testing.T, user, password string) bool {
	t.Helper()
	c, err := pgx.Connect(t.Context(), pt.dsn(user, password))
	if err != nil {
		return false
	}
	c.Close(t.Context())
	return true
}

func (pt *pgTarget) roleExists(t *testing.T, name string) bool {
	t.Helper()
	var n int
	if err := pt.admin.QueryRow(t.Context(), "SELECT count(*) FROM pg_roles WHERE rolname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func pgExec(t *testing.T, c *pgx.Conn, sql string) {
	t.Helper()
	if _, err := c.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// sessionAlive reports whether an open session still answers.
func sessionAlive(t *testing.T, c *pgx.Conn) bool {
	t.Helper()
	_, err := c.Exec(t.Context(), "SELECT 1")
	return err == nil
}

// TestSQLCredentialsPostgres is the journey against a real password-auth
// PostgreSQL: issue, log in with the password, see the role's rights and
// nothing more, revoke; the open session is ended and the password no
// longer works.
func TestSQLCredentialsPostgres(t *testing.T) {
	pt := newPGTarget(t)
	le := newLeaseEnv(t, pt.issuer(t), pt.role, nil)
	ctx := t.Context()
	before := len(le.records(t))

	cred := le.issue(t, alice, pt.role, 3*time.Hour)
	if !strings.Contains(cred.Capped, "exceeds the maximum 1h0m0s") {
		t.Errorf("Capped = %q, want the policy maximum named", cred.Capped)
	}
	if !strings.HasPrefix(cred.DSN, "postgres://"+cred.Username+"@") || strings.Contains(cred.DSN, cred.Password) {
		t.Errorf("DSN = %q, want the login without the password", cred.DSN)
	}
	session := pt.connect(t, cred.Username, cred.Password)
	var note string
	if err := session.QueryRow(ctx, "SELECT note FROM public.granted").Scan(&note); err != nil || note != "visible" {
		t.Fatalf("granted table: %q, %v", note, err)
	}
	var pe *pgconn.PgError
	if _, err := session.Exec(ctx, "SELECT note FROM public.secret"); !errors.As(err, &pe) || pe.Code != "42501" {
		t.Errorf("other table: %v, want permission denied", err)
	}
	if pt.loginWorks(t, cred.Username, cred.Password+"x") {
		t.Error("a wrong password logs in")
	}

	l, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, "")
	if err != nil || l.State != broker.LeaseRevoked {
		t.Fatalf("RevokeLease = %+v, %v", l, err)
	}
	if sessionAlive(t, session) {
		t.Error("the open session survived revocation")
	}
	if pt.loginWorks(t, cred.Username, cred.Password) {
		t.Error("the revoked password still logs in")
	}
	if pt.roleExists(t, cred.Username) {
		t.Error("the login still exists")
	}
	got := strings.Join(actions(le.credentialRecords(t, before)), ",")
	if got != "credential:issue,credential:revoke" {
		t.Errorf("audit = %s", got)
	}

	// Forbidden role: refused and audited, no login created.
	n := len(le.records(t))
	if _, err := le.leases.IssueSQL(ctx, broker.SQLCredRequest{Principal: bob, Database: "orders", Role: "postgres"}); !errors.Is(err, broker.ErrDenied) {
		t.Errorf("forbidden role = %v, want denied", err)
	}
	if recs := le.credentialRecords(t, n); len(recs) != 1 || recs[0].Kind != audit.KindDecision {
		t.Errorf("audit = %v, want a denied decision", actions(recs))
	}
}

// leastPrivilegeIssuer returns a provisioner whose pool runs as a role made
// like deploy/postgres makes sqlgate_broker (03: NOINHERIT; 04: CREATEROLE,
// GRANT pg_signal_backend), not as the superuser.
func (pt *pgTarget) leastPrivilegeIssuer(t *testing.T) *postgres.LoginIssuer {
	t.Helper()
	name := strings.Replace(pt.role, "sg_reader_", "sqlgate_brk_", 1)
	pw, err := broker.GeneratePassword()
	if err != nil {
		t.Fatal(err)
	}
	pgExec(t, pt.admin, "CREATE ROLE "+name+" LOGIN PASSWORD '"+pw+"' NOSUPERUSER NOCREATEDB CREATEROLE NOINHERIT NOREPLICATION")
	pgExec(t, pt.admin, "GRANT pg_signal_backend TO "+name)
	pool, err := pgxpool.New(t.Context(), pt.dsn(name, pw))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		_, _ = pt.admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+name)
	})
	li, err := postgres.NewLoginIssuer(pool, postgres.LoginConfig{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	return li
}

// TestSQLCredentialsPostgresLeastPrivilege: with the broker role of the
// deploy scripts (NOINHERIT, a member of pg_signal_backend), revoking a
// lease whose login has a session open ends that session and the lease is
// revoked; so does the reaper at expiry. (pg_terminate_backend checks the
// current role's privileges, which a NOINHERIT member does not have
// without switching to pg_signal_backend.)
func TestSQLCredentialsPostgresLeastPrivilege(t *testing.T) {
	pt := newPGTarget(t)
	le := newLeaseEnv(t, pt.leastPrivilegeIssuer(t), pt.role, nil)
	ctx := t.Context()

	cred := le.issue(t, alice, pt.role, 0)
	session := pt.connect(t, cred.Username, cred.Password)
	l, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, "")
	if err != nil || l.State != broker.LeaseRevoked {
		t.Fatalf("RevokeLease with a session open = %s (%q), %v; want revoked", l.State, l.LastError, err)
	}
	if sessionAlive(t, session) {
		t.Error("the open session survived revocation")
	}
	if pt.roleExists(t, cred.Username) || pt.loginWorks(t, cred.Username, cred.Password) {
		t.Error("the revoked login remains")
	}

	cred = le.issue(t, alice, pt.role, 0)
	session = pt.connect(t, cred.Username, cred.Password)
	le.clock.advance(broker.DefaultSQLTTL + time.Minute)
	if st, err := le.leases.Reap(ctx); err != nil || st.Revoked != 1 {
		t.Fatalf("Reap after expiry = %+v, %v; want one revoked", st, err)
	}
	if got := le.lease(t, cred.LeaseID); got.State != broker.LeaseRevoked {
		t.Errorf("expired lease = %s (%q), want revoked", got.State, got.LastError)
	}
	if sessionAlive(t, session) {
		t.Error("the expired login's open session survived the reaper")
	}
}

// TestSQLCredentialsPostgresReaper: an expired lease is revoked by the
// running reaper (open session ended, role dropped), and the database
// itself refuses the password after VALID UNTIL.
func TestSQLCredentialsPostgresReaper(t *testing.T) {
	pt := newPGTarget(t)
	le := newLeaseEnv(t, pt.issuer(t), pt.role, nil)
	cred := le.issue(t, alice, pt.role, 30*time.Minute)
	session := pt.connect(t, cred.Username, cred.Password)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- le.leases.RunReaper(ctx, 20*time.Millisecond) }()
	le.clock.advance(31 * time.Minute)
	waitFor(t, func() bool { return le.lease(t, cred.LeaseID).State == broker.LeaseRevoked }, "the reaper to revoke the expired lease")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sessionAlive(t, session) {
		t.Error("the expired login's session survived the reaper")
	}
	if pt.roleExists(t, cred.Username) || pt.loginWorks(t, cred.Username, cred.Password) {
		t.Error("the expired login remains usable")
	}
}

// TestSQLCredentialsPostgresUnreachable: the database is unreachable while
// a lease is revoked: the lease stays revoking (the login is still there,
// disabled or not), the reaper retries, and once the database is back no
// login is left behind.
func TestSQLCredentialsPostgresUnreachable(t *testing.T) {
	pt := newPGTarget(t)
	le := newLeaseEnv(t, pt.issuer(t), pt.role, func(c *broker.LeasesConfig) { c.OpTimeout = 5 * time.Second })
	ctx := t.Context()
	cred := le.issue(t, alice, pt.role, 0)
	session := pt.connect(t, cred.Username, cred.Password)

	pt.setDown(true)
	l, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, "")
	if err != nil {
		t.Fatal(err)
	}
	if l.State != broker.LeaseRevoking || l.LastError != "database unavailable" {
		t.Fatalf("lease = %+v, want revoking (database unavailable)", l)
	}
	le.clock.advance(time.Minute)
	if st, err := le.leases.Reap(ctx); err != nil || st.Failed != 1 {
		t.Errorf("Reap while down = %+v, %v; want one failed attempt", st, err)
	}
	if got := le.lease(t, cred.LeaseID); got.State != broker.LeaseRevoking || got.Attempts != 2 {
		t.Errorf("lease = %+v, want still revoking after two attempts", got)
	}
	if !pt.roleExists(t, cred.Username) {
		t.Fatal("the login vanished while the database was unreachable")
	}

	pt.setDown(false)
	le.clock.advance(5 * time.Minute)
	if st, err := le.leases.Reap(ctx); err != nil || st.Revoked != 1 {
		t.Fatalf("Reap when back = %+v, %v; want one revoked", st, err)
	}
	if got := le.lease(t, cred.LeaseID); got.State != broker.LeaseRevoked {
		t.Errorf("lease = %+v, want revoked", got)
	}
	if pt.roleExists(t, cred.Username) {
		t.Error("orphaned login after the database came back")
	}
	if sessionAlive(t, session) {
		t.Error("the session survived")
	}
}

// TestSQLCredentialsPostgresUndroppable: a login without any privilege of
// its own can still own things (default privileges for PUBLIC, a large
// object) that would block DROP ROLE; in the lease's database revocation
// drops them and finishes. Roles are cluster-wide: the same in another
// database of the cluster leaves the lease revoking with the login
// disabled and its sessions ended, until an operator runs DROP OWNED BY
// there; the next attempt then finishes.
func TestSQLCredentialsPostgresUndroppable(t *testing.T) {
	for _, stmt := range []string{
		"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC",
		"SELECT lo_create(0)",
	} {
		t.Run(stmt, func(t *testing.T) {
			pt := newPGTarget(t)
			le := newLeaseEnv(t, pt.issuer(t), pt.role, nil)
			ctx := t.Context()
			cred := le.issue(t, alice, pt.role, 0)
			session := pt.connect(t, cred.Username, cred.Password)
			pgExec(t, session, stmt)
			l, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, "")
			if err != nil || l.State != broker.LeaseRevoked {
				t.Fatalf("RevokeLease = %s (%q), %v; want revoked", l.State, l.LastError, err)
			}
			if sessionAlive(t, session) || pt.roleExists(t, cred.Username) {
				t.Error("the login or its session survived revocation")
			}
		})
	}

	t.Run("other_database", func(t *testing.T) {
		pt := newPGTarget(t)
		le := newLeaseEnv(t, pt.issuer(t), pt.role, nil)
		ctx := t.Context()
		other := pt.name + "_other"
		pgExec(t, pt.admin, "CREATE DATABASE "+other)
		t.Cleanup(func() { _, _ = pt.admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+other+" WITH (FORCE)") })
		cred := le.issue(t, alice, pt.role, 0)
		name := pt.name
		pt.name = other // PUBLIC may connect to every database by default
		elsewhere := pt.connect(t, cred.Username, cred.Password)
		pt.name = name
		pgExec(t, elsewhere, "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC")

		l, err := le.leases.RevokeLease(ctx, alice, cred.LeaseID, "")
		if err != nil || l.State != broker.LeaseRevoking || !strings.HasPrefix(l.LastError, "login disabled, sessions ended; removal failed: ") ||
			!strings.Contains(l.LastError, "2BP01") {
			t.Fatalf("RevokeLease = %s (%q), %v; want revoking, the login disabled, 2BP01", l.State, l.LastError, err)
		}
		if sessionAlive(t, elsewhere) {
			t.Error("the session in the other database survived")
		}
		if pt.loginWorks(t, cred.Username, cred.Password) {
			t.Error("the disabled login still logs in")
		}

		// The operator's cleanup in the other database, then the reaper.
		pt.name = other
		oc := pt.connect(t, pt.base.User, pt.base.Password)
		pt.name = name
		pgExec(t, oc, "DROP OWNED BY "+cred.Username)
		le.clock.advance(time.Hour)
		if st, err := le.leases.Reap(ctx); err != nil || st.Revoked != 1 {
			t.Fatalf("Reap after the cleanup = %+v, %v; want one revoked", st, err)
		}
		if pt.roleExists(t, cred.Username) {
			t.Error("the login still exists")
		}
	})
}

// TestSQLCredentialsPostgresPrefixChange: leases issued before loginPrefix
// changed are still revoked (the recorded name has the generated shape),
// their sessions ended and their roles dropped.
func TestSQLCredentialsPostgresPrefixChange(t *testing.T) {
	pt := newPGTarget(t)
	le := newLeaseEnv(t, pt.issuer(t), pt.role, nil)
	cred := le.issue(t, alice, pt.role, 0)
	session := pt.connect(t, cred.Username, cred.Password)
	li, err := postgres.NewLoginIssuer(pt.pool, postgres.LoginConfig{Name: "orders", LoginPrefix: "tmp_"})
	if err != nil {
		t.Fatal(err)
	}
	restarted, err := broker.NewLeases(broker.LeasesConfig{
		Service: le.svc, Store: le.store, Now: le.clock.now, Instance: "restarted",
		LoginPrefix: "tmp_", Issuers: map[string]broker.SQLLoginIssuer{"orders": li},
	})
	if err != nil {
		t.Fatal(err)
	}
	le.clock.advance(time.Hour)
	if st, err := restarted.Reap(t.Context()); err != nil || st.Revoked != 1 {
		t.Fatalf("Reap = %+v, %v; want the expired lease revoked", st, err)
	}
	if sessionAlive(t, session) || pt.roleExists(t, cred.Username) {
		t.Error("the login of the old prefix or its session survived")
	}
}
