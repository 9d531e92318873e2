package control_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker/control"
)

// TestPostgresSchemaConcurrentOpen starts instances together on an empty
// PostgreSQL control database, as a Helm release with several replicas
// does: each opens every store that creates tables (the audit store's
// too), on a handle of its own, and all must succeed. `CREATE TABLE IF NOT EXISTS` alone is not
// safe against a concurrent creator (PostgreSQL fails one with a unique
// violation on pg_type or pg_class); the schema lock makes it so.
// Several fresh databases, since one start can be lucky.
func TestPostgresSchemaConcurrentOpen(t *testing.T) {
	dsn := os.Getenv("SQLGATE_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set SQLGATE_TEST_POSTGRES_DSN to run the PostgreSQL tests")
	}
	const rounds, instances = 4, 8
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	for round := range rounds {
		name := fmt.Sprintf("sqlgate_control_race_%d_%d", time.Now().UnixNano(), round)
		if _, err := admin.ExecContext(t.Context(), "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		})
		dbs := make([]*sql.DB, instances)
		for i := range dbs {
			db, err := sql.Open("pgx", replaceDatabase(t, dsn, name))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			// Connect first, so the instances reach the DDL together.
			if err := db.PingContext(t.Context()); err != nil {
				t.Fatal(err)
			}
			dbs[i] = db
		}
		start := make(chan struct{})
		errs := make([]error, instances)
		var wg sync.WaitGroup
		for i, db := range dbs {
			wg.Go(func() {
				<-start
				errs[i] = openAll(t.Context(), db)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, instance %d: %v", round, i, err)
			}
		}
		if t.Failed() {
			return
		}
	}
}

// openAll opens the audit store, the control database and every store that
// creates a table, as sqlgated does at start.
func openAll(ctx context.Context, db *sql.DB) error {
	audit, err := sqlstore.Open(ctx, db, sqlstore.Postgres)
	if err != nil {
		return err
	}
	if err := audit.Close(); err != nil {
		return err
	}
	c, err := control.Open(ctx, db, control.Postgres)
	if err != nil {
		return err
	}
	if _, err := control.OpenLeaseStore(ctx, c); err != nil {
		return err
	}
	if _, err := control.OpenSessionStore(ctx, c); err != nil {
		return err
	}
	_, err = control.OpenSignInCutoffs(ctx, c)
	return err
}

// TestPostgresSchemaStartDoesNotBlockWriters: a replica starting while
// another one writes (a transaction holding a row lock on a control table)
// opens its stores at once. Before, its schema transaction sent `CREATE
// INDEX IF NOT EXISTS`, which waits for the writer's lock even when the
// index exists.
func TestPostgresSchemaStartDoesNotBlockWriters(t *testing.T) {
	dsn := os.Getenv("SQLGATE_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set SQLGATE_TEST_POSTGRES_DSN to run the PostgreSQL tests")
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	name := fmt.Sprintf("sqlgate_control_start_%d", time.Now().UnixNano())
	if _, err := admin.ExecContext(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	open := func() *sql.DB {
		db, err := sql.Open("pgx", replaceDatabase(t, dsn, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	running := open()
	if err := openAll(t.Context(), running); err != nil {
		t.Fatal(err)
	}
	// The running replica is in the middle of a write to every table.
	tx, err := running.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, table := range []string{"sqlgate_issuance", "sqlgate_lease", "sqlgate_web_session", "sqlgate_signin_cutoff"} {
		if _, err := tx.ExecContext(t.Context(), "LOCK TABLE "+table+" IN ROW EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := openAll(ctx, open()); err != nil {
		t.Errorf("a replica starting while another writes: %v; want its stores open without waiting for the writer", err)
	}
}
