package main

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/identity/oidc"
)

// TestMissingCredsSaysWhatToDo: a creds file that is not there (--creds,
// or the one nats.json names, deleted since) fails with what to run.
func TestMissingCredsSaysWhatToDo(t *testing.T) {
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	missing := filepath.Join(t.TempDir(), "gone.creds")
	nats := "nats://" + closedPort(t)
	code, _, errOut := c.run("", "call", "--creds", missing, "--nats", nats, "orders.v1.get", "{}")
	if code != 1 || !strings.Contains(errOut, missing) || !strings.Contains(errOut, "run sqlgate creds nats") {
		t.Errorf("call --creds of a missing file: exit %d, %s; want it to say to run sqlgate creds nats", code, errOut)
	}

	const broker, alice = "http://127.0.0.1:8470", "https://idp.test alice"
	e := &env{home: c.home}
	if err := e.saveState(&state{Broker: broker, Principal: alice}); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(natsInfo{Creds: missing, NATSURL: nats, Principal: alice, Broker: broker})
	if err := os.WriteFile(e.path(natsInfoFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := c.run("", "call", "orders.v1.get", "{}"); code != 1 || !strings.Contains(errOut, "run sqlgate creds nats") {
		t.Errorf("call with the saved creds file deleted: exit %d, %s; want it to say to run sqlgate creds nats", code, errOut)
	}
}

// TestServiceRenewalRefusedSaysLogin: a service whose renewal the provider
// refuses (its client secret was rotated: invalid_client) is told to sign
// in again.
func TestServiceRenewalRefusedSaysLogin(t *testing.T) {
	const secret = "service-test-secret"
	idp := devidptest.Start(t, devidp.WithClients(devidp.Client{ID: "svc", Secret: secret}))
	client, err := oidc.OpenClient(t.Context(), oidc.ClientConfig{Issuer: idp.Issuer(), ClientID: "svc", ClientSecret: secret, Scopes: []string{"sqlgate"}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := client.LoginClientCredentials(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tok.Expiry = time.Now().Add(-time.Minute)
	home := t.TempDir()
	e := &env{
		stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, home: home,
		getenv: func(k string) string {
			if k == "SVC_SECRET" {
				return "rotated-since"
			}
			return ""
		},
	}
	if err := e.tokens().Save(tokenName, tok); err != nil {
		t.Fatal(err)
	}
	if err := e.saveState(&state{Broker: "http://127.0.0.1:8470", Issuer: idp.Issuer(), ClientID: "svc", Scopes: []string{"sqlgate"}, SecretEnv: "SVC_SECRET"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.accessToken(t.Context())
	if err == nil || !strings.Contains(err.Error(), "invalid_client") || !strings.HasSuffix(err.Error(), "run sqlgate login") {
		t.Errorf("renewal with a rotated secret = %v, want the refusal and to run sqlgate login", err)
	}
}

// TestLoginWithoutGroups: a principal without groups is not shown an empty
// group list.
func TestLoginWithoutGroups(t *testing.T) {
	const pw = "alice-test-password"
	idp := devidptest.Start(t,
		devidp.WithUsers(devidp.User{Username: "alice", Password: pw, Email: "alice@example.com"}),
		devidp.WithClients(devidp.Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}))
	srv := httptest.NewServer(&standInBroker{t: t, idp: idp.Issuer(), who: "alice"})
	defer srv.Close()
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": srv.URL}}
	out := c.must(pw+"\n", "login", "--username", "alice", "--password-stdin")
	if !strings.Contains(out, "Signed in to "+srv.URL+" as alice@example.com.\n") || strings.Contains(out, "groups") {
		t.Errorf("login without groups = %q, want no group list", out)
	}
}
