package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/web/api"
)

// claimsRecorder passes requests to a provider, recording the claims
// parameter of each sign-in request as the provider receives it: the
// authorization request (GET /authorize), the device authorization request
// and the refresh token request ("-" when the request has none).
type claimsRecorder struct {
	next http.Handler
	mu   sync.Mutex
	seen map[string][]string // by request kind: authorize, device, refresh
}

func (c *claimsRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind, claims := "", "-"
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/authorize"):
		kind = "authorize"
		if r.URL.Query().Has("claims") {
			claims = r.URL.Query().Get("claims")
		}
	case r.Method == http.MethodPost && (strings.HasSuffix(r.URL.Path, "/token") || strings.HasSuffix(r.URL.Path, "/device/code")):
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		switch {
		case strings.HasSuffix(r.URL.Path, "/device/code"):
			kind = "device"
		case form.Get("grant_type") == "refresh_token":
			kind = "refresh"
		}
		if form.Has("claims") {
			claims = form.Get("claims")
		}
	}
	if kind != "" {
		c.mu.Lock()
		c.seen[kind] = append(c.seen[kind], claims)
		c.mu.Unlock()
	}
	c.next.ServeHTTP(w, r)
}

func (c *claimsRecorder) take(kind string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.seen[kind]
	delete(c.seen, kind)
	return got
}

// TestLoginAuthContext: with an Entra issuer whose mfaACRValues the broker
// publishes as auth_context, sqlgate login (browser and device) asks Entra
// for that authentication context with the claims parameter, and the user
// who has MFA is signed in with MFA, which the broker sees; the renewal of
// the sign-in asks again and keeps it. A broker that publishes none gets no
// claims parameter, and the same user no MFA (Entra v2.0 tokens have no
// amr: without acrs there is no MFA evidence).
func TestLoginAuthContext(t *testing.T) {
	const password = "auth-context-test-password"
	rec := &claimsRecorder{seen: map[string][]string{}}
	mux := http.NewServeMux()
	rec.next = mux
	idpSrv := httptest.NewServer(rec)
	t.Cleanup(idpSrv.Close)
	idp := devidptest.Mount(t, idpSrv, mux, "/idp", devidp.WithShape(devidp.ShapeEntra),
		devidp.WithUsers(devidp.User{Username: "alice", Password: password, Email: "alice@example.com", MFA: true}),
		devidp.WithClients(devidp.Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}),
		devidp.WithDeviceInterval(time.Second))
	v, err := oidc.Open(t.Context(), oidc.Config{Issuers: []oidc.IssuerConfig{{
		Name: "corp", Issuer: idp.Issuer(), Preset: oidc.PresetEntra, Audiences: []string{idp.Audience(), "sqlgate-cli"},
		MFAACRValues: []string{"c1"},
	}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu          sync.Mutex
		authContext string
	)
	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case api.Prefix + "/config":
			mu.Lock()
			d := api.Discovery{Issuer: idp.Issuer(), ClientID: "sqlgate-cli", Scopes: oidc.DefaultScopes, AuthContext: authContext}
			mu.Unlock()
			_ = json.NewEncoder(w).Encode(d)
		case api.Prefix + "/whoami":
			p, err := v.Verify(r.Context(), strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			if err != nil {
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"error":{"code":"unauthenticated","message":"` + err.Error() + `"}}`))
				return
			}
			_ = json.NewEncoder(w).Encode(api.WhoAmI{Issuer: p.Issuer, Subject: p.Subject, Email: p.Email, MFA: p.MFA, Expiry: p.Expiry})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(broker.Close)

	// login runs sqlgate login with flags, signing alice in at the URL it
	// prints (the device page for --device).
	login := func(t *testing.T, c *cli, urlRE *regexp.Regexp, flags ...string) {
		t.Helper()
		pr, pw := io.Pipe()
		done := make(chan int, 1)
		go func() {
			var o bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			done <- runEnv(ctx, append([]string{"login"}, flags...), strings.NewReader(""), &o, pw, func(k string) string {
				if k == "SQLGATE_HOME" {
					return c.home
				}
				return c.env[k]
			})
			pw.Close()
		}()
		// The pattern ends after the URL (a newline, the device URL's
		// closing parenthesis): the output may arrive in pieces.
		signInForm(t, strings.TrimSuffix(strings.TrimSpace(waitFor(t, pr, urlRE)), ")"), "alice", password)
		if code := <-done; code != 0 {
			t.Fatalf("sqlgate login %s: exit %d", strings.Join(flags, " "), code)
		}
	}
	browserURL := regexp.MustCompile(`https?://\S+/authorize\S*\n`)
	deviceURL := regexp.MustCompile(`https?://[^\s)]+user_code=[^\s)]+\)`)
	mfaLine := regexp.MustCompile(`(?m)^mfa\s+(\w+)$`)
	mfaOf := func(t *testing.T, c *cli) string {
		t.Helper()
		m := mfaLine.FindStringSubmatch(c.must("", "whoami"))
		if m == nil {
			t.Fatal("whoami shows no mfa line")
		}
		return m[1]
	}
	const want = `{"access_token":{"acrs":{"essential":true,"value":"c1"}},"id_token":{"acrs":{"essential":true,"value":"c1"}}}`
	setAuthContext := func(ac string) {
		mu.Lock()
		authContext = ac
		mu.Unlock()
	}

	t.Run("browser", func(t *testing.T) {
		setAuthContext("c1")
		c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": broker.URL}}
		login(t, c, browserURL, "--no-browser")
		if got := rec.take("authorize"); len(got) != 1 || got[0] != want {
			t.Errorf("authorization requests' claims = %q, want [%s]", got, want)
		}
		if got := mfaOf(t, c); got != "true" {
			t.Errorf("whoami after the browser sign-in: mfa %s, want true", got)
		}
		// The access token expires: the renewal asks for c1 again, and the
		// renewed token still proves MFA.
		e := &env{home: c.home}
		tok, err := e.tokens().Load(tokenName)
		if err != nil {
			t.Fatal(err)
		}
		tok.Expiry = time.Now().Add(-time.Minute)
		if err := e.tokens().Save(tokenName, tok); err != nil {
			t.Fatal(err)
		}
		if got := mfaOf(t, c); got != "true" {
			t.Errorf("whoami after the renewal: mfa %s, want true", got)
		}
		if got := rec.take("refresh"); len(got) != 1 || got[0] != want {
			t.Errorf("refresh requests' claims = %q, want [%s]", got, want)
		}
	})
	t.Run("device", func(t *testing.T) {
		setAuthContext("c1")
		c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": broker.URL}}
		login(t, c, deviceURL, "--device")
		if got := rec.take("device"); len(got) != 1 || got[0] != want {
			t.Errorf("device authorization requests' claims = %q, want [%s]", got, want)
		}
		if got := mfaOf(t, c); got != "true" {
			t.Errorf("whoami after the device sign-in: mfa %s, want true", got)
		}
	})
	t.Run("none_published", func(t *testing.T) {
		setAuthContext("")
		c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": broker.URL}}
		login(t, c, browserURL, "--no-browser")
		if got := rec.take("authorize"); len(got) != 1 || got[0] != "-" {
			t.Errorf("authorization requests' claims = %q, want none", got)
		}
		if got := mfaOf(t, c); got != "false" {
			t.Errorf("whoami without an auth context: mfa %s, want false (no acrs asked for, none given)", got)
		}
	})
}
