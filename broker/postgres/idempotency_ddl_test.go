package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sqlgate/sqlgate/broker/postgres"
)

// TestOpenCreatesIdempotencyTableTogether opens executors together with
// createIdempotencyTable on an empty schema, as the replicas of a Helm
// release do at start: all must succeed. `CREATE TABLE IF NOT EXISTS`
// alone is not safe against a concurrent creator (PostgreSQL fails one
// with a unique violation on pg_type or pg_class); the schema lock makes
// it so. Several fresh schemas, since one start can be lucky.
func TestOpenCreatesIdempotencyTableTogether(t *testing.T) {
	if testDB == "" {
		t.Skip(skipReason)
	}
	const rounds, instances = 4, 8
	admin, err := pgx.Connect(t.Context(), dsnFor(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	for round := range rounds {
		schema := fmt.Sprintf("idem_race_%d", schemaSeq.Add(1))
		if _, err := admin.Exec(t.Context(), "CREATE SCHEMA "+schema); err != nil {
			t.Fatal(err)
		}
		cfg := postgres.Config{
			Name: "test", DSN: dsnFor(map[string]string{"search_path": schema}), MaxConns: 1, MinConns: 1,
			CreateIdempotencyTable: true,
		}
		start := make(chan struct{})
		errs := make([]error, instances)
		var wg sync.WaitGroup
		for i := range instances {
			wg.Go(func() {
				<-start
				e, err := postgres.Open(t.Context(), cfg)
				if err == nil {
					e.Close()
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

// TestOpenDoesNotWaitForCalls: with createIdempotencyTable, an executor
// opening while calls are in flight on the existing table (a transaction
// holding its row lock) opens at once: it sends no DDL once the table and
// its index exist. `CREATE INDEX IF NOT EXISTS` waited for every such
// transaction, even with the index there, and held up new calls meanwhile.
func TestOpenDoesNotWaitForCalls(t *testing.T) {
	if testDB == "" {
		t.Skip(skipReason)
	}
	admin, err := pgx.Connect(t.Context(), dsnFor(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	schema := fmt.Sprintf("idem_busy_%d", schemaSeq.Add(1))
	if _, err := admin.Exec(t.Context(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	cfg := postgres.Config{
		Name: "test", DSN: dsnFor(map[string]string{"search_path": schema}), MaxConns: 2, MinConns: 1,
		CreateIdempotencyTable: true,
	}
	first, err := postgres.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	tx, err := admin.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(t.Context(), "LOCK TABLE "+schema+".sqlgate_idempotency IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	second, err := postgres.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("an executor opening while a call holds the table: %v; want it open without waiting", err)
	}
	second.Close()
}
