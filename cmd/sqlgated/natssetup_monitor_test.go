package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
)

// TestNATSSetupMonitorCreds: `nats-setup --monitor-creds` writes a 0600
// monitor.creds for a broker-account user that may only send $SRV requests
// (what `nats micro ls|info|stats` needs); without the flag there is none.
func TestNATSSetupMonitorCreds(t *testing.T) {
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routes, demoRoutes, 0o600); err != nil {
		t.Fatal(err)
	}
	setup := func(out string, extra ...string) {
		t.Helper()
		var log strings.Builder
		args := append([]string{"nats-setup", "--out", out, "--keys", filepath.Join(dir, "keys"), "--routes", routes}, extra...)
		if err := run(t.Context(), args, &log, &log); err != nil {
			t.Fatalf("nats-setup %q: %v\n%s", extra, err, log.String())
		}
	}
	setup(filepath.Join(dir, "plain"))
	if _, err := os.Stat(filepath.Join(dir, "plain", "monitor.creds")); !os.IsNotExist(err) {
		t.Errorf("monitor.creds without --monitor-creds: %v", err)
	}
	setup(filepath.Join(dir, "mon"), "--monitor-creds")
	path := filepath.Join(dir, "mon", "monitor.creds")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("monitor.creds mode %04o, want 0600", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		t.Fatal(err)
	}
	if pub := uc.Pub.Allow; len(pub) != 1 || pub[0] != "$SRV.>" {
		t.Errorf("monitor user may publish %v, want only $SRV.>", pub)
	}
}
