package sqlserver

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
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

// liveBroker creates a least-privilege broker login (deploy/sqlserver
// 00-login.sql, a user in the test database, and
// 04-credential-issuance.sql in the test database and in master, server
// login mode) and returns a pool logged in as it and its name. The login
// is dropped at the end of the test.
func liveBroker(t *testing.T, e *Executor) (*sql.DB, string) {
	t.Helper()
	db, login, grant := liveBrokerLogin(t, e)
	grant(e.DB(), "0")
	grant(liveMaster(t), "0")
	return db, login
}

// liveMaster opens a pool on master as the test login.
func liveMaster(t *testing.T) *sql.DB {
	t.Helper()
	masterDSN, err := withParams(liveDSN, map[string]string{"database": "master"})
	if err != nil {
		t.Fatal(err)
	}
	master, err := sql.Open("sqlserver", masterDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = master.Close() })
	return master
}

// liveBrokerLogin creates the broker login and its user in the test
// database, without grants, and returns a pool logged in as it, its name,
// and a function that runs 04-credential-issuance.sql for it on a pool
// with SQLGATE_CONTAINED set to contained.
func liveBrokerLogin(t *testing.T, e *Executor) (*sql.DB, string, func(db *sql.DB, contained string)) {
	t.Helper()
	ctx := t.Context()
	rb := make([]byte, 12)
	_, _ = rand.Read(rb)
	login, password := "sqlgate_broker_"+hex.EncodeToString(rb[:4]), "Sg1!"+hex.EncodeToString(rb)
	vars := map[string]string{"SQLGATE_LOGIN": login, "SQLGATE_PASSWORD": password}
	run := func(db *sql.DB, name string) {
		t.Helper()
		for _, batch := range sqlcmdScript(t, name, vars) {
			if _, err := db.ExecContext(ctx, batch); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
	admin := e.DB()
	run(admin, "00-login.sql")
	t.Cleanup(func() {
		ctx := context.Background()
		var remaining int
		if err := admin.QueryRowContext(ctx, KillSessionsBatch, sql.Named("login", login)).Scan(&remaining); err != nil || remaining != 0 {
			t.Errorf("cleanup: ending the sessions of %s: %d remain, %v", login, remaining, err)
		}
		if _, err := admin.ExecContext(ctx, DropUsersBatch, sql.Named("login", login)); err != nil {
			t.Errorf("cleanup: user %s left in the test database: %v", login, err)
		}
		if _, err := admin.ExecContext(ctx, DropLoginBatch, sql.Named("login", login)); err != nil {
			t.Errorf("cleanup: login %s left on the server: %v", login, err)
		}
	})
	if _, err := admin.ExecContext(ctx, `DECLARE @s nvarchar(max) = N'CREATE USER ' + QUOTENAME(@p1) + N' FOR LOGIN ' + QUOTENAME(@p1) + N';'; EXEC sys.sp_executesql @s;`, login); err != nil {
		t.Fatal(err)
	}
	dsn, err := withParams(liveDSN, map[string]string{"user id": login, "password": password})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlserver", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	grant := func(on *sql.DB, contained string) {
		t.Helper()
		vars["SQLGATE_CONTAINED"] = contained
		run(on, "04-credential-issuance.sql")
	}
	return db, login, grant
}

// TestLiveLeastPrivilegeRoleCheck issues and revokes as a broker login
// with exactly the grants of deploy/sqlserver: a role nested in db_owner
// is refused (without VIEW DEFINITION the broker would not see the
// membership and make the login db_owner), a plain role is issued and
// revoked, and without VIEW DEFINITION both the role check and the
// contained-mode guard stop with ErrViewDefinition instead of issuing or
// calling every user privileged.
func TestLiveLeastPrivilegeRoleCheck(t *testing.T) {
	e, _ := liveLogins(t, LoginConfig{})
	ctx := t.Context()
	for _, b := range []string{
		`IF DATABASE_PRINCIPAL_ID(N'sg_nested_owner') IS NULL CREATE ROLE sg_nested_owner;`,
		`ALTER ROLE db_owner ADD MEMBER sg_nested_owner;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_plain_user') IS NULL CREATE USER sg_plain_user WITHOUT LOGIN;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_owner_user') IS NULL CREATE USER sg_owner_user WITHOUT LOGIN;`,
		`ALTER ROLE db_owner ADD MEMBER sg_owner_user;`,
	} {
		if _, err := e.DB().ExecContext(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	bdb, brokerLogin := liveBroker(t, e)
	li, err := NewLoginIssuer(bdb, LoginConfig{Name: "test", ClientHost: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	nested := liveSpec(t, "sg_nested_owner")
	if err := li.CreateLogin(ctx, nested); !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "privileged") {
		t.Errorf("CreateLogin(role nested in db_owner) as the least-privilege broker = %v, want refused as privileged", err)
	}
	if loginExists(t, e, nested.Username) {
		t.Errorf("login %s created for a role nested in db_owner", nested.Username)
	}
	plain := liveSpec(t, "sg_reader")
	if err := li.CreateLogin(ctx, plain); err != nil {
		t.Fatalf("CreateLogin(sg_reader) as the least-privilege broker: %v", err)
	}
	plain.Password = ""
	if err := li.RevokeLogin(ctx, plain); err != nil {
		t.Errorf("RevokeLogin as the least-privilege broker: %v", err)
	}
	guard := func(user string) (bool, error) {
		var privileged bool
		err := bdb.QueryRowContext(ctx, ContainedGuardBatch, sql.Named("login", user)).Scan(&privileged)
		return privileged, err
	}
	if p, err := guard("sg_plain_user"); err != nil || p {
		t.Errorf("contained guard of a plain user = %v, %v; want not privileged", p, err)
	}
	if p, err := guard("sg_owner_user"); err != nil || !p {
		t.Errorf("contained guard of a db_owner member = %v, %v; want privileged", p, err)
	}

	if _, err := e.DB().ExecContext(ctx, `DECLARE @s nvarchar(max) = N'REVOKE VIEW DEFINITION FROM ' + QUOTENAME(@p1) + N';'; EXEC sys.sp_executesql @s;`, brokerLogin); err != nil {
		t.Fatal(err)
	}
	again := liveSpec(t, "sg_reader")
	err = li.CreateLogin(ctx, again)
	var dbe *broker.DBError
	if !errors.Is(err, ErrViewDefinition) || !errors.As(err, &dbe) || dbe.Number != errViewDefinition || !strings.Contains(dbe.Message, "VIEW DEFINITION") {
		t.Errorf("CreateLogin without VIEW DEFINITION = %v, want ErrViewDefinition (DBError 50104 naming the grant)", err)
	}
	if loginExists(t, e, again.Username) {
		t.Errorf("login %s created without VIEW DEFINITION", again.Username)
	}
	if _, err := guard("sg_plain_user"); err == nil || !strings.Contains(err.Error(), "VIEW DEFINITION") {
		t.Errorf("contained guard without VIEW DEFINITION = %v, want error 50104 naming the grant", err)
	}
}

// TestLiveLoginAlterAndOwnershipRefused: a role with ALTER on a dbo-owned
// procedure, one that owns a schema, an object or another role, and one
// nested in such an owner are refused as privileged, by the test login and
// by the least-privilege broker; a role nested in db_datareader (which
// owns the schema db_datareader) is issued.
func TestLiveLoginAlterAndOwnershipRefused(t *testing.T) {
	e, admin := liveLogins(t, LoginConfig{})
	ctx := t.Context()
	for _, b := range []string{
		`IF DATABASE_PRINCIPAL_ID(N'sg_alter_proc') IS NULL CREATE ROLE sg_alter_proc;`,
		`GRANT ALTER ON OBJECT::dbo.orders_create TO sg_alter_proc;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_schema_owner') IS NULL CREATE ROLE sg_schema_owner;`,
		`IF SCHEMA_ID(N'sg_owned') IS NULL EXEC (N'CREATE SCHEMA sg_owned AUTHORIZATION sg_schema_owner');`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_object_owner') IS NULL CREATE ROLE sg_object_owner;`,
		`IF OBJECT_ID(N'dbo.sg_owned_table') IS NULL CREATE TABLE dbo.sg_owned_table (id int PRIMARY KEY);`,
		`ALTER AUTHORIZATION ON OBJECT::dbo.sg_owned_table TO sg_object_owner;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_role_owner') IS NULL CREATE ROLE sg_role_owner;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_owned_role') IS NULL CREATE ROLE sg_owned_role AUTHORIZATION sg_role_owner;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_owner_nested') IS NULL CREATE ROLE sg_owner_nested;`,
		`ALTER ROLE sg_schema_owner ADD MEMBER sg_owner_nested;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_datareader') IS NULL CREATE ROLE sg_datareader;`,
		`ALTER ROLE db_datareader ADD MEMBER sg_datareader;`,
	} {
		if _, err := e.DB().ExecContext(ctx, b); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	bdb, _ := liveBroker(t, e)
	least, err := NewLoginIssuer(bdb, LoginConfig{Name: "test", ClientHost: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	for name, li := range map[string]*LoginIssuer{"test login": admin, "least-privilege broker": least} {
		for _, role := range []string{"sg_alter_proc", "sg_schema_owner", "sg_object_owner", "sg_role_owner", "sg_owner_nested"} {
			spec := liveSpec(t, role)
			err := li.CreateLogin(ctx, spec)
			if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "privileged") {
				t.Errorf("%s: CreateLogin(%s) = %v, want refused as privileged", name, role, err)
			}
			if loginExists(t, e, spec.Username) {
				t.Errorf("%s: login left after CreateLogin(%s)", name, role)
			}
		}
		spec := liveSpec(t, "sg_datareader")
		if err := li.CreateLogin(ctx, spec); err != nil {
			t.Errorf("%s: CreateLogin(role nested in db_datareader) = %v, want issued", name, err)
			continue
		}
		spec.Password = ""
		if err := li.RevokeLogin(ctx, spec); err != nil {
			t.Errorf("%s: RevokeLogin: %v", name, err)
		}
	}
}

// TestLiveDeployIssuanceContainedMode applies 04-credential-issuance.sql
// with SQLGATE_CONTAINED=1 on SQL Server (a contained database there): the
// database grants alone leave the session step unable to see sessions, and
// it says so (50103) instead of finding none; with the master grants it
// runs. A SQLGATE_CONTAINED other than 0 or 1 stops the script.
func TestLiveDeployIssuanceContainedMode(t *testing.T) {
	e := openLive(t)
	ctx := t.Context()
	var edition int
	if err := e.DB().QueryRowContext(ctx, `SELECT CAST(SERVERPROPERTY('EngineEdition') AS int)`).Scan(&edition); err != nil {
		t.Fatal(err)
	}
	if edition == 5 {
		t.Skip("Azure SQL Database: the SQL Server path of contained mode does not apply")
	}
	bdb, brokerLogin, grant := liveBrokerLogin(t, e)
	for _, batch := range sqlcmdScript(t, "04-credential-issuance.sql", map[string]string{"SQLGATE_LOGIN": "nobody", "SQLGATE_CONTAINED": "yes"}) {
		if _, err := e.DB().ExecContext(ctx, batch); err == nil || !strings.Contains(err.Error(), "SQLGATE_CONTAINED must be 0") {
			t.Errorf("04-credential-issuance.sql with SQLGATE_CONTAINED=yes: %v, want refused", err)
		}
	}
	grant(e.DB(), "1")
	kill := func() (int, error) {
		var remaining int
		err := bdb.QueryRowContext(ctx, ContainedKillSessionsBatch, sql.Named("login", "sg_nobody_abcdefghij")).Scan(&remaining)
		return remaining, err
	}
	if _, err := kill(); err == nil || !strings.Contains(err.Error(), "VIEW SERVER STATE") {
		t.Errorf("contained session step without the master grants = %v, want error 50103 naming VIEW SERVER STATE", err)
	}
	// VIEW DATABASE STATE does not show other sessions on SQL Server: with
	// it alone the batch must still refuse, not count none.
	if _, err := e.DB().ExecContext(ctx, `DECLARE @s nvarchar(max) = N'GRANT VIEW DATABASE STATE TO ' + QUOTENAME(@p1) + N';'; EXEC sys.sp_executesql @s;`, brokerLogin); err != nil {
		t.Fatal(err)
	}
	if _, err := kill(); err == nil || !strings.Contains(err.Error(), "VIEW SERVER STATE") {
		t.Errorf("contained session step with VIEW DATABASE STATE only, on SQL Server = %v, want error 50103", err)
	}
	grant(liveMaster(t), "1")
	if n, err := kill(); err != nil || n != 0 {
		t.Errorf("contained session step with the master grants = %d, %v; want 0 remaining", n, err)
	}
	var canCreateLogins int
	if err := bdb.QueryRowContext(ctx, `SELECT HAS_PERMS_BY_NAME(NULL, NULL, N'ALTER ANY LOGIN')`).Scan(&canCreateLogins); err != nil || canCreateLogins != 0 {
		t.Errorf("contained mode granted ALTER ANY LOGIN (%d, %v)", canCreateLogins, err)
	}
}

// TestLiveLoginFailsClosed: the role check is an allowlist. A role holding
// ALTER ANY DATABASE DDL TRIGGER, ALTER ANY CERTIFICATE, BACKUP DATABASE
// and BACKUP LOG (SQL Server), or SELECT WITH GRANT OPTION, one nested in
// db_backupoperator, one named sqlgate_executor, and (for the
// least-privilege broker) a role of the broker's own user and one nested
// in it are refused as privileged, by the test login and by the
// least-privilege broker; a data-access role with DENYs is issued.
func TestLiveLoginFailsClosed(t *testing.T) {
	e, admin := liveLogins(t, LoginConfig{})
	ctx := t.Context()
	var edition int
	if err := e.DB().QueryRowContext(ctx, `SELECT CAST(SERVERPROPERTY('EngineEdition') AS int)`).Scan(&edition); err != nil {
		t.Fatal(err)
	}
	setup := []string{
		`IF DATABASE_PRINCIPAL_ID(N'sg_ddl_trigger') IS NULL CREATE ROLE sg_ddl_trigger;`,
		`GRANT ALTER ANY DATABASE DDL TRIGGER TO sg_ddl_trigger;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_any_certificate') IS NULL CREATE ROLE sg_any_certificate;`,
		`GRANT ALTER ANY CERTIFICATE TO sg_any_certificate;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_grant_option') IS NULL CREATE ROLE sg_grant_option;`,
		`GRANT SELECT ON dbo.granted TO sg_grant_option WITH GRANT OPTION;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_backupoperator') IS NULL CREATE ROLE sg_backupoperator;`,
		`ALTER ROLE db_backupoperator ADD MEMBER sg_backupoperator;`,
		`IF DATABASE_PRINCIPAL_ID(N'sqlgate_executor') IS NULL CREATE ROLE sqlgate_executor AUTHORIZATION dbo;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_denied') IS NULL CREATE ROLE sg_denied;`,
		`GRANT SELECT ON dbo.granted TO sg_denied;`,
		`DENY SELECT ON dbo.secret TO sg_denied;`,
		`DENY ALTER ANY SCHEMA TO sg_denied;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_broker_role') IS NULL CREATE ROLE sg_broker_role;`,
		`IF DATABASE_PRINCIPAL_ID(N'sg_in_broker_role') IS NULL CREATE ROLE sg_in_broker_role;`,
		`ALTER ROLE sg_broker_role ADD MEMBER sg_in_broker_role;`,
	}
	refused := []string{"sg_ddl_trigger", "sg_any_certificate", "sg_grant_option", "sg_backupoperator", "sqlgate_executor"}
	if edition != 5 { // Azure SQL Database has no BACKUP permissions to grant
		setup = append(setup, `IF DATABASE_PRINCIPAL_ID(N'sg_backup') IS NULL CREATE ROLE sg_backup;`, `GRANT BACKUP DATABASE, BACKUP LOG TO sg_backup;`)
		refused = append(refused, "sg_backup")
	}
	for _, b := range setup {
		if _, err := e.DB().ExecContext(ctx, b); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	bdb, brokerLogin := liveBroker(t, e)
	if _, err := e.DB().ExecContext(ctx, `DECLARE @s nvarchar(max) = N'ALTER ROLE sg_broker_role ADD MEMBER ' + QUOTENAME(@p1) + N';'; EXEC sys.sp_executesql @s;`, brokerLogin); err != nil {
		t.Fatal(err)
	}
	least, err := NewLoginIssuer(bdb, LoginConfig{Name: "test", ClientHost: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	for name, li := range map[string]*LoginIssuer{"test login": admin, "least-privilege broker": least} {
		roles := refused
		if li == least {
			roles = append(append([]string(nil), refused...), "sg_broker_role", "sg_in_broker_role")
		}
		for _, role := range roles {
			spec := liveSpec(t, role)
			err := li.CreateLogin(ctx, spec)
			if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "privileged") {
				t.Errorf("%s: CreateLogin(%s) = %v, want refused as privileged", name, role, err)
			}
			if loginExists(t, e, spec.Username) {
				t.Errorf("%s: login left after CreateLogin(%s)", name, role)
			}
		}
		spec := liveSpec(t, "sg_denied")
		if err := li.CreateLogin(ctx, spec); err != nil {
			t.Errorf("%s: CreateLogin(a data-access role with DENYs) = %v, want issued", name, err)
			continue
		}
		spec.Password = ""
		if err := li.RevokeLogin(ctx, spec); err != nil {
			t.Errorf("%s: RevokeLogin: %v", name, err)
		}
	}
}
