package main

import (
	"context"
	"log/slog"
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
