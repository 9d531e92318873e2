package opa_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
)

// openWatching opens a watching engine on dir with a short debounce.
func openWatching(t *testing.T, dir string) *opa.Engine {
	t.Helper()
	e, err := opa.Open(t.Context(), opa.Config{EvalTimeout: testEvalTimeout, Dir: dir, Watch: true, Debounce: 20 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// eventually polls cond until it holds or a generous deadline passes (no
// timing is asserted: a slow machine only makes the test slower).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("never: %s", what)
}

// allows1500 reports whether the engine allows a sales order of 1500 (the
// library's limit is 1000; the tests raise it to 2000).
func allows1500(t *testing.T, e *opa.Engine) bool {
	d, _ := e.Decide(t.Context(), policy.Call, salesCreate(1500))
	return d.Allow
}

// copyTree copies the policy directory src to dst (which must not exist).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// TestWatchThroughSymlink: the policy directory is reached through a
// symbolic link (/etc/sqlgate/policy -> releases/current); edits in the
// target are loaded, and so is a release the link is re-pointed to.
func TestWatchThroughSymlink(t *testing.T) {
	releases := t.TempDir()
	v1 := filepath.Join(releases, "v1")
	copyTree(t, copyRules(t), v1)
	link := filepath.Join(t.TempDir(), "policy")
	if err := os.Symlink(v1, link); err != nil {
		t.Fatal(err)
	}
	e := openWatching(t, link)
	if allows1500(t, e) {
		t.Fatal("1500 allowed before any edit")
	}

	edit(t, filepath.Join(v1, "data.yaml"), "max: 1000", "max: 2000")
	eventually(t, "an edit behind the link is loaded", func() bool { return allows1500(t, e) })

	// Deploy v2 (limit 1000 again) by re-pointing the link atomically.
	v2 := filepath.Join(releases, "v2")
	copyTree(t, copyRules(t), v2)
	tmp := link + ".tmp"
	if err := os.Symlink(v2, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the re-pointed link is loaded", func() bool { return !allows1500(t, e) })

	// Edits of the new target are loaded; the old one is no longer served.
	edit(t, filepath.Join(v1, "data.yaml"), "max: 2000", "max: 1000")
	edit(t, filepath.Join(v2, "data.yaml"), "max: 1000", "max: 2000")
	eventually(t, "an edit in the new target is loaded", func() bool { return allows1500(t, e) })
}

// TestWatchReplacedDirectory: a deployment that removes the directory and
// copies a new one in (rm -rf && cp -r) is loaded, and so are later edits.
func TestWatchReplacedDirectory(t *testing.T) {
	src := copyRules(t)
	dir := filepath.Join(t.TempDir(), "policy")
	copyTree(t, src, dir)
	e := openWatching(t, dir)

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	edit(t, filepath.Join(src, "data.yaml"), "max: 1000", "max: 2000")
	copyTree(t, src, dir)
	eventually(t, "the replaced directory is loaded", func() bool { return allows1500(t, e) && e.Status().LastError == nil })

	edit(t, filepath.Join(dir, "data.yaml"), "max: 2000", "max: 1000")
	eventually(t, "an edit in the replaced directory is loaded", func() bool { return !allows1500(t, e) })
}

// TestWatchLostIsReported: when the directory cannot be watched any more
// (its parent is gone too), Status says so, which readiness and the policy
// page show; once the directory is back it is watched and loaded again.
func TestWatchLostIsReported(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "etc")
	dir := filepath.Join(parent, "policy")
	copyTree(t, copyRules(t), dir)
	e := openWatching(t, dir)
	good := e.Revision()

	if err := os.RemoveAll(parent); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Status reports the lost watch", func() bool {
		err := e.Status().LastError
		return err != nil && strings.Contains(err.Error(), "is no longer watched")
	})
	if st := e.Status(); st.Revision != good {
		t.Errorf("revision %s while the directory is gone, want the last good %s", st.Revision, good)
	}

	src := copyRules(t)
	edit(t, filepath.Join(src, "data.yaml"), "max: 1000", "max: 2000")
	copyTree(t, src, dir)
	eventually(t, "the directory is watched and loaded again", func() bool { return allows1500(t, e) && e.Status().LastError == nil })
	edit(t, filepath.Join(dir, "data.yaml"), "max: 2000", "max: 1000")
	eventually(t, "a later edit is loaded", func() bool { return !allows1500(t, e) })
}

// busyWriter appends to file every few milliseconds, as a SQLite WAL or a
// log does, until the test ends.
func busyWriter(t *testing.T, file string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := f.WriteString("page\n"); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		_ = f.Close()
	})
}

// TestWatchBesideBusyFile: a file written more often than once per Debounce
// beside the policy — a database's WAL in the directory a linked data.yaml
// resolves into, a log inside the tree — does not hold reloads back (every
// write restarted the debounce, so an edit was never loaded).
func TestWatchBesideBusyFile(t *testing.T) {
	t.Run("beside a linked file", func(t *testing.T) {
		dir := copyRules(t)
		state := t.TempDir() // /var/lib/sqlgate
		moveToLink(t, dir, "data.yaml", filepath.Join(state, "data.yaml"))
		e := openWatching(t, dir)
		busyWriter(t, filepath.Join(state, "control.db-wal"))

		edit(t, filepath.Join(state, "data.yaml"), "max: 1000", "max: 2000")
		eventually(t, "the edit is loaded", func() bool { return allows1500(t, e) })
	})
	t.Run("inside the tree", func(t *testing.T) {
		dir := copyRules(t)
		e := openWatching(t, dir)
		busyWriter(t, filepath.Join(dir, "sqlgate", "audit.log"))

		edit(t, filepath.Join(dir, "data.yaml"), "max: 1000", "max: 2000")
		eventually(t, "the edit is loaded", func() bool { return allows1500(t, e) })
	})
}
