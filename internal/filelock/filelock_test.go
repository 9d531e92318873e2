package filelock_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/sqlgate/sqlgate/internal/filelock"
)

func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.lock")
	release, err := filelock.Lock(path)
	if err != nil {
		t.Fatal(err)
	}
	// A second open of the file (as a second process would) is refused.
	if _, err := filelock.Lock(path); !errors.Is(err, filelock.ErrLocked) {
		t.Fatalf("second lock: err = %v, want ErrLocked", err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	again, err := filelock.Lock(path)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	_ = again()
	if _, err := filelock.Lock(filepath.Join(t.TempDir(), "missing", "x.lock")); err == nil || errors.Is(err, filelock.ErrLocked) {
		t.Errorf("lock in a missing directory: err = %v, want the open error", err)
	}
}
