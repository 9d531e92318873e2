package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/postgres"
)

const envDSN = "SQLGATE_TEST_POSTGRES_DSN"

// testDB is the throwaway database created for this test run ("" when
// SQLGATE_TEST_POSTGRES_DSN is unset).
var (
	testDB     string
	testBase   *pgconn.Config
	schemaSeq  atomic.Int64
	skipReason = envDSN + " is not set: PostgreSQL tests skipped (set it to a server where the user may create databases)"
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dsn := os.Getenv(envDSN)
	if dsn == "" {
		return m.Run()
	}
	ctx := context.Background()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: invalid connection string\n", envDSN)
		return 1
	}
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		fmt.Fprintf(os.Stderr, "connect to %s: %v\n", envDSN, err)
		return 1
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	testDB = "sqlgate_pgtest_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+testDB); err != nil {
		fmt.Fprintf(os.Stderr, "create test database: %v\n", err)
		return 1
	}
	testBase = cfg
	code := m.Run()
	if _, err := admin.Exec(ctx, "DROP DATABASE "+testDB+" WITH (FORCE)"); err != nil {
		fmt.Fprintf(os.Stderr, "drop test database %s: %v\n", testDB, err)
	}
	_ = admin.Close(ctx)
	return code
}

// dsnFor returns a keyword connection string for the test database with the
// given runtime settings.
func dsnFor(settings map[string]string) string {
	kv := map[string]string{
		"host": testBase.Host, "port": fmt.Sprint(testBase.Port), "user": testBase.User,
		"password": testBase.Password, "dbname": testDB, "sslmode": "disable",
	}
	for k, v := range settings {
		kv[k] = v
	}
	var parts []string
	for k, v := range kv {
		if v == "" {
			continue
		}
		parts = append(parts, k+"='"+strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v)+"'")
	}
	return strings.Join(parts, " ")
}

// newSchema creates a fresh schema holding the test schema and returns a
// DSN whose search_path points at it.
func newSchema(t testing.TB) string {
	t.Helper()
	if testDB == "" {
		t.Skip(skipReason)
	}
	schema := fmt.Sprintf("h%d", schemaSeq.Add(1))
	dsn := dsnFor(map[string]string{"search_path": schema})
	ddl, err := os.ReadFile(filepath.Join("testdata", "orders.sql"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), dsnFor(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(t.Context(), "CREATE SCHEMA "+schema+"; SET search_path = "+schema+";\n"+string(ddl)); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	return dsn
}

var targets = map[string]brokertest.Target{
	brokertest.SubjectCreate:     {Procedure: "orders_create", SQLTypes: map[string]string{"amount": "decimal(12,2)"}},
	brokertest.SubjectGet:        {Statement: `SELECT id, customer, amount, quantity, express, note, status, created_by, correlation_id FROM orders WHERE id = :id`},
	brokertest.SubjectCancel:     {Procedure: "orders_cancel", Output: map[string]string{"previous_status": "text"}},
	brokertest.SubjectCancelAll:  {Statement: `UPDATE orders SET status = 'cancelled' WHERE status = 'open' RETURNING id`},
	brokertest.SubjectCount:      {Procedure: "orders_count"},
	brokertest.SubjectSession:    {Procedure: "orders_session"},
	brokertest.SubjectSlowCreate: {Procedure: "orders_slow_create"},
}

func openTest(t testing.TB, maxConns int) *postgres.Executor {
	t.Helper()
	dsn := newSchema(t)
	e, err := postgres.Open(t.Context(), postgres.Config{Name: "test", DSN: dsn, MaxConns: maxConns, CreateIdempotencyTable: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

func TestConformance(t *testing.T) {
	if testDB == "" {
		t.Skip(skipReason)
	}
	brokertest.RunExecutorTests(t, func(t *testing.T) *brokertest.Harness {
		e := openTest(t, 2)
		return &brokertest.Harness{
			Executor: e, Targets: targets, Down: e.Close,
			SessionOutside: func(ctx context.Context) (string, bool, error) {
				var v *string
				err := e.Pool().QueryRow(ctx, `SELECT current_setting('sqlgate.correlation_id', true)`).Scan(&v)
				if v == nil {
					return "", false, err
				}
				return *v, true, err
			},
		}
	})
}
