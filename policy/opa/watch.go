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
// changes. Every directory of the tree is watched (fsnotify is not
// recursive); directories created later are added as they appear. Events are
// debounced: the reload runs once the tree has been quiet for Debounce, so an
// editor's save (often several writes and a rename) is one reload.
//
// Dir may be a symbolic link (/etc/sqlgate/policy -> releases/current): the
// tree watched is the one it resolves to. The parent of Dir and the parent of
// the resolved directory are watched too, so that a re-pointed link or a
// directory that is removed and created again (rm -rf && cp -r) is noticed
// and its new tree watched. When that is impossible (the parent is gone, the
// system's watch limit is reached) the engine's Status reports it and the
// watch is retried every ten Debounce periods.
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
	if _, err := t.sync(); err != nil {
		_ = w.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stopWatch, e.watchDone = cancel, make(chan struct{})
	go e.watchLoop(ctx, t)
	return nil
}

func (e *Engine) watchLoop(ctx context.Context, t *tree) {
	defer close(e.watchDone)
	defer func() { _ = t.w.Close() }() // nothing to do about a close error
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	retry := time.NewTicker(10 * e.cfg.Debounce)
	defer retry.Stop()
	lost := false
	// resync watches the tree again if Dir now resolves to another
	// directory, or to a new one at the same path; it reports whether the
	// policy should be reloaded.
	resync := func() bool {
		changed, err := t.sync()
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
			if !t.inside(ev.Name) {
				// The root itself, or a sibling in a parent: only a change
				// of what Dir resolves to matters.
				if resync() || ev.Name == t.root || ev.Name == t.real {
					timer.Reset(e.cfg.Debounce)
				}
				continue
			}
			if ev.Has(fsnotify.Create) {
				if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
					if err := addTree(t.w, ev.Name); err != nil {
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
			resync()
			timer.Reset(e.cfg.Debounce)
		case <-retry.C:
			if lost && resync() {
				timer.Reset(e.cfg.Debounce)
			}
		case <-timer.C:
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
// does not exist), and info that directory's identity.
type tree struct {
	w    *fsnotify.Watcher
	root string
	real string
	info os.FileInfo
}

// inside reports whether name lies strictly within the watched tree.
func (t *tree) inside(name string) bool {
	return t.real != "" && strings.HasPrefix(name, t.real+string(filepath.Separator))
}

// sync makes the watches match what root resolves to now: the parents of
// root and of the resolved directory, and the resolved tree. It reports
// whether that changed. A root that does not exist is not an error as long as
// its parent can be watched for it to appear again.
func (t *tree) sync() (changed bool, err error) {
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
		return false, nil
	}
	for _, p := range t.w.WatchList() {
		_ = t.w.Remove(p) // may be gone already
	}
	t.real, t.info = "", nil
	for _, p := range []string{filepath.Dir(t.root), filepath.Dir(resolved)} {
		if err := t.w.Add(p); err != nil {
			return true, fmt.Errorf("watch %s: %w", p, err)
		}
	}
	if err := addTree(t.w, resolved); err != nil {
		return true, err
	}
	t.real, t.info = resolved, info
	return true, nil
}

// addTree watches dir and its subdirectories, skipping names that start with
// a dot (as loading does).
func addTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			return fs.SkipDir
		}
		return w.Add(p)
	})
}
