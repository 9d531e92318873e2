package sqliteuri_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/sqlgate/sqlgate/internal/sqliteuri"
)

// TestFileNamesTheFile opens databases whose paths hold the characters a
// URI reads otherwise ('#', '?', '%', space): each is the file at its path,
// and two such paths are two databases.
func TestFileNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	paths := []string{
		filepath.Join(dir, "#00", "a.db"),
		filepath.Join(dir, "#01", "a.db"),
		filepath.Join(dir, "what?", "b.db"),
		filepath.Join(dir, "100%25", "c d.db"),
	}
	for i, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite", sqliteuri.File(p, "_pragma=busy_timeout(1000)"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(`CREATE TABLE t (n INTEGER)`); err != nil {
			t.Fatalf("%s: %v (the same file as an earlier path?)", p, err)
		}
		if _, err := db.Exec(`INSERT INTO t VALUES (?)`, i); err != nil {
			t.Fatal(err)
		}
		_ = db.Close()
		if _, err := os.Stat(p); err != nil {
			t.Errorf("no database file at %s: %v", p, err)
		}
	}
}
