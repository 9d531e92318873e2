package sqlite_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/broker/sqlite"
)

// Targets are the conformance suite's routes as SQLite statements.
var targets = map[string]brokertest.Target{
	brokertest.SubjectCreate: {Statement: `INSERT INTO orders (customer, amount, quantity, express, note, created_by, correlation_id)
		VALUES (:customer, :amount, :quantity, :express, :note, :sqlgate_principal, :sqlgate_correlation_id) RETURNING id`},
	brokertest.SubjectGet:       {Statement: `SELECT id, customer, amount, quantity, express, note, status, created_by, correlation_id FROM orders WHERE id = :id`},
	brokertest.SubjectCancel:    {Statement: `UPDATE orders SET status = 'cancelled' WHERE id = :id`},
	brokertest.SubjectCancelAll: {Statement: `UPDATE orders SET status = 'cancelled' WHERE status = 'open' RETURNING id`},
	brokertest.SubjectCount:     {Statement: `SELECT count(*) AS n FROM orders`},
	brokertest.SubjectSession:   {Statement: `SELECT :sqlgate_correlation_id AS correlation_id, :sqlgate_principal AS principal, :sqlgate_decision_id AS decision_id`},
	// A recursive CTE stands in for sleep: it keeps the insert busy until
	// the context interrupts it.
	brokertest.SubjectSlowCreate: {Statement: `INSERT INTO orders (customer, amount, quantity, express, created_by, correlation_id)
		SELECT :customer, 1, 1, 0, :sqlgate_principal, :sqlgate_correlation_id
		FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :seconds * 20000000) SELECT max(x) AS m FROM c)
		RETURNING id`},
}

func openTest(t testing.TB) *sqlite.Executor {
	t.Helper()
	ddl, err := os.ReadFile(filepath.Join("testdata", "orders.sql"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := sqlite.Open(t.Context(), sqlite.Config{Name: "test", Path: filepath.Join(t.TempDir(), "test.db")})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if _, err := e.DB().ExecContext(t.Context(), string(ddl)); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	return e
}

// createRoute is the test catalog's insert route (brokertest.SubjectCreate).
func createRoute(tb testing.TB) *route.Route {
	tb.Helper()
	cat, err := brokertest.Catalog("test", targets)
	if err != nil {
		tb.Fatal(err)
	}
	r, ok := cat.Lookup(brokertest.SubjectCreate)
	if !ok {
		tb.Fatalf("the test catalog has no %s", brokertest.SubjectCreate)
	}
	return r
}

func TestConformance(t *testing.T) {
	t.Parallel()
	brokertest.RunExecutorTests(t, func(t *testing.T) *brokertest.Harness {
		e := openTest(t)
		return &brokertest.Harness{Executor: e, Targets: targets, Down: func() { _ = e.Close() }}
	})
}
