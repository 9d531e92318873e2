package sqlite_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sqlgate/sqlgate/broker/sqlite"
)

// TestOpenPathWithURICharacters: a database whose path holds '#' or '?' is
// the file at that path; two such paths are two databases (the DSN cut the
// path at '#', and both opened one file elsewhere, or none).
func TestOpenPathWithURICharacters(t *testing.T) {
	dir := t.TempDir()
	for i, p := range []string{filepath.Join(dir, "#00", "orders.db"), filepath.Join(dir, "#01", "orders.db"), filepath.Join(dir, "a?b", "orders.db")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		e, err := sqlite.Open(t.Context(), sqlite.Config{Name: "orders", Path: p})
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		if _, err := e.DB().ExecContext(t.Context(), `CREATE TABLE t (n INTEGER)`); err != nil {
			t.Errorf("database %d at %s: %v (the same file as an earlier one?)", i, p, err)
		}
		_ = e.Close()
		if _, err := os.Stat(p); err != nil {
			t.Errorf("no database file at %s: %v", p, err)
		}
	}
}
