package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sqlgate/sqlgate/web/api"
)

// TestServeSQLCredentials is the engineer's SQL-login journey through the
// daemon, against a PostgreSQL cluster with password authentication: issue
// a credential over the API, log in with it, see the role's rights and
// nothing more, revoke it: the open session is gone and the password fails.
func TestServeSQLCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("serve end to end: skipped with -short")
	}
	admin := os.Getenv("SQLGATE_TEST_POSTGRES_PASSWORD_DSN")
	if admin == "" {
		t.Skip("SQLGATE_TEST_POSTGRES_PASSWORD_DSN is not set: SQL credential tests skipped (deploy/ci/pg-password-cluster.sh creates a cluster)")
	}
	ctx := t.Context()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	dbName, role := "sqlgate_serve_"+suffix, "app_reader_"+suffix
	ac, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close(context.Background())
	for _, s := range []string{"CREATE DATABASE " + dbName, "CREATE ROLE " + role + " NOLOGIN"} {
		if _, err := ac.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		c := context.Background()
		_, _ = ac.Exec(c, "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
		_, _ = ac.Exec(c, "DROP ROLE IF EXISTS "+role)
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + dbName
	target := u.String()
	tc, err := pgx.Connect(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"CREATE TABLE granted (id int PRIMARY KEY, note text)", "INSERT INTO granted VALUES (1, 'visible')",
		"CREATE TABLE secret (id int PRIMARY KEY, note text)", "INSERT INTO secret VALUES (1, 'hidden')",
		"GRANT SELECT ON granted TO " + role,
	} {
		if _, err := tc.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	tc.Close(ctx)
	dsnFile := t.TempDir() + "/orders.dsn"
	if err := os.WriteFile(dsnFile, []byte(target), 0o600); err != nil {
		t.Fatal(err)
	}

	st := startServe(t, []byte("routes: []\n"), fmt.Sprintf(`  - postgres:
      name: orders
      dsnFile: %s
      createIdempotencyTable: true
    postgresLogins:
      clientHost: 127.0.0.1`, dsnFile), func(data string) string {
		// Let sales have the test role on "orders" (the demo grants "reader").
		return strings.Replace(data, "roles: [reader]", "roles: [reader, "+role+"]", 1)
	})
	// Before PostgreSQL 16 CREATEROLE lets the issuing role make itself a
	// superuser in effect: serve says so at start, in its log.
	var version int
	if err := ac.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	warned := strings.Contains(st.logs.String(), "CREATEROLE makes the issuing role a superuser of the cluster in effect")
	if warned != (version < 160000) {
		t.Errorf("PostgreSQL %d: serve warned about CREATEROLE: %v, want %v\n%s", version, warned, version < 160000, st.logs)
	}
	alice, _ := st.s.login(t, "alice")

	// A role policy does not grant: forbidden.
	_, err = alice.SQLCreds(ctx, api.SQLCredsRequest{Database: "orders", Role: "postgres"})
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != 403 {
		t.Errorf("creds for an ungranted role = %v, want 403", err)
	}

	cred, err := alice.SQLCreds(ctx, api.SQLCredsRequest{Database: "orders", Role: role, TTLSeconds: 7200})
	if err != nil {
		t.Fatalf("sql creds: %v", err)
	}
	if cred.Capped == "" || time.Until(cred.ExpiresAt) > time.Hour+time.Minute {
		t.Errorf("a 2h request against the 1h policy maximum: expires %s, capped %q", cred.ExpiresAt, cred.Capped)
	}
	login := *u
	login.User = url.UserPassword(cred.Username, cred.Password)
	conn, err := pgx.Connect(ctx, login.String())
	if err != nil {
		t.Fatalf("log in with the issued password: %v", err)
	}
	defer conn.Close(context.Background())
	var note string
	if err := conn.QueryRow(ctx, "SELECT note FROM granted WHERE id = 1").Scan(&note); err != nil || note != "visible" {
		t.Errorf("granted table: %q, %v", note, err)
	}
	if err := conn.QueryRow(ctx, "SELECT note FROM secret WHERE id = 1").Scan(&note); err == nil {
		t.Error("the issued login reads a table its role was not granted")
	}

	leases, err := alice.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range leases.Leases {
		found = found || (l.ID == cred.LeaseID && l.Type == "sql" && l.State == "active")
	}
	if !found {
		t.Fatalf("lease %s not listed: %+v", cred.LeaseID, leases)
	}
	if _, err := alice.RevokeLease(ctx, cred.LeaseID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("the open session survived revocation")
	}
	if c, err := pgx.Connect(ctx, login.String()); err == nil {
		c.Close(ctx)
		t.Error("the revoked password still logs in")
	}
}
