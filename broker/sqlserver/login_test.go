package sqlserver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
)

// recorder is a database/sql driver that records what the login issuer
// sends (batch text, named parameters, whether inside a transaction) and
// answers with scripted results. It stands in for SQL Server, which cannot
// run here; the live tests below run the same batches for real.
type recorder struct {
	mu    sync.Mutex
	calls []call
	// answer returns the result of a batch (nil, nil: no rows).
	answer func(query string, args map[string]any) (cols []string, row []driver.Value, err error)
}

type call struct {
	query string
	args  map[string]any
	inTx  bool
}

func (r *recorder) Connect(context.Context) (driver.Conn, error) { return &recConn{r: r}, nil }
func (r *recorder) Driver() driver.Driver                        { return nil }

func (r *recorder) record(query string, nv []driver.NamedValue, inTx bool) (map[string]any, error) {
	args := map[string]any{}
	for _, v := range nv {
		args[v.Name] = v.Value
	}
	r.mu.Lock()
	r.calls = append(r.calls, call{query: query, args: args, inTx: inTx})
	r.mu.Unlock()
	return args, nil
}

func (r *recorder) log() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

type recConn struct {
	r    *recorder
	inTx bool
}

func (c *recConn) Prepare(string) (driver.Stmt, error) {
	return nil, errors.New("prepare not supported")
}
func (c *recConn) Close() error { return nil }
func (c *recConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *recConn) BeginTx(context.Context, driver.TxOptions) (driver.Tx, error) {
	_, _ = c.r.record("BEGIN TRANSACTION", nil, false)
	c.inTx = true
	return &recTx{c: c}, nil
}
func (c *recConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (c *recConn) ExecContext(_ context.Context, query string, nv []driver.NamedValue) (driver.Result, error) {
	args, _ := c.r.record(query, nv, c.inTx)
	if c.r.answer != nil {
		if _, _, err := c.r.answer(query, args); err != nil {
			return nil, err
		}
	}
	return driver.RowsAffected(0), nil
}

func (c *recConn) QueryContext(_ context.Context, query string, nv []driver.NamedValue) (driver.Rows, error) {
	args, _ := c.r.record(query, nv, c.inTx)
	cols, row, err := c.r.answer(query, args)
	if err != nil {
		return nil, err
	}
	return &recRows{cols: cols, row: row}, nil
}

type recTx struct{ c *recConn }

func (t *recTx) Commit() error {
	_, _ = t.c.r.record("COMMIT", nil, false)
	t.c.inTx = false
	return nil
}

func (t *recTx) Rollback() error {
	_, _ = t.c.r.record("ROLLBACK", nil, false)
	t.c.inTx = false
	return nil
}

type recRows struct {
	cols []string
	row  []driver.Value
	done bool
}

func (r *recRows) Columns() []string { return r.cols }
func (r *recRows) Close() error      { return nil }
func (r *recRows) Next(dest []driver.Value) error {
	if r.done || r.row == nil {
		return io.EOF
	}
	copy(dest, r.row)
	r.done = true
	return nil
}

// healthy answers like a server where the role exists, the login is not
// privileged and no session remains.
func healthy(query string, _ map[string]any) ([]string, []driver.Value, error) {
	switch query {
	case RoleCheckBatch:
		return []string{"found", "fixed", "privileged"}, []driver.Value{true, false, false}, nil
	case LoginGuardBatch, ContainedGuardBatch:
		return []string{"privileged"}, []driver.Value{false}, nil
	case KillSessionsBatch, ContainedKillSessionsBatch:
		return []string{"remaining"}, []driver.Value{int64(0)}, nil
	case ContainedLockLeaseBatch:
		return []string{"locked"}, []driver.Value{true}, nil
	}
	return nil, nil, nil
}

func newRecorded(t *testing.T, cfg LoginConfig, answer func(string, map[string]any) ([]string, []driver.Value, error)) (*LoginIssuer, *recorder) {
	t.Helper()
	r := &recorder{answer: answer}
	db := sql.OpenDB(r)
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	if cfg.Name == "" {
		cfg.Name = "orders"
	}
	if cfg.ClientHost == "" {
		cfg.ClientHost = "db.example.com"
	}
	li, err := NewLoginIssuer(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return li, r
}

var testPrincipal = identity.Principal{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com"}

func testSpec(t *testing.T, role string) broker.LoginSpec {
	t.Helper()
	pw, err := broker.GeneratePassword()
	if err != nil {
		t.Fatal(err)
	}
	return broker.LoginSpec{
		LeaseID: "0190f0b8-0000-7000-8000-000000000001", Username: broker.LoginName("sg_", &testPrincipal),
		Password: pw, Role: role, ExpiresAt: time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC), Principal: testPrincipal.Display(),
	}
}

// shape summarizes calls as "TX:name" / "name" for comparison.
func shape(calls []call) []string {
	names := map[string]string{
		RoleCheckBatch: "role_check", LoginCreateBatch: "create", ContainedCreateBatch: "create_contained",
		LoginRenewBatch: "renew", ContainedRenewBatch: "renew_contained", LoginGuardBatch: "guard", ContainedGuardBatch: "guard_contained",
		LoginDisableBatch: "disable", ContainedDisableBatch: "disable_contained", KillSessionsBatch: "kill_sessions",
		ContainedKillSessionsBatch: "kill_sessions_contained", DropUsersBatch: "drop_users", DropLoginBatch: "drop_login",
		ContainedDropBatch: "drop_contained", ContainedLockLeaseBatch: "lock_lease_contained", "BEGIN TRANSACTION": "BEGIN", "COMMIT": "COMMIT", "ROLLBACK": "ROLLBACK",
	}
	var out []string
	for _, c := range calls {
		n, ok := names[c.query]
		if !ok {
			n = "custom:" + strings.Fields(c.query)[0]
		}
		if c.inTx {
			n = "tx:" + n
		}
		out = append(out, n)
	}
	return out
}

func TestLoginSequence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		contained bool
		create    string
		revoke    string
		renew     string
	}{
		{"server", false, "BEGIN tx:role_check tx:create COMMIT", "guard disable kill_sessions drop_users drop_login", "renew"},
		{
			"contained", true, "BEGIN tx:role_check tx:create_contained COMMIT",
			"guard_contained disable_contained kill_sessions_contained drop_contained", "renew_contained",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			li, r := newRecorded(t, LoginConfig{Contained: tc.contained}, healthy)
			ctx := t.Context()
			spec := testSpec(t, "reader")
			if err := li.CreateLogin(ctx, spec); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(shape(r.log()), " "); got != tc.create {
				t.Errorf("create sent %s, want %s", got, tc.create)
			}
			create := r.log()[2]
			if create.args["password"] != spec.Password || create.args["login"] != spec.Username || create.args["role"] != "reader" ||
				create.args["principal"] != "alice@example.com" || create.args["lease_id"] != spec.LeaseID {
				t.Errorf("create parameters = %v", keys(create.args))
			}
			if strings.Contains(create.query, spec.Username) || strings.Contains(create.query, spec.Password) {
				t.Error("a value is part of the batch text")
			}
			r.calls = nil
			renew := spec
			renew.Password = ""
			if err := li.RenewLogin(ctx, renew); err != nil {
				t.Fatal(err)
			}
			if err := li.RevokeLogin(ctx, renew); err != nil {
				t.Fatal(err)
			}
			calls := r.log()
			if got := strings.Join(shape(calls), " "); got != tc.renew+" "+tc.revoke {
				t.Errorf("renew+revoke sent %s, want %s %s", got, tc.renew, tc.revoke)
			}
			for _, c := range calls {
				if c.inTx {
					t.Errorf("%s ran inside a transaction (KILL cannot)", shape([]call{c})[0])
				}
				if _, ok := c.args["password"]; ok {
					t.Errorf("%s was sent the password", shape([]call{c})[0])
				}
			}
			disable := calls[2]
			if lock, _ := disable.args["lock_password"].(string); len(lock) != 32 || lock == spec.Password {
				t.Errorf("disable lock password = %q, want a fresh random password", lock)
			}
		})
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestLoginRefusals(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("role_missing", func(t *testing.T) {
		li, r := newRecorded(t, LoginConfig{}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			if q == RoleCheckBatch {
				return []string{"found", "fixed", "privileged"}, []driver.Value{false, false, false}, nil
			}
			return healthy(q, a)
		})
		if err := li.CreateLogin(ctx, testSpec(t, "nope")); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("CreateLogin = %v, want invalid", err)
		}
		if got := strings.Join(shape(r.log()), " "); got != "BEGIN tx:role_check ROLLBACK" {
			t.Errorf("sent %s", got)
		}
	})
	t.Run("role_privileged_by_membership", func(t *testing.T) {
		li, r := newRecorded(t, LoginConfig{}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			if q == RoleCheckBatch {
				return []string{"found", "fixed", "privileged"}, []driver.Value{true, false, true}, nil
			}
			return healthy(q, a)
		})
		if err := li.CreateLogin(ctx, testSpec(t, "ops")); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("CreateLogin = %v, want invalid", err)
		}
		if got := strings.Join(shape(r.log()), " "); got != "BEGIN tx:role_check ROLLBACK" {
			t.Errorf("sent %s", got)
		}
	})
	// A fixed database role only db_owner can add members to: refused as
	// the server reports it (whatever its name's case or collation), even
	// with allowPrivilegedRoles.
	t.Run("role_fixed_on_server", func(t *testing.T) {
		li, r := newRecorded(t, LoginConfig{AllowPrivilegedRoles: true}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			if q == RoleCheckBatch {
				return []string{"found", "fixed", "privileged"}, []driver.Value{true, true, false}, nil
			}
			return healthy(q, a)
		})
		err := li.CreateLogin(ctx, testSpec(t, "readers"))
		if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "fixed database role") {
			t.Errorf("CreateLogin = %v, want invalid: a fixed database role", err)
		}
		if got := strings.Join(shape(r.log()), " "); got != "BEGIN tx:role_check ROLLBACK" {
			t.Errorf("sent %s", got)
		}
	})
	t.Run("role_fixed_by_name", func(t *testing.T) {
		for _, role := range []string{"db_datareader", "DB_DataWriter", "public", "db_owner"} {
			li, r := newRecorded(t, LoginConfig{AllowPrivilegedRoles: true}, healthy)
			err := li.CreateLogin(ctx, testSpec(t, role))
			if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "user-defined roles only") || len(r.log()) != 0 {
				t.Errorf("CreateLogin(%s) = %v after %d batches, want refused before any as a fixed role", role, err, len(r.log()))
			}
		}
	})
	// ALTER ROLE ... ADD MEMBER without permission on the role: 15151,
	// explained.
	t.Run("role_membership_denied", func(t *testing.T) {
		li, _ := newRecorded(t, LoginConfig{}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			if q == LoginCreateBatch {
				return nil, nil, mssql.Error{Number: 15151, State: 1, Message: "Cannot alter the role 'reader', because it does not exist or you do not have permission."}
			}
			return healthy(q, a)
		})
		err := li.CreateLogin(ctx, testSpec(t, "reader"))
		var dbe *broker.DBError
		if !errors.As(err, &dbe) || dbe.Number != 15151 || !strings.Contains(dbe.Message, "ALTER ANY ROLE") || !strings.Contains(dbe.Message, "04-credential-issuance.sql") {
			t.Errorf("CreateLogin = %v, want DBError 15151 naming ALTER ANY ROLE and 04-credential-issuance.sql", err)
		}
	})
	// 15151 from anything but adding the member keeps the server's
	// message: a revocation without permission on the login or user, a
	// creation batch that alters the login.
	t.Run("no_permission_not_role_membership", func(t *testing.T) {
		spec := testSpec(t, "reader")
		for _, tc := range []struct {
			batch, msg string
			create     bool
		}{
			{LoginDisableBatch, "Cannot alter the login '" + spec.Username + "', because it does not exist or you do not have permission.", false},
			{DropUsersBatch, "Cannot drop the user '" + spec.Username + "', because it does not exist or you do not have permission.", false},
			{DropLoginBatch, "Cannot drop the login '" + spec.Username + "', because it does not exist or you do not have permission.", false},
			{LoginCreateBatch, "Cannot alter the login '" + spec.Username + "', because it does not exist or you do not have permission.", true},
		} {
			li, _ := newRecorded(t, LoginConfig{}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
				if q == tc.batch {
					return nil, nil, mssql.Error{Number: 15151, State: 1, Message: tc.msg}
				}
				return healthy(q, a)
			})
			var err error
			if tc.create {
				err = li.CreateLogin(ctx, spec)
			} else {
				err = li.RevokeLogin(ctx, spec)
			}
			var dbe *broker.DBError
			if !errors.As(err, &dbe) || dbe.Number != 15151 || strings.Contains(dbe.Message, "members") || !strings.Contains(dbe.Message, "because it does not exist or you do not have permission") {
				t.Errorf("15151 %q (create %v) = %v, want the server's DBError 15151, not the role-membership hint", tc.msg, tc.create, err)
			}
		}
	})
	t.Run("privileged_login_not_revoked", func(t *testing.T) {
		li, r := newRecorded(t, LoginConfig{}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			if q == LoginGuardBatch {
				return []string{"privileged"}, []driver.Value{true}, nil
			}
			return healthy(q, a)
		})
		if err := li.RevokeLogin(ctx, testSpec(t, "reader")); !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("RevokeLogin = %v, want invalid", err)
		}
		if got := strings.Join(shape(r.log()), " "); got != "guard" {
			t.Errorf("sent %s, want the guard only", got)
		}
	})
	t.Run("sessions_remain", func(t *testing.T) {
		li, r := newRecorded(t, LoginConfig{}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			if q == KillSessionsBatch {
				return []string{"remaining"}, []driver.Value{int64(2)}, nil
			}
			return healthy(q, a)
		})
		if err := li.RevokeLogin(ctx, testSpec(t, "reader")); !errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("RevokeLogin = %v, want unavailable (retried)", err)
		}
		if got := strings.Join(shape(r.log()), " "); got != "guard disable kill_sessions" {
			t.Errorf("sent %s: the login must not be dropped while sessions remain", got)
		}
	})
	t.Run("server_error_scrubbed", func(t *testing.T) {
		spec := testSpec(t, "reader")
		li, _ := newRecorded(t, LoginConfig{}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			if q == LoginCreateBatch {
				return nil, nil, mssql.Error{Number: 15118, State: 1, Message: "Password validation failed for '" + spec.Password + "'"}
			}
			return healthy(q, a)
		})
		err := li.CreateLogin(ctx, spec)
		var dbe *broker.DBError
		if !errors.As(err, &dbe) || dbe.Number != 15118 || strings.Contains(err.Error(), spec.Password) {
			t.Errorf("CreateLogin = %v, want a scrubbed DBError 15118", err)
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		li, _ := newRecorded(t, LoginConfig{}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			return nil, nil, mssql.Error{Number: 40613, Message: "Database 'orders' on server 'x' is not currently available."}
		})
		if err := li.RevokeLogin(ctx, testSpec(t, "reader")); !errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("RevokeLogin = %v, want unavailable", err)
		}
	})
}

// TestLoginInjectionTSQL tries names that would break out of T-SQL. Each
// is refused before any batch, or travels as a parameter only: the batch
// texts are the reviewed constants, and QUOTENAME (modelled by quoteName)
// turns the value into exactly one identifier.
func TestLoginInjectionTSQL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, role string
		refused    bool
	}{
		{"bracket_breakout", "reader]; DROP LOGIN [sa]; --", false},
		{"quote_breakout", "reader'; DROP LOGIN sa; --", false},
		{"semicolon", "reader;", false},
		{"unicode", "Grüße_роль", false},
		{"nested_brackets", "[[reader]]]", false},
		{"go_separator", "reader\nGO\nDROP LOGIN sa", true},
		{"nul", "reader\x00", true},
		{"too_long_for_quotename", strings.Repeat("r", 129), true},
		{"empty", "", true},
		{"db_owner", "db_owner", true},
		{"db_owner_case", "DB_Owner", true},
		{"db_securityadmin", "db_securityadmin", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			li, r := newRecorded(t, LoginConfig{}, healthy)
			spec := testSpec(t, tc.role)
			err := li.CreateLogin(t.Context(), spec)
			if tc.refused {
				if !errors.Is(err, broker.ErrInvalid) || len(r.log()) != 0 {
					t.Fatalf("CreateLogin(%q) = %v after %d batches, want refused before any", tc.role, err, len(r.log()))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range r.log() {
				if strings.Contains(c.query, tc.role) {
					t.Errorf("the role is part of a batch's text")
				}
			}
			// What the server builds: ALTER ROLE <one identifier> ADD MEMBER <one identifier>.
			stmt := "ALTER ROLE " + quoteName(tc.role) + " ADD MEMBER " + quoteName(spec.Username) + ";"
			rest, ok := strings.CutPrefix(stmt, "ALTER ROLE ")
			id, rest, ok2 := cutIdentifier(rest)
			if !ok || !ok2 || id != tc.role || !strings.HasPrefix(rest, " ADD MEMBER [") {
				t.Errorf("dynamic statement %q does not hold the role as one identifier", stmt)
			}
		})
	}
	// Login names sqlgate did not generate are refused before any batch.
	for _, name := range []string{"sa", "sg_admin", "sg_x]; DROP LOGIN sa; --_abcdefghij", "SG_X_ABCDEFGHIJ", "sg_x_abcdefghij" + strings.Repeat("x", 60)} {
		li, r := newRecorded(t, LoginConfig{}, healthy)
		if err := li.RevokeLogin(t.Context(), broker.LoginSpec{Username: name}); !errors.Is(err, broker.ErrInvalid) || len(r.log()) != 0 {
			t.Errorf("RevokeLogin(%q) = %v after %d batches, want refused before any", name, err, len(r.log()))
		}
	}
}

// cutIdentifier reads one bracket-quoted identifier ("]]" is an escaped
// "]") and returns its value and the rest.
func cutIdentifier(s string) (id, rest string, ok bool) {
	if !strings.HasPrefix(s, "[") {
		return "", s, false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != ']' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == ']' {
			b.WriteByte(']')
			i++
			continue
		}
		return b.String(), s[i+1:], true
	}
	return "", s, false
}

func TestLoginConfigValidate(t *testing.T) {
	t.Parallel()
	c := LoginConfig{
		Creation: []string{"CREATE LOGIN [{{name}}] WITH PASSWORD = '{{password}}'"},
		Renewal:  []string{"ALTER LOGIN x WITH PASSWORD = @Password"},
		Drop:     []string{"  ", "SELECT @lock_password"}, AllowedRoles: []string{"ok", "bad\x01", "db_datareader"}, ClientPort: -1, ClientParams: "%zz",
	}
	err := c.Validate()
	for _, want := range []string{
		"name is required", "creation[0]: use the parameters", "renewal[0]: @password", "drop[0]: empty", "drop[1]: @lock_password",
		"allowedRoles", `allowedRoles: "db_datareader" is a fixed database role`, "clientHost is required", "clientPort", "clientParams",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want a problem mentioning %q", err, want)
		}
	}
	ok := LoginConfig{Name: "orders", ClientHost: "db.example.com", Creation: []string{"EXEC dbo.make_login @login, @password, @role;"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(custom creation) = %v", err)
	}
}

func TestLoginCustomTemplates(t *testing.T) {
	t.Parallel()
	custom := `EXEC dbo.sqlgate_record_expiry @login = @login, @expires_at = @expires_at;`
	li, r := newRecorded(t, LoginConfig{Renewal: []string{LoginRenewBatch, custom}}, healthy)
	spec := testSpec(t, "reader")
	spec.Password = ""
	if err := li.RenewLogin(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	calls := r.log()
	if got := strings.Join(shape(calls), " "); got != "renew custom:EXEC" {
		t.Fatalf("sent %s", got)
	}
	if exp, _ := calls[1].args["expires_at"].(time.Time); !exp.Equal(spec.ExpiresAt) {
		t.Errorf("@expires_at = %v, want %s", calls[1].args["expires_at"], spec.ExpiresAt)
	}
}

func TestLoginClientDSN(t *testing.T) {
	t.Parallel()
	li, _ := newRecorded(t, LoginConfig{ClientHost: "db.example.com", ClientPort: 1433, ClientDatabase: "orders", ClientParams: "encrypt=strict"}, healthy)
	if got, want := li.ClientDSN("sg_alice_abcdefghij"), "sqlserver://sg_alice_abcdefghij@db.example.com:1433?database=orders&encrypt=strict"; got != want {
		t.Errorf("ClientDSN = %q, want %q", got, want)
	}
	// Without encrypt, a client would send the issued password in clear
	// text to a server that does not offer TLS: the string says encrypt.
	li, _ = newRecorded(t, LoginConfig{ClientHost: "db.example.com", ClientParams: "hostNameInCertificate=sql1.example.com"}, healthy)
	if got, want := li.ClientDSN("sg_alice_abcdefghij"), "sqlserver://sg_alice_abcdefghij@db.example.com?encrypt=true&hostNameInCertificate=sql1.example.com"; got != want {
		t.Errorf("ClientDSN without encrypt = %q, want %q", got, want)
	}
	li, _ = newRecorded(t, LoginConfig{ClientHost: "db.example.com", ClientParams: "Encrypt=strict&certificate=/etc/ssl/private-ca.pem"}, healthy)
	if got, want := li.ClientDSN("u"), "sqlserver://u@db.example.com?Encrypt=strict&certificate=%2Fetc%2Fssl%2Fprivate-ca.pem"; got != want {
		t.Errorf("ClientDSN with Encrypt = %q, want %q", got, want)
	}
	for _, params := range []string{"encrypt=disable", "encrypt=false", "encrypt=true&TrustServerCertificate=true", "trustservercertificate=yes"} {
		c := LoginConfig{Name: "orders", ClientHost: "db.example.com", ClientParams: params}
		err := c.Validate()
		if !errors.Is(err, ErrInsecureTransport) || !strings.Contains(err.Error(), "clientParams") {
			t.Errorf("Validate(clientParams %s) = %v, want clientParams refused as insecure", params, err)
		}
		c.AllowInsecureTransport = true
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(clientParams %s, allowInsecureTransport) = %v", params, err)
		}
	}
}

// TestGoldenLoginBatches shows every batch of short-lived logins with its
// parameters, for DBA review.
func TestGoldenLoginBatches(t *testing.T) {
	spec := broker.LoginSpec{LeaseID: "l", Username: "u", Role: "r", ExpiresAt: time.Unix(0, 0), Principal: "p"}
	all := loginArgs(&spec, sql.Named("password", ""))
	lock := loginArgs(&spec, sql.Named("lock_password", ""))
	base := loginArgs(&spec)
	login := []any{sql.Named("login", "")}
	role := []any{sql.Named("role", "")}
	batches := []struct {
		name, text string
		args       []any
		what       string
	}{
		{"create", LoginCreateBatch, all, "CreateLogin, server mode: in one transaction after role_check. Needs ALTER ANY LOGIN (master), ALTER ANY USER, ALTER ANY ROLE."},
		{"create_contained", ContainedCreateBatch, all, "CreateLogin, contained mode (Azure SQL Database): in one transaction after role_check. Needs ALTER ANY USER, ALTER ANY ROLE."},
		{"role_check", RoleCheckBatch, role, "CreateLogin, first batch of the transaction: fails (50104) unless the broker has VIEW DEFINITION on the database; the role exists, is not a fixed role, and is privileged (fails closed) when it or a role it belongs to is db_owner, db_securityadmin, db_accessadmin, db_ddladmin, db_backupoperator or a role of the broker's own user (sqlgate_executor), holds (itself or through public) a permission outside the data-access allowlist or any WITH GRANT OPTION (DENY rows do not count), or owns a schema, an object, a role, an assembly, a certificate or an asymmetric key."},
		{"renew", LoginRenewBatch, base, "RenewLogin, server mode: SQL Server has no login expiry; the login must still exist and be enabled."},
		{"renew_contained", ContainedRenewBatch, base, "RenewLogin, contained mode."},
		{"guard", LoginGuardBatch, login, "RevokeLogin step 0, server mode: refuse a sysadmin or database owner."},
		{"guard_contained", ContainedGuardBatch, login, "RevokeLogin step 0, contained mode: refuse a db_owner member; fails (50104) unless the broker has VIEW DEFINITION on the database."},
		{"disable", LoginDisableBatch, lock, "RevokeLogin step 1, server mode: no new sessions. Outside any transaction."},
		{"disable_contained", ContainedDisableBatch, lock, "RevokeLogin step 1, contained mode: a password nobody knows. Outside any transaction."},
		{"lock_lease_contained", ContainedLockLeaseBatch, lock, "RevokeLogin step 1, contained mode, when guard_contained stopped with 50104 (no VIEW DEFINITION): a password nobody knows, only for the user whose extended property sqlgate.lease_id is this lease's; then kill_sessions_contained, and no DROP USER until the grant. Outside any transaction."},
		{"kill_sessions", KillSessionsBatch, login, "RevokeLogin step 2, server mode: end every session (KILL cannot run in a transaction; this batch never does). Needs VIEW SERVER STATE and ALTER ANY CONNECTION. Waits up to 2 s for the killed sessions to go; remaining > 0 fails the attempt (retried)."},
		{"kill_sessions_contained", ContainedKillSessionsBatch, login, "RevokeLogin step 2, contained mode. Azure SQL Database: VIEW DATABASE STATE and KILL DATABASE CONNECTION; a contained database on SQL Server or Managed Instance: VIEW SERVER STATE and ALTER ANY CONNECTION (server)."},
		{"drop_users", DropUsersBatch, base, "RevokeLogin step 3a, server mode: drop the login's users in this database."},
		{"drop_login", DropLoginBatch, base, "RevokeLogin step 3b, server mode: drop the login (15434 while a session remains: retried)."},
		{"drop_contained", ContainedDropBatch, base, "RevokeLogin step 3, contained mode: drop the user."},
	}
	for _, b := range batches {
		t.Run(b.name, func(t *testing.T) {
			out := "-- " + b.what + "\n-- parameters (sp_executesql; strings are nvarchar of the value's length):\n" + describeLoginArgs(b.args)
			golden(t, "login_"+b.name, out+b.text+"\n")
		})
	}
}

func describeLoginArgs(args []any) string {
	var b strings.Builder
	for _, a := range args {
		nv := a.(sql.NamedArg)
		decl := declOf(nv.Value)
		if _, ok := nv.Value.(string); ok {
			decl = "nvarchar(n)"
		}
		fmt.Fprintf(&b, "--   @%s %s\n", nv.Name, decl)
	}
	return b.String()
}

// roleCheckPermissionRule reads the permission clause of RoleCheckBatch
// and returns it as a function: does a row of sys.database_permissions
// with this permission name and state make the role privileged?
func roleCheckPermissionRule(t *testing.T) func(name, state string) bool {
	t.Helper()
	m := regexp.MustCompile(`p\.state IN \(([^)]*)\)\s+AND \(p\.state = 'W' OR p\.permission_name NOT IN \(([^)]*)\)\)`).FindStringSubmatch(RoleCheckBatch)
	if m == nil {
		t.Fatal("RoleCheckBatch has no allowlist clause: p.state IN (...) AND (p.state = 'W' OR p.permission_name NOT IN (...))")
	}
	states, allowed := map[string]bool{}, map[string]bool{}
	for _, s := range regexp.MustCompile(`'([A-Z])'`).FindAllStringSubmatch(m[1], -1) {
		states[s[1]] = true
	}
	for _, p := range regexp.MustCompile(`N'([A-Z ]+)'`).FindAllStringSubmatch(m[2], -1) {
		allowed[p[1]] = true
	}
	return func(name, state string) bool {
		return states[state] && (state == "W" || !allowed[name])
	}
}

// TestRoleCheckFailsClosed: a role is privileged when it holds any
// permission that is not on the data-access allowlist, whatever its name
// (the permissions a name list missed: ALTER ANY DATABASE DDL TRIGGER,
// whose trigger runs as the broker on its next CREATE USER; every ALTER
// ANY of an ownable securable, which implies creating one; BACKUP DATABASE
// and BACKUP LOG), or any permission WITH GRANT OPTION; a DENY is no grant.
// db_backupoperator counts like db_owner. The live check is
// TestLiveLoginFailsClosed.
func TestRoleCheckFailsClosed(t *testing.T) {
	t.Parallel()
	privileged := roleCheckPermissionRule(t)
	for _, p := range append([]string{
		"ALTER ANY DATABASE DDL TRIGGER", "ALTER ANY ASSEMBLY", "ALTER ANY CERTIFICATE", "ALTER ANY ASYMMETRIC KEY",
		"ALTER ANY SYMMETRIC KEY", "ALTER ANY FULLTEXT CATALOG", "ALTER ANY CONTRACT", "ALTER ANY MESSAGE TYPE",
		"ALTER ANY REMOTE SERVICE BINDING", "ALTER ANY ROUTE", "ALTER ANY SERVICE", "ALTER ANY DATASPACE",
		"ALTER ANY DATABASE AUDIT", "ALTER ANY DATABASE EVENT NOTIFICATION", "ALTER ANY MASK",
		"BACKUP DATABASE", "BACKUP LOG", "CONTROL", "ALTER", "IMPERSONATE", "TAKE OWNERSHIP",
		"ALTER ANY USER", "ALTER ANY ROLE", "ALTER ANY APPLICATION ROLE", "ALTER ANY SCHEMA",
		"CREATE TABLE", "CREATE PROCEDURE", "AUTHENTICATE", "CHECKPOINT", "KILL DATABASE CONNECTION",
		"VIEW DATABASE STATE", "EXECUTE ANY EXTERNAL SCRIPT", "SOME PERMISSION OF A LATER VERSION",
	}, OwnershipPermissions...) {
		if !privileged(p, "G") {
			t.Errorf("RoleCheckBatch does not count a role granted %s as privileged", p)
		}
		if privileged(p, "D") {
			t.Errorf("RoleCheckBatch counts DENY %s as privileged: a deny grants nothing", p)
		}
	}
	for _, p := range DataAccessPermissions {
		if privileged(p, "G") {
			t.Errorf("RoleCheckBatch counts a role granted %s as privileged", p)
		}
		if !privileged(p, "W") {
			t.Errorf("RoleCheckBatch does not count %s WITH GRANT OPTION as privileged (what the user grants outlives the lease)", p)
		}
	}
	allowlist := regexp.MustCompile(`p\.permission_name NOT IN \(([^)]*)\)`).FindStringSubmatch(RoleCheckBatch)
	if n := len(regexp.MustCompile(`N'[A-Z ]+'`).FindAllString(allowlist[1], -1)); n != len(DataAccessPermissions) {
		t.Errorf("the batch's allowlist has %d permissions, DataAccessPermissions %d", n, len(DataAccessPermissions))
	}
	if strings.Contains(RoleCheckBatch, "p.class") {
		t.Error("RoleCheckBatch limits a permission to some classes")
	}
	fixed := regexp.MustCompile(`WHERE r\.name IN \(([^)]*)\)`).FindStringSubmatch(RoleCheckBatch)
	for _, r := range []string{"db_owner", "db_securityadmin", "db_accessadmin", "db_ddladmin", "db_backupoperator"} {
		if fixed == nil || !strings.Contains(fixed[1], "N'"+r+"'") {
			t.Errorf("RoleCheckBatch does not count a role nested in %s as privileged", r)
		}
	}
}

// TestRoleCheckRefusesBrokerRoles: a role the broker's own user belongs
// to (sqlgate_executor), or one nested in it, is privileged: the issued
// user would pass every check that trusts the broker's sessions (the
// SESSION_CONTEXT guards of docs/sqlserver.md) and could rewrite stored
// idempotency results. The check runs on every role of the chain, as the
// broker (IS_ROLEMEMBER without a member), and names sqlgate_executor
// too. The live check is TestLiveLoginFailsClosed.
func TestRoleCheckRefusesBrokerRoles(t *testing.T) {
	t.Parallel()
	if !strings.Contains(RoleCheckBatch, "OR (r.is_fixed_role = 0 AND r.principal_id <> 0 AND (r.name = N'sqlgate_executor' OR IS_ROLEMEMBER(r.name) = 1))") {
		t.Error("RoleCheckBatch does not count a role of the broker's own user (IS_ROLEMEMBER(r.name) = 1, sqlgate_executor) as privileged")
	}
	// r ranges over the whole chain (the role and every role it belongs to).
	if !strings.Contains(RoleCheckBatch, "FROM up JOIN sys.database_principals AS r ON r.principal_id = up.principal_id") {
		t.Error("RoleCheckBatch does not check every role of the membership chain")
	}
}

// TestRoleCheckRefusesOwnership: no permission that makes the issued user
// the owner of what it creates (a schema: DROP USER then fails with 15138
// and the lease stays revoking) is on the allowlist, so a role holding one
// is privileged. The live check is TestLiveLoginOwnershipRefused.
func TestRoleCheckRefusesOwnership(t *testing.T) {
	t.Parallel()
	privileged := roleCheckPermissionRule(t)
	for _, perm := range append([]string{"CREATE SCHEMA"}, OwnershipPermissions...) {
		if !privileged(perm, "G") || slices.Contains(DataAccessPermissions, perm) {
			t.Errorf("RoleCheckBatch does not refuse a role holding %s", perm)
		}
	}
}

// TestLoginDocs keeps docs/credentials.md true to the code: it must show
// every batch verbatim.
func TestLoginDocs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "credentials.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]string{
		"LoginCreateBatch": LoginCreateBatch, "ContainedCreateBatch": ContainedCreateBatch, "RoleCheckBatch": RoleCheckBatch,
		"LoginRenewBatch": LoginRenewBatch, "ContainedRenewBatch": ContainedRenewBatch, "LoginGuardBatch": LoginGuardBatch,
		"ContainedGuardBatch": ContainedGuardBatch, "LoginDisableBatch": LoginDisableBatch, "ContainedDisableBatch": ContainedDisableBatch,
		"KillSessionsBatch": KillSessionsBatch, "ContainedKillSessionsBatch": ContainedKillSessionsBatch,
		"DropUsersBatch": DropUsersBatch, "DropLoginBatch": DropLoginBatch, "ContainedDropBatch": ContainedDropBatch,
		"ContainedLockLeaseBatch": ContainedLockLeaseBatch,
	} {
		if !strings.Contains(string(doc), b) {
			t.Errorf("docs/credentials.md does not show %s as the code sends it", name)
		}
	}
}

// TestRevokeAfterPrefixChange: a lease issued before loginPrefix changed is
// still revoked (guard, disable, sessions, drop), while creating a login
// keeps to the current prefix; a drop that fails after the login was
// disabled and its sessions ended says so (broker.ErrLoginDisabled).
func TestRevokeAfterPrefixChange(t *testing.T) {
	t.Parallel()
	li, r := newRecorded(t, LoginConfig{LoginPrefix: "tmp_"}, healthy)
	old := testSpec(t, "reader") // issued as sg_…
	old.Password = ""
	if err := li.RevokeLogin(t.Context(), old); err != nil {
		t.Fatalf("RevokeLogin of a login of the previous prefix: %v", err)
	}
	if got := strings.Join(shape(r.log()), " "); got != "guard disable kill_sessions drop_users drop_login" {
		t.Errorf("revoke sent %s", got)
	}
	if err := li.CreateLogin(t.Context(), testSpec(t, "reader")); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("CreateLogin with the previous prefix = %v, want invalid", err)
	}
	if err := li.RevokeLogin(t.Context(), broker.LoginSpec{Username: "sa"}); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("RevokeLogin of sa = %v, want invalid before anything is sent", err)
	}

	failing, _ := newRecorded(t, LoginConfig{}, func(q string, args map[string]any) ([]string, []driver.Value, error) {
		if q == DropLoginBatch {
			return nil, nil, errors.New("the login owns objects")
		}
		return healthy(q, args)
	})
	if err := failing.RevokeLogin(t.Context(), old); !errors.Is(err, broker.ErrLoginDisabled) {
		t.Errorf("RevokeLogin whose drop fails = %v, want ErrLoginDisabled", err)
	}
}

// TestLoginViewDefinitionMissing: when the broker's login may not see the
// database's security metadata, the role check and the contained-mode
// guard stop (THROW 50104, before any catalog view is read) and the error
// names the grant: no login is created, and no contained user is called
// privileged.
func TestLoginViewDefinitionMissing(t *testing.T) {
	t.Parallel()
	for name, batch := range map[string]string{"RoleCheckBatch": RoleCheckBatch, "ContainedGuardBatch": ContainedGuardBatch} {
		check, rest, ok := strings.Cut(batch, "THROW 50104")
		if !ok || !strings.Contains(check, "HAS_PERMS_BY_NAME(DB_NAME(), N'DATABASE', N'VIEW DEFINITION')") {
			t.Errorf("%s does not check VIEW DEFINITION on the database before THROW 50104", name)
		}
		if strings.Contains(check, "sys.database_") || strings.Contains(check, "IS_ROLEMEMBER") || !strings.Contains(rest, "sys.database_principals") {
			t.Errorf("%s reads the catalog before checking VIEW DEFINITION", name)
		}
	}
	missing := mssql.Error{Number: 50104, State: 1, Message: "sqlgate: VIEW DEFINITION on the database is required to see role memberships, permissions and owners"}
	ctx := t.Context()
	t.Run("create", func(t *testing.T) {
		li, r := newRecorded(t, LoginConfig{}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			if q == RoleCheckBatch {
				return nil, nil, missing
			}
			return healthy(q, a)
		})
		err := li.CreateLogin(ctx, testSpec(t, "ops"))
		var dbe *broker.DBError
		if !errors.Is(err, ErrViewDefinition) || !errors.As(err, &dbe) || dbe.Number != 50104 ||
			!strings.Contains(dbe.Message, "VIEW DEFINITION") || !strings.Contains(dbe.Message, "04-credential-issuance.sql") || !strings.Contains(dbe.Message, "orders") {
			t.Errorf("CreateLogin = %v, want ErrViewDefinition with DBError 50104 naming the grant, the script and the database", err)
		}
		if got := strings.Join(shape(r.log()), " "); got != "BEGIN tx:role_check ROLLBACK" {
			t.Errorf("sent %s, want the role check only", got)
		}
	})
	// Contained mode: the guard cannot tell a db_owner member, but the
	// user sqlgate created for this lease (its name and its
	// sqlgate.lease_id) is still locked and its sessions ended, so the
	// expired user stops working; DROP USER waits for the grant, and the
	// lease stays revoking with the 50104 error (access ended).
	t.Run("revoke_contained", func(t *testing.T) {
		li, r := newRecorded(t, LoginConfig{Contained: true}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			if q == ContainedGuardBatch {
				return nil, nil, missing
			}
			return healthy(q, a)
		})
		spec := testSpec(t, "ops")
		spec.Password = ""
		err := li.RevokeLogin(ctx, spec)
		if !errors.Is(err, ErrViewDefinition) || !errors.Is(err, broker.ErrLoginDisabled) || errors.Is(err, broker.ErrInvalid) || strings.Contains(err.Error(), "privileged") {
			t.Errorf("RevokeLogin = %v, want ErrViewDefinition with ErrLoginDisabled (not a refusal as privileged)", err)
		}
		var dbe *broker.DBError
		if !errors.As(err, &dbe) || dbe.Number != 50104 {
			t.Errorf("RevokeLogin = %v, want the DBError 50104 recorded on the lease", err)
		}
		calls := r.log()
		if got := strings.Join(shape(calls), " "); got != "guard_contained lock_lease_contained kill_sessions_contained" {
			t.Fatalf("sent %s, want the guard, the lease's lock and the session step, no DROP USER", got)
		}
		lock := calls[1]
		if lock.args["login"] != spec.Username || lock.args["lease_id"] != spec.LeaseID {
			t.Errorf("lock parameters login=%v lease_id=%v, want the lease's user and id", lock.args["login"], lock.args["lease_id"])
		}
		if pw, _ := lock.args["lock_password"].(string); len(pw) != 32 {
			t.Errorf("lock password = %q, want a fresh random password", pw)
		}
		if _, ok := lock.args["password"]; ok {
			t.Error("the lock step was sent the password")
		}
	})
	// No user with this lease's id is visible (gone, or not sqlgate's):
	// nothing is locked, no session is ended, and access has not been
	// reported ended.
	t.Run("revoke_contained_not_the_lease", func(t *testing.T) {
		li, r := newRecorded(t, LoginConfig{Contained: true}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			switch q {
			case ContainedGuardBatch:
				return nil, nil, missing
			case ContainedLockLeaseBatch:
				return []string{"locked"}, []driver.Value{false}, nil
			}
			return healthy(q, a)
		})
		err := li.RevokeLogin(ctx, testSpec(t, "ops"))
		if !errors.Is(err, ErrViewDefinition) || errors.Is(err, broker.ErrLoginDisabled) {
			t.Errorf("RevokeLogin = %v, want ErrViewDefinition without ErrLoginDisabled", err)
		}
		if got := strings.Join(shape(r.log()), " "); got != "guard_contained lock_lease_contained" {
			t.Errorf("sent %s, want the guard and the lease's lock only", got)
		}
	})
	// A session that does not end: the error says so, and access is not
	// reported ended.
	t.Run("revoke_contained_sessions_remain", func(t *testing.T) {
		li, _ := newRecorded(t, LoginConfig{Contained: true}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			switch q {
			case ContainedGuardBatch:
				return nil, nil, missing
			case ContainedKillSessionsBatch:
				return []string{"remaining"}, []driver.Value{int64(1)}, nil
			}
			return healthy(q, a)
		})
		err := li.RevokeLogin(ctx, testSpec(t, "ops"))
		if !errors.Is(err, ErrViewDefinition) || !errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrLoginDisabled) {
			t.Errorf("RevokeLogin = %v, want ErrViewDefinition and ErrUnavailable without ErrLoginDisabled", err)
		}
	})
	// Server mode has no such fallback: its guard needs no VIEW
	// DEFINITION, so a 50104 there is passed on as it is.
	t.Run("revoke_server_no_fallback", func(t *testing.T) {
		li, r := newRecorded(t, LoginConfig{}, func(q string, a map[string]any) ([]string, []driver.Value, error) {
			if q == LoginGuardBatch {
				return nil, nil, missing
			}
			return healthy(q, a)
		})
		if err := li.RevokeLogin(ctx, testSpec(t, "ops")); !errors.Is(err, ErrViewDefinition) || errors.Is(err, broker.ErrLoginDisabled) {
			t.Errorf("RevokeLogin = %v, want ErrViewDefinition", err)
		}
		if got := strings.Join(shape(r.log()), " "); got != "guard" {
			t.Errorf("sent %s, want the guard only", got)
		}
	})
}

// TestContainedLockLeaseBatch: the lock step without VIEW DEFINITION
// touches only the user sqlgate created for the lease (its name, a
// contained user with a password, and the extended property
// sqlgate.lease_id = @lease_id written at creation), checks its lengths
// before QUOTENAME (NULL would silently run nothing and report a lock),
// reads no role membership (which it could not see), and says whether it
// locked.
func TestContainedLockLeaseBatch(t *testing.T) {
	t.Parallel()
	cond, body, ok := strings.Cut(ContainedLockLeaseBatch, "BEGIN")
	if !ok {
		t.Fatal("ContainedLockLeaseBatch has no conditional block")
	}
	for _, want := range []string{
		"x.name = N'sqlgate.lease_id' AND CAST(x.value AS nvarchar(256)) = @lease_id", "u.name = @login",
		"u.authentication_type = 2", "x.class = 4 AND x.major_id = u.principal_id", "@lease_id IS NOT NULL",
		"@lock_password IS NULL OR DATALENGTH(@lock_password) > 256",
	} {
		if !strings.Contains(cond, want) {
			t.Errorf("ContainedLockLeaseBatch checks no %q before it locks", want)
		}
	}
	if !strings.Contains(body, "N'ALTER USER ' + QUOTENAME(@login) + N' WITH PASSWORD = ' + QUOTENAME(@lock_password, N'''')") ||
		!strings.Contains(body, "SET @locked = 1;") || !strings.HasSuffix(ContainedLockLeaseBatch, "SELECT @locked AS locked;") {
		t.Error("ContainedLockLeaseBatch does not lock the user with @lock_password and report it")
	}
	for _, no := range []string{"IS_ROLEMEMBER", "sys.database_role_members", "DROP USER", "@password"} {
		if strings.Contains(ContainedLockLeaseBatch, no) {
			t.Errorf("ContainedLockLeaseBatch uses %s", no)
		}
	}
}

// TestRoleCheckRefusesAlterAndOwnership: ALTER on any securable counts as
// privileged (ALTER on a dbo-owned procedure rewrites it, and ownership
// chaining then reaches every dbo table), and so does a role in the
// membership chain that owns a schema, an object, a role, an assembly, a
// certificate or an asymmetric key (its members hold CONTROL of it, with
// no row in sys.database_permissions), except the empty schema each fixed
// role owns. The live check is TestLiveLoginAlterAndOwnershipRefused.
func TestRoleCheckRefusesAlterAndOwnership(t *testing.T) {
	t.Parallel()
	privileged := roleCheckPermissionRule(t)
	if !privileged("ALTER", "G") || !privileged("CONTROL", "G") || strings.Contains(RoleCheckBatch, "p.class") {
		t.Error("RoleCheckBatch does not refuse ALTER and CONTROL on every class")
	}
	for _, view := range OwnedSecurables {
		col := "principal_id"
		if view == "sys.database_principals" {
			col = "owning_principal_id"
		}
		if !strings.Contains(RoleCheckBatch, "OR EXISTS (SELECT 1 FROM "+view+" AS o WHERE o."+col+" = up.principal_id") {
			t.Errorf("RoleCheckBatch does not refuse a role that owns something in %s", view)
		}
	}
	if !strings.Contains(RoleCheckBatch, "NOT (r.is_fixed_role = 1 AND o.name = r.name)") {
		t.Error("RoleCheckBatch refuses every role nested in db_datareader (db_datareader owns the schema db_datareader)")
	}
}

// TestContainedKillSessionsFindsMovedUsers: the contained session step
// finds a user's sessions by the database that authenticated them
// (authenticating_database_id), not only by the database they are in: a
// contained user that ran USE tempdb has database_id = tempdb's, and DROP
// USER would otherwise run with its session alive. Both the sessions it
// kills and the ones it counts as remaining are found so.
func TestContainedKillSessionsFindsMovedUsers(t *testing.T) {
	t.Parallel()
	filter := regexp.MustCompile(`FROM sys\.dm_exec_sessions WHERE \(login_name = @login OR original_login_name = @login\)\s+AND ([^\n]*?) AND session_id <> @@SPID;`)
	found := filter.FindAllStringSubmatch(ContainedKillSessionsBatch, -1)
	if len(found) != 2 {
		t.Fatalf("ContainedKillSessionsBatch: %d session filters, want 2 (the cursor and the count)", len(found))
	}
	for _, f := range found {
		if f[1] != "(authenticating_database_id = DB_ID() OR database_id = DB_ID())" {
			t.Errorf("ContainedKillSessionsBatch filters sessions by %s, want authenticating_database_id = DB_ID() OR database_id = DB_ID()", f[1])
		}
	}
}
