package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHangupDoesNotStopTheProcess sends this process a SIGHUP with main's
// trap (notifyHangups) in place and serve's logger (logHangups) reading it:
// the process keeps running and logs that the configuration is read at
// start only. Without the trap, SIGHUP's default action ended sqlgated at
// once, without a drain or a final audit checkpoint (here: the test binary
// dies).
func TestHangupDoesNotStopTheProcess(t *testing.T) {
	ch := notifyHangups()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := &syncBuffer{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		logHangups(ctx, ch, slog.New(slog.NewTextHandler(logs, nil)))
	}()
	for range 2 {
		before := strings.Count(logs.String(), "configuration is read at start only; restart to apply")
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(logs.String(), "configuration is read at start only; restart to apply") == before {
			if time.Now().After(deadline) {
				t.Fatalf("no log line for a SIGHUP:\n%s", logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("a SIGHUP is logged as a warning (it changes nothing): %s", logs)
	}
	cancel()
	<-done
}

// TestSystemdReloadSendsHangup runs the unit's ExecReload, as `systemctl
// reload sqlgated` does, with $MAINPID this process and main's trap in
// place: serve receives a SIGHUP, which it logs and ignores
// (TestHangupDoesNotStopTheProcess), as the unit and docs/operations.md
// say. The unit used to have no ExecReload: systemd then refuses the
// reload ("Job type reload is not applicable") and sends nothing.
func TestSystemdReloadSendsHangup(t *testing.T) {
	unit, err := os.ReadFile("../../deploy/systemd/sqlgated.service")
	if err != nil {
		t.Fatal(err)
	}
	reload := unitValues(unit, "ExecReload")
	if len(reload) != 1 {
		t.Fatalf("ExecReload = %q, want one command: without it systemctl reload is refused", reload)
	}
	args := strings.Fields(strings.ReplaceAll(reload[0], "$MAINPID", strconv.Itoa(os.Getpid())))
	ch := notifyHangups()
	for len(ch) > 0 { // a SIGHUP of an earlier test
		<-ch
	}
	if out, err := exec.CommandContext(t.Context(), args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("ExecReload %q: %v\n%s", reload[0], err, out)
	}
	select {
	case s := <-ch:
		if s != syscall.SIGHUP {
			t.Errorf("ExecReload sent %v, want SIGHUP", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("ExecReload %q sent the main process no SIGHUP", reload[0])
	}
}

// TestDevStopsOnHangup runs the built sqlgated dev and sends it a SIGHUP,
// as a closing terminal does: it stops as on SIGTERM (exit status 0, its
// calls drained and its audit log closed), and the next `sqlgated dev` on
// the same data directory starts. It used to ignore SIGHUP (main trapped it
// for serve) and outlive its terminal, holding the data directory's lock
// and its ports: the next start failed "another sqlgated dev is running".
func TestDevStopsOnHangup(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sqlgated")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build sqlgated: %v\n%s", err, out)
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), bin, "dev", "--data-dir", dir, "--http", "127.0.0.1:0", "--nats", "127.0.0.1:0", "--log-level", "warn")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(out.String(), "sqlgate dev is running") {
		select {
		case err := <-done:
			t.Fatalf("sqlgated dev exited: %v\n%s", err, out)
		case <-deadline:
			t.Fatalf("sqlgated dev did not start:\n%s", out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sqlgated dev at a SIGHUP: %v, want exit status 0\n%s", err, out)
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("sqlgated dev keeps running after a SIGHUP:\n%s", out)
	}
	if !strings.Contains(out.String(), "sqlgated dev: shutting down") {
		t.Errorf("sqlgated dev did not shut down at a SIGHUP:\n%s", out)
	}
	runDevUntilStarted(t, dir, hostname()) // its lock is free
}
