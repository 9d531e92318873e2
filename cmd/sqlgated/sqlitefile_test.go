//go:build unix

package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker/sqlite"
)

// withUmask runs the test under umask (process-wide, so the test is not
// parallel) and restores the previous one.
func withUmask(t *testing.T, umask int) {
	t.Helper()
	old := syscall.Umask(umask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestControlSQLiteFileMode checks that a new SQLite control database, its
// -wal and its -shm are created 0600 under the usual umask 022 (SQLite
// alone creates them 0644: other users could read the decision inputs).
func TestControlSQLiteFileMode(t *testing.T) {
	withUmask(t, 0o022)
	path := filepath.Join(t.TempDir(), "state", "control.db")
	db, dialect, err := openControl(ControlConfig{Dialect: "sqlite", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	// The audit log's store creates its tables (WAL mode) and writes.
	if _, err := sqlstore.Open(t.Context(), db, dialect); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE t (x text); INSERT INTO t VALUES ('alice@example.com')"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if m := fileMode(t, p); m != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", filepath.Base(p), m)
		}
	}
	if m := fileMode(t, filepath.Dir(path)); m != 0o700 {
		t.Errorf("the directory has mode %#o, want 0700", m)
	}
}

// TestControlSQLiteExistingFileMode checks that an existing control
// database (created 0644 by an earlier version) and its -wal and -shm
// (left by a crash) lose other users' access at start; the owner's and
// group's bits stay.
func TestControlSQLiteExistingFileMode(t *testing.T) {
	withUmask(t, 0o022)
	path := filepath.Join(t.TempDir(), "control.db")
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db, _, err := openControl(ControlConfig{Dialect: "sqlite", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if m := fileMode(t, p); m != 0o640 {
			t.Errorf("%s has mode %#o, want 0640", filepath.Base(p), m)
		}
	}
	// Not a file: refused, not changed.
	dir := filepath.Join(t.TempDir(), "control.db")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if db, _, err := openControl(ControlConfig{Dialect: "sqlite", Path: dir}); err == nil {
		_ = db.Close()
		t.Error("openControl(a directory) = nil error")
	}
	if m := fileMode(t, dir); m != 0o755 {
		t.Errorf("the directory's mode became %#o", m)
	}
}

// TestDevControlSQLiteFileMode checks that sqlgated dev creates its
// control database 0600 too, even in a data directory others may enter.
func TestDevControlSQLiteFileMode(t *testing.T) {
	withUmask(t, 0o022)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	runDevUntilStarted(t, dir, "mode-host")
	if m := fileMode(t, filepath.Join(dir, "control.db")); m != 0o600 {
		t.Errorf("control.db has mode %#o, want 0600", m)
	}
}

// TestTargetSQLiteFileMode: a SQLite target database, whose idempotency
// records hold the calls' results, is created 0600 (its -wal and -shm
// follow) under the usual umask, as the control database is.
func TestTargetSQLiteFileMode(t *testing.T) {
	withUmask(t, 0o022)
	path := filepath.Join(t.TempDir(), "orders.db")
	ex, err := openExecutor(t.Context(), DatabaseConfig{SQLite: &sqlite.Config{Name: "orders", Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	defer closeExecutor(ex)
	if _, _, err := ex.Lookup(t.Context(), "k"); err != nil { // a read through the WAL
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if _, err := os.Stat(p); err != nil {
			continue // not every file exists at every moment
		}
		if m := fileMode(t, p); m != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", filepath.Base(p), m)
		}
	}
}
