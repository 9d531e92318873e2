package main

import (
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
)

// TestLogoutRevokesEverySavedCredential: after creds nats (into
// $SQLGATE_HOME/nats.creds) and creds nats -o FILE (which repoints
// nats.json), logout revokes both credentials, not only the one nats.json
// names: the nats.creds it deletes would otherwise stay valid while the
// message said it was revoked. It names each key with its file.
func TestLogoutRevokesEverySavedCredential(t *testing.T) {
	const pw = "alice-test-password"
	idp := devidptest.Start(t,
		devidp.WithUsers(devidp.User{Username: "alice", Password: pw, Email: "alice@example.com"}),
		devidp.WithClients(devidp.Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}))
	b := &standInBroker{t: t, idp: idp.Issuer(), who: "alice"}
	srv := httptest.NewServer(b)
	defer srv.Close()
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": srv.URL}}
	c.must(pw+"\n", "login", "--username", "alice", "--password-stdin")

	c.must("", "creds", "nats")
	home := filepath.Join(c.home, natsCredsOut)
	homeKey, err := userKeyOf(home)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "svc.creds")
	c.must("", "creds", "nats", "-o", other)
	otherKey, err := userKeyOf(other)
	if err != nil {
		t.Fatal(err)
	}

	out := c.must("", "logout")
	if !slices.Contains(b.revoked, homeKey) || !slices.Contains(b.revoked, otherKey) || len(b.revoked) != 2 {
		t.Errorf("logout revoked %q, want %s (%s) and %s (%s)", b.revoked, homeKey, home, otherKey, other)
	}
	for _, want := range []string{
		"The NATS credential " + homeKey + " was revoked (" + home + ")",
		"The NATS credential " + otherKey + " was revoked (" + other + ")",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("logout output = %q, want %q", out, want)
		}
	}
}
