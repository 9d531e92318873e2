// Package devidptest starts the development OpenID provider (identity/devidp)
// on an httptest server, for tests of packages that need a real identity
// provider: identity/oidc, web, the daemon and the CLI.
package devidptest

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sqlgate/sqlgate/identity/devidp"
)

// Server is a running provider.
type Server struct {
	*devidp.Provider
	// HTTP is the test server; its URL is the origin of Issuer.
	HTTP *httptest.Server
	// Mux serves the provider under its issuer path; tests may mount more
	// handlers on it (a fake Graph API, a second tenant).
	Mux *http.ServeMux
}

var (
	keyOnce sync.Once
	key     *rsa.PrivateKey
	errKey  error
)

// Key returns an RSA key generated once per test binary, so tests do not
// pay for a key each. It is test-only material and never leaves the process.
func Key(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	keyOnce.Do(func() { key, errKey = rsa.GenerateKey(rand.Reader, 2048) })
	if errKey != nil {
		t.Fatalf("generate test key: %v", errKey)
	}
	return key
}

// Start serves a provider at <server>/idp, signing with [Key] unless opts
// say otherwise, and stops it when the test ends.
func Start(t testing.TB, opts ...devidp.Option) *Server {
	t.Helper()
	return StartAt(t, "/idp", opts...)
}

// StartAt is [Start] with the issuer's path (e.g. "/<tenant>/v2.0").
func StartAt(t testing.TB, path string, opts ...devidp.Option) *Server {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return Mount(t, srv, mux, path, opts...)
}

// Mount adds a provider at path on an existing test server (several
// providers, e.g. two Entra tenants, may share one server).
func Mount(t testing.TB, srv *httptest.Server, mux *http.ServeMux, path string, opts ...devidp.Option) *Server {
	t.Helper()
	path = "/" + strings.Trim(path, "/")
	all := append([]devidp.Option{devidp.WithIssuer(srv.URL + path), devidp.WithKey(Key(t))}, opts...)
	p, err := devidp.New(all...)
	if err != nil {
		t.Fatalf("devidp.New: %v", err)
	}
	mux.Handle(path+"/", p)
	return &Server{Provider: p, HTTP: srv, Mux: mux}
}
