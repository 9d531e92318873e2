package oidc

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// farHost is a host that is neither loopback nor reachable (TEST-NET-1):
// the recording transport of a fake provider answers for it.
const farHost = "192.0.2.2:8080"

// fakeProvider is an https provider whose discovery document the test
// shapes, behind a transport that records (and answers) every request to
// farHost instead of sending it, and a plain http listener on loopback that
// records what reaches it.
type fakeProvider struct {
	t      *testing.T
	srv    *httptest.Server
	plain  *httptest.Server
	doc    map[string]any
	mu     sync.Mutex
	leaked []string
	// tokenRedirect and keysRedirect, when set, are where the token and
	// JWKS endpoints redirect (307 and 302).
	tokenRedirect, keysRedirect string
}

func newFakeProvider(t *testing.T) *fakeProvider {
	f := &fakeProvider{t: t}
	record := func(r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.leaked = append(f.leaked, r.Method+" "+r.URL.String()+" "+r.Header.Get("Authorization")+" "+string(b))
		f.mu.Unlock()
	}
	f.plain = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"keys":[],"access_token":"leaked","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(f.plain.Close)
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			// A redirect within https is followed.
			http.Redirect(w, r, "/discovery", http.StatusFound)
		case "/discovery":
			_ = json.NewEncoder(w).Encode(f.doc)
		case "/token":
			if f.tokenRedirect != "" {
				http.Redirect(w, r, f.tokenRedirect, http.StatusTemporaryRedirect)
				return
			}
			_, _ = w.Write([]byte(`{"access_token":"at","token_type":"Bearer","expires_in":3600}`))
		case "/keys":
			if f.keysRedirect != "" {
				http.Redirect(w, r, f.keysRedirect, http.StatusFound)
				return
			}
			_, _ = w.Write([]byte(`{"keys":[]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	f.doc = map[string]any{
		"issuer":                                f.srv.URL,
		"authorization_endpoint":                f.srv.URL + "/authorize",
		"token_endpoint":                        f.srv.URL + "/token",
		"device_authorization_endpoint":         f.srv.URL + "/device",
		"jwks_uri":                              f.srv.URL + "/keys",
		"userinfo_endpoint":                     f.srv.URL + "/userinfo",
		"id_token_signing_alg_values_supported": []string{"RS256"},
	}
	return f
}

// client is an HTTP client that trusts the provider's certificate and
// records requests to farHost instead of sending them.
func (f *fakeProvider) client() *http.Client {
	tlsTransport := f.srv.Client().Transport
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host == farHost {
			var b []byte
			if r.Body != nil {
				b, _ = io.ReadAll(r.Body)
			}
			f.mu.Lock()
			f.leaked = append(f.leaked, r.Method+" "+r.URL.String()+" "+string(b))
			f.mu.Unlock()
			return &http.Response{
				StatusCode: http.StatusBadRequest, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(strings.NewReader(`{"error":"invalid_request"}`)), Request: r,
			}, nil
		}
		return tlsTransport.RoundTrip(r)
	})}
}

func (f *fakeProvider) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.leaked...)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (fn roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return fn(r) }

// TestClientRefusesPlainHTTPEndpoints: the CLI's client applies the
// issuer's rule (https, plain http only on loopback) to every endpoint the
// discovery document names, so that an https issuer cannot send the
// password, client secret or refresh token to a plain http token endpoint
// elsewhere. Loopback and a query (Azure AD B2C's ?p=) stay accepted.
func TestClientRefusesPlainHTTPEndpoints(t *testing.T) {
	for _, name := range discoveredEndpoints {
		t.Run(name, func(t *testing.T) {
			f := newFakeProvider(t)
			f.doc[name] = "http://" + farHost + "/" + name
			c, err := OpenClient(t.Context(), ClientConfig{Issuer: f.srv.URL, ClientID: "cli", ClientSecret: "client-s3cret", HTTPClient: f.client()})
			if err == nil {
				_, _ = c.LoginPassword(t.Context(), "alice", "alice-passw0rd")
				t.Fatalf("OpenClient accepted %s on plain http to another host; the provider then received %q", name, f.sent())
			}
			if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, "plain http to another host") {
				t.Errorf("OpenClient = %v, want a refusal naming %s", err, name)
			}
			if s := f.sent(); len(s) != 0 {
				t.Errorf("requests sent to the plain http endpoint: %q", s)
			}
		})
	}
	f := newFakeProvider(t)
	f.doc["token_endpoint"] = f.plain.URL + "/token?p=b2c_1_signin"
	c, err := OpenClient(t.Context(), ClientConfig{Issuer: f.srv.URL, ClientID: "cli", HTTPClient: f.client()})
	if err != nil {
		t.Fatalf("a loopback token endpoint with a query: %v", err)
	}
	if _, err := c.LoginPassword(t.Context(), "alice", "pw"); err != nil {
		t.Errorf("password sign-in at a loopback token endpoint: %v", err)
	}
}

// TestClientRefusesRedirectsOutOfHTTPS: a token endpoint answering with a
// 307 to plain http (here on this host, which Go would follow with the
// body and the client's basic authentication) gets no password, client
// secret or refresh token: the sign-in fails instead.
func TestClientRefusesRedirectsOutOfHTTPS(t *testing.T) {
	f := newFakeProvider(t)
	f.tokenRedirect = f.plain.URL + "/token"
	c, err := OpenClient(t.Context(), ClientConfig{Issuer: f.srv.URL, ClientID: "cli", ClientSecret: "client-s3cret", HTTPClient: f.client()})
	if err != nil {
		t.Fatalf("OpenClient (discovery redirected within https): %v", err)
	}
	if _, err := c.LoginPassword(t.Context(), "alice", "alice-passw0rd"); err == nil {
		t.Error("password sign-in through a redirect to plain http succeeded")
	}
	if _, err := c.LoginClientCredentials(t.Context()); err == nil {
		t.Error("client credentials sign-in through a redirect to plain http succeeded")
	}
	if _, err := c.Refresh(t.Context(), Tokens{Grant: GrantPassword, RefreshToken: "refresh-s3cret"}); err == nil {
		t.Error("refresh through a redirect to plain http succeeded")
	}
	// Even to another https URL: a 307 would resend the credentials.
	f.tokenRedirect = f.srv.URL + "/token-elsewhere"
	if _, err := c.LoginPassword(t.Context(), "alice", "alice-passw0rd"); err == nil || !strings.Contains(err.Error(), "would resend the request's credentials") {
		t.Errorf("password sign-in through a redirect within https = %v, want it refused", err)
	}
	if s := f.sent(); len(s) != 0 {
		t.Errorf("the redirect target received %q, want nothing", s)
	}
}

// TestVerifierRefusesPlainHTTPEndpoints: the broker's verifier (and the
// dashboard sign-in, which uses its discovery and HTTP client) applies the
// same rules: a plain http endpoint elsewhere fails Open, and a JWKS
// redirected from https to plain http is not fetched.
func TestVerifierRefusesPlainHTTPEndpoints(t *testing.T) {
	cfg := func(f *fakeProvider) Config {
		return Config{Issuers: []IssuerConfig{{Name: "corp", Issuer: f.srv.URL, Audiences: []string{"sqlgate"}}}}
	}
	f := newFakeProvider(t)
	if _, err := Open(t.Context(), cfg(f), nil, WithHTTPClient(f.client())); err != nil {
		t.Fatalf("Open with https endpoints: %v", err)
	}
	for _, name := range []string{"token_endpoint", "jwks_uri", "authorization_endpoint"} {
		f := newFakeProvider(t)
		f.doc[name] = "http://" + farHost + "/" + name
		_, err := Open(t.Context(), cfg(f), nil, WithHTTPClient(f.client()))
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "plain http to another host") {
			t.Errorf("Open with %s on plain http elsewhere = %v, want a refusal naming it", name, err)
		}
		if s := f.sent(); len(s) != 0 {
			t.Errorf("%s: requests sent to the plain http endpoint: %q", name, s)
		}
	}
	f = newFakeProvider(t)
	f.keysRedirect = f.plain.URL + "/keys"
	if _, err := Open(t.Context(), cfg(f), nil, WithHTTPClient(f.client())); err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("Open with the JWKS redirected to plain http = %v, want a refusal", err)
	}
	if s := f.sent(); len(s) != 0 {
		t.Errorf("the redirect target received %q, want nothing", s)
	}
}
