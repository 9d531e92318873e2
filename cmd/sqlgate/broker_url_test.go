package main

import (
	"strings"
	"testing"
)

// TestBrokerURLWithoutSchemeRefusedFirst: a broker URL without its scheme
// ($SQLGATE_BROKER=127.0.0.1:8470) is refused as such, with the URL meant,
// before it is compared with the broker signed in to: the mismatch advice
// named `sqlgate login --broker 127.0.0.1:8470`, which login refuses.
func TestBrokerURLWithoutSchemeRefusedFirst(t *testing.T) {
	c := signedInAt(t, "http://127.0.0.1:8470")
	c.env["SQLGATE_BROKER"] = "127.0.0.1:8470"
	const want = `$SQLGATE_BROKER: broker URL "127.0.0.1:8470" must be an http(s) URL, like http://127.0.0.1:8470`
	for _, args := range [][]string{{"whoami"}, {"login", "--no-browser"}} {
		code, _, errOut := c.run("", args...)
		if code != 1 || !strings.Contains(errOut, want) || strings.Contains(errOut, "--broker 127.0.0.1:8470") {
			t.Errorf("sqlgate %s with SQLGATE_BROKER=127.0.0.1:8470: exit %d, %q; want %q", strings.Join(args, " "), code, errOut, want)
		}
	}
	code, _, errOut := c.run("", "whoami", "--broker", "sqlgate.example.com")
	if want := `--broker: broker URL "sqlgate.example.com" must be an http(s) URL, like https://sqlgate.example.com`; code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("whoami --broker sqlgate.example.com: exit %d, %q; want %q", code, errOut, want)
	}
}
