package opa

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watch starts the goroutine that reloads the policy when a file under Dir
// changes. Every directory of the tree is watched (fsnotify is not
// recursive); directories created later are added as they appear. Events are
// debounced: the reload runs once the tree has been quiet for Debounce, so an
// editor's save (often several writes and a rename) is one reload.
func (e *Engine) watch() error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := addTree(w, e.cfg.Dir); err != nil {
		_ = w.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stopWatch, e.watchDone = cancel, make(chan struct{})
	go e.watchLoop(ctx, w)
	return nil
}

func (e *Engine) watchLoop(ctx context.Context, w *fsnotify.Watcher) {
	defer close(e.watchDone)
	defer func() { _ = w.Close() }() // nothing to do about a close error
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Create) {
				if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
					if err := addTree(w, ev.Name); err != nil {
						e.log.LogAttrs(ctx, slog.LevelWarn, "cannot watch new policy directory",
							slog.String("dir", ev.Name), slog.String("error", err.Error()))
					}
				}
			}
			timer.Reset(e.cfg.Debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// An overflow loses events: reload to be sure.
			e.log.LogAttrs(ctx, slog.LevelWarn, "policy watcher error", slog.String("error", err.Error()))
			timer.Reset(e.cfg.Debounce)
		case <-timer.C:
			// Errors are logged, recorded in Status and passed to OnReload.
			_ = e.Reload(ctx)
		}
	}
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
