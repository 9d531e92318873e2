package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity/oidc"
)

// signedInCLI returns a CLI signed in as alice (with a token valid for an hour) to a
// stand-in broker served by h.
func signedInCLI(t *testing.T, h http.Handler) *cli {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return signedInAt(t, srv.URL)
}

// signedInAt returns a CLI signed in as alice (with a token valid for an
// hour) to the broker at url.
func signedInAt(t *testing.T, url string) *cli {
	t.Helper()
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": url}}
	tok := oidc.Tokens{Issuer: "https://idp.test", ClientID: "sqlgate-cli", AccessToken: "tok", Expiry: time.Now().Add(time.Hour)}
	if err := oidc.NewTokenStore(filepath.Join(c.home, "tokens")).Save(tokenName, tok); err != nil {
		t.Fatal(err)
	}
	e := &env{home: c.home}
	if err := e.saveState(&state{Broker: url, Issuer: tok.Issuer, ClientID: tok.ClientID, Principal: tok.Issuer + " alice"}); err != nil {
		t.Fatal(err)
	}
	return c
}
