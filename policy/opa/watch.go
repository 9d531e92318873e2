package opa

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
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
// Events are debounced: the tree is read again once it has been quiet for
// Debounce, and the policy is reloaded only when two such reads, a Debounce
// apart, find the same content, so a file written slowly (truncated, then
// written in pieces) is not loaded half-written; an editor's save (often
// several writes and a rename) is one reload.
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
			relevant := t.reads(ev.Name)
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
			timer.Reset(e.cfg.Debounce)
		case err, ok := <-t.w.Errors:
			if !ok {
				return
			}
			// An overflow loses events: check the root and reload to be sure.
			e.log.LogAttrs(ctx, slog.LevelWarn, "policy watcher error", slog.String("error", err.Error()))
			resync(true)
			timer.Reset(e.cfg.Debounce)
		case <-retry.C:
			if resync(true) || (!lost && e.digest() != loaded) {
				timer.Reset(e.cfg.Debounce)
			}
		case <-timer.C:
			resync(true) // links may lead elsewhere now
			d := e.digest()
			if !settle.settled(d) {
				timer.Reset(e.cfg.Debounce) // read again a Debounce later
				continue
			}
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
// watched parents of root and real, and dirs the watched directories the
// policy is read from.
type tree struct {
	w       *fsnotify.Watcher
	root    string
	real    string
	info    os.FileInfo
	parents []string
	dirs    map[string]bool
}

// inside reports whether name lies strictly within the watched tree.
func (t *tree) inside(name string) bool {
	return t.real != "" && strings.HasPrefix(name, t.real+string(filepath.Separator))
}

// reads reports whether name is, or is an entry of, a directory the policy
// is read from.
func (t *tree) reads(name string) bool {
	return t.inside(name) || t.dirs[name] || t.dirs[filepath.Dir(name)]
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
	t.real, t.info, t.dirs = "", nil, nil
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
// it no longer reads (parents excepted). Links that do not resolve are
// skipped here: loading reports them.
func (t *tree) refresh() error {
	want := map[string]bool{}
	_ = walkPolicyTree(os.DirFS(t.real), func(p string, dir bool) error {
		if !dir && !isPolicyFile(p) {
			return nil
		}
		resolved, rerr := filepath.EvalSymlinks(filepath.Join(t.real, filepath.FromSlash(p)))
		if rerr != nil {
			return nil //nolint:nilerr // gone meanwhile: nothing to watch, the walk goes on
		}
		if !dir {
			resolved = filepath.Dir(resolved)
		}
		want[resolved] = true
		return nil
	}, func(string, error) error { return nil })
	if t.dirs == nil {
		t.dirs = map[string]bool{}
	}
	for d := range t.dirs {
		if !want[d] {
			if !slices.Contains(t.parents, d) {
				_ = t.w.Remove(d) // may be gone already
			}
			delete(t.dirs, d)
		}
	}
	for d := range want {
		if !t.dirs[d] {
			if err := t.w.Add(d); err != nil {
				return fmt.Errorf("watch %s: %w", d, err)
			}
			t.dirs[d] = true
		}
	}
	return nil
}
