package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/internal/filelock"
)

// TestServeOriginClaimLostToAnother: while serve runs, another process
// takes its audit origin's claim (here: the lock file beside the SQLite
// control database is deleted and locked anew, as a second instance with
// the same audit.origin would after the first's claim ended). The running
// instance notices, is not ready ("audit log") instead of racing the other
// writer, and is ready again once it holds the claim again.
func TestServeOriginClaimLostToAnother(t *testing.T) {
	if testing.Short() {
		t.Skip("serve end to end: skipped with -short")
	}
	st := startDemoServe(t)
	locks, err := filepath.Glob(filepath.Join(st.dir, "control.db-origin-*.lock"))
	if err != nil || len(locks) != 1 {
		t.Fatalf("origin lock files: %v, %v", locks, err)
	}
	if err := os.Remove(locks[0]); err != nil {
		t.Fatal(err)
	}
	release, err := filelock.Lock(locks[0]) // the other process's claim
	if err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, st.base, http.StatusServiceUnavailable, `"audit log"`)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	waitReadyz(t, st.base, http.StatusOK, `"status": "ready"`)
}

// waitReadyz polls /readyz until it answers status with a body that
// contains want. The claim is checked every few seconds; the bound only
// ends a broken run.
func waitReadyz(t *testing.T, base string, status int, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var last string
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(body)
			if resp.StatusCode == status && strings.Contains(last, want) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("/readyz never answered %d with %s; last: %s", status, want, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
