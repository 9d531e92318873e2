package oidc

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWebLoginStartsAtThePublicHost: a sign-in started at another name for
// the host than the redirect URL's is first sent to the same path and query
// on the redirect URL's scheme and host (and nowhere else), setting no
// cookie; the redirect URL's own host, in any case and with its default
// port, starts the sign-in; and a request that was redirected already (a
// proxy in front rewrites Host) starts it too instead of looping, with one
// warning in the log.
func TestWebLoginStartsAtThePublicHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{issuer: func(ic *IssuerConfig) { ic.Audiences = []string{"sqlgate"} }})
	wl, err := NewWebLogin(WebLoginConfig{
		Verifier: e.v, Issuer: "test", ClientID: "sqlgate", RedirectURL: "https://sqlgate.example.com/auth/callback",
		CookieKey: []byte(strings.Repeat("k", 32)),
	})
	if err != nil {
		t.Fatal(err)
	}
	start := func(host, target string) *http.Response {
		t.Helper()
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Host = host
		w := httptest.NewRecorder()
		if err := wl.Start(w, r, "/"); err != nil {
			t.Fatal(err)
		}
		return w.Result()
	}
	for _, tc := range []struct{ host, target, want string }{
		{"10.0.0.7:8470", "/login?return=%2Faudit&fresh=1", "https://sqlgate.example.com/login?fresh=1&public_host=1&return=%2Faudit"},
		{"evil.example", "/login", "https://sqlgate.example.com/login?public_host=1"},
		{"sqlgate.example.com.evil.example", "/login", "https://sqlgate.example.com/login?public_host=1"},
	} {
		res := start(tc.host, tc.target) //nolint:bodyclose // a recorder's body holds nothing to close
		if loc := res.Header.Get("Location"); res.StatusCode != http.StatusFound || loc != tc.want || len(res.Cookies()) != 0 {
			t.Errorf("Start at %s%s = %d to %q setting %v, want 302 to %s and no cookie", tc.host, tc.target, res.StatusCode, loc, res.Cookies(), tc.want)
		}
	}
	for _, host := range []string{"sqlgate.example.com", "SQLGate.Example.com", "sqlgate.example.com:443"} {
		res := start(host, "/login") //nolint:bodyclose // a recorder's body holds nothing to close
		if loc := res.Header.Get("Location"); !strings.HasPrefix(loc, e.idp.AuthorizeURL()+"?") || len(res.Cookies()) != 1 {
			t.Errorf("Start at %s = %d to %q, want the provider with a login cookie", host, res.StatusCode, loc)
		}
	}

	// Redirected already: a proxy that rewrites Host to its upstream's.
	for range 2 {
		res := start("sqlgated.internal:8470", "/login?public_host=1") //nolint:bodyclose // a recorder's body holds nothing to close
		if loc := res.Header.Get("Location"); !strings.HasPrefix(loc, e.idp.AuthorizeURL()+"?") || len(res.Cookies()) != 1 {
			t.Errorf("Start redirected already = %d to %q, want the provider with a login cookie (no loop)", res.StatusCode, loc)
		}
	}
	warned := 0
	for _, l := range e.logLines() {
		if msg, _ := l["msg"].(string); strings.Contains(msg, "a proxy in front rewrites the Host header") {
			warned++
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings about a proxy rewriting Host, want 1:\n%s", warned, e.logs)
	}
}
