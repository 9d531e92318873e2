package oidc

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// dashboard is a minimal web front end using WebLogin, as web/ will.
type dashboard struct {
	*httptest.Server
	wl *WebLogin
}

func newDashboard(t *testing.T, e *env) *dashboard {
	t.Helper()
	return newDashboardWith(t, e, nil)
}

// newDashboardWith is newDashboard with edit applied to the web login's
// configuration.
func newDashboardWith(t *testing.T, e *env, edit func(*WebLoginConfig)) *dashboard {
	t.Helper()
	d := &dashboard{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		if err := d.wl.Start(w, r, r.URL.Query().Get("return")); errors.Is(err, ErrTooManyLogins) {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		} else if err != nil {
			http.Error(w, "internal", 500)
		}
	})
	mux.HandleFunc("GET /auth/callback", func(w http.ResponseWriter, r *http.Request) {
		p, tok, ret, err := d.wl.Callback(w, r)
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{"reason": reasonOf(err)})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"email": p.Email, "subject": p.Subject, "return": ret, "expiry": p.Expiry, "has_access_token": tok.AccessToken != "",
		})
	})
	// On the listener whose URL the provider has registered for clientWeb.
	d.Server = httptest.NewUnstartedServer(mux)
	_ = d.Listener.Close()
	d.Listener = e.dashboard
	d.Start()
	t.Cleanup(d.Close)
	key := []byte(randomString() + randomString())
	cfg := WebLoginConfig{Verifier: e.v, Issuer: "test", RedirectURL: d.URL + "/auth/callback", CookieKey: key}
	if edit != nil {
		edit(&cfg)
	}
	wl, err := NewWebLogin(cfg)
	if err != nil {
		t.Fatalf("NewWebLogin: %v", err)
	}
	d.wl = wl
	return d
}

// startLogin begins a sign-in in the browser and returns the provider URL
// the dashboard redirected to.
// completedSignIn signs alice in through b to the end and returns a replay
// of the callback request, login cookie included, as an attacker who
// captured it would send it.
func (d *dashboard) completedSignIn(t *testing.T, b *browser) (replay func() page) {
	t.Helper()
	loc, err := b.signIn(d.startLogin(t, b, "/"), "alice", alicePassword, "login")
	if err != nil {
		t.Fatal(err)
	}
	cbURL, _ := url.Parse(d.URL + "/auth/callback")
	saved := b.client.Jar.Cookies(cbURL)
	if first := b.get(loc.String()); first.StatusCode != 200 {
		t.Fatalf("first callback: %d %s", first.StatusCode, first.Body)
	}
	return func() page {
		for _, c := range saved {
			c.Path = "/auth/callback"
		}
		b.client.Jar.SetCookies(cbURL, saved)
		return b.get(loc.String())
	}
}

func (d *dashboard) startLogin(t *testing.T, b *browser, returnTo string) string {
	t.Helper()
	resp := b.get(d.URL + "/login?return=" + url.QueryEscape(returnTo))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("/login: status %d", resp.StatusCode)
	}
	var sc *http.Cookie
	for _, c := range resp.Cookies {
		if strings.HasPrefix(c.Name, "sqlgate_login_") {
			sc = c
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Path != "/auth/callback" || sc.MaxAge <= 600 || sc.MaxAge > 600+3600 {
		t.Fatalf("login cookie = %+v, want HttpOnly, SameSite=Lax, Path=/auth/callback, outliving the 10-minute limit by at most an hour", sc)
	}
	return resp.Header.Get("Location")
}

func decodeCallback(t *testing.T, resp page) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(resp.Body), &m); err != nil {
		t.Fatalf("callback body %q: %v", resp.Body, err)
	}
	m["status"] = resp.StatusCode
	return m
}

func TestWebLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	d := newDashboard(t, e)
	b := newBrowser(t)
	authURL := d.startLogin(t, b, "/audit?from=2026-01-01")
	if !strings.HasPrefix(authURL, e.idp.AuthorizeURL()+"?") || !strings.Contains(authURL, "code_challenge_method=S256") || !strings.Contains(authURL, "nonce=") {
		t.Fatalf("redirect to %q, want the provider's authorize endpoint with PKCE and nonce", authURL)
	}
	loc, err := b.signIn(authURL, "alice", alicePassword, "login")
	if err != nil {
		t.Fatal(err)
	}
	resp := b.get(loc.String())
	got := decodeCallback(t, resp)
	if got["status"] != 200 || got["email"] != "alice@example.com" || got["return"] != "/audit?from=2026-01-01" || got["has_access_token"] != true {
		t.Fatalf("callback = %v", got)
	}
	exp, _ := time.Parse(time.RFC3339, got["expiry"].(string))
	if exp.Sub(e.clock.Now()) > time.Hour+time.Minute || exp.Before(e.clock.Now()) {
		t.Errorf("principal expiry %v is not the ID token's (~1h from now)", exp)
	}
	for _, c := range resp.Cookies {
		if strings.HasPrefix(c.Name, "sqlgate_login_") && c.MaxAge >= 0 {
			t.Errorf("callback did not clear the login cookie: %+v", c)
		}
	}
	if strings.Contains(e.logs.String(), loc.Query().Get("code")) {
		t.Errorf("the authorization code reached the log")
	}
}

func TestWebLoginRejections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	d := newDashboard(t, e)
	tests := []struct {
		name   string
		reason string
		run    func(t *testing.T, b *browser) page
	}{
		{"wrong_state", ReasonStateMismatch, func(t *testing.T, b *browser) page {
			authURL := d.startLogin(t, b, "/")
			loc, err := b.signIn(authURL, "alice", alicePassword, "login")
			if err != nil {
				t.Fatal(err)
			}
			q := loc.Query()
			q.Set("state", randomToken())
			loc.RawQuery = q.Encode()
			return b.get(loc.String())
		}},
		{"no_login_in_this_browser", ReasonLoginStateMissing, func(t *testing.T, b *browser) page {
			authURL := d.startLogin(t, b, "/")
			loc, err := b.signIn(authURL, "alice", alicePassword, "login")
			if err != nil {
				t.Fatal(err)
			}
			// Login CSRF: the callback lands in another browser.
			return newBrowser(t).get(loc.String())
		}},
		{"wrong_nonce", ReasonNonceMismatch, func(t *testing.T, b *browser) page {
			authURL := d.startLogin(t, b, "/")
			u, _ := url.Parse(authURL)
			q := u.Query()
			q.Set("nonce", randomToken()) // injected on the way to the provider
			u.RawQuery = q.Encode()
			loc, err := b.signIn(u.String(), "alice", alicePassword, "login")
			if err != nil {
				t.Fatal(err)
			}
			return b.get(loc.String())
		}},
		{"replayed_callback", ReasonLoginStateInvalid, func(t *testing.T, b *browser) page {
			return d.completedSignIn(t, b)()
		}},
		{"replayed_code", ReasonCodeExchangeFailed, func(t *testing.T, b *browser) page {
			authURL := d.startLogin(t, b, "/")
			loc, err := b.signIn(authURL, "alice", alicePassword, "login")
			if err != nil {
				t.Fatal(err)
			}
			if first := b.get(loc.String()); first.StatusCode != 200 {
				t.Fatal("first callback failed")
			}
			// A fresh sign-in of the victim, with the stolen, used code.
			authURL2 := d.startLogin(t, b, "/")
			u2, _ := url.Parse(authURL2)
			cb, _ := url.Parse(d.URL + "/auth/callback")
			cb.RawQuery = url.Values{"code": {loc.Query().Get("code")}, "state": {u2.Query().Get("state")}}.Encode()
			return b.get(cb.String())
		}},
		{"pkce_mismatch", ReasonCodeExchangeFailed, func(t *testing.T, b *browser) page {
			// Code from sign-in A redeemed under sign-in B's verifier.
			authA := d.startLogin(t, b, "/")
			authB := d.startLogin(t, b, "/")
			locA, err := b.signIn(authA, "alice", alicePassword, "login")
			if err != nil {
				t.Fatal(err)
			}
			ub, _ := url.Parse(authB)
			cb, _ := url.Parse(d.URL + "/auth/callback")
			cb.RawQuery = url.Values{"code": {locA.Query().Get("code")}, "state": {ub.Query().Get("state")}}.Encode()
			return b.get(cb.String())
		}},
		{"user_cancels", ReasonIDPError, func(t *testing.T, b *browser) page {
			authURL := d.startLogin(t, b, "/")
			loc, err := b.signIn(authURL, "", "", "deny")
			if err != nil {
				t.Fatal(err)
			}
			return b.get(loc.String())
		}},
		{"tampered_cookie", ReasonLoginStateInvalid, func(t *testing.T, b *browser) page {
			authURL := d.startLogin(t, b, "/")
			loc, err := b.signIn(authURL, "alice", alicePassword, "login")
			if err != nil {
				t.Fatal(err)
			}
			du, _ := url.Parse(d.URL + "/auth/callback")
			cs := b.client.Jar.Cookies(du)
			v := []byte(cs[0].Value)
			v[len(v)/2] ^= 1
			if v[len(v)/2] == '.' || v[len(v)/2] > 'z' {
				v[len(v)/2] = 'A'
			}
			cs[0].Value = string(v)
			cs[0].Path = "/auth/callback"
			b.client.Jar.SetCookies(du, cs)
			return b.get(loc.String())
		}},
		{"too_slow", ReasonLoginStateInvalid, func(t *testing.T, b *browser) page {
			authURL := d.startLogin(t, b, "/")
			loc, err := b.signIn(authURL, "alice", alicePassword, "login")
			if err != nil {
				t.Fatal(err)
			}
			e.clock.Add(11 * time.Minute)
			defer e.clock.Add(-11 * time.Minute)
			return b.get(loc.String())
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			before := strings.Count(e.logs.String(), "web login refused")
			got := decodeCallback(t, tc.run(t, b))
			if got["status"] != http.StatusUnauthorized || got["reason"] != tc.reason {
				t.Errorf("callback = %v, want 401 %s", got, tc.reason)
			}
			if after := strings.Count(e.logs.String(), "web login refused"); after != before+1 {
				t.Errorf("refusal log lines: %d new, want 1", after-before)
			}
		})
	}
}

// TestWebLoginStateReplayAtCookieExpiry: a state stays used for as long as
// its login cookie is accepted, up to the cookie's last second.
func TestWebLoginStateReplayAtCookieExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	d := newDashboard(t, e)
	replay := d.completedSignIn(t, newBrowser(t))
	// The cookie expires at start + 10m (whole seconds) and is accepted
	// until that second ends.
	e.clock.Add(10*time.Minute + 999*time.Millisecond)
	got := decodeCallback(t, replay())
	if got["status"] != http.StatusUnauthorized || got["reason"] != ReasonLoginStateInvalid {
		t.Errorf("replayed callback in the cookie's last second = %v, want 401 %s", got, ReasonLoginStateInvalid)
	}
}

// TestWebLoginUsedStatesBounded: every state presented at the callback is
// remembered, whether its sign-in completed or not (a failed callback must
// not be replayable), and the set is bounded: when full, sign-ins are
// refused, at /login and at the callback before any request to the
// provider (not remembered, so not replayable), until the states expire
// with their cookies.
func TestWebLoginUsedStatesBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	d := newDashboard(t, e)
	d.wl.used = newUsedStates(2)
	tokenPath := mustPath(t, e.idp.TokenURL())

	// A user has signed in at the provider but not yet come back.
	user := newBrowser(t)
	loc, err := user.signIn(d.startLogin(t, user, "/"), "alice", alicePassword, "login")
	if err != nil {
		t.Fatal(err)
	}

	// Two forged callbacks fill the set.
	attacker := newBrowser(t)
	for _, query := range []string{"", "&error=access_denied"} {
		u, _ := url.Parse(d.startLogin(t, attacker, "/"))
		got := decodeCallback(t, attacker.get(d.URL+"/auth/callback?state="+url.QueryEscape(u.Query().Get("state"))+query))
		if got["status"] != http.StatusUnauthorized {
			t.Fatalf("forged callback = %v, want 401", got)
		}
	}
	if n := d.wl.used.size(); n != 2 {
		t.Fatalf("remembered states after forged callbacks = %d, want 2", n)
	}
	if resp := attacker.get(d.URL + "/login"); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(resp.Body, "too many sign-ins") {
		t.Errorf("/login with the set full = %d %q, want 503 too many sign-ins", resp.StatusCode, resp.Body)
	}
	before := e.transport.count(tokenPath)
	if got := decodeCallback(t, user.get(loc.String())); got["status"] != http.StatusUnauthorized || got["reason"] != ReasonTooManyLogins {
		t.Errorf("callback with the set full = %v, want 401 %s", got, ReasonTooManyLogins)
	}
	if n := e.transport.count(tokenPath) - before; n != 0 {
		t.Errorf("token requests for a callback refused with the set full = %d, want 0", n)
	}

	// Once the cookies have expired, their states are dropped and sign-ins
	// work again.
	e.clock.Add(10*time.Minute + time.Second)
	b := newBrowser(t)
	loc, err = b.signIn(d.startLogin(t, b, "/leases"), "alice", alicePassword, "login")
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeCallback(t, b.get(loc.String())); got["status"] != 200 || got["return"] != "/leases" {
		t.Errorf("sign-in after the states expired = %v, want 200", got)
	}
	if n := d.wl.used.size(); n != 1 {
		t.Errorf("remembered states = %d, want 1 (the expired ones dropped)", n)
	}
}

// TestUsedStatesExpiry: states leave in expiry order, whatever the order in
// which they were used, and a state is refused while it is remembered.
func TestUsedStatesExpiry(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	u := newUsedStates(10)
	for i, until := range []time.Duration{3, 1, 2} {
		if err := u.use(string(rune('a'+i)), t0.Add(until*time.Minute), t0); err != nil {
			t.Fatalf("use %d: %v", i, err)
		}
	}
	for _, tc := range []struct {
		at    time.Duration
		state string
		size  int
	}{
		{59 * time.Second, "b", 3}, // b (until 1m) is still remembered
		{time.Minute, "a", 2},      // b left; a (until 3m) stays
		{2 * time.Minute, "a", 1},  // c left
		{3 * time.Minute, "", 0},   // a left
	} {
		now := t0.Add(tc.at)
		if u.full(now) {
			t.Fatalf("at +%v: full with %d of 10", tc.at, u.size())
		}
		if got := u.size(); got != tc.size {
			t.Errorf("at +%v: size = %d, want %d", tc.at, got, tc.size)
		}
		if tc.state != "" {
			if err := u.use(tc.state, now.Add(time.Hour), now); !errors.Is(err, errStateUsed) {
				t.Errorf("at +%v: use(%q) = %v, want errStateUsed", tc.at, tc.state, err)
			}
		}
	}
}

func TestWebLoginStartDetails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	d := newDashboard(t, e)
	for _, tc := range []struct{ in, want string }{
		{"/leases", "/leases"},
		{"https://evil.example/", "/"},
		{"//evil.example/x", "/"},
		{`/\evil.example`, "/"},
		{"javascript:alert(1)", "/"},
		{"", "/"},
		{"/a\nb", "/"},
	} {
		if got := safeReturnTo(tc.in); got != tc.want {
			t.Errorf("safeReturnTo(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Secure cookies over TLS.
	r := httptest.NewRequest(http.MethodGet, d.URL+"/login", nil)
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	if err := d.wl.Start(w, r, "/"); err != nil {
		t.Fatal(err)
	}
	res := w.Result()
	if cs := res.Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("cookie over TLS = %+v, want Secure", cs)
	}
	if loc := res.Header.Get("Location"); strings.Contains(loc, "prompt=") || strings.Contains(loc, "max_age=") {
		t.Errorf("plain sign-in asks for a new authentication: %s", loc)
	}
	// fresh=1 (the error page after a refused sign-in) asks the provider to
	// authenticate again instead of reusing its session.
	wf := httptest.NewRecorder()
	if err := d.wl.Start(wf, httptest.NewRequest(http.MethodGet, d.URL+"/login?fresh=1", nil), "/"); err != nil {
		t.Fatal(err)
	}
	loc, err := url.Parse(wf.Result().Header.Get("Location"))
	if err != nil || loc.Query().Get("prompt") != "login" || loc.Query().Get("max_age") != "0" {
		t.Errorf("fresh sign-in redirects to %v (%v), want prompt=login and max_age=0", loc, err)
	}
	// Two tabs keep two sign-ins.
	w2 := httptest.NewRecorder()
	_ = d.wl.Start(w2, r, "/")
	if w2.Result().Cookies()[0].Name == res.Cookies()[0].Name {
		t.Errorf("parallel sign-ins share one cookie")
	}
}

func TestNewWebLoginValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{issuer: func(ic *IssuerConfig) { ic.Audiences = []string{"sqlgate"} }})
	key := []byte(strings.Repeat("k", 32))
	tests := []struct {
		name string
		cfg  WebLoginConfig
	}{
		{"no_verifier", WebLoginConfig{Issuer: "test", RedirectURL: "https://x.example/cb", CookieKey: key}},
		{"unknown_issuer", WebLoginConfig{Verifier: e.v, Issuer: "nope", RedirectURL: "https://x.example/cb", CookieKey: key}},
		{"client_not_an_audience", WebLoginConfig{Verifier: e.v, Issuer: "test", RedirectURL: "https://x.example/cb", CookieKey: key}},
		{"short_key", WebLoginConfig{Verifier: e.v, Issuer: "test", ClientID: "sqlgate", RedirectURL: "https://x.example/cb", CookieKey: key[:16]}},
		{"plain_http_redirect", WebLoginConfig{Verifier: e.v, Issuer: "test", ClientID: "sqlgate", RedirectURL: "http://x.example/cb", CookieKey: key}},
		// Allowing plain HTTP lifts only the scheme rule.
		{"plain_http_allowed_no_path", WebLoginConfig{Verifier: e.v, Issuer: "test", ClientID: "sqlgate", RedirectURL: "http://x.example", CookieKey: key, AllowPlainHTTP: true}},
		{"plain_http_allowed_query", WebLoginConfig{Verifier: e.v, Issuer: "test", ClientID: "sqlgate", RedirectURL: "http://x.example/cb?x=1", CookieKey: key, AllowPlainHTTP: true}},
		{"plain_http_allowed_relative", WebLoginConfig{Verifier: e.v, Issuer: "test", ClientID: "sqlgate", RedirectURL: "/cb", CookieKey: key, AllowPlainHTTP: true}},
		{"plain_http_allowed_other_scheme", WebLoginConfig{Verifier: e.v, Issuer: "test", ClientID: "sqlgate", RedirectURL: "ftp://x.example/cb", CookieKey: key, AllowPlainHTTP: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewWebLogin(tc.cfg); err == nil {
				t.Errorf("NewWebLogin succeeded, want an error")
			}
		})
	}
}

// TestWebLoginPlainHTTPAllowed: with AllowPlainHTTP (sqlgated's
// http.allowPlaintext), an http redirect URL on a host other than loopback
// is accepted, with a warning at start, and the login cookie is not Secure
// (a browser would not send it back over plain HTTP). Without the option,
// or on loopback, nothing is logged.
func TestWebLoginPlainHTTPAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{issuer: func(ic *IssuerConfig) { ic.Audiences = []string{"sqlgate"} }})
	key := []byte(strings.Repeat("k", 32))
	const warning = "dashboard sign-in over plain HTTP"
	if _, err := NewWebLogin(WebLoginConfig{Verifier: e.v, Issuer: "test", ClientID: "sqlgate", RedirectURL: "http://127.0.0.1:8470/auth/callback", CookieKey: key, AllowPlainHTTP: true}); err != nil {
		t.Fatalf("loopback: %v", err)
	}
	if strings.Contains(e.logs.String(), warning) {
		t.Errorf("warned about plain HTTP on loopback:\n%s", e.logs)
	}
	wl, err := NewWebLogin(WebLoginConfig{
		Verifier: e.v, Issuer: "test", ClientID: "sqlgate", RedirectURL: "http://sqlgate.internal.example:8470/auth/callback", CookieKey: key, AllowPlainHTTP: true,
	})
	if err != nil {
		t.Fatalf("NewWebLogin with plain HTTP allowed: %v", err)
	}
	if logs := e.logs.String(); !strings.Contains(logs, warning) || !strings.Contains(logs, "http://sqlgate.internal.example:8470/auth/callback") {
		t.Errorf("no warning naming the redirect URL:\n%s", logs)
	}
	w := httptest.NewRecorder()
	if err := wl.Start(w, httptest.NewRequest(http.MethodGet, "http://sqlgate.internal.example:8470/login", nil), "/"); err != nil {
		t.Fatal(err)
	}
	res := w.Result()
	if cs := res.Cookies(); len(cs) != 1 || cs[0].Secure || !cs[0].HttpOnly {
		t.Errorf("login cookie over plain HTTP = %+v, want HttpOnly and not Secure", cs)
	}
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || loc.Query().Get("redirect_uri") != "http://sqlgate.internal.example:8470/auth/callback" {
		t.Errorf("sign-in redirects to %v (%v), want the plain HTTP callback as redirect_uri", loc, err)
	}
}
