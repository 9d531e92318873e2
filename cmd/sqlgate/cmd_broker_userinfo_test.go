package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBrokerURLWithUserinfoRefused: a broker URL with a user name and
// password (--broker, $SQLGATE_BROKER, or one saved by an earlier sqlgate)
// is refused with an error that does not repeat the password: the URL was
// printed on stdout at login, in errors, and saved in state.json.
func TestBrokerURLWithUserinfoRefused(t *testing.T) {
	var requests int
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests++
		_, _ = w.Write([]byte(`{}`))
	}))
	clean := c.env["SQLGATE_BROKER"]
	withPassword := strings.Replace(clean, "http://", "http://u:s3cret@", 1)
	refused := func(name string, code int, out, errOut string) {
		t.Helper()
		if code == 0 || !strings.Contains(errOut, "holds a user name or password") || strings.Contains(out+errOut, "s3cret") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want a refusal without the password", name, code, out, errOut)
		}
	}

	home := t.TempDir()
	fresh := &cli{t: t, home: home, env: map[string]string{}}
	code, out, errOut := fresh.run("pw\n", "login", "--broker", withPassword, "--username", "alice", "--password-stdin")
	refused("login --broker", code, out, errOut)
	if b, err := os.ReadFile(filepath.Join(home, stateFile)); err == nil && strings.Contains(string(b), "s3cret") {
		t.Errorf("state.json holds the password: %s", b)
	}

	code, out, errOut = c.run("", "whoami", "--broker", withPassword)
	refused("whoami --broker", code, out, errOut)
	c.env["SQLGATE_BROKER"] = withPassword
	code, out, errOut = c.run("", "leases", "list")
	refused("leases list with $SQLGATE_BROKER", code, out, errOut)
	if requests != 0 {
		t.Errorf("the broker received %d requests, want none", requests)
	}

	// A state saved by an earlier sqlgate, which accepted the URL.
	c.env["SQLGATE_BROKER"] = ""
	e := &env{home: c.home}
	if err := e.saveState(&state{Broker: withPassword, Principal: "https://idp.test alice"}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = c.run("", "whoami")
	refused("whoami with the saved broker", code, out, errOut)
	code, _, errOut = c.run("", "whoami", "--broker", "https://sqlgate.example.com")
	if code == 0 || !strings.Contains(errOut, "signed in to http://REDACTED@") || strings.Contains(errOut, "s3cret") {
		t.Errorf("whoami --broker another with the saved broker: exit %d, %q; want the saved one named without its password", code, errOut)
	}
}
