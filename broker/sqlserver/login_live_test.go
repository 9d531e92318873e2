package sqlserver

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
)

// liveLogins prepares the live test database for credential tests: role
// sg_reader with SELECT on dbo.granted and not on dbo.secret. The test
// login needs to create logins (sysadmin or securityadmin + the grants of
// deploy/sqlserver/04-credential-issuance.sql).
func liveLogins(t *testing.T, cfg LoginConfig) (*Executor, *LoginIssuer) {
	t.Helper()
	e := openLive(t)
	for _, b := range []string{
		`IF DATABASE_PRINCIPAL_ID(N'sg_reader') IS NULL CREATE ROLE sg_reader;`,
		`IF OBJECT_ID(N'dbo.granted') IS NULL BEGIN CREATE TABLE dbo.granted (id int PRIMARY KEY, note nvarchar(20)); INSERT dbo.granted VALUES (1, N'visible'); END;`,
		`IF OBJECT_ID(N'dbo.secret') IS NULL BEGIN CREATE TABLE dbo.secret (id int PRIMARY KEY, note nvarchar(20)); INSERT dbo.secret VALUES (1, N'hidden'); END;`,
		`GRANT SELECT ON dbo.granted TO sg_reader;`,
	} {
		if _, err := e.DB().ExecContext(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Name, cfg.ClientHost = "test", "localhost"
	li, err := NewLoginIssuer(e.DB(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, li
}

func liveSpec(t *testing.T, role string) broker.LoginSpec {
	t.Helper()
	s := testSpec(t, role)
	s.ExpiresAt = time.Now().Add(time.Hour)
	return s
}

// connectAs opens a pool as the issued login (one connection kept).
func connectAs(t *testing.T, user, password string) (*sql.DB, error) {
	t.Helper()
	dsn, err := withParams(liveDSN, map[string]string{"user id": user, "password": password})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlserver", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if err := db.PingContext(t.Context()); err != nil {
		_ = db.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, nil
}

func loginExists(t *testing.T, e *Executor, name string) bool {
	t.Helper()
	var n int
	if err := e.DB().QueryRowContext(t.Context(), `SELECT COUNT(*) FROM sys.server_principals WHERE name = @p1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

func TestLiveLoginIssueUseRevoke(t *testing.T) {
	e, li := liveLogins(t, LoginConfig{})
	ctx := t.Context()
	spec := liveSpec(t, "sg_reader")
	if err := li.CreateLogin(ctx, spec); err != nil {
		t.Fatalf("CreateLogin: %v", err)
	}
	t.Cleanup(func() { _ = li.RevokeLogin(context.Background(), spec) })
	if _, err := connectAs(t, spec.Username, spec.Password+"x"); err == nil {
		t.Error("a wrong password logs in")
	}
	db, err := connectAs(t, spec.Username, spec.Password)
	if err != nil {
		t.Fatalf("log in with the issued password: %v", err)
	}
	conn, err := db.Conn(ctx) // the open session revocation must end
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var note string
	if err := conn.QueryRowContext(ctx, `SELECT note FROM dbo.granted WHERE id = 1`).Scan(&note); err != nil || note != "visible" {
		t.Fatalf("granted table: %q, %v", note, err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT note FROM dbo.secret`); err == nil || !strings.Contains(err.Error(), "permission") {
		t.Errorf("other table: %v, want permission denied (229)", err)
	}
	var prop string
	if err := e.DB().QueryRowContext(ctx, `SELECT CAST(value AS nvarchar(256)) FROM sys.extended_properties
		WHERE class = 4 AND major_id = DATABASE_PRINCIPAL_ID(@p1) AND name = N'sqlgate.principal'`, spec.Username).Scan(&prop); err != nil || prop != spec.Principal {
		t.Errorf("extended property sqlgate.principal = %q, %v", prop, err)
	}

	renew := spec
	renew.Password = ""
	if err := li.RenewLogin(ctx, renew); err != nil {
		t.Errorf("RenewLogin: %v", err)
	}
	if err := li.RevokeLogin(ctx, renew); err != nil {
		t.Fatalf("RevokeLogin: %v", err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT 1`); err == nil {
		t.Error("the open session survived revocation")
	}
	if _, err := connectAs(t, spec.Username, spec.Password); err == nil {
		t.Error("the revoked password still logs in")
	}
	if loginExists(t, e, spec.Username) {
		t.Error("the login still exists")
	}
	if err := li.RevokeLogin(ctx, renew); err != nil {
		t.Errorf("second RevokeLogin: %v", err)
	}
	if err := li.RenewLogin(ctx, renew); err == nil {
		t.Error("RenewLogin of a revoked login succeeded")
	}
}

func TestLiveLoginInjection(t *testing.T) {
	e, li := liveLogins(t, LoginConfig{})
	ctx := t.Context()
	weird := `we]ird'; "role" -- Grüße`
	if _, err := e.DB().ExecContext(ctx, `DECLARE @s nvarchar(max) = N'CREATE ROLE ' + QUOTENAME(@p1) + N';'; EXEC sys.sp_executesql @s;`, weird); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"sg_reader]; DROP TABLE dbo.granted; --", "sg_reader'; DROP TABLE dbo.granted; --", weird} {
		spec := liveSpec(t, role)
		err := li.CreateLogin(ctx, spec)
		if role == weird {
			if err != nil {
				t.Fatalf("CreateLogin into %q: %v", role, err)
			}
			var member int
			if err := e.DB().QueryRowContext(ctx, `SELECT IS_ROLEMEMBER(@p1, @p2)`, role, spec.Username).Scan(&member); err != nil || member != 1 {
				t.Errorf("login is not a member of %q (%v)", role, err)
			}
			if err := li.RevokeLogin(ctx, spec); err != nil {
				t.Fatal(err)
			}
		} else if !errors.Is(err, broker.ErrInvalid) {
			t.Errorf("CreateLogin(%q) = %v, want the role refused as missing", role, err)
		}
		if loginExists(t, e, spec.Username) {
			t.Errorf("login left after CreateLogin(%q)", role)
		}
		var n int
		if err := e.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM dbo.granted`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("dbo.granted after CreateLogin(%q): %d, %v", role, n, err)
		}
	}
	if err := li.CreateLogin(ctx, liveSpec(t, "db_owner")); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("CreateLogin(db_owner) = %v, want refused", err)
	}
}

// TestLiveLoginUnreachable: with the pool closed the revocation reports
// ErrUnavailable (retried by the broker's reaper).
func TestLiveLoginUnreachable(t *testing.T) {
	e, li := liveLogins(t, LoginConfig{})
	spec := liveSpec(t, "sg_reader")
	if err := li.CreateLogin(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("sqlserver", liveDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	_ = e.Close()
	if err := li.RevokeLogin(t.Context(), spec); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("RevokeLogin on a closed pool = %v, want unavailable", err)
	}
	back, err := NewLoginIssuer(admin, LoginConfig{Name: "test", ClientHost: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if err := back.RevokeLogin(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
}

// TestLiveLoginOwnershipRefused: a role that may create a schema (or
// another securable its creator owns) is privileged: the issued user would
// own what it creates, DROP USER would fail (15138) and the lease would
// stay revoking. Refused unless allowPrivilegedRoles.
func TestLiveLoginOwnershipRefused(t *testing.T) {
	e, li := liveLogins(t, LoginConfig{})
	ctx := t.Context()
	for _, b := range []string{
		`IF DATABASE_PRINCIPAL_ID(N'sg_schema_maker') IS NULL CREATE ROLE sg_schema_maker;`,
		`GRANT CREATE SCHEMA TO sg_schema_maker;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_schema_nested') IS NULL CREATE ROLE sg_schema_nested;`,
		`ALTER ROLE sg_schema_maker ADD MEMBER sg_schema_nested;`,
	} {
		if _, err := e.DB().ExecContext(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, role := range []string{"sg_schema_maker", "sg_schema_nested"} {
		spec := liveSpec(t, role)
		err := li.CreateLogin(ctx, spec)
		if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "privileged") {
			t.Errorf("CreateLogin(%s) = %v, want refused as privileged", role, err)
		}
		if loginExists(t, e, spec.Username) {
			t.Errorf("login left after CreateLogin(%s)", role)
		}
	}
}
