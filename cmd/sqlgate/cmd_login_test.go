package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/web/api"
)

// lockedBuffer is a log sink safe for concurrent handlers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestAccessTokenParallelRenewal runs several sqlgate commands at once on
// one state directory whose access token has expired, against a provider
// that rotates refresh tokens and revokes the sign-in when one is presented
// twice. Each renews through the sign-in lock: one refresh, every command
// gets the renewed token, and the user stays signed in.
func TestAccessTokenParallelRenewal(t *testing.T) {
	logs := &lockedBuffer{}
	const password = "parallel-renewal-test-password"
	idp := devidptest.Start(t,
		devidp.WithUsers(devidp.User{Username: "alice", Password: password, Email: "alice@example.com"}),
		devidp.WithClients(devidp.Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}),
		devidp.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	client, err := oidc.OpenClient(t.Context(), oidc.ClientConfig{Issuer: idp.Issuer(), ClientID: "sqlgate-cli"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := client.LoginPassword(t.Context(), "alice", password)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("the provider issued no refresh token")
	}
	tok.Expiry = time.Now().Add(-time.Minute) // the access token has expired
	home := t.TempDir()
	newEnv := func() *env {
		return &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, home: home, getenv: func(string) string { return "" }}
	}
	if err := newEnv().tokens().Save(tokenName, tok); err != nil {
		t.Fatal(err)
	}

	const runs = 6
	bearers := make([]string, runs)
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() { bearers[i], errs[i] = newEnv().accessToken(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("run %d: accessToken = %v, want the renewed token", i, err)
		} else if bearers[i] == tok.AccessToken || bearers[i] != bearers[0] {
			t.Errorf("run %d got another token than run 0, or the expired one", i)
		}
	}
	if n := strings.Count(logs.String(), "grant_type=refresh_token"); n != 1 {
		t.Errorf("the provider saw %d refreshes, want 1:\n%s", n, logs.String())
	}
	// Still signed in: the stored sign-in renews again later.
	stored, err := newEnv().tokens().Load(tokenName)
	if err != nil {
		t.Fatal(err)
	}
	stored.Expiry = time.Now().Add(-time.Minute)
	if err := newEnv().tokens().Save(tokenName, stored); err != nil {
		t.Fatal(err)
	}
	if _, err := newEnv().accessToken(t.Context()); err != nil {
		t.Errorf("renewal after the parallel runs = %v, want the sign-in still valid", err)
	}
}

// TestTokenOnlyToTheSignedInBroker: the stored bearer token goes only to
// the broker the sign-in was made for; a --broker or $SQLGATE_BROKER naming
// another one is refused before any request, telling to sign in there.
func TestTokenOnlyToTheSignedInBroker(t *testing.T) {
	var mine, other []string
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mine = append(mine, r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"subject":"alice","email":"alice@example.com","issuer":"https://idp.test"}`))
	}))
	elsewhere := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		other = append(other, r.Header.Get("Authorization"))
	}))
	defer elsewhere.Close()
	signedInTo := c.env["SQLGATE_BROKER"]

	code, _, errOut := c.run("", "whoami", "--broker", elsewhere.URL)
	want := "signed in to " + signedInTo + "; run sqlgate login --broker " + elsewhere.URL
	if code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("whoami --broker another: exit %d, %q; want %q", code, errOut, want)
	}
	c.env["SQLGATE_BROKER"] = elsewhere.URL
	if code, _, errOut := c.run("", "leases", "list"); code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("leases list with SQLGATE_BROKER another: exit %d, %q; want %q", code, errOut, want)
	}
	if len(other) != 0 {
		t.Errorf("the other broker received %d requests (%q), want none", len(other), other)
	}

	c.env["SQLGATE_BROKER"] = ""
	if out := c.must("", "whoami", "--broker", strings.ToUpper(signedInTo[:4])+signedInTo[4:]+"/"); !strings.Contains(out, "alice@example.com") || len(mine) != 1 || mine[0] != "Bearer tok" {
		t.Errorf("whoami at the signed-in broker = %q, requests %q", out, mine)
	}

	// A state without a broker (the sign-in predates it) sends the token nowhere.
	e := &env{home: c.home}
	if err := e.saveState(&state{}); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := c.run("", "whoami", "--broker", elsewhere.URL); code != 1 || !strings.Contains(errOut, "run sqlgate login --broker "+elsewhere.URL) || len(other) != 0 {
		t.Errorf("whoami without a saved broker: exit %d, %q, %d requests elsewhere; want a refusal", code, errOut, len(other))
	}
}

// standInBroker is a broker for the login tests: it sends the CLI to idp,
// answers whoami as who says, issues NATS credentials and revokes leases
// (failing when revokeFails).
type standInBroker struct {
	t           *testing.T
	idp         string
	who         string // subject whoami answers
	revokeFails bool
	revoked     []string
}

func (b *standInBroker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == api.Prefix+"/config":
		_ = json.NewEncoder(w).Encode(api.Discovery{Issuer: b.idp, ClientID: "sqlgate-cli", NATSURL: "nats://127.0.0.1:4222"})
	case r.URL.Path == api.Prefix+"/whoami":
		_ = json.NewEncoder(w).Encode(api.WhoAmI{Issuer: b.idp, Subject: b.who, Email: b.who + "@example.com"})
	case r.URL.Path == api.Prefix+"/nats/creds":
		var req api.NATSCredsRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		exp := time.Now().Add(15 * time.Minute)
		_ = json.NewEncoder(w).Encode(api.NATSCreds{JWT: userJWT(b.t, req.PublicKey, exp), ExpiresAt: exp, InboxPrefix: "_INBOX_" + req.PublicKey, NATSURL: "nats://127.0.0.1:4222"})
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, api.Prefix+"/leases/"):
		if b.revokeFails {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"a backing service is unavailable; try again"}}`))
			return
		}
		id := strings.TrimPrefix(r.URL.Path, api.Prefix+"/leases/")
		b.revoked = append(b.revoked, id)
		_ = json.NewEncoder(w).Encode(api.Lease{ID: id, Type: "nats", State: "revoked"})
	default:
		http.NotFound(w, r)
	}
}

// TestSignInChangeForgetsNATSCreds: signing in as someone else removes the
// NATS credentials saved for the previous principal (also one written with
// creds nats -o) and says so, so that the next call cannot act as them;
// signing in again as the same principal keeps them. Signing out revokes
// the saved credential and removes its files, and says when it could not
// revoke it.
func TestSignInChangeForgetsNATSCreds(t *testing.T) {
	const alicePW, bobPW = "alice-test-password", "bob-test-password"
	idp := devidptest.Start(t,
		devidp.WithUsers(devidp.User{Username: "alice", Password: alicePW, Email: "alice@example.com"}, devidp.User{Username: "bob", Password: bobPW, Email: "bob@example.com"}),
		devidp.WithClients(devidp.Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}))
	b := &standInBroker{t: t, idp: idp.Issuer()}
	srv := httptest.NewServer(b)
	defer srv.Close()
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": srv.URL}}
	login := func(user, pw string) string {
		t.Helper()
		b.who = user
		return c.must(pw+"\n", "login", "--username", user, "--password-stdin")
	}
	exists := func(path string) bool { _, err := os.Stat(path); return err == nil }

	login("alice", alicePW)
	alices := filepath.Join(t.TempDir(), "alice.creds")
	c.must("", "creds", "nats", "-o", alices)
	if out := login("alice", alicePW); strings.Contains(out, "Removed") || !exists(alices) || !exists(filepath.Join(c.home, natsInfoFile)) {
		t.Errorf("signing in again as alice: %q; want her NATS credentials kept", out)
	}

	out := login("bob", bobPW)
	if !strings.Contains(out, "Removed the NATS credentials saved for "+idp.Issuer()+" alice") || !strings.Contains(out, alices+" (written with creds nats -o) remains") {
		t.Errorf("login as bob after alice = %q; want it to say alice's NATS credentials were removed and her -o file remains", out)
	}
	// The -o file is alice's to keep (another program may read it); the
	// saved reference to it is gone, so sqlgate call no longer uses it.
	if !exists(alices) || exists(filepath.Join(c.home, natsInfoFile)) {
		t.Error("after bob signed in: want alice's -o file kept and the saved reference removed")
	}
	if code, _, errOut := c.run("", "call", "orders.v1.get", `{"id":1}`); code != 1 || !strings.Contains(errOut, "no NATS credentials") {
		t.Errorf("bob's call after the switch: exit %d, %s; want no credentials", code, errOut)
	}

	// Signing out revokes bob's saved credential and removes it.
	c.must("", "creds", "nats")
	key, err := userKeyOf(filepath.Join(c.home, natsCredsOut))
	if err != nil {
		t.Fatal(err)
	}
	out = c.must("", "logout")
	if len(b.revoked) != 1 || b.revoked[0] != key || !strings.Contains(out, "The NATS credential "+key+" was revoked") || exists(filepath.Join(c.home, natsCredsOut)) {
		t.Errorf("logout = %q, revoked %q; want bob's credential %s revoked and removed", out, b.revoked, key)
	}

	// A broker that cannot revoke: not signed out, the credential's files
	// kept, and told so and how to retry; the retry revokes and signs out.
	login("bob", bobPW)
	c.must("", "creds", "nats")
	key, err = userKeyOf(filepath.Join(c.home, natsCredsOut))
	if err != nil {
		t.Fatal(err)
	}
	b.revokeFails = true
	code, out, errOut := c.run("", "logout")
	if code != 1 || !strings.Contains(out, "could not be revoked") || !strings.Contains(out, "stays valid until it expires at") || !strings.Contains(out, "its files are kept") ||
		!strings.Contains(errOut, "not signed out") || !strings.Contains(errOut, "run sqlgate logout again") ||
		!exists(filepath.Join(c.home, natsCredsOut)) || !exists(filepath.Join(c.home, natsInfoFile)) {
		t.Errorf("logout with the broker failing to revoke: exit %d\n%s%s\nwant the credential and the sign-in kept, and said how to retry", code, out, errOut)
	}
	if out := c.must("", "whoami"); !strings.Contains(out, "bob@example.com") {
		t.Errorf("whoami after the failed logout = %q, want still signed in as bob", out)
	}
	b.revokeFails = false
	out = c.must("", "logout")
	if !slices.Contains(b.revoked, key) || !strings.Contains(out, "The NATS credential "+key+" was revoked") || exists(filepath.Join(c.home, natsCredsOut)) {
		t.Errorf("logout again = %q, revoked %q; want %s revoked and removed", out, b.revoked, key)
	}
	if code, _, errOut := c.run("", "whoami"); code != 1 || !strings.Contains(errOut, "not signed in") {
		t.Errorf("whoami after logout: exit %d, %s; want not signed in", code, errOut)
	}
}
