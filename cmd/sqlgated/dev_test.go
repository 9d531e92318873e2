package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// runDevUntilStarted runs `sqlgated dev` on a host named host with dir as
// its data directory, waits for its banner, stops it and returns what it
// left in dev.json. A start that fails is the test's failure.
func runDevUntilStarted(t *testing.T, dir, host string) devState {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- runDevOn(ctx, []string{"--data-dir", dir, "--http", "127.0.0.1:0", "--nats", "127.0.0.1:0", "--log-level", "warn"}, out, out, host)
	}()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(out.String(), "sqlgate dev is running") {
		select {
		case err := <-done:
			t.Fatalf("sqlgated dev on %s exited: %v\n%s", host, err, out)
		case <-deadline:
			t.Fatalf("sqlgated dev on %s did not start:\n%s", host, out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sqlgated dev on %s: %v\n%s", host, err, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("sqlgated dev on %s did not stop", host)
	}
	return loadDevState(dir)
}

// A dev data directory moves with its files: after the host is renamed (or
// the directory copied to another machine), the next start keeps the audit
// log's origin, which its signing key is named after.
func TestDevStateSurvivesHostnameChange(t *testing.T) {
	dir := t.TempDir()
	first := runDevUntilStarted(t, dir, "old-host")
	if first.AuditOrigin != "sqlgate-dev/old-host" {
		t.Fatalf("first start: audit_origin = %q, want sqlgate-dev/old-host", first.AuditOrigin)
	}
	second := runDevUntilStarted(t, dir, "new-host")
	if second.AuditOrigin != first.AuditOrigin || second.AuditKey != first.AuditKey {
		t.Errorf("after the host was renamed: origin %q key %q, want the first start's %q %q",
			second.AuditOrigin, second.AuditKey, first.AuditOrigin, first.AuditKey)
	}
}

// A lost dev signing key is a key rotation: dev.json keeps the verifier keys
// the log has used and passes them as previous keys, so the log accepts its
// latest checkpoint (signed by the lost key) and signs on with a new key.
func TestDevLostSigningKeyRecovers(t *testing.T) {
	dir := t.TempDir()
	first := runDevUntilStarted(t, dir, "devhost")
	if !slices.Equal(first.AuditKeys, []string{first.AuditKey}) {
		t.Fatalf("first start: audit_verifier_keys = %q, want [%q]", first.AuditKeys, first.AuditKey)
	}
	if err := os.Remove(devSigningKeyFile(dir)); err != nil {
		t.Fatal(err)
	}
	second := runDevUntilStarted(t, dir, "devhost")
	if second.AuditKey == first.AuditKey {
		t.Fatal("the signing key was not replaced")
	}
	if want := []string{first.AuditKey, second.AuditKey}; !slices.Equal(second.AuditKeys, want) {
		t.Errorf("audit_verifier_keys = %q, want %q", second.AuditKeys, want)
	}
	if second.AuditOrigin != first.AuditOrigin {
		t.Errorf("audit_origin = %q, want %q", second.AuditOrigin, first.AuditOrigin)
	}
	// An auditor of the demo finds both generations in demo/audit.vkeys,
	// for --keys-file.
	if got, err := os.ReadFile(filepath.Join(dir, "demo", "audit.vkeys")); err != nil || string(got) != first.AuditKey+"\n"+second.AuditKey+"\n" {
		t.Errorf("demo/audit.vkeys = %q, %v; want both keys", got, err)
	}
	// Both generations stay trusted on the next start.
	if third := runDevUntilStarted(t, dir, "devhost"); !slices.Equal(third.AuditKeys, second.AuditKeys) {
		t.Errorf("third start: audit_verifier_keys = %q, want %q", third.AuditKeys, second.AuditKeys)
	}
}
