package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/identity"
)

// TestLoginRoleCheckRefuses issues logins as a broker role made like
// deploy/postgres makes sqlgate_broker (NOINHERIT, CREATEROLE) and a member
// of a group holding its grants. Each kind of role RoleCheckSQL counts as
// privileged is refused, directly or through a role it belongs to, and no
// login is created for it; a plain reader role is granted.
func TestLoginRoleCheckRefuses(t *testing.T) {
	if testDB == "" {
		t.Skip(skipReason)
	}
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, dsnFor(nil))
	if err != nil {
		t.Fatal(err)
	}
	p := testDB + "_rc_" // roles are cluster-wide: named for this run
	var roles []string
	t.Cleanup(func() {
		ctx := context.Background() // t.Context() is cancelled by now
		for i := len(roles) - 1; i >= 0; i-- {
			_, _ = admin.Exec(ctx, "DROP OWNED BY "+roles[i])
			_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+roles[i])
		}
		_ = admin.Close(ctx)
	})
	role := func(name, attrs string, setup ...string) string {
		t.Helper()
		roles = append(roles, p+name)
		if _, err := admin.Exec(ctx, "CREATE ROLE "+p+name+" "+attrs); err != nil {
			t.Fatal(err)
		}
		for _, s := range setup {
			if _, err := admin.Exec(ctx, strings.ReplaceAll(s, "$role", p+name)); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		return p + name
	}
	brk := role("brk", "LOGIN NOINHERIT CREATEROLE")
	brkGroup := role("brkgrp", "NOLOGIN", "GRANT $role TO "+brk)
	login := role("login", "LOGIN")
	reader := role("reader", "NOLOGIN", "CREATE TABLE $role (id int)", "GRANT SELECT ON $role TO $role")
	owned := func(stmt string) []string {
		return []string{"CREATE " + stmt, "ALTER " + strings.Fields(stmt)[0] + " " + strings.Fields(stmt)[1] + " OWNER TO $role"}
	}
	cases := []struct{ kind, role string }{
		{"a login role", login},
		{"a member of a login role", role("vialogin", "NOLOGIN", "GRANT "+login+" TO $role")},
		{"the broker's own role", brk},
		{"a group the broker belongs to", brkGroup},
		{"a member of a group the broker belongs to", role("viabrk", "NOLOGIN", "GRANT "+brkGroup+" TO $role")},
		{"a predefined role", "pg_read_all_data"},
		{"a member of pg_read_all_data", role("readall", "NOLOGIN", "GRANT pg_read_all_data TO $role")},
		{"a member of pg_write_all_data", role("writeall", "NOLOGIN", "GRANT pg_write_all_data TO $role")},
		{"a member of pg_signal_backend", role("signal", "NOLOGIN", "GRANT pg_signal_backend TO $role")},
		{"a table owner", role("ownstable", "NOLOGIN", owned("TABLE "+p+"owned (id int)")...)},
		{"a schema owner", role("ownsschema", "NOLOGIN", "CREATE SCHEMA "+p+"s AUTHORIZATION $role")},
		{"a function owner", role("ownsfunc", "NOLOGIN", owned("FUNCTION "+p+"f() RETURNS int LANGUAGE sql AS 'SELECT 1'")...)},
		{"a member of an owner", role("viaowner", "NOLOGIN", "GRANT "+p+"ownstable TO $role")},
		{"a CREATEROLE role", role("createrole", "NOLOGIN CREATEROLE")},
	}

	pool, err := pgxpool.New(ctx, dsnFor(map[string]string{"user": brk, "password": "", "pool_max_conns": "1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	li, err := postgres.NewLoginIssuer(pool, postgres.LoginConfig{Name: "orders", LoginPrefix: "sg_rc_"})
	if err != nil {
		t.Fatal(err)
	}
	spec := func(role string) broker.LoginSpec {
		t.Helper()
		pw, err := broker.GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		who := identity.Principal{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com"}
		s := broker.LoginSpec{
			LeaseID: "lease-rc", Username: broker.LoginName("sg_rc_", &who), Password: pw, Role: role,
			ExpiresAt: time.Now().Add(time.Hour), Principal: who.Display(),
		}
		t.Cleanup(func() {
			_, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+pgx.Identifier{s.Username}.Sanitize())
		})
		return s
	}
	exists := func(name string) bool {
		t.Helper()
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	for _, tc := range cases {
		s := spec(tc.role)
		err := li.CreateLogin(ctx, s)
		if !errors.Is(err, broker.ErrInvalid) || !strings.Contains(err.Error(), "privileged") {
			t.Errorf("CreateLogin(%s, %s) = %v, want refused as privileged", tc.kind, tc.role, err)
		}
		if exists(s.Username) {
			t.Errorf("a login was created with %s (%s)", tc.kind, tc.role)
		}
	}

	s := spec(reader)
	if err := li.CreateLogin(ctx, s); err != nil {
		t.Fatalf("CreateLogin(%s), a reader role: %v", reader, err)
	}
	if err := li.RevokeLogin(ctx, s); err != nil {
		t.Fatalf("RevokeLogin(%s): %v", s.Username, err)
	}
	if exists(s.Username) {
		t.Error("the reader's login remains after revocation")
	}
}
