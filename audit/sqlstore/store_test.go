package sqlstore_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/microsoft/go-mssqldb"
	_ "modernc.org/sqlite"

	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
)

// newSQLite returns a store over a fresh SQLite file and the file's path.
func newSQLite(t testing.TB) (*sqlstore.Store, *sql.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.db")
	s, db := openSQLite(t, path)
	return s, db, path
}

// openSQLite returns a store over the SQLite file at path, on a pool of its
// own (as another process would have).
func openSQLite(t testing.TB, path string) (*sqlstore.Store, *sql.DB) {
	t.Helper()
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := sqlstore.Open(context.Background(), db, sqlstore.SQLite)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, db
}

func TestSQLiteConformance(t *testing.T) {
	audittest.RunStoreTests(t, func(t *testing.T) audittest.StoreSource {
		s, _, _ := newSQLite(t)
		return s
	})
}

// newPostgres returns a store in a fresh schema of the database at
// SQLGATE_TEST_POSTGRES_DSN, or skips.
func newPostgres(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, _ := newPostgresDB(t)
	return s
}

// newPostgresDB is newPostgres that also returns the database handle (its
// search_path is the fresh schema).
func newPostgresDB(t testing.TB) (*sqlstore.Store, *sql.DB) {
	t.Helper()
	dsn := os.Getenv("SQLGATE_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set SQLGATE_TEST_POSTGRES_DSN to run the PostgreSQL tests")
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close() }()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schema := "sqlgate_audit_test_" + hex.EncodeToString(rnd[:])
	if _, err := admin.ExecContext(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", dsn)
		if err == nil {
			_, _ = a.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			_ = a.Close()
		}
	})
	sep := " "
	if strings.Contains(dsn, "://") {
		sep = "&"
		if !strings.Contains(dsn, "?") {
			sep = "?"
		}
		dsn += sep + "search_path=" + schema
	} else {
		dsn += sep + "search_path=" + schema
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := sqlstore.Open(context.Background(), db, sqlstore.Postgres)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, db
}

func TestPostgresConformance(t *testing.T) {
	audittest.RunStoreTests(t, func(t *testing.T) audittest.StoreSource { return newPostgres(t) })
}

// TestSQLServerConformance runs against SQLGATE_TEST_SQLSERVER_DSN, a
// database for tests only: it drops the sqlgate_audit_* tables first.
func TestSQLServerConformance(t *testing.T) {
	dsn := os.Getenv("SQLGATE_TEST_SQLSERVER_DSN")
	if dsn == "" {
		t.Skip("set SQLGATE_TEST_SQLSERVER_DSN (a throwaway database) to run the SQL Server tests; the T-SQL is covered by testdata/sqlserver.sql")
	}
	audittest.RunStoreTests(t, func(t *testing.T) audittest.StoreSource {
		db, err := sql.Open("sqlserver", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		for _, table := range sqlstore.Tables(sqlstore.SQLServer) {
			if _, err := db.ExecContext(t.Context(), "DROP TABLE IF EXISTS "+table); err != nil {
				t.Fatal(err)
			}
		}
		s, err := sqlstore.Open(t.Context(), db, sqlstore.SQLServer)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestOpenRefusesUnsafeSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_synchronous=OFF")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	db.SetMaxOpenConns(1)
	if _, err := sqlstore.Open(t.Context(), db, sqlstore.SQLite); err == nil || !strings.Contains(err.Error(), "synchronous") {
		t.Errorf("Open with synchronous=OFF = %v, want a refusal", err)
	}
	if _, err := sqlstore.Open(t.Context(), db, "oracle"); err == nil {
		t.Error("Open(dialect oracle) = nil error")
	}
}

func TestSQLiteDSNIsWALAndFull(t *testing.T) {
	_, db, _ := newSQLite(t)
	var mode string
	var sync int
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v", mode, err)
	}
	if err := db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Errorf("synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
}

func openStore(t testing.TB, db *sql.DB) (*sqlstore.Store, error) {
	return sqlstore.Open(context.Background(), db, sqlstore.SQLite)
}

// testClaim checks that a claim of an origin excludes a second one, from
// another store on the same database, until it is released, and that
// other origins stay free.
func testClaim(t *testing.T, first, second *sqlstore.Store) {
	t.Helper()
	ctx := t.Context()
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	origin := "claim-test/" + hex.EncodeToString(rnd[:]) // unique on a shared server
	claim, err := first.Claim(ctx, origin, sqlstore.ClaimOptions{})
	if err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if _, err := second.Claim(ctx, origin, sqlstore.ClaimOptions{}); !errors.Is(err, sqlstore.ErrOriginInUse) {
		t.Fatalf("second claim of a claimed origin: err = %v, want ErrOriginInUse", err)
	}
	other, err := second.Claim(ctx, origin+"-other", sqlstore.ClaimOptions{})
	if err != nil {
		t.Fatalf("claim of another origin: %v", err)
	}
	if err := other.Release(); err != nil {
		t.Fatal(err)
	}
	if err := claim.Err(); err != nil {
		t.Fatalf("Err of a held claim = %v", err)
	}
	if err := claim.Release(); err != nil {
		t.Fatalf("release: %v", err)
	}
	again, err := second.Claim(ctx, origin, sqlstore.ClaimOptions{})
	if err != nil {
		t.Fatalf("claim after release: %v", err)
	}
	if err := again.Release(); err != nil {
		t.Fatal(err)
	}
}

func TestClaimSQLite(t *testing.T) {
	first, _, path := newSQLite(t)
	second, _ := openSQLite(t, path)
	testClaim(t, first, second)
}

func TestClaimPostgres(t *testing.T) {
	s, db := newPostgresDB(t)
	// Two stores on one schema, each with a pool of its own: two processes.
	testClaim(t, s, samePostgres(t, db))
}
