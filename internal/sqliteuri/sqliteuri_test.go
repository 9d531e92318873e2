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

// TestFileDoubleSlashIsAPath opens databases at absolute paths that start
// with "//": SQLite would read "//localhost/..." as an authority and open
// the path after it, and "//srv/..." as an authority it refuses. Each is
// the file at its own path.
func TestFileDoubleSlashIsAPath(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"localhost", "srv"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
		p := "/" + filepath.Join(dir, sub, "a.db") // "//tmp/.../localhost/a.db"
		wrong := filepath.Join(dir, "a.db")
		u := sqliteuri.File(p, "_pragma=busy_timeout(1000)")
		db, err := sql.Open("sqlite", u)
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.Exec(`CREATE TABLE t (n INTEGER)`)
		_ = db.Close()
		if err != nil {
			t.Errorf("%s (%s): %v", p, u, err)
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, sub, "a.db")); err != nil {
			t.Errorf("%s (%s): no database file at the path: %v", p, u, err)
		}
		if _, err := os.Stat(wrong); err == nil {
			t.Errorf("%s (%s) opened %s", p, u, wrong)
		}
	}
	// The path's first component is the authority SQLite would read.
	for _, p := range []string{"//localhost" + dir + "/b.db", "//srv" + dir + "/b.db"} {
		u := sqliteuri.File(p, "")
		db, err := sql.Open("sqlite", u)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Ping()
		_ = db.Close()
		if err == nil {
			t.Errorf("%s (%s) opened a database, but no directory %s exists", p, u, filepath.Dir(p))
		}
		if _, err := os.Stat(filepath.Join(dir, "b.db")); err == nil {
			t.Fatalf("%s (%s) opened %s", p, u, filepath.Join(dir, "b.db"))
		}
	}
}
