package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/sqlgate/sqlgate/audit/sqlstore"
)

// TestPostgresSchemaConcurrentOpen opens stores together on an empty
// PostgreSQL schema, as the replicas of a Helm release do at start, each on
// a handle of its own: all must succeed. `CREATE TABLE IF NOT EXISTS`
// alone is not safe against a concurrent creator (PostgreSQL fails one
// with a unique violation on pg_type or pg_class); the schema lock makes
// it so. Several fresh schemas, since one start can be lucky.
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
	t.Cleanup(func() { _ = admin.Close() })
	for round := range rounds {
		var rnd [6]byte
		_, _ = rand.Read(rnd[:])
		schema := "sqlgate_audit_race_" + hex.EncodeToString(rnd[:])
		if _, err := admin.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
		sep := " "
		if strings.Contains(dsn, "://") {
			sep = "?"
			if strings.Contains(dsn, "?") {
				sep = "&"
			}
		}
		dbs := make([]*sql.DB, instances)
		for i := range dbs {
			db, err := sql.Open("pgx", dsn+sep+"search_path="+schema)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = db.Close() })
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
				s, err := sqlstore.Open(t.Context(), db, sqlstore.Postgres)
				if err == nil {
					err = s.Close()
				}
				errs[i] = err
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
