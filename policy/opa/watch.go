package opa

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watch starts the goroutine that reloads the policy when a file under Dir
// changes. fsnotify is not recursive: every directory the policy is read
// from is watched — the tree, directories that symbolic links in it lead to
// (wherever they are), and the directories that links to files resolve into
// — and the set is brought up to date as directories and links come and go.
//
// Only events that can change what loading reads count (see [tree.relevant]):
// a database's WAL or a log written beside a linked data.yaml, or inside the
// tree, is no policy file, and written more often than once per Debounce it
// would otherwise put every reload off.
//
// Events are debounced: the tree is read again once it has been quiet for
// Debounce, but no later than maxWait Debounce periods after the first event
// (see [burst]), and the policy is reloaded only when two such reads, a
// Debounce apart, find the same content, so a file written slowly
// (truncated, then written in pieces) is not loaded half-written; an
// editor's save (often several writes and a rename) is one reload.
//
// Dir may be a symbolic link (/etc/sqlgate/policy -> releases/current): the
// tree watched is the one it resolves to. The parent of Dir and the parent of
// the resolved directory are watched too, so that a re-pointed link or a
// directory that is removed and created again (rm -rf && cp -r) is noticed
// and its new tree watched. When that is impossible (the parent is gone, the
// system's watch limit is reached) the engine's Status reports it and the
// watch is retried every ten Debounce periods. On the same tick the policy
// files are read and compared with what was last loaded, which catches what
// no watched directory reports (a link re-pointed outside the tree, a lost
// event).
func (e *Engine) watch() error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	root, err := filepath.Abs(e.cfg.Dir)
	if err != nil {
		_ = w.Close()
		return err
	}
	t := &tree{w: w, root: root}
	if _, err := t.sync(true); err != nil {
		_ = w.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stopWatch, e.watchDone = cancel, make(chan struct{})
	go e.watchLoop(ctx, t)
	return nil
}

// digest identifies the content of the policy files now: the revision they
// would load as, or the error reading them.
func (e *Engine) digest() string {
	s, err := readSnapshot(e.fsys, false)
	if err != nil {
		return "error: " + err.Error()
	}
	return s.revision()
}

// settler holds a reload back until the policy files have stopped changing:
// it is settled when two digests in a row, a Debounce apart, agree.
type settler struct {
	last  string
	armed bool
}

// settled records a digest and reports whether it equals the previous one;
// once settled, the next digest starts over.
func (s *settler) settled(digest string) bool {
	if s.armed && digest == s.last {
		s.armed = false
		return true
	}
	s.last, s.armed = digest, true
	return false
}

// maxWait bounds, in Debounce periods, how long events that never pause
// put off reading the policy files (which still must settle to load).
const maxWait = 10

// burst schedules the reads of the policy files after a run of events: each
// event puts the read off until Debounce has passed without one, but never
// beyond maxWait Debounce periods after the run's first event.
type burst struct {
	debounce time.Duration
	first    time.Time // the run's first event; zero while none is pending
	warned   bool      // the run was reported as still changing
}

// event records an event at now and returns when to read: reset reports
// whether the read timer is to be set to wait, or left as it is (a read is
// due within a Debounce already, and waiting longer would pass the bound).
func (b *burst) event(now time.Time) (wait time.Duration, reset bool) {
	if b.first.IsZero() {
		b.first = now
		return b.debounce, true
	}
	if now.Add(b.debounce).After(b.first.Add(maxWait * b.debounce)) {
		return 0, false
	}
	return b.debounce, true
}

// overdue reports, once per run, that the run has lasted past the bound
// (the caller asks when its reads still do not agree).
func (b *burst) overdue(now time.Time) bool {
	if b.warned || now.Sub(b.first) < maxWait*b.debounce {
		return false
	}
	b.warned = true
	return true
}

// done ends the run: the policy files were read and loaded.
func (b *burst) done() { *b = burst{debounce: b.debounce} }

func (e *Engine) watchLoop(ctx context.Context, t *tree) {
	defer close(e.watchDone)
	defer func() { _ = t.w.Close() }() // nothing to do about a close error
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	retry := time.NewTicker(10 * e.cfg.Debounce)
	defer retry.Stop()
	lost := false
	// loaded is the digest of the files last reloaded; the policy Open
	// loaded, if any, at first.
	loaded := e.Revision()
	var settle settler
	pending := burst{debounce: e.cfg.Debounce}
	// schedule puts the next read off after an event (see burst).
	schedule := func() {
		if wait, reset := pending.event(time.Now()); reset {
			timer.Reset(wait)
		}
	}
	// resync watches the tree again if Dir now resolves to another
	// directory, or to a new one at the same path, and with deep brings the
	// watched directories up to date; it reports whether the policy should
	// be reloaded.
	resync := func(deep bool) bool {
		changed, err := t.sync(deep)
		switch {
		case err != nil && !lost:
			lost = true
			e.setWatchErr(fmt.Errorf("policy directory %s is no longer watched, edits are not loaded: %w", e.cfg.Dir, err))
			e.log.LogAttrs(ctx, slog.LevelError, "policy directory is no longer watched; retrying",
				slog.String("dir", e.cfg.Dir), slog.String("error", err.Error()))
		case err == nil && lost:
			lost = false
			e.setWatchErr(nil)
			e.log.LogAttrs(ctx, slog.LevelInfo, "policy directory is watched again", slog.String("dir", e.cfg.Dir))
			return true
		}
		return changed
	}
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case ev, ok := <-t.w.Events:
			if !ok {
				return
			}
			relevant := t.relevant(ev)
			if !t.inside(ev.Name) {
				// The root itself, or a sibling in a parent: a change of
				// what Dir resolves to matters.
				if resync(false) || ev.Name == t.root || ev.Name == t.real {
					relevant = true
				}
			}
			if !relevant {
				continue
			}
			if ev.Has(fsnotify.Create) {
				if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
					// A new directory, or a link to one: watch it now, so
					// that files written into it next are seen.
					if err := t.refresh(); err != nil {
						e.log.LogAttrs(ctx, slog.LevelWarn, "cannot watch new policy directory",
							slog.String("dir", ev.Name), slog.String("error", err.Error()))
					}
				}
			}
			schedule()
		case err, ok := <-t.w.Errors:
			if !ok {
				return
			}
			// An overflow loses events: check the root and reload to be sure.
			e.log.LogAttrs(ctx, slog.LevelWarn, "policy watcher error", slog.String("error", err.Error()))
			resync(true)
			schedule()
		case <-retry.C:
			if resync(true) || (!lost && e.digest() != loaded) {
				schedule()
			}
		case <-timer.C:
			resync(true) // links may lead elsewhere now
			d := e.digest()
			changing := settle.armed && d != settle.last // since the previous read of this run
			if !settle.settled(d) {
				if changing && pending.overdue(time.Now()) {
					e.log.LogAttrs(ctx, slog.LevelWarn, "policy files are still changing; they are loaded once two reads a debounce apart agree",
						slog.String("dir", e.cfg.Dir), slog.Duration("debounce", e.cfg.Debounce))
				}
				timer.Reset(e.cfg.Debounce) // read again a Debounce later
				continue
			}
			pending.done()
			loaded = d
			// Errors are logged, recorded in Status and passed to OnReload.
			_ = e.Reload(ctx)
		}
	}
}

// setWatchErr records why the policy directory is not watched (nil: it is).
func (e *Engine) setWatchErr(err error) {
	e.statusMu.Lock()
	e.watchErr = err
	e.statusMu.Unlock()
}

// tree is the watched policy directory: root as configured (absolute), real
// the directory it resolved to when its tree was last added ("" while it
// does not exist), and info that directory's identity; parents are the
// watched parents of root and real. The rest is what refresh found: dirs
// the watched directories the policy is read from, true for those loading
// walks, false for those that only hold files that links resolve to; files
// the policy files read, resolved; entries the walked directories and links
// to them, named as events in the directories holding them name them.
type tree struct {
	w       *fsnotify.Watcher
	root    string
	real    string
	info    os.FileInfo
	parents []string
	dirs    map[string]bool
	files   map[string]bool
	entries map[string]bool
}

// inside reports whether name lies strictly within the watched tree.
func (t *tree) inside(name string) bool {
	return t.real != "" && strings.HasPrefix(name, t.real+string(filepath.Separator))
}

// relevant reports whether an event may change what loading reads: it names
// a watched directory, or a file or directory loading reads; or, in a
// walked directory or the tree, a policy file name; or, in any watched
// directory, a directory or link (which may lead to policy files). Other
// names — a database and its WAL or journal in the directory a linked
// data.yaml resolves into, a log or an editor's temporary file in the tree —
// are not read, and one written more often than once per Debounce would
// otherwise put every reload off.
func (t *tree) relevant(ev fsnotify.Event) bool {
	name := ev.Name
	if _, ok := t.dirs[name]; ok || t.files[name] || t.entries[name] {
		return true
	}
	walked, watched := t.dirs[filepath.Dir(name)]
	switch {
	case walked || t.inside(name):
		if base := filepath.Base(name); isPolicyFile(base) && !strings.HasPrefix(base, ".") {
			return true
		}
	case !watched:
		return false
	}
	if ev.Op == fsnotify.Write {
		return false // a file's content: not a directory or link
	}
	info, err := os.Lstat(name)
	return err == nil && (info.IsDir() || info.Mode()&fs.ModeSymlink != 0)
}

// sync makes the watches match what root resolves to now: the parents of
// root and of the resolved directory, and the directories the policy is read
// from (see refresh; when root resolves as before, only with deep: a
// sibling's event in a parent, such as a database file written beside the
// policy directory, costs no walk of the tree). It reports whether what root
// resolves to changed. A root that does not exist is not an error as long as
// its parent can be watched for it to appear again.
func (t *tree) sync(deep bool) (changed bool, err error) {
	resolved, err := filepath.EvalSymlinks(t.root)
	if errors.Is(err, fs.ErrNotExist) {
		changed = t.real != ""
		t.real, t.info = "", nil
		// Kept across the removal unless the parent went too.
		if err := t.w.Add(filepath.Dir(t.root)); err != nil {
			return changed, fmt.Errorf("watch %s for the policy directory to appear: %w", filepath.Dir(t.root), err)
		}
		return changed, nil
	}
	if err != nil {
		return false, err
	}
	info, err := os.Stat(resolved)
	if err != nil {
		return false, err
	}
	if !info.IsDir() {
		return false, fmt.Errorf("%s is not a directory", resolved)
	}
	// A directory removed and created again may get the same inode: what
	// tells is that its watch went with it.
	if resolved == t.real && os.SameFile(info, t.info) && slices.Contains(t.w.WatchList(), resolved) {
		if !deep {
			return false, nil
		}
		return false, t.refresh()
	}
	for _, p := range t.w.WatchList() {
		_ = t.w.Remove(p) // may be gone already
	}
	t.real, t.info, t.dirs, t.files, t.entries = "", nil, nil, nil, nil
	t.parents = []string{filepath.Dir(t.root), filepath.Dir(resolved)}
	for _, p := range t.parents {
		if err := t.w.Add(p); err != nil {
			return true, fmt.Errorf("watch %s: %w", p, err)
		}
	}
	t.real = resolved
	if err := t.refresh(); err != nil {
		t.real = "" // start over at the next sync
		return true, err
	}
	t.info = info
	return true, nil
}

// refresh watches the directories the policy is read from now — every
// directory loading walks, through symbolic links too, and the directory
// that each link to a policy file resolves into — and stops watching those
// it no longer reads (parents excepted). A directory removed and created
// again is watched again: the kernel dropped its watch with it. Links that
// do not resolve are skipped here: loading reports them.
func (t *tree) refresh() error {
	want := map[string]bool{}         // directory → walked
	files := map[string]bool{}        // policy files, resolved
	entries := map[string]bool{}      // walked directories, by their name in their parent
	resolvedOf := map[string]string{} // walk path → resolved, of directories
	_ = walkPolicyTree(os.DirFS(t.real), func(p string, dir bool) error {
		if !dir && !isPolicyFile(p) {
			return nil
		}
		resolved, rerr := filepath.EvalSymlinks(filepath.Join(t.real, filepath.FromSlash(p)))
		if rerr != nil {
			return nil //nolint:nilerr // gone meanwhile: nothing to watch, the walk goes on
		}
		if !dir {
			files[resolved] = true
			d := filepath.Dir(resolved)
			if _, ok := want[d]; !ok {
				want[d] = false // watched for the file; walked stays walked
			}
			return nil
		}
		want[resolved] = true
		resolvedOf[p] = resolved
		if parent, ok := resolvedOf[path.Dir(p)]; ok && p != "." {
			entries[filepath.Join(parent, path.Base(p))] = true
		}
		return nil
	}, func(string, error) error { return nil })
	t.files, t.entries = files, entries
	if t.dirs == nil {
		t.dirs = map[string]bool{}
	}
	for d := range t.dirs {
		if _, ok := want[d]; !ok {
			if !slices.Contains(t.parents, d) {
				_ = t.w.Remove(d) // may be gone already
			}
			delete(t.dirs, d)
		}
	}
	watched := t.w.WatchList()
	for d, walked := range want {
		if _, ok := t.dirs[d]; !ok || !slices.Contains(watched, d) {
			if err := t.w.Add(d); err != nil {
				return fmt.Errorf("watch %s: %w", d, err)
			}
		}
		t.dirs[d] = walked
	}
	return nil
}
