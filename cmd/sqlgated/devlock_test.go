package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/internal/filelock"
)

// TestDevDataDirInUseSaysHow: a second sqlgated dev on a data directory in
// use (a second make run) is refused with both ways to pick another one:
// the flag, and the make variable a make run user has.
func TestDevDataDirInUseSaysHow(t *testing.T) {
	dir := t.TempDir()
	release, err := filelock.Lock(filepath.Join(dir, "dev.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = release() }()
	// A guard only: a dev that starts instead of refusing runs until its
	// context ends.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var out syncBuffer
	err = runDevOn(ctx, []string{"--data-dir", dir, "--http", "127.0.0.1:0", "--nats", "127.0.0.1:0", "--log-level", "warn"}, &out, &out, "devhost")
	for _, want := range []string{"another sqlgated dev is running with the data directory " + dir, "--data-dir DIR", "make run DATA_DIR=DIR"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("dev on a data directory in use = %v, want it to say %q", err, want)
		}
	}
}
