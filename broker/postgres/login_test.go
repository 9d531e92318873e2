package postgres_test

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

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/identity"
)

// envPasswordDSN names a PostgreSQL superuser on a cluster with password
// (scram-sha-256) authentication (deploy/ci/pg-password-cluster.sh): the
// credential tests must prove that an issued password works and a revoked
// or expired one does not, which a trust-auth cluster cannot show.
const envPasswordDSN = "SQLGATE_TEST_POSTGRES_PASSWORD_DSN"

// loginDB is a throwaway database on the password cluster with a grantable
// role and two tables, one of which the role may read.
type loginDB struct {
	admin  *pgx.Conn
	base   *pgconn.Config
	name   string
	pool   *pgxpool.Pool
	role   string
	down   *atomic.Bool
	suffix string
}

// newLoginDB creates the database, the role sg_reader_<suffix> with SELECT
// on public.granted (not on public.secret) and an issuer pool whose network
// can be cut (down).
func newLoginDB(t *testing.T) *loginDB {
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
	d := &loginDB{admin: admin, base: base, suffix: hex.EncodeToString(b), down: &atomic.Bool{}}
	d.name = "sqlgate_login_" + d.suffix
	d.role = "sg_reader_" + d.suffix
	mustExec(t, admin, "CREATE DATABASE "+d.name)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)")
		// Roles are cluster-wide: drop what the test created.
		rows, err := admin.Query(ctx, "SELECT rolname FROM pg_roles WHERE rolname LIKE '%' || $1 || '%' OR rolname LIKE 'sg\\_test%'", d.suffix)
		if err == nil {
			names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
			for _, n := range names {
				_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{n}.Sanitize())
			}
		}
	})
	mustExec(t, admin, "CREATE ROLE "+d.role+" NOLOGIN")
	db := d.conn(t, base.User, base.Password)
	for _, s := range []string{
		"CREATE TABLE public.granted (id int PRIMARY KEY, note text)",
		"INSERT INTO public.granted VALUES (1, 'visible')",
		"CREATE TABLE public.secret (id int PRIMARY KEY, note text)",
		"INSERT INTO public.secret VALUES (1, 'hidden')",
		"GRANT SELECT ON public.granted TO " + d.role,
	} {
		mustExec(t, db, s)
	}
	db.Close(ctx)

	pc, err := pgxpool.ParseConfig(d.dsn(base.User, base.Password))
	if err != nil {
		t.Fatal(err)
	}
	pc.MaxConns = 4
	var dialer net.Dialer
	pc.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if d.down.Load() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused (test)")}
		}
		return dialer.DialContext(ctx, network, addr)
	}
	d.pool, err = pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.pool.Close)
	return d
}

// setDown cuts (or restores) the issuer's network: pooled connections are
// closed and new ones cannot be dialled.
func (d *loginDB) setDown(down bool) {
	d.down.Store(down)
	if down {
		d.pool.Reset()
	}
}

func (d *loginDB) dsn(user, password string) string {
	u := url.URL{
		Scheme: "postgres", User: url.UserPassword(user, password), Host: net.JoinHostPort(d.base.Host, strconv.Itoa(int(d.base.Port))),
		Path: "/" + d.name, RawQuery: "sslmode=disable",
	}
	return u.String()
}

// conn connects to the test database as user with password.
func (d *loginDB) conn(t *testing.T, user, password string) *pgx.Conn {
	t.Helper()
	c, err := d.tryConn(t.Context(), user, password)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func (d *loginDB) tryConn(ctx context.Context, user, password string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, d.dsn(user, password))
}

func (d *loginDB) roleExists(t *testing.T, name string) bool {
	t.Helper()
	var n int
	if err := d.admin.QueryRow(t.Context(), "SELECT count(*) FROM pg_roles WHERE rolname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func (d *loginDB) issuer(t *testing.T, cfg postgres.LoginConfig) *postgres.LoginIssuer {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "orders"
	}
	li, err := postgres.NewLoginIssuer(d.pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return li
}

func (d *loginDB) spec(t *testing.T, role string, ttl time.Duration) broker.LoginSpec {
	t.Helper()
	pw, err := broker.GeneratePassword()
	if err != nil {
		t.Fatal(err)
	}
	p := identity.Principal{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com"}
	return broker.LoginSpec{
		LeaseID: "lease-1", Username: broker.LoginName("sg_test_", &p), Password: pw, Role: role,
		ExpiresAt: time.Now().Add(ttl), Principal: p.Display(),
	}
}

func mustExec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestLoginIssueUseRevoke is the journey: the issued password logs in, the
// login sees the role's table and not the other, revocation ends the open
// session and the password stops working.
func TestLoginIssueUseRevoke(t *testing.T) {
	d := newLoginDB(t)
	ctx := t.Context()
	li := d.issuer(t, postgres.LoginConfig{})
	spec := d.spec(t, d.role, time.Hour)
	if err := li.CreateLogin(ctx, spec); err != nil {
		t.Fatalf("CreateLogin: %v", err)
	}
	// The password is not stored in clear: the server holds a SCRAM verifier.
	var stored string
	if err := d.admin.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", spec.Username).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "SCRAM-SHA-256$4096:") || strings.Contains(stored, spec.Password) {
		t.Errorf("stored password = %.20q..., want a SCRAM-SHA-256 verifier", stored)
	}

	if _, err := d.tryConn(ctx, spec.Username, spec.Password+"x"); sqlState(err) != "28P01" {
		t.Errorf("login with a wrong password: %v, want 28P01", err)
	}
	session := d.conn(t, spec.Username, spec.Password)
	var note string
	if err := session.QueryRow(ctx, "SELECT note FROM public.granted WHERE id = 1").Scan(&note); err != nil || note != "visible" {
		t.Fatalf("read granted table = %q, %v; want visible", note, err)
	}
	if _, err := session.Exec(ctx, "SELECT note FROM public.secret"); sqlState(err) != "42501" {
		t.Errorf("read the other table: %v, want permission denied (42501)", err)
	}
	for _, stmt := range []string{"CREATE TABLE public.mine (id int)", "CREATE ROLE sg_test_escalate", "SET ROLE " + d.base.User} {
		if _, err := session.Exec(ctx, stmt); err == nil {
			t.Errorf("%s as the issued login succeeded", stmt)
		}
	}
	var until time.Time
	if err := d.admin.QueryRow(ctx, "SELECT rolvaliduntil FROM pg_roles WHERE rolname = $1", spec.Username).Scan(&until); err != nil {
		t.Fatal(err)
	}
	if d := until.Sub(spec.ExpiresAt); d < -time.Second || d > time.Second {
		t.Errorf("VALID UNTIL = %s, want the lease expiry %s", until, spec.ExpiresAt)
	}

	if err := li.RevokeLogin(ctx, broker.LoginSpec{Username: spec.Username, Role: spec.Role}); err != nil {
		t.Fatalf("RevokeLogin: %v", err)
	}
	if _, err := session.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("the open session still works after revocation")
	}
	if _, err := d.tryConn(ctx, spec.Username, spec.Password); err == nil {
		t.Error("the revoked password still logs in")
	}
	if d.roleExists(t, spec.Username) {
		t.Error("the login still exists after revocation")
	}
	// Idempotent: revoking a gone login succeeds.
	if err := li.RevokeLogin(ctx, broker.LoginSpec{Username: spec.Username, Role: spec.Role}); err != nil {
		t.Errorf("second RevokeLogin: %v", err)
	}
}

// TestLoginValidUntil shows the database enforcing the expiry by itself
// (VALID UNTIL), and renewal moving it.
func TestLoginValidUntil(t *testing.T) {
	d := newLoginDB(t)
	ctx := t.Context()
	li := d.issuer(t, postgres.LoginConfig{})
	spec := d.spec(t, d.role, -time.Minute) // already expired
	if err := li.CreateLogin(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := d.tryConn(ctx, spec.Username, spec.Password); sqlState(err) != "28P01" {
		t.Errorf("login after VALID UNTIL: %v, want refused", err)
	}
	spec.ExpiresAt = time.Now().Add(time.Hour)
	pw := spec.Password
	spec.Password = ""
	if err := li.RenewLogin(ctx, spec); err != nil {
		t.Fatal(err)
	}
	d.conn(t, spec.Username, pw)
	if err := li.RevokeLogin(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// Renewing a login that is gone fails.
	if err := li.RenewLogin(ctx, spec); err == nil {
		t.Error("RenewLogin of a revoked login succeeded")
	}
}

// TestLoginInjection requests roles whose names try to break out of the
// statement: each is refused or quoted, and nothing else runs.
func TestLoginInjection(t *testing.T) {
	d := newLoginDB(t)
	ctx := t.Context()
	li := d.issuer(t, postgres.LoginConfig{})
	weird := `Grüße "x"; DROP TABLE public.granted; -- ` + d.suffix
	mustExec(t, d.admin, "CREATE ROLE "+pgx.Identifier{weird}.Sanitize()+" NOLOGIN")
	tests := []struct {
		name, role string
		ok         bool
	}{
		{"quote_breakout", d.role + `" SUPERUSER; DROP TABLE public.granted; --`, false},
		{"literal_breakout", `x'); DROP ROLE ` + d.base.User + `; --`, false},
		{"brackets", "[" + d.role + "]", false},
		{"semicolon", d.role + ";", false},
		{"dollar_quote", "$$; DROP TABLE public.granted; $$", false},
		{"percent_format", "%1$I %s %L", false},
		{"unicode_lookalike", strings.Replace(d.role, "e", "е", 1), false},
		{"too_long_truncated_to_existing", d.role + strings.Repeat("x", 64-len(d.role)), false},
		{"nul", d.role + "\x00", false},
		{"empty", "", false},
		{"superuser_role", d.base.User, false},
		{"predefined_role", "pg_execute_server_program", false},
		{"quoted_unicode_role_is_granted", weird, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := d.spec(t, tc.role, time.Hour)
			err := li.CreateLogin(ctx, spec)
			if tc.ok {
				if err != nil {
					t.Fatalf("CreateLogin(%q): %v", tc.role, err)
				}
				var member bool
				if err := d.admin.QueryRow(ctx, "SELECT pg_has_role($1, $2, 'MEMBER')", spec.Username, tc.role).Scan(&member); err != nil || !member {
					t.Errorf("login is not a member of %q: %v", tc.role, err)
				}
				if err := li.RevokeLogin(ctx, spec); err != nil {
					t.Fatal(err)
				}
			} else if err == nil {
				t.Fatalf("CreateLogin(%q) succeeded", tc.role)
			}
			if d.roleExists(t, spec.Username) {
				t.Errorf("login %s exists after CreateLogin(%q)", spec.Username, tc.role)
			}
			if err != nil && strings.Contains(err.Error(), spec.Password) {
				t.Error("error contains the password")
			}
			var n int
			db := d.conn(t, d.base.User, d.base.Password)
			if err := db.QueryRow(ctx, "SELECT count(*) FROM public.granted").Scan(&n); err != nil || n != 1 {
				t.Fatalf("public.granted after CreateLogin(%q): %d rows, %v", tc.role, n, err)
			}
			var super bool
			if err := d.admin.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = $1", d.role).Scan(&super); err != nil || super {
				t.Fatalf("role %s became superuser (%v)", d.role, err)
			}
		})
	}
	// A login name sqlgate did not generate is refused before any SQL, and
	// a privileged role is refused whatever its name.
	evil := "sg_test_evil_" + strings.Map(func(r rune) rune { // hex digits to a-p: a valid random part
		if r <= '9' {
			return 'a' + r - '0'
		}
		return 'k' + r - 'a'
	}, d.suffix)
	mustExec(t, d.admin, "CREATE ROLE "+evil+" SUPERUSER LOGIN")
	for _, name := range []string{"postgres", d.base.User, `sg_x"; DROP ROLE postgres; --`, "SG_UPPER_abcdefghij", "sg_admin", "sg_no_suffix", evil} {
		err := li.RevokeLogin(ctx, broker.LoginSpec{Username: name, Role: d.role})
		if !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("RevokeLogin(%q) = %v, want ErrInvalid", name, err)
		}
	}
	var canLogin bool
	if err := d.admin.QueryRow(ctx, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", evil).Scan(&canLogin); err != nil || !canLogin {
		t.Errorf("privileged role %s was disabled (%v)", evil, err)
	}
	if !d.roleExists(t, d.base.User) {
		t.Fatal("the admin role was dropped")
	}
}

// TestLoginAdminOptionRefused: a role holding ADMIN OPTION on another role
// (itself, or through a role it belongs to) is privileged: its login could
// grant that role to any other role, access that outlives the lease. It is
// refused unless allowPrivilegedRoles.
func TestLoginAdminOptionRefused(t *testing.T) {
	d := newLoginDB(t)
	ctx := t.Context()
	payroll, mallory, mid := "sg_payroll_"+d.suffix, "sg_mallory_"+d.suffix, "sg_mid_"+d.suffix
	direct, nested := "sg_direct_"+d.suffix, "sg_nested_"+d.suffix
	for _, r := range []string{payroll, mallory + " LOGIN", mid, direct, nested} {
		mustExec(t, d.admin, "CREATE ROLE "+r)
	}
	mustExec(t, d.admin, "GRANT "+payroll+" TO "+direct+" WITH ADMIN OPTION")
	mustExec(t, d.admin, "GRANT "+payroll+" TO "+mid+" WITH ADMIN OPTION")
	mustExec(t, d.admin, "GRANT "+mid+" TO "+nested)
	// Someone else holding ADMIN OPTION on the granted role (the broker on
	// PostgreSQL 16) does not make it privileged.
	mustExec(t, d.admin, "GRANT "+d.role+" TO "+mallory+" WITH ADMIN OPTION")
	li := d.issuer(t, postgres.LoginConfig{})
	for _, role := range []string{direct, nested} {
		spec := d.spec(t, role, time.Hour)
		err := li.CreateLogin(ctx, spec)
		if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "privileged") {
			t.Errorf("CreateLogin(%s) = %v, want refused as privileged", role, err)
		}
		if d.roleExists(t, spec.Username) {
			t.Errorf("login for %s created", role)
		}
	}
	spec := d.spec(t, d.role, time.Hour)
	if err := li.CreateLogin(ctx, spec); err != nil {
		t.Fatalf("CreateLogin(%s), a role others administer: %v", d.role, err)
	}
	if err := li.RevokeLogin(ctx, spec); err != nil {
		t.Fatal(err)
	}

	// Allowed on purpose: the login can indeed hand the role on.
	allowing := d.issuer(t, postgres.LoginConfig{AllowPrivilegedRoles: true})
	spec = d.spec(t, direct, time.Hour)
	if err := allowing.CreateLogin(ctx, spec); err != nil {
		t.Fatalf("CreateLogin(%s) with allowPrivilegedRoles: %v", direct, err)
	}
	defer func() { _ = allowing.RevokeLogin(context.Background(), spec) }()
	c := d.conn(t, spec.Username, spec.Password)
	mustExec(t, c, "GRANT "+payroll+" TO "+mallory)
}

// TestLoginAllowedRoles limits what a database grants, whatever policy says.
func TestLoginAllowedRoles(t *testing.T) {
	d := newLoginDB(t)
	li := d.issuer(t, postgres.LoginConfig{AllowedRoles: []string{"someone_else"}})
	if err := li.CreateLogin(t.Context(), d.spec(t, d.role, time.Hour)); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("CreateLogin outside allowedRoles = %v, want ErrInvalid", err)
	}
}

// TestLoginUnreachable: while the database cannot be reached, revocation
// fails with ErrUnavailable, and succeeds once it is back.
func TestLoginUnreachable(t *testing.T) {
	d := newLoginDB(t)
	ctx := t.Context()
	li := d.issuer(t, postgres.LoginConfig{})
	spec := d.spec(t, d.role, time.Hour)
	if err := li.CreateLogin(ctx, spec); err != nil {
		t.Fatal(err)
	}
	d.setDown(true)
	err := li.RevokeLogin(ctx, spec)
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("RevokeLogin while down = %v, want ErrUnavailable", err)
	}
	if !d.roleExists(t, spec.Username) {
		t.Fatal("login vanished while the database was unreachable")
	}
	d.setDown(false)
	if err := li.RevokeLogin(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if d.roleExists(t, spec.Username) {
		t.Error("login remains after the database came back")
	}
}

// TestLoginStuckDropLeavesNoMembership: when DROP ROLE keeps failing (the
// login owns objects in another database of the cluster), the default drop
// does not leave the provisioner a member of the disabled login, through
// which it would hold the granted role: a least-privilege provisioner
// (CREATEROLE, not a superuser) still cannot read the role's table.
func TestLoginStuckDropLeavesNoMembership(t *testing.T) {
	d := newLoginDB(t)
	ctx := t.Context()
	// The provisioner as deploy/postgres/04-credential-issuance.sql makes
	// it: CREATEROLE and, on PostgreSQL 16 and later, the role with ADMIN
	// OPTION but neither INHERIT nor SET; no privilege on the tables.
	prov := "sg_provisioner_" + d.suffix
	pw, err := broker.GeneratePassword()
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, d.admin, "CREATE ROLE "+prov+" LOGIN CREATEROLE PASSWORD "+pgQuote(pw))
	var version int
	if err := d.admin.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version >= 160000 {
		mustExec(t, d.admin, "GRANT "+d.role+" TO "+prov+" WITH ADMIN TRUE, INHERIT FALSE, SET FALSE")
	}
	pool, err := pgxpool.New(ctx, d.dsn(prov, pw))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	li, err := postgres.NewLoginIssuer(pool, postgres.LoginConfig{Name: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	spec := d.spec(t, d.role, time.Hour)
	if err := li.CreateLogin(ctx, spec); err != nil {
		t.Fatalf("CreateLogin: %v", err)
	}
	// The login owns a table in another database: DROP ROLE fails there.
	other := d.name + "_other"
	mustExec(t, d.admin, "CREATE DATABASE "+other)
	t.Cleanup(func() { _, _ = d.admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+other+" WITH (FORCE)") })
	u, err := url.Parse(os.Getenv(envPasswordDSN))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + other
	oc, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer oc.Close(context.Background())
	mustExec(t, oc, "CREATE TABLE public.left_behind (id int)")
	mustExec(t, oc, "ALTER TABLE public.left_behind OWNER TO "+pgx.Identifier{spec.Username}.Sanitize())

	for range 2 { // the reaper retries: neither attempt may leave a membership
		err := li.RevokeLogin(ctx, broker.LoginSpec{Username: spec.Username, Role: spec.Role})
		if !errors.Is(err, broker.ErrLoginDisabled) {
			t.Fatalf("RevokeLogin = %v, want ErrLoginDisabled (DROP ROLE blocked by the other database)", err)
		}
	}
	if !d.roleExists(t, spec.Username) {
		t.Fatal("the login was dropped although it owns a table in another database")
	}
	// USAGE and SET, not MEMBER: on PostgreSQL 16 a role's creator keeps
	// an ADMIN grant on it, without INHERIT or SET, which MEMBER counts.
	// (SET is a privilege of its own from 16; before, a member may always
	// SET ROLE, and MEMBER says it.)
	var usage, set bool
	q := "SELECT pg_has_role($1, $2, 'USAGE'), pg_has_role($1, $2, CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END)"
	if err := d.admin.QueryRow(ctx, q, prov, spec.Username).Scan(&usage, &set); err != nil {
		t.Fatal(err)
	}
	if usage || set {
		t.Errorf("after the failed drop %s may still use (%v) or set (%v) the role %s", prov, usage, set, spec.Username)
	}
	pc, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Release()
	if _, err := pc.Exec(ctx, "SELECT note FROM public.granted"); sqlState(err) != "42501" {
		t.Errorf("the provisioner reads the granted role's table after the failed drop: %v, want permission denied (42501)", err)
	}
}

func pgQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
