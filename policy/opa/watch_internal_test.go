package opa

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// TestSettler: a reload waits until two reads of the policy files, a
// Debounce apart, find the same content, so a file still being written (a
// truncate, then a slow write) is not loaded half-written.
func TestSettler(t *testing.T) {
	var s settler
	for i, step := range []struct {
		digest string
		want   bool
	}{
		{"a", false}, // the first read after a change: wait
		{"a", true},  // unchanged a Debounce later: load
		{"a", false}, // the next change starts over
		{"b", false}, // still being written
		{"c", false},
		{"c", true},
	} {
		if got := s.settled(step.digest); got != step.want {
			t.Fatalf("step %d: settled(%q) = %v, want %v", i, step.digest, got, step.want)
		}
	}
}

// TestBurstIsBounded: events that never pause put the read off by a
// Debounce each, but not past maxWait Debounce periods after the first;
// then the timer is left to fire. The clock is simulated.
func TestBurstIsBounded(t *testing.T) {
	const d = time.Second
	b := burst{debounce: d}
	t0 := time.Unix(1_000_000, 0)
	due := time.Time{} // when the read timer fires
	for now := t0; now.Before(t0.Add(3 * maxWait * d)); now = now.Add(d / 4) {
		if !due.IsZero() && !now.Before(due) {
			break // the timer fired
		}
		if wait, reset := b.event(now); reset {
			due = now.Add(wait)
		}
	}
	if limit := t0.Add(maxWait * d); due.After(limit) {
		t.Fatalf("read due %v after the first event, want at most %v", due.Sub(t0), limit.Sub(t0))
	}
	if due.Before(t0.Add(maxWait*d - d)) {
		t.Errorf("read due %v after the first event: events were not debounced", due.Sub(t0))
	}
	if b.overdue(t0.Add(maxWait*d - 1)) {
		t.Error("overdue before the bound")
	}
	if !b.overdue(t0.Add(maxWait * d)) {
		t.Error("not overdue at the bound")
	}
	if b.overdue(t0.Add(2 * maxWait * d)) {
		t.Error("overdue reported twice in one run")
	}

	// After a load, the next event starts a new run, debounced again.
	b.done()
	later := t0.Add(100 * d)
	if wait, reset := b.event(later); !reset || wait != d {
		t.Errorf("first event of a new run: %v, %v; want %v, true", wait, reset, d)
	}
	if wait, reset := b.event(later.Add(d / 2)); !reset || wait != d {
		t.Errorf("second event of a new run: %v, %v; want %v, true", wait, reset, d)
	}
}

// watchedTree watches the policy directory root as the engine does.
func watchedTree(t *testing.T, root string) *tree {
	t.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	tr := &tree{w: w, root: root}
	if _, err := tr.sync(true); err != nil {
		t.Fatal(err)
	}
	return tr
}

// mkfile writes a file, creating its directory.
func mkfile(t *testing.T, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte("x: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tempDir is a temporary directory by its resolved path, as events name it.
func tempDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRelevantEvents: in a directory that only holds the file a link
// resolves to (data.yaml -> /var/lib/sqlgate/data.yaml), only that file,
// and directories and links, count; in the tree, policy file names,
// directories and links; a database's WAL beside data.yaml or a log in the
// tree, written often, must not put reloads off.
func TestRelevantEvents(t *testing.T) {
	root, state, shared := tempDir(t), tempDir(t), tempDir(t)
	mkfile(t, filepath.Join(root, "sub", "x.rego"))
	mkfile(t, filepath.Join(state, "data.yaml"))
	mkfile(t, filepath.Join(state, "control.db-wal"))
	mkfile(t, filepath.Join(state, "other.yaml"))
	mkfile(t, filepath.Join(shared, "y.rego"))
	if err := os.Mkdir(filepath.Join(state, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(state, "data.yaml"), filepath.Join(root, "data.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(shared, filepath.Join(root, "shared")); err != nil {
		t.Fatal(err)
	}
	tr := watchedTree(t, root)
	// A link to a directory removed: its name is gone, but it was read.
	if err := os.Remove(filepath.Join(root, "shared")); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		op   fsnotify.Op
		want bool
	}{
		{filepath.Join(state, "data.yaml"), fsnotify.Write, true},
		{filepath.Join(state, "data.yaml"), fsnotify.Create, true},
		{filepath.Join(state, "control.db-wal"), fsnotify.Write, false},
		{filepath.Join(state, "control.db-journal"), fsnotify.Remove, false},
		{filepath.Join(state, "other.yaml"), fsnotify.Write, false}, // not read
		{filepath.Join(state, "dir"), fsnotify.Create, true},
		{state, fsnotify.Remove, true},
		{filepath.Join(root, "data.yaml"), fsnotify.Create, true},
		{filepath.Join(root, "notes.log"), fsnotify.Write, false},
		{filepath.Join(root, ".data.yaml.swp"), fsnotify.Write, false},
		{filepath.Join(root, "sub", "new.rego"), fsnotify.Create, true},
		{filepath.Join(root, "sub", "gone.json"), fsnotify.Remove, true},
		{filepath.Join(root, "sub", "audit.log"), fsnotify.Write, false},
		{filepath.Join(root, "sub"), fsnotify.Remove, true},
		{filepath.Join(root, "shared"), fsnotify.Remove, true},
		{filepath.Join(shared, "y.rego"), fsnotify.Write, true},
		{filepath.Join(shared, "y.log"), fsnotify.Write, false},
	} {
		if got := tr.relevant(fsnotify.Event{Name: tc.name, Op: tc.op}); got != tc.want {
			t.Errorf("relevant(%s %s) = %v, want %v", tc.op, tc.name, got, tc.want)
		}
	}
}

// nextEvent waits for an event that match accepts, with a generous deadline
// (a slow machine only makes the test slower).
func nextEvent(t *testing.T, w *fsnotify.Watcher, match func(fsnotify.Event) bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-w.Events:
			if match(ev) {
				return
			}
		case err := <-w.Errors:
			t.Fatal(err)
		case <-deadline:
			t.Fatal("no such event")
		}
	}
}

// TestRefreshWatchesReplacedSubdirectory: a subdirectory removed and copied
// in again (rm -rf sub && cp -r new sub) lost its watch with it; the next
// refresh watches it again, so edits in it are reported (they were only
// found by the periodic re-read).
func TestRefreshWatchesReplacedSubdirectory(t *testing.T) {
	root := tempDir(t)
	sub := filepath.Join(root, "sub")
	mkfile(t, filepath.Join(sub, "a.rego"))
	tr := watchedTree(t, root)
	if !slices.Contains(tr.w.WatchList(), sub) {
		t.Fatalf("%s not watched: %v", sub, tr.w.WatchList())
	}

	if err := os.RemoveAll(sub); err != nil {
		t.Fatal(err)
	}
	mkfile(t, filepath.Join(sub, "a.rego"))
	// Once the removal is reported, the watcher has dropped the watch too.
	nextEvent(t, tr.w, func(ev fsnotify.Event) bool { return ev.Name == sub && ev.Has(fsnotify.Remove) })
	if err := tr.refresh(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tr.w.WatchList(), sub) {
		t.Fatalf("%s not watched again after it was replaced: %v", sub, tr.w.WatchList())
	}
	mkfile(t, filepath.Join(sub, "b.rego"))
	nextEvent(t, tr.w, func(ev fsnotify.Event) bool { return ev.Name == filepath.Join(sub, "b.rego") })
}
