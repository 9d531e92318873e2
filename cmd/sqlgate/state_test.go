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

// TestCorruptStateFile: a state.json that does not parse blocks no sign-in:
// login replaces it and says so; every other command fails with an error
// that says what to do.
func TestCorruptStateFile(t *testing.T) {
	const pw = "alice-test-password"
	idp := devidptest.Start(t,
		devidp.WithUsers(devidp.User{Username: "alice", Password: pw, Email: "alice@example.com"}),
		devidp.WithClients(devidp.Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}))
	b := &standInBroker{t: t, idp: idp.Issuer(), who: "alice"}
	srv := httptest.NewServer(b)
	defer srv.Close()
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": srv.URL}}
	path := filepath.Join(c.home, stateFile)
	if err := os.WriteFile(path, []byte(`{"broker": "https://sqlgate.exa`), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, args := range [][]string{{"whoami"}, {"leases", "list"}, {"creds", "nats"}} {
		code, _, errOut := c.run("", args...)
		if code != 1 || !strings.Contains(errOut, path) || !strings.HasSuffix(strings.TrimSpace(errOut), "remove it or run sqlgate login") {
			t.Errorf("sqlgate %s with a corrupt state: exit %d, %q; want an error naming the file and ending with what to do", strings.Join(args, " "), code, errOut)
		}
	}

	code, out, errOut := c.run(pw+"\n", "login", "--username", "alice", "--password-stdin")
	if code != 0 || !strings.Contains(out, "Signed in to") || !strings.Contains(errOut, path+" is unreadable") || !strings.Contains(errOut, "this sign-in replaces it") {
		t.Fatalf("login with a corrupt state: exit %d, stdout %q, stderr %q; want the sign-in to replace the state and say so", code, out, errOut)
	}
	if out := c.must("", "whoami"); !strings.Contains(out, "alice@example.com") {
		t.Errorf("whoami after login replaced the state = %q", out)
	}
}
