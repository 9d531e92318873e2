package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
)

// TestUnwritableHomeSaysSetHome: when the state directory cannot be read
// or created (here below a regular file; tests run as root, to whom a home
// directory without write permission is writable), the error says to set
// SQLGATE_HOME to a writable directory.
func TestUnwritableHomeSaysSetHome(t *testing.T) {
	file := filepath.Join(t.TempDir(), "home")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(file, ".config", "sqlgate")

	const pw = "alice-test-password"
	idp := devidptest.Start(t,
		devidp.WithUsers(devidp.User{Username: "alice", Password: pw, Email: "alice@example.com"}),
		devidp.WithClients(devidp.Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}))
	srv := httptest.NewServer(&standInBroker{t: t, idp: idp.Issuer(), who: "alice"})
	defer srv.Close()
	c := &cli{t: t, home: home, env: map[string]string{"SQLGATE_BROKER": srv.URL}}
	code, _, errOut := c.run(pw+"\n", "login", "--username", "alice", "--password-stdin")
	const want = ": set SQLGATE_HOME to a writable directory"
	if code != 1 || !strings.Contains(errOut, home) || !strings.HasSuffix(strings.TrimSpace(errOut), want) {
		t.Errorf("login with an unwritable home: exit %d, %q; want it to name %s and end with %q", code, errOut, home, want)
	}

	// Where the state directory is created: the sign-in's lock, and the
	// state file.
	e := &env{home: home}
	if _, err := e.lockTokens(t.Context()); err == nil || !strings.Contains(err.Error(), "create "+home) || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("lockTokens in an unwritable home = %v, want it to end with %q", err, want)
	}
	if err := e.saveState(&state{Broker: srv.URL}); err == nil || !strings.Contains(err.Error(), "create "+home) || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("saveState in an unwritable home = %v, want it to end with %q", err, want)
	}
}
