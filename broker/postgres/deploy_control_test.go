package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql, as sqlgated opens the control database

	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker/control"
)

// TestDeployControlScript runs deploy/postgres/00-control.sql with psql
// (twice: it is idempotent) and starts the control stores on the database
// it made, as the role it made, twice (the second start finds the tables):
// the audit log, the registry, sessions, sign-in cutoffs and leases create
// their tables in public, owned by the role. Another role of the server
// cannot connect to it.
func TestDeployControlScript(t *testing.T) {
	if testDB == "" {
		t.Skip(skipReason)
	}
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql is not installed: deploy/postgres/00-control.sql is a psql script")
	}
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, dsnFor(nil))
	if err != nil {
		t.Fatal(err)
	}
	dbName, role, other := testDB+"_control", testDB+"_ctl", testDB+"_other"
	t.Cleanup(func() {
		ctx := context.Background() // t.Context() is cancelled by now
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
		_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+role)
		_, _ = admin.Exec(ctx, "DROP ROLE IF EXISTS "+other)
		_ = admin.Close(ctx)
	})
	script := filepath.Join("..", "..", "deploy", "postgres", "00-control.sql")
	for range 2 {
		cmd := exec.CommandContext(ctx, psql, "-X", "-q", "-v", "control_db="+dbName, "-v", "control_role="+role, "-f", script)
		cmd.Env = append(os.Environ(), "PGHOST="+testBase.Host, fmt.Sprintf("PGPORT=%d", testBase.Port), "PGUSER="+testBase.User,
			"PGPASSWORD="+testBase.Password, "PGDATABASE="+testDB, "PGSSLMODE=disable")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("psql -f 00-control.sql: %v\n%s", err, out)
		}
	}

	var super, createDB, createRole bool
	if err := admin.QueryRow(ctx, "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1", role).Scan(&super, &createDB, &createRole); err != nil {
		t.Fatal(err)
	}
	if super || createDB || createRole {
		t.Errorf("the control role has superuser %v, createdb %v, createrole %v; want none", super, createDB, createRole)
	}

	db, err := sql.Open("pgx", dsnFor(map[string]string{"dbname": dbName, "user": role, "password": ""}))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	for start := range 2 {
		cdb, err := control.Open(ctx, db, control.Postgres)
		if err != nil {
			t.Fatalf("start %d: control.Open as the control role: %v", start, err)
		}
		if _, err := control.OpenSignInCutoffs(ctx, cdb); err != nil {
			t.Fatalf("start %d: sign-in cutoffs: %v", start, err)
		}
		if _, err := control.OpenSessionStore(ctx, cdb); err != nil {
			t.Fatalf("start %d: sessions: %v", start, err)
		}
		if _, err := control.OpenLeaseStore(ctx, cdb); err != nil {
			t.Fatalf("start %d: leases: %v", start, err)
		}
		if _, err := sqlstore.Open(ctx, db, sqlstore.Postgres); err != nil {
			t.Fatalf("start %d: audit log store: %v", start, err)
		}
	}
	var tables, foreign int
	if err := db.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE tableowner <> current_user) FROM pg_tables WHERE schemaname = 'public'`).
		Scan(&tables, &foreign); err != nil {
		t.Fatal(err)
	}
	if tables < 10 || foreign != 0 {
		t.Errorf("public has %d tables, %d not owned by the control role; want the control stores' tables, all its own", tables, foreign)
	}

	if _, err := admin.Exec(ctx, "CREATE ROLE "+other+" LOGIN"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsnFor(map[string]string{"dbname": dbName, "user": other, "password": ""}))
	if err == nil {
		_ = conn.Close(ctx)
		t.Fatal("another role connected to the control database")
	}
	if sqlState(err) != "42501" {
		t.Errorf("another role's connection: %v, want permission denied (42501)", err)
	}
}

// TestDocsDSNFileMode: the steps that put a connection string in a file
// (control.dsnFile, a database's dsnFile and passwordFile) say the mode
// sqlgated accepts, since serve refuses a file other users may read (0644).
func TestDocsDSNFileMode(t *testing.T) {
	t.Parallel()
	read := func(path ...string) string {
		b, err := os.ReadFile(filepath.Join(append([]string{"..", ".."}, path...)...))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	doc := read("docs", "postgres.md")
	_, config, _ := strings.Cut(doc, "\n## Configuration\n")
	config, _, _ = strings.Cut(config, "\n## ")
	_, control, _ := strings.Cut(doc, "put the DSN in `control.dsnFile`")
	control, _, _ = strings.Cut(control, "\n\n")
	script := read("deploy", "postgres", "00-control.sql")
	header, _, _ := strings.Cut(script, "\\set")
	for name, text := range map[string]string{
		"docs/postgres.md, Configuration (dsnFile, passwordFile)":  config,
		"docs/postgres.md, control database (control.dsnFile)":     control,
		"deploy/postgres/00-control.sql, header (control.dsnFile)": header,
	} {
		if !strings.Contains(text, "0600") || !strings.Contains(text, "0644") {
			t.Errorf("%s does not say the file must be mode 0600 (and that 0644 is refused)", name)
		}
	}
}
