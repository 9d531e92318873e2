package main

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogoutWhenNotSignedIn: logout without a sign-in says there is nothing
// to do (exit 0), instead of claiming it removed tokens, and creates no
// state directory; with a sign-in it still signs out.
func TestLogoutWhenNotSignedIn(t *testing.T) {
	c := &cli{t: t, home: filepath.Join(t.TempDir(), "sqlgate"), env: map[string]string{}}
	code, out, errOut := c.run("", "logout")
	if code != 0 || out != "not signed in: nothing to do\n" || errOut != "" {
		t.Errorf("logout, never signed in: exit %d, stdout %q, stderr %q; want exit 0 and \"not signed in: nothing to do\"", code, out, errOut)
	}
	if _, err := os.Stat(c.home); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("logout, never signed in, created %s (%v)", c.home, err)
	}

	c = signedInCLI(t, http.NotFoundHandler())
	if out := c.must("", "logout"); !strings.Contains(out, "Signed out: tokens removed.") {
		t.Errorf("logout, signed in = %q, want it signed out", out)
	}
	if out := c.must("", "logout"); out != "not signed in: nothing to do\n" {
		t.Errorf("logout again = %q, want \"not signed in: nothing to do\"", out)
	}
}
