package oidc

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestWebLoginSecureCookieIsHostOnly: with an https redirect URL the
// login cookie is __Host- (Secure, Path=/, no Domain), which no other host
// can set, and the callback reads only that name: the same cookie without
// the prefix, as a sibling subdomain could plant it to sign the victim in
// as itself (login CSRF), is ignored. On plain HTTP the name stays plain,
// with the callback path.
func TestWebLoginSecureCookieIsHostOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{issuer: func(ic *IssuerConfig) { ic.Audiences = []string{"sqlgate"} }})
	key := []byte(strings.Repeat("k", 32))
	start := func(t *testing.T, wl *WebLogin, loginURL string) (*http.Cookie, string) {
		t.Helper()
		w := httptest.NewRecorder()
		if err := wl.Start(w, httptest.NewRequest(http.MethodGet, loginURL, nil), "/"); err != nil {
			t.Fatal(err)
		}
		res := w.Result()
		cs := res.Cookies()
		loc, err := url.Parse(res.Header.Get("Location"))
		if len(cs) != 1 || err != nil {
			t.Fatalf("Start set cookies %+v, redirected to %v (%v)", cs, loc, err)
		}
		return cs[0], loc.Query().Get("state")
	}

	wl, err := NewWebLogin(WebLoginConfig{
		Verifier: e.v, Issuer: "test", ClientID: "sqlgate", RedirectURL: "https://sqlgate.example.com/auth/callback", CookieKey: key,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, state := start(t, wl, "https://sqlgate.example.com/login")
	if !strings.HasPrefix(c.Name, "__Host-sqlgate_login_") || !c.Secure || c.Path != "/" || c.Domain != "" || !c.HttpOnly {
		t.Fatalf("login cookie = %+v, want __Host-sqlgate_login_…, Secure, HttpOnly, Path=/, no Domain", c)
	}
	callback := func(cookie *http.Cookie) (string, *httptest.ResponseRecorder) {
		t.Helper()
		// No code: a callback that gets past the login cookie stops at the
		// code exchange.
		r := httptest.NewRequest(http.MethodGet, "https://sqlgate.example.com/auth/callback?state="+url.QueryEscape(state), nil)
		r.AddCookie(cookie)
		w := httptest.NewRecorder()
		_, _, _, err := wl.Callback(w, r)
		return reasonOf(err), w
	}
	planted := &http.Cookie{Name: strings.TrimPrefix(c.Name, "__Host-"), Value: c.Value}
	if got, _ := callback(planted); got != ReasonLoginStateMissing {
		t.Errorf("callback with the cookie named %s: reason %q, want %q (ignored)", planted.Name, got, ReasonLoginStateMissing)
	}
	got, w := callback(&http.Cookie{Name: c.Name, Value: c.Value})
	if got != ReasonCodeExchangeFailed {
		t.Errorf("callback with the __Host- cookie: reason %q, want %q (past the login cookie)", got, ReasonCodeExchangeFailed)
	}
	if cs := w.Result().Cookies(); len(cs) != 1 || cs[0].Name != c.Name || cs[0].Path != "/" || cs[0].MaxAge >= 0 || !cs[0].Secure {
		t.Errorf("callback cleared %+v, want the __Host- cookie at Path=/", cs)
	}

	plain, err := NewWebLogin(WebLoginConfig{
		Verifier: e.v, Issuer: "test", ClientID: "sqlgate", RedirectURL: "http://sqlgate.internal.example:8470/auth/callback", CookieKey: key, AllowPlainHTTP: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := start(t, plain, "http://sqlgate.internal.example:8470/login"); !strings.HasPrefix(c.Name, "sqlgate_login_") || c.Secure || c.Path != "/auth/callback" {
		t.Errorf("login cookie over plain HTTP = %+v, want sqlgate_login_…, not Secure, Path=/auth/callback", c)
	}
}
