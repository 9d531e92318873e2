package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/identity/oidc"
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

// TestLogoutWithUnreadableState: with a state.json that does not parse,
// logout revokes the saved NATS credential at the broker --broker or
// $SQLGATE_BROKER names, with the saved token; it deleted the creds file
// unrevoked (the state names the broker), leaving the credential valid and
// nothing to revoke it with. Without a broker to revoke at, without
// nats.json recording the one that issued the credential, or naming
// another, nothing is sent, and logout keeps the credential's files and the
// sign-in and says how to retry.
func TestLogoutWithUnreadableState(t *testing.T) {
	const pw = "alice-test-password"
	idp := devidptest.Start(t,
		devidp.WithUsers(devidp.User{Username: "alice", Password: pw, Email: "alice@example.com"}),
		devidp.WithClients(devidp.Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}))
	b := &standInBroker{t: t, idp: idp.Issuer(), who: "alice"}
	srv := httptest.NewServer(b)
	defer srv.Close()
	var tokensElsewhere []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			tokensElsewhere = append(tokensElsewhere, a)
		}
		(&standInBroker{t: t, idp: "https://other-idp.example", who: "alice"}).ServeHTTP(w, r)
	}))
	defer other.Close()

	c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": srv.URL}}
	credsFile, infoFile := filepath.Join(c.home, natsCredsOut), filepath.Join(c.home, natsInfoFile)
	exists := func(path string) bool { _, err := os.Stat(path); return err == nil }
	signIn := func() string {
		t.Helper()
		c.env["SQLGATE_BROKER"] = srv.URL
		c.must(pw+"\n", "login", "--username", "alice", "--password-stdin")
		c.must("", "creds", "nats")
		key, err := userKeyOf(credsFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.home, stateFile), []byte(`{"broker":`), 0o600); err != nil {
			t.Fatal(err)
		}
		c.env["SQLGATE_BROKER"] = ""
		return key
	}
	notSignedOut := func(what string, wantErr ...string) {
		t.Helper()
		code, out, errOut := c.run("", append([]string{"logout"}, strings.Fields(what)...)...)
		ok := code == 1 && strings.Contains(out, "could not be revoked") && strings.Contains(out, "its files are kept") &&
			strings.Contains(errOut, "not signed out") && strings.Contains(errOut, "run sqlgate logout again") && exists(credsFile)
		for _, w := range wantErr {
			ok = ok && strings.Contains(out, w)
		}
		if _, err := (&env{home: c.home}).loadTokens(); !ok || err != nil || len(b.revoked) != 0 || len(tokensElsewhere) != 0 {
			t.Errorf("logout %s: exit %d\n%s%s\ntokens: %v, revoked %q, tokens sent elsewhere %q\nwant the credential and the sign-in kept, %q, nothing revoked",
				what, code, out, errOut, err, b.revoked, tokensElsewhere, wantErr)
		}
	}

	key := signIn()
	notSignedOut("", "is unreadable", "so the broker you signed in to is unknown: pass --broker URL (or set SQLGATE_BROKER)")
	notSignedOut("--broker "+other.URL, "the saved NATS credentials were issued by "+srv.URL+", not "+other.URL)
	if !exists(infoFile) {
		t.Fatal("nats.json removed by a logout that revoked nothing")
	}
	c.env["SQLGATE_BROKER"] = srv.URL
	out := c.must("", "logout")
	if !slices.Equal(b.revoked, []string{key}) || !strings.Contains(out, "The NATS credential "+key+" was revoked ("+credsFile+")") ||
		!strings.Contains(out, "Signed out: tokens removed.") || exists(credsFile) || exists(infoFile) {
		t.Errorf("logout with SQLGATE_BROKER = %q, revoked %q; want %s revoked and its files removed", out, b.revoked, key)
	}

	// Without nats.json to say which broker issued it, no broker gets the
	// token: not one that trusts another identity provider, and not one
	// that trusts the same (any server can claim to); signing in again
	// replaces the state, and logout then revokes.
	b.revoked = nil
	key = signIn()
	if err := os.Remove(infoFile); err != nil {
		t.Fatal(err)
	}
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			tokensElsewhere = append(tokensElsewhere, a)
		}
		(&standInBroker{t: t, idp: idp.Issuer(), who: "alice"}).ServeHTTP(w, r)
	}))
	defer echo.Close()
	notSignedOut("--broker "+other.URL, "no saved NATS credential records the broker that issued it")
	notSignedOut("--broker "+echo.URL, "no saved NATS credential records the broker that issued it")
	c.env["SQLGATE_BROKER"] = srv.URL
	c.must(pw+"\n", "login", "--username", "alice", "--password-stdin")
	out = c.must("", "logout")
	if !slices.Equal(b.revoked, []string{key}) || !strings.Contains(out, "was revoked") || exists(credsFile) {
		t.Errorf("logout after signing in again = %q, revoked %q; want %s revoked and removed", out, b.revoked, key)
	}
}

// TestLogoutNeedsNoRetryForWhatCannotBeRevoked: a saved NATS credential
// that has expired is not revoked (nothing to revoke: a broker that is
// down does not keep the sign-in), and one the broker does not know as
// the caller's (404) cannot be revoked by trying again: logout signs out,
// keeping only the files of the one still valid, and says so.
func TestLogoutNeedsNoRetryForWhatCannotBeRevoked(t *testing.T) {
	var deletes int
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			deletes++
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"not found"}}`))
	}))
	home := filepath.Join(c.home, natsCredsOut)
	save := func(exp time.Time) string {
		t.Helper()
		path, key := writeCreds(t, exp)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(home, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return key
	}
	signedIn := func() {
		t.Helper()
		tok := oidc.Tokens{Issuer: "https://idp.test", ClientID: "sqlgate-cli", AccessToken: "tok", Expiry: time.Now().Add(time.Hour)}
		if err := oidc.NewTokenStore(filepath.Join(c.home, "tokens")).Save(tokenName, tok); err != nil {
			t.Fatal(err)
		}
	}
	var statErr error
	key := save(time.Now().Add(-time.Minute))
	out := c.must("", "logout")
	if _, statErr = os.Stat(home); deletes != 0 || !strings.Contains(out, "The NATS credential "+key+" ("+home+") expired at ") ||
		!strings.Contains(out, ": nothing to revoke.") || !strings.Contains(out, "Signed out: tokens removed.") || statErr == nil {
		t.Errorf("logout with an expired credential = %q (%d revocations, file: %v); want it removed unrevoked, and signed out", out, deletes, statErr)
	}

	signedIn()
	key = save(time.Now().Add(10 * time.Minute))
	out = c.must("", "logout")
	if _, statErr = os.Stat(home); deletes != 1 || !strings.Contains(out, "The NATS credential "+key+" ("+home+") could not be revoked (the broker knows no such credential of yours") ||
		!strings.Contains(out, "its files are kept") || !strings.Contains(out, "Signed out: tokens removed.") || statErr != nil {
		t.Errorf("logout with a credential the broker does not know = %q (%d revocations, file: %v); want it tried once, kept, and signed out", out, deletes, statErr)
	}
	if code, _, errOut := c.run("", "whoami"); code != 1 || !strings.Contains(errOut, "not signed in") {
		t.Errorf("whoami after logout: exit %d, %s; want not signed in", code, errOut)
	}
}
