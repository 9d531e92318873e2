package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/internal/scrub"
)

// Default login templates. Placeholders are replaced on the server by
// format(): {{name}}, {{role}} and {{database}} as identifiers (%I),
// {{password}} (the SCRAM-SHA-256 verifier, never the password),
// {{expiration}}, {{name_literal}} and {{role_literal}} as literals (%L).
var (
	// DefaultCreation creates the login, valid until the lease's expiry, a
	// member of the granted role and nothing else.
	DefaultCreation = []string{
		`CREATE ROLE {{name}} WITH LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}} ` +
			`NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT IN ROLE {{role}}`,
	}
	// DefaultRenewal moves the expiry the database enforces.
	DefaultRenewal = []string{`ALTER ROLE {{name}} VALID UNTIL {{expiration}}`}
	// DefaultDisable stops new sessions (revocation, step 1).
	DefaultDisable = []string{`ALTER ROLE {{name}} NOLOGIN`}
	// DefaultDrop removes the login (revocation, step 3, after its sessions
	// ended). Even a login without any privilege of its own can make itself
	// undroppable (ALTER DEFAULT PRIVILEGES ... TO PUBLIC, lo_create), so
	// the first statement, as the login (the provisioner makes itself a
	// member for that: CREATEROLE, or on PostgreSQL 16 and later the ADMIN
	// OPTION its creator has), drops what the login owns and the privileges
	// granted to it in this database (DROP OWNED BY), and ends the
	// membership again (RESET ROLE, REVOKE), in one transaction: the
	// provisioner never keeps the login's role (and through it the granted
	// one), also when DROP ROLE keeps failing. Then the role is dropped.
	// Roles are cluster-wide: what the login created in another database of
	// the cluster still blocks DROP ROLE (see docs/credentials.md). Replace
	// DROP OWNED BY with `REASSIGN OWNED BY {{name}} TO keeper` and DROP
	// OWNED BY to keep the objects an issued login created, keeper a NOLOGIN
	// role never granted (a granted role that owns objects is privileged:
	// [RoleCheckSQL]).
	DefaultDrop = []string{
		`DO $$BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {{name_literal}}) THEN ` +
			`GRANT {{name}} TO CURRENT_USER; SET LOCAL ROLE {{name}}; DROP OWNED BY {{name}}; ` +
			`RESET ROLE; REVOKE {{name}} FROM CURRENT_USER; END IF; END$$`,
		`DROP ROLE IF EXISTS {{name}}`,
	}
)

// LoginConfig configures short-lived logins on one PostgreSQL database.
// Templates are lists of statements with placeholders (see
// [DefaultCreation]); the server quotes every value, so no template can be
// broken out of by a name.
type LoginConfig struct {
	// Name is the database name users ask for (`--database`), normally the
	// name of the database's executor.
	Name string `json:"name" yaml:"name"`
	// Creation, Renewal, Disable and Drop replace the default templates.
	// Creation and Renewal run in one transaction each; revocation runs
	// Disable, then ends the login's sessions (built in: see
	// [TerminateSessionsSQL]), then Drop, each statement on its own, and
	// treats "role does not exist" as done.
	Creation []string `json:"creation,omitempty" yaml:"creation,omitempty"`
	Renewal  []string `json:"renewal,omitempty" yaml:"renewal,omitempty"`
	Disable  []string `json:"disable,omitempty" yaml:"disable,omitempty"`
	Drop     []string `json:"drop,omitempty" yaml:"drop,omitempty"`
	// LoginPrefix is the prefix of the login names the broker generates
	// (default broker.DefaultLoginPrefix); names without it are refused.
	LoginPrefix string `json:"loginPrefix,omitempty" yaml:"loginPrefix,omitempty"`
	// AllowedRoles, when set, lists the only roles this database grants
	// (besides what policy allows).
	AllowedRoles []string `json:"allowedRoles,omitempty" yaml:"allowedRoles,omitempty"`
	// AllowPrivilegedRoles lets policy grant roles that are (or are members
	// of) a superuser, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS role,
	// a login role, a predefined role (pg_*), one of the broker's own roles
	// or a role that owns objects, or that hold (themselves or through such
	// a membership) ADMIN OPTION on any role ([RoleCheckSQL]). Off by
	// default: such a membership is a path to more than the role, or to
	// access that outlives the lease.
	AllowPrivilegedRoles bool `json:"allowPrivilegedRoles,omitempty" yaml:"allowPrivilegedRoles,omitempty"`
	// TerminateTimeout is how long revocation waits for each session to
	// end (default 5s; PostgreSQL 14 or later).
	TerminateTimeout time.Duration `json:"terminateTimeout,omitempty" yaml:"terminateTimeout,omitempty"`
	// ClientHost, ClientPort, ClientDatabase and ClientParams make up the
	// connection string shown to users (defaults: the pool's host, port
	// and database; no parameters). Set them when clients reach the
	// database by another name than sqlgated does.
	ClientHost     string `json:"clientHost,omitempty" yaml:"clientHost,omitempty"`
	ClientPort     int    `json:"clientPort,omitempty" yaml:"clientPort,omitempty"`
	ClientDatabase string `json:"clientDatabase,omitempty" yaml:"clientDatabase,omitempty"`
	ClientParams   string `json:"clientParams,omitempty" yaml:"clientParams,omitempty"`
	// Logger receives the issuer's warnings (default: discard): on
	// PostgreSQL 15 and earlier, that the pool's role is as good as a
	// superuser ([LoginIssuer.CheckServer]).
	Logger *slog.Logger `json:"-" yaml:"-"`
}

// Validate reports every problem with the configuration at once.
func (c *LoginConfig) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	for _, t := range []struct {
		name      string
		stmts     []string
		password  bool
		allowNone bool
	}{
		{"creation", c.Creation, true, false},
		{"renewal", c.Renewal, false, true},
		{"disable", c.Disable, false, true},
		{"drop", c.Drop, false, false},
	} {
		for i, s := range t.stmts {
			if _, err := formatTemplate(s, t.password); err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", t.name, i, err))
			}
		}
	}
	for _, r := range c.AllowedRoles {
		if !validRole(r) {
			errs = append(errs, fmt.Errorf("allowedRoles: %q is not a valid role name", r))
		}
	}
	if c.TerminateTimeout < 0 {
		errs = append(errs, errors.New("terminateTimeout must not be negative"))
	}
	if c.ClientPort < 0 || c.ClientPort > 65535 {
		errs = append(errs, errors.New("clientPort must be a port number"))
	}
	if strings.ContainsAny(c.ClientHost+c.ClientDatabase, "/?#@ \x00") {
		errs = append(errs, errors.New("clientHost and clientDatabase must not contain / ? # @ or spaces"))
	}
	if _, err := url.ParseQuery(c.ClientParams); err != nil {
		errs = append(errs, errors.New("clientParams must be URL query parameters (sslmode=require)"))
	}
	return errors.Join(errs...)
}

// LoginIssuer implements [broker.SQLLoginIssuer] for PostgreSQL: CREATE
// ROLE ... LOGIN ... VALID UNTIL (the database enforces the expiry itself,
// even when sqlgated is down), renewal by ALTER ROLE ... VALID UNTIL,
// revocation by NOLOGIN, terminating the login's sessions and DROP ROLE.
//
// The password never reaches the server: the role gets a SCRAM-SHA-256
// verifier computed here, so neither server logs nor pg_stat_activity can
// show the password. Identifiers are quoted by the server (format %I) from
// values sent as parameters.
type LoginIssuer struct {
	pool                       *pgxpool.Pool
	cfg                        LoginConfig
	creation, renewal, disable []string
	drop                       []string
	allowed                    map[string]bool
	clientHost, clientDB       string
	clientPort                 uint16
	log                        *slog.Logger
	serverChecked              atomic.Bool // CheckServer read the version
}

// NewLoginIssuer returns the issuer for the database behind pool (e.g.
// [Executor.Pool]). The pool's role needs CREATEROLE (PostgreSQL 16 and
// later: ADMIN OPTION on each grantable role) and pg_signal_backend; see
// docs/credentials.md. It sends nothing to the server: call
// [LoginIssuer.CheckServer] once the pool is open.
func NewLoginIssuer(pool *pgxpool.Pool, cfg LoginConfig) (*LoginIssuer, error) {
	if pool == nil {
		return nil, errors.New("postgres logins: a connection pool is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("postgres logins: %w", err)
	}
	or := func(s, d []string) []string {
		if len(s) == 0 {
			return d
		}
		return s
	}
	li := &LoginIssuer{pool: pool, cfg: cfg, log: cfg.Logger}
	if li.log == nil {
		li.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if li.creation, err = formatTemplates(or(cfg.Creation, DefaultCreation), true); err != nil {
		return nil, err
	}
	if li.renewal, err = formatTemplates(or(cfg.Renewal, DefaultRenewal), false); err != nil {
		return nil, err
	}
	if li.disable, err = formatTemplates(or(cfg.Disable, DefaultDisable), false); err != nil {
		return nil, err
	}
	if li.drop, err = formatTemplates(or(cfg.Drop, DefaultDrop), false); err != nil {
		return nil, err
	}
	if len(cfg.AllowedRoles) > 0 {
		li.allowed = map[string]bool{}
		for _, r := range cfg.AllowedRoles {
			li.allowed[r] = true
		}
	}
	if li.cfg.LoginPrefix == "" {
		li.cfg.LoginPrefix = broker.DefaultLoginPrefix
	}
	if li.cfg.TerminateTimeout == 0 {
		li.cfg.TerminateTimeout = 5 * time.Second
	}
	cc := pool.Config().ConnConfig
	li.clientHost, li.clientPort, li.clientDB = cc.Host, cc.Port, cc.Database
	if cfg.ClientHost != "" {
		li.clientHost = cfg.ClientHost
	}
	if cfg.ClientPort != 0 {
		li.clientPort = uint16(cfg.ClientPort)
	}
	if cfg.ClientDatabase != "" {
		li.clientDB = cfg.ClientDatabase
	}
	return li, nil
}

// Placeholders: the format() argument each one becomes.
var placeholders = map[string]string{
	"name":         "%1$I",
	"role":         "%2$I",
	"database":     "%3$I",
	"password":     "%4$L",
	"expiration":   "%5$L",
	"name_literal": "%1$L",
	"role_literal": "%2$L",
}

// formatTemplate turns a template into a format() string: `%` is doubled
// and each placeholder becomes a positional conversion. Unknown
// placeholders, and {{password}} outside creation, are errors.
func formatTemplate(t string, password bool) (string, error) {
	if strings.TrimSpace(t) == "" {
		return "", errors.New("empty statement")
	}
	if strings.ContainsRune(t, 0) {
		return "", errors.New("statement contains NUL")
	}
	var b strings.Builder
	rest := strings.ReplaceAll(t, "%", "%%")
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if strings.Contains(rest, "}}") {
				return "", errors.New("unbalanced }}")
			}
			b.WriteString(rest)
			return b.String(), nil
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			return "", errors.New("unterminated {{")
		}
		name := strings.TrimSpace(rest[i+2 : i+j])
		conv, ok := placeholders[name]
		if !ok {
			return "", fmt.Errorf("unknown placeholder {{%s}} (use name, role, database, password, expiration, name_literal, role_literal)", name)
		}
		if name == "password" && !password {
			return "", errors.New("{{password}} is only available in creation statements")
		}
		b.WriteString(rest[:i])
		b.WriteString(conv)
		rest = rest[i+j+2:]
	}
}

func formatTemplates(ts []string, password bool) ([]string, error) {
	out := make([]string, len(ts))
	for i, t := range ts {
		f, err := formatTemplate(t, password)
		if err != nil {
			return nil, fmt.Errorf("postgres logins: statement %d: %w", i+1, err)
		}
		out[i] = f
	}
	return out, nil
}

// RenderSQL renders the format() strings on the server, every value a
// parameter, in order ($1: the format strings).
const RenderSQL = `SELECT format(t, $2::text, $3::text, current_database(), $4::text, $5::text)
FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n`

// RoleCheckSQL reports whether a role exists and whether it, or any role
// it is a member of (directly or not), is privileged, failing closed: a
// role attribute that leads further; a login role (a membership in one is
// that login's access: sqlgate_broker's, the control role's); a predefined
// role (any name starting with pg_: pg_read_all_data, pg_write_all_data,
// pg_signal_backend, the server-files roles, and those later versions
// add); one of the broker's own roles (its session and current role and
// every role whose privileges they have or may SET ROLE to, a grant that
// only carries ADMIN OPTION, as 04-credential-issuance.sql makes on
// PostgreSQL 16, excluded: to_jsonb reads inherit_option and set_option,
// which PostgreSQL 15 and earlier lack and where membership is both); a
// role that owns anything anywhere in the cluster (the owner entries of
// pg_shdepend: tables, schemas, routines, databases, default privileges,
// large objects; only the bootstrap superuser's objects have none, and it
// is a superuser); or ADMIN OPTION on any role (the login could grant that
// role to others, access that would outlive the lease).
const RoleCheckSQL = `WITH RECURSIVE up(oid) AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1
    UNION
    SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN up ON m.member = up.oid
), own(oid) AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname IN (session_user, current_user)
    UNION
    SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN own ON m.member = own.oid
    WHERE coalesce((to_jsonb(m) ->> 'inherit_option')::boolean OR (to_jsonb(m) ->> 'set_option')::boolean, true)
)
SELECT count(*) > 0 AS found,
       coalesce(bool_or(r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls
           OR r.rolcanlogin OR starts_with(r.rolname, 'pg_') OR r.oid IN (SELECT oid FROM own)
           OR EXISTS (SELECT FROM pg_catalog.pg_shdepend d WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
                          AND d.refobjid = r.oid AND d.deptype = 'o')
           OR EXISTS (SELECT FROM pg_catalog.pg_auth_members a WHERE a.member = r.oid AND a.admin_option)), false) AS privileged
FROM up JOIN pg_catalog.pg_roles r ON r.oid = up.oid`

// LoginCheckSQL refuses to revoke a role sqlgate would never create (a
// superuser or otherwise privileged role), whatever its name.
const LoginCheckSQL = `SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls AS privileged
FROM pg_catalog.pg_roles WHERE rolname = $1`

// SignalRoleSQL runs first in the transaction of [TerminateSessionsSQL]:
// pg_terminate_backend checks the privileges of the current role, and a
// role that is a member of pg_signal_backend without inheriting its
// privileges (sqlgate_broker is NOINHERIT: deploy/postgres) has none of
// them until it switches to that role. It does so, for this transaction
// only (SET LOCAL ROLE), when it is such a member; a role that already has
// the privileges (INHERIT, superuser) keeps its own.
const SignalRoleSQL = `SELECT pg_catalog.set_config('role', 'pg_signal_backend', true)
WHERE NOT pg_catalog.pg_has_role('pg_signal_backend', 'USAGE') AND pg_catalog.pg_has_role('pg_signal_backend', 'MEMBER')`

// TerminateSessionsSQL ends every session of the login (revocation, step
// 2) and counts those that did not end within the timeout ($2, ms); the
// revocation fails and is retried while any remain. It runs after
// [SignalRoleSQL], in one transaction.
const TerminateSessionsSQL = `SELECT count(*) FILTER (WHERE NOT pg_terminate_backend(pid, $2)) AS remaining
FROM pg_catalog.pg_stat_activity
WHERE usename = $1 AND pid <> pg_backend_pid()`

// ServerVersionSQL reads the server's version ([LoginIssuer.CheckServer]).
const ServerVersionSQL = `SELECT current_setting('server_version_num')::int`

// createRoleRestricted is the first server_version_num (PostgreSQL 16) on
// which CREATEROLE no longer reaches every non-superuser role.
const createRoleRestricted = 160000

// CheckServer reads the server's version and, on PostgreSQL 15 and
// earlier, logs a warning (once per issuer): there the CREATEROLE the
// pool's role needs makes it a superuser of the cluster in effect. It may
// grant itself any role that is not a superuser, pg_execute_server_program
// (shell commands as the server's OS user) and pg_read_server_files
// included, and change the password of any such role, the control
// database's role on the same cluster too. From PostgreSQL 16 CREATEROLE
// only reaches the roles it created or holds ADMIN OPTION on. It does not
// refuse such a server; it reports only a failure to read the version.
// CreateLogin runs the same check before the issuer's first creation.
func (li *LoginIssuer) CheckServer(ctx context.Context) error {
	if err := li.checkServer(ctx, li.pool); err != nil {
		return li.classify(ctx, err, &broker.LoginSpec{}, "")
	}
	return nil
}

type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (li *LoginIssuer) checkServer(ctx context.Context, q rowQuerier) error {
	if li.serverChecked.Load() {
		return nil
	}
	var version int
	if err := q.QueryRow(ctx, ServerVersionSQL).Scan(&version); err != nil {
		return err
	}
	if li.serverChecked.Swap(true) || version >= createRoleRestricted {
		return nil
	}
	li.log.WarnContext(ctx, "postgres logins: on PostgreSQL 15 and earlier CREATEROLE makes the issuing role a superuser of the cluster in effect "+
		"(it can grant itself pg_execute_server_program or change other roles' passwords); keep the control database on another cluster, "+
		"prefer PostgreSQL 16 or later (docs/credentials.md)", "database", li.cfg.Name, "server_version_num", version)
	return nil
}

// CreateLogin implements [broker.SQLLoginIssuer].
func (li *LoginIssuer) CreateLogin(ctx context.Context, spec broker.LoginSpec) error {
	if err := li.check(&spec, opCreate); err != nil {
		return err
	}
	verifier, err := scramVerifier(spec.Password)
	if err != nil {
		return err
	}
	return li.inTx(ctx, &spec, verifier, func(tx pgx.Tx) error {
		if err := li.checkServer(ctx, tx); err != nil {
			return err
		}
		var found, privileged bool
		if err := tx.QueryRow(ctx, RoleCheckSQL, spec.Role).Scan(&found, &privileged); err != nil {
			return err
		}
		switch {
		case !found:
			return fmt.Errorf("%w: role %q does not exist in database %s", broker.ErrInvalid, spec.Role, li.cfg.Name)
		case privileged && !li.cfg.AllowPrivilegedRoles:
			return fmt.Errorf("%w: role %q is or belongs to a privileged role (an attribute such as CREATEROLE, a login, a predefined pg_ role, "+
				"a role of the broker's own, an owner of objects, or ADMIN OPTION on a role); sqlgate does not grant it (allowPrivilegedRoles)", broker.ErrInvalid, spec.Role)
		}
		return li.run(ctx, tx, li.creation, &spec, verifier)
	})
}

// RenewLogin implements [broker.SQLLoginIssuer].
func (li *LoginIssuer) RenewLogin(ctx context.Context, spec broker.LoginSpec) error {
	if err := li.check(&spec, opRenew); err != nil {
		return err
	}
	return li.inTx(ctx, &spec, "", func(tx pgx.Tx) error {
		return li.run(ctx, tx, li.renewal, &spec, "")
	})
}

// RevokeLogin implements [broker.SQLLoginIssuer]: Disable, end sessions,
// Drop; each statement in its own transaction, "does not exist" counting
// as done, stopping at the first failure so that the login is never
// reported gone while a session may remain. A failure of Drop wraps
// [broker.ErrLoginDisabled]: the login was disabled and its sessions ended.
func (li *LoginIssuer) RevokeLogin(ctx context.Context, spec broker.LoginSpec) error {
	if err := li.check(&spec, opRevoke); err != nil {
		return err
	}
	var privileged bool
	err := li.pool.QueryRow(ctx, LoginCheckSQL, spec.Username).Scan(&privileged)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// Gone already; still end sessions a previous attempt may have
		// left and run the drop statements (idempotent).
	case err != nil:
		return li.classify(ctx, err, &spec, "")
	case privileged:
		return fmt.Errorf("%w: refusing to revoke %s: it is a privileged role sqlgate would not have created", broker.ErrInvalid, spec.Username)
	}
	if err := li.runEach(ctx, li.disable, &spec); err != nil {
		return err
	}
	remaining, err := li.terminateSessions(ctx, &spec)
	if err != nil {
		return err
	}
	if remaining > 0 {
		return fmt.Errorf("%w: postgres database %s: %d session(s) of the login did not end", broker.ErrUnavailable, li.cfg.Name, remaining)
	}
	// The login can no longer sign in and has no session: a failure from
	// here on leaves a role that only an operator's cleanup may need.
	if err := li.runEach(ctx, li.drop, &spec); err != nil {
		return fmt.Errorf("%w: %w", broker.ErrLoginDisabled, err)
	}
	return nil
}

// terminateSessions ends the login's sessions with pg_signal_backend's
// privileges in effect ([SignalRoleSQL], [TerminateSessionsSQL]) and
// returns how many did not end in time. The role switch ends with the
// transaction, so the pooled connection is back to the pool's role.
func (li *LoginIssuer) terminateSessions(ctx context.Context, spec *broker.LoginSpec) (int64, error) {
	var remaining int64
	err := li.inTx(ctx, spec, "", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, SignalRoleSQL); err != nil {
			return err
		}
		return tx.QueryRow(ctx, TerminateSessionsSQL, spec.Username, li.cfg.TerminateTimeout.Milliseconds()).Scan(&remaining)
	})
	return remaining, err
}

// ClientDSN implements [broker.SQLLoginIssuer].
func (li *LoginIssuer) ClientDSN(username string) string {
	u := url.URL{Scheme: "postgres", User: url.User(username), Host: net.JoinHostPort(li.clientHost, strconv.Itoa(int(li.clientPort))), Path: "/" + li.clientDB, RawQuery: li.cfg.ClientParams}
	return u.String()
}

// check refuses a spec before anything reaches the server: a login name
// sqlgate did not generate, a role PostgreSQL would truncate or cannot
// hold, a role outside AllowedRoles.
//
// Revocation accepts a name of the generated shape with any prefix (see
// [broker.ValidIssuedLoginName]): leases issued before loginPrefix changed
// must still be revoked. The privileged-role guard of RevokeLogin applies
// all the same.
func (li *LoginIssuer) check(spec *broker.LoginSpec, op loginOp) error {
	if op == opRevoke && broker.ValidIssuedLoginName(spec.Username) {
		return nil
	}
	if !broker.ValidLoginName(li.cfg.LoginPrefix, spec.Username) {
		return fmt.Errorf("%w: login name is not one sqlgate generates (prefix %s)", broker.ErrInvalid, li.cfg.LoginPrefix)
	}
	if op == opCreate {
		if !validRole(spec.Role) {
			return fmt.Errorf("%w: role name must be 1 to 63 bytes without NUL", broker.ErrInvalid)
		}
		if li.allowed != nil && !li.allowed[spec.Role] {
			return fmt.Errorf("%w: role %q is not among the roles database %s grants", broker.ErrInvalid, spec.Role, li.cfg.Name)
		}
		if spec.Password == "" || spec.ExpiresAt.IsZero() {
			return fmt.Errorf("%w: a password and an expiry are required", broker.ErrInvalid)
		}
	}
	return nil
}

// loginOp is what [LoginIssuer.check] checks a spec for.
type loginOp int

const (
	opCreate loginOp = iota
	opRenew
	opRevoke
)

// validRole accepts what PostgreSQL stores as a role name unchanged:
// 1 to 63 bytes (longer names are silently truncated to another name),
// valid UTF-8 without NUL.
func validRole(r string) bool {
	return r != "" && len(r) <= 63 && !strings.ContainsRune(r, 0) && strings.ToValidUTF8(r, "") == r
}

func (li *LoginIssuer) inTx(ctx context.Context, spec *broker.LoginSpec, verifier string, fn func(pgx.Tx) error) error {
	tx, err := li.pool.Begin(ctx)
	if err != nil {
		return li.classify(ctx, err, spec, verifier)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // rollback after commit is a no-op
	if err := fn(tx); err != nil {
		return li.classify(ctx, err, spec, verifier)
	}
	if err := tx.Commit(ctx); err != nil {
		return li.classify(ctx, err, spec, verifier)
	}
	return nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// render has the server quote the values into the statements.
func (li *LoginIssuer) render(ctx context.Context, q querier, formats []string, spec *broker.LoginSpec, verifier string) ([]string, error) {
	var pw, exp any
	if verifier != "" {
		pw = verifier
	}
	if !spec.ExpiresAt.IsZero() {
		exp = spec.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z")
	}
	rows, err := q.Query(ctx, RenderSQL, formats, spec.Username, spec.Role, pw, exp)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (li *LoginIssuer) run(ctx context.Context, q querier, formats []string, spec *broker.LoginSpec, verifier string) error {
	stmts, err := li.render(ctx, q, formats, spec, verifier)
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := q.Exec(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// runEach runs each statement on its own (autocommit); a missing role is
// not an error.
func (li *LoginIssuer) runEach(ctx context.Context, formats []string, spec *broker.LoginSpec) error {
	stmts, err := li.render(ctx, li.pool, formats, spec, "")
	if err != nil {
		return li.classify(ctx, err, spec, "")
	}
	for _, s := range stmts {
		if _, err := li.pool.Exec(ctx, s); err != nil && !undefinedObject(err) {
			return li.classify(ctx, err, spec, "")
		}
	}
	return nil
}

func undefinedObject(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42704"
}

// classify maps a provisioning error like the executor does, with the
// password and verifier scrubbed from server messages.
func (li *LoginIssuer) classify(ctx context.Context, err error, spec *broker.LoginSpec, verifier string) error {
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, broker.ErrInvalid), errors.Is(err, broker.ErrUnavailable):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("%w: postgres database %s: %w", broker.ErrUnavailable, li.cfg.Name, ctx.Err())
	case errors.As(err, &pe):
		if unavailableState(pe.Code) {
			return fmt.Errorf("%w: postgres database %s: server error %s", broker.ErrUnavailable, li.cfg.Name, pe.Code)
		}
		msg := pe.Message
		for _, v := range []string{spec.Password, verifier} {
			msg = scrub.Redact(msg, v)
		}
		n, _ := strconv.Atoi(pe.Code)
		return &broker.DBError{Number: n, State: pe.Code, Message: scrub.Message(msg, nil)}
	case isConnError(err):
		return fmt.Errorf("%w: postgres database %s: %s", broker.ErrUnavailable, li.cfg.Name, connProblem(err))
	default:
		return fmt.Errorf("postgres database %s: login provisioning failed", li.cfg.Name)
	}
}

// scramVerifier computes the SCRAM-SHA-256 verifier PostgreSQL stores for a
// password (RFC 5802/7677, as pg_authid.rolpassword: 4096 iterations,
// 16-byte random salt). The password itself never leaves sqlgated.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("scram salt: %w", err)
	}
	const iterations = 4096
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("scram verifier: %w", err)
	}
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac(salted, "Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(stored[:]), b64(mac(salted, "Server Key"))), nil
}

var _ broker.SQLLoginIssuer = (*LoginIssuer)(nil)
