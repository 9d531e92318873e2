package devidp_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
)

// Test-only credentials, generated per run.
var (
	alicePassword = randomString()
	bobPassword   = randomString()
	webSecret     = randomString()
	svcSecret     = randomString()
)

func randomString() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var (
	alice = devidp.User{Username: "alice", Password: alicePassword, Email: "alice@example.com", Name: "Alice Example", Groups: []string{"sales"}, Roles: []string{"Orders.Write"}, MFA: true}
	bob   = devidp.User{Username: "bob", Password: bobPassword, Email: "bob@example.com", Name: "Bob Example", Groups: []string{"support"}}
	cli   = devidp.Client{ID: "sqlgate-cli", Name: "sqlgate CLI", RedirectURIs: []string{"http://127.0.0.1/callback"}}
	web   = devidp.Client{ID: "sqlgate-web", Secret: webSecret, RedirectURIs: []string{"https://sqlgate.example.com/auth/callback", "http://127.0.0.1:8080/auth/callback"}}
	svc   = devidp.Client{ID: "orders-service", Secret: svcSecret, Roles: []string{"Orders.Read"}, Grants: []string{"client_credentials"}}
)

// logBuffer collects log output so tests can check no secret leaks into it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	*devidptest.Server
	t      *testing.T
	logs   *logBuffer
	clock  *fakeClock
	client *http.Client
}

func start(t *testing.T, opts ...devidp.Option) *env {
	t.Helper()
	logs := &logBuffer{}
	clock := newClock()
	base := []devidp.Option{
		devidp.WithUsers(alice, bob), devidp.WithClients(cli, web, svc),
		devidp.WithLogger(slog.New(slog.NewTextHandler(logs, nil))), devidp.WithClock(clock.Now),
	}
	srv := devidptest.Start(t, append(base, opts...)...)
	e := &env{Server: srv, t: t, logs: logs, clock: clock, client: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	t.Cleanup(func() {
		out := logs.String()
		for _, s := range []string{alicePassword, bobPassword, webSecret, svcSecret} {
			if strings.Contains(out, s) {
				t.Errorf("log output contains a secret")
			}
		}
	})
	return e
}

// reply is a fully read HTTP response.
type reply struct {
	StatusCode int
	Header     http.Header
	Body       *bytes.Reader
	path       string
}

func readReply(t *testing.T, resp *http.Response) *reply {
	t.Helper()
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s response: %v", resp.Request.URL.Path, err)
	}
	return &reply{StatusCode: resp.StatusCode, Header: resp.Header, Body: bytes.NewReader(b), path: resp.Request.URL.Path}
}

func (e *env) get(u string) *reply {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), http.MethodGet, u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("GET %s: %v", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	return readReply(e.t, resp)
}

func (e *env) postForm(u string, form url.Values, user, pass string) *reply {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("POST %s: %v", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	return readReply(e.t, resp)
}

func decode(t *testing.T, r *reply) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		t.Fatalf("decode %s response: %v", r.path, err)
	}
	return m
}

// token posts to the token endpoint and returns status and body.
func (e *env) token(form url.Values, user, pass string) (int, map[string]any) {
	e.t.Helper()
	resp := e.postForm(e.TokenURL(), form, user, pass)
	return resp.StatusCode, decode(e.t, resp)
}

// claims verifies a token against the provider's published JWKS, the way
// a relying party would, and returns its claims.
func (e *env) claims(raw string) map[string]any {
	e.t.Helper()
	var set jose.JSONWebKeySet
	resp := e.get(e.JWKSURL())
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		e.t.Fatalf("decode JWKS: %v", err)
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		e.t.Fatalf("parse token: %v", err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		e.t.Fatalf("token kid %q not in JWKS", jws.Signatures[0].Header.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		e.t.Fatalf("verify token: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		e.t.Fatal(err)
	}
	return c
}

func pkce() (verifier, challenge string) {
	verifier = randomString() + randomString() + "-._~"
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

type authResult struct {
	status   int
	location *url.URL
	body     string
}

// authorize shows the login form and submits it, returning the response.
func (e *env) authorize(params url.Values, username, password, action string) authResult {
	e.t.Helper()
	resp := e.get(e.AuthorizeURL() + "?" + params.Encode())
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return authResult{status: resp.StatusCode, location: location(resp), body: string(body)}
	}
	form := url.Values{}
	// Carry the hidden fields the page rendered, as a browser would.
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`).FindAllStringSubmatch(string(body), -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	form.Set("username", username)
	form.Set("password", password)
	form.Set("action", action)
	resp = e.postForm(e.AuthorizeURL(), form, "", "")
	body, _ = io.ReadAll(resp.Body)
	return authResult{status: resp.StatusCode, location: location(resp), body: string(body)}
}

func htmlUnescape(s string) string {
	r := strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'", "&#43;", "+")
	return r.Replace(s)
}

func location(resp *reply) *url.URL {
	if l := resp.Header.Get("Location"); l != "" {
		u, _ := url.Parse(l)
		return u
	}
	return nil
}

func authParams(client, redirect, challenge string) url.Values {
	return url.Values{
		"client_id": {client}, "redirect_uri": {redirect}, "response_type": {"code"},
		"scope": {"openid profile email offline_access"}, "state": {"st-" + randomString()}, "nonce": {"n-" + randomString()},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
}

func TestDiscoveryAndPrefix(t *testing.T) {
	t.Parallel()
	e := start(t)
	resp := e.get(e.Issuer() + "/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("discovery status = %d, want 200", resp.StatusCode)
	}
	doc := decode(t, resp)
	for k, want := range map[string]string{
		"issuer": e.Issuer(), "token_endpoint": e.TokenURL(), "authorization_endpoint": e.AuthorizeURL(),
		"jwks_uri": e.JWKSURL(), "device_authorization_endpoint": e.DeviceAuthorizationURL(),
	} {
		if doc[k] != want {
			t.Errorf("discovery %s = %v, want %s", k, doc[k], want)
		}
	}
	if got := e.get(e.HTTP.URL + "/.well-known/openid-configuration").StatusCode; got != http.StatusNotFound {
		t.Errorf("discovery outside the issuer path: status %d, want 404", got)
	}
	if got := e.get(e.Issuer() + "/token").StatusCode; got != http.StatusMethodNotAllowed {
		t.Errorf("GET /token: status %d, want 405", got)
	}
}

func TestAuthorizationCodeFlow(t *testing.T) {
	t.Parallel()
	e := start(t)
	verifier, challenge := pkce()
	redirect := "http://127.0.0.1:49152/callback" // any port: loopback rule
	params := authParams(cli.ID, redirect, challenge)
	res := e.authorize(params, "alice", alicePassword, "login")
	if res.status != http.StatusFound || res.location == nil {
		t.Fatalf("login: status %d, want a redirect; body %q", res.status, res.body)
	}
	q := res.location.Query()
	if got := res.location.Host; got != "127.0.0.1:49152" {
		t.Errorf("redirect host = %s, want 127.0.0.1:49152", got)
	}
	if q.Get("state") != params.Get("state") || q.Get("iss") != e.Issuer() || q.Get("code") == "" {
		t.Fatalf("redirect query = %v: want code, the same state and iss", q)
	}
	code := q.Get("code")
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}, "client_id": {cli.ID}}
	status, body := e.token(form, "", "")
	if status != http.StatusOK {
		t.Fatalf("token: status %d body %v", status, body)
	}
	if body["token_type"] != "Bearer" || body["refresh_token"] == nil || body["id_token"] == nil {
		t.Errorf("token response = %v: want Bearer, refresh_token and id_token", body)
	}
	id := e.claims(body["id_token"].(string))
	if id["aud"] != cli.ID || id["nonce"] != params.Get("nonce") || id["email"] != "alice@example.com" {
		t.Errorf("ID token claims = %v: want aud %s, the request nonce, alice's email", id, cli.ID)
	}
	at := e.claims(body["access_token"].(string))
	if at["aud"] != "sqlgate" || at["sub"] != id["sub"] || !slices.Contains(toStrings(at["amr"]), "mfa") {
		t.Errorf("access token claims = %v: want aud sqlgate, same sub as the ID token, amr with mfa", at)
	}

	// The code is single-use.
	status, body = e.token(form, "", "")
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("replayed code: %d %v, want 400 invalid_grant", status, body)
	}
}

func toStrings(v any) []string {
	var out []string
	if a, ok := v.([]any); ok {
		for _, x := range a {
			s, _ := x.(string)
			out = append(out, s)
		}
	}
	return out
}

func TestAuthorizationCodeRejections(t *testing.T) {
	t.Parallel()
	e := start(t)
	redirect := "http://127.0.0.1:50000/callback"
	login := func(t *testing.T) (code, verifier string) {
		t.Helper()
		v, ch := pkce()
		res := e.authorize(authParams(cli.ID, redirect, ch), "bob", bobPassword, "login")
		if res.location == nil || res.location.Query().Get("code") == "" {
			t.Fatalf("login did not yield a code: %d %q", res.status, res.body)
		}
		return res.location.Query().Get("code"), v
	}
	tests := []struct {
		name  string
		tweak func(f url.Values)
	}{
		{"wrong_verifier", func(f url.Values) { v, _ := pkce(); f.Set("code_verifier", v) }},
		{"missing_verifier", func(f url.Values) { f.Del("code_verifier") }},
		{"other_redirect_uri", func(f url.Values) { f.Set("redirect_uri", "http://127.0.0.1:50001/callback") }},
		{"unknown_code", func(f url.Values) { f.Set("code", randomString()) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, v := login(t)
			f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {v}, "client_id": {cli.ID}}
			tc.tweak(f)
			status, body := e.token(f, "", "")
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
				t.Errorf("token = %d %v, want 400 invalid_grant", status, body)
			}
		})
	}
	t.Run("code_burnt_by_failed_attempt", func(t *testing.T) {
		code, v := login(t)
		f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "client_id": {cli.ID}}
		bad, _ := pkce()
		f.Set("code_verifier", bad)
		e.token(f, "", "")
		f.Set("code_verifier", v)
		if status, body := e.token(f, "", ""); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Errorf("right verifier after a wrong one = %d %v, want invalid_grant", status, body)
		}
	})
	t.Run("expired_code", func(t *testing.T) {
		code, v := login(t)
		e.clock.Add(2 * time.Minute)
		defer e.clock.Add(-2 * time.Minute)
		f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {v}, "client_id": {cli.ID}}
		if status, body := e.token(f, "", ""); body["error"] != "invalid_grant" {
			t.Errorf("expired code = %d %v, want invalid_grant", status, body)
		}
	})
	t.Run("wrong_password_shows_form_again", func(t *testing.T) {
		_, ch := pkce()
		res := e.authorize(authParams(cli.ID, redirect, ch), "alice", "not-the-password", "login")
		if res.status != http.StatusUnauthorized || res.location != nil || !strings.Contains(res.body, "Invalid username or password") {
			t.Errorf("wrong password = %d location %v, want 401 with the form", res.status, res.location)
		}
	})
	t.Run("cancel_is_access_denied", func(t *testing.T) {
		_, ch := pkce()
		p := authParams(cli.ID, redirect, ch)
		res := e.authorize(p, "", "", "deny")
		if res.location == nil || res.location.Query().Get("error") != "access_denied" || res.location.Query().Get("state") != p.Get("state") {
			t.Errorf("cancel = %d %v, want redirect with access_denied and state", res.status, res.location)
		}
	})
	t.Run("unregistered_redirect_is_not_followed", func(t *testing.T) {
		_, ch := pkce()
		res := e.authorize(authParams(cli.ID, "https://evil.example/callback", ch), "alice", alicePassword, "login")
		if res.status != http.StatusBadRequest || res.location != nil {
			t.Errorf("unregistered redirect = %d %v, want 400 page and no redirect", res.status, res.location)
		}
	})
	t.Run("pkce_required", func(t *testing.T) {
		p := authParams(cli.ID, redirect, "")
		p.Del("code_challenge")
		p.Del("code_challenge_method")
		res := e.authorize(p, "alice", alicePassword, "login")
		if res.location == nil || res.location.Query().Get("error") != "invalid_request" {
			t.Errorf("no PKCE = %d %v, want redirect with invalid_request", res.status, res.location)
		}
	})
	t.Run("plain_pkce_refused", func(t *testing.T) {
		v, _ := pkce()
		p := authParams(cli.ID, redirect, v[:43])
		p.Set("code_challenge_method", "plain")
		res := e.authorize(p, "alice", alicePassword, "login")
		if res.location == nil || res.location.Query().Get("error") != "invalid_request" {
			t.Errorf("plain PKCE = %d %v, want invalid_request", res.status, res.location)
		}
	})
	t.Run("confidential_client_exact_redirect_only", func(t *testing.T) {
		_, ch := pkce()
		res := e.authorize(authParams(web.ID, "https://sqlgate.example.com:8443/auth/callback", ch), "alice", alicePassword, "login")
		if res.status != http.StatusBadRequest {
			t.Errorf("other port on a non-loopback redirect = %d, want 400", res.status)
		}
		// The dashboard of the dev mode on loopback: another port is another
		// program, which must not receive the dashboard's code.
		res = e.authorize(authParams(web.ID, "http://127.0.0.1:9999/auth/callback", ch), "alice", alicePassword, "login")
		if res.status != http.StatusBadRequest || res.location != nil {
			t.Errorf("confidential client, other loopback port = %d %v, want 400 and no redirect", res.status, res.location)
		}
		res = e.authorize(authParams(web.ID, "http://127.0.0.1:8080/auth/callback", ch), "alice", alicePassword, "login")
		if res.location == nil || res.location.Query().Get("code") == "" {
			t.Errorf("confidential client, registered loopback URI = %d %v, want a redirect with a code", res.status, res.location)
		}
	})
}

func TestPasswordAndClientAuthentication(t *testing.T) {
	t.Parallel()
	e := start(t)
	pw := func(user, pass string) url.Values {
		return url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}, "scope": {"openid offline_access"}}
	}
	tests := []struct {
		name       string
		form       url.Values
		user, pass string
		wantStatus int
		wantError  string
	}{
		{"public_client_in_body", with(pw("alice", alicePassword), "client_id", cli.ID), "", "", 200, ""},
		{"confidential_basic", pw("bob", bobPassword), web.ID, webSecret, 200, ""},
		{"confidential_post", with(with(pw("bob", bobPassword), "client_id", web.ID), "client_secret", webSecret), "", "", 200, ""},
		{"wrong_password", with(pw("alice", bobPassword), "client_id", cli.ID), "", "", 400, "invalid_grant"},
		{"unknown_user", with(pw("mallory", alicePassword), "client_id", cli.ID), "", "", 400, "invalid_grant"},
		{"wrong_client_secret", pw("bob", bobPassword), web.ID, svcSecret, 401, "invalid_client"},
		{"missing_client_secret", with(pw("bob", bobPassword), "client_id", web.ID), "", "", 401, "invalid_client"},
		{"unknown_client", with(pw("bob", bobPassword), "client_id", "nobody"), "", "", 401, "invalid_client"},
		{"grant_not_allowed", pw("bob", bobPassword), svc.ID, svcSecret, 400, "unauthorized_client"},
		{"unsupported_grant", url.Values{"grant_type": {"implicit"}, "client_id": {cli.ID}}, "", "", 400, "unsupported_grant_type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := e.token(tc.form, tc.user, tc.pass)
			if status != tc.wantStatus || (tc.wantError != "" && body["error"] != tc.wantError) {
				t.Fatalf("token = %d %v, want %d %s", status, body, tc.wantStatus, tc.wantError)
			}
			if status == 200 {
				at := e.claims(body["access_token"].(string))
				if slices.Contains(toStrings(at["amr"]), "mfa") {
					t.Errorf("password grant token claims MFA: %v", at["amr"])
				}
			}
		})
	}
}

func with(v url.Values, k, val string) url.Values {
	out := url.Values{}
	for kk, vv := range v {
		out[kk] = slices.Clone(vv)
	}
	out.Set(k, val)
	return out
}

func TestClientCredentials(t *testing.T) {
	t.Parallel()
	for _, shape := range []devidp.Shape{devidp.ShapeGeneric, devidp.ShapeEntra, devidp.ShapeOkta} {
		t.Run(string(shape), func(t *testing.T) {
			t.Parallel()
			e := start(t, devidp.WithShape(shape))
			status, body := e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {"orders.read"}}, svc.ID, svcSecret)
			if status != 200 || body["refresh_token"] != nil || body["id_token"] != nil {
				t.Fatalf("client credentials = %d %v, want an access token only", status, body)
			}
			c := e.claims(body["access_token"].(string))
			if c["aud"] != "sqlgate" {
				t.Errorf("aud = %v, want sqlgate", c["aud"])
			}
			switch shape {
			case devidp.ShapeEntra:
				if c["idtyp"] != "app" || c["sub"] != c["oid"] || c["azp"] != svc.ID || !slices.Contains(toStrings(c["roles"]), "Orders.Read") || c["scp"] != nil {
					t.Errorf("entra app token = %v", c)
				}
			case devidp.ShapeOkta:
				if c["sub"] != svc.ID || c["cid"] != svc.ID || c["uid"] != nil {
					t.Errorf("okta app token = %v", c)
				}
			default:
				if c["sub"] != svc.ID || c["client_id"] != svc.ID {
					t.Errorf("generic app token = %v", c)
				}
			}
			status, body = e.token(url.Values{"grant_type": {"client_credentials"}, "client_id": {cli.ID}}, "", "")
			if status != 400 || body["error"] != "unauthorized_client" {
				t.Errorf("public client credentials = %d %v, want unauthorized_client", status, body)
			}
			status, body = e.token(url.Values{"grant_type": {"client_credentials"}, "scope": {"https://graph.microsoft.com/.default"}}, svc.ID, svcSecret)
			if status != 200 || e.claims(body["access_token"].(string))["aud"] != "https://graph.microsoft.com" {
				t.Errorf(".default scope: %d, want a token for the resource", status)
			}
		})
	}
}

func TestRefreshRotationAndReuse(t *testing.T) {
	t.Parallel()
	e := start(t)
	status, body := e.token(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {alicePassword}, "scope": {"openid offline_access"}, "client_id": {cli.ID}}, "", "")
	if status != 200 {
		t.Fatalf("password grant = %d %v", status, body)
	}
	rt1 := body["refresh_token"].(string)
	refresh := func(rt string) (int, map[string]any) {
		return e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {cli.ID}}, "", "")
	}
	status, body = refresh(rt1)
	if status != 200 || body["refresh_token"] == nil || body["refresh_token"] == rt1 || body["id_token"] == nil {
		t.Fatalf("refresh = %d %v, want new tokens and a rotated refresh token", status, body)
	}
	rt2 := body["refresh_token"].(string)
	if status, body := e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}}, web.ID, webSecret); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("refresh by another client = %d %v, want invalid_grant", status, body)
	}
	// rt2 was not consumed by the other client's attempt; reusing rt1 is
	// theft: the whole family goes.
	if status, body := refresh(rt1); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("reused refresh token = %d %v, want invalid_grant", status, body)
	}
	if status, body := refresh(rt2); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("refresh after reuse detection = %d %v, want the family revoked", status, body)
	}
	// Expiry.
	_, body = e.token(url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {bobPassword}, "scope": {"openid offline_access"}, "client_id": {cli.ID}}, "", "")
	rt3 := body["refresh_token"].(string)
	e.clock.Add(25 * time.Hour)
	if status, body := refresh(rt3); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("expired refresh token = %d %v, want invalid_grant", status, body)
	}
}

// TestRefreshReuseRaceRevokesSuccessor presents one refresh token twice at
// the same moment, many times over: one redemption rotates it, the other is
// reuse and revokes the family, which must include the token the winner was
// just given, whichever request the provider handled first.
func TestRefreshReuseRaceRevokesSuccessor(t *testing.T) {
	t.Parallel()
	e := start(t)
	post := func(form url.Values) (int, map[string]any, error) {
		resp, err := http.PostForm(e.TokenURL(), form)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		var m map[string]any
		err = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m, err
	}
	const trials = 100
	survived := 0
	for range trials {
		status, body, err := post(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {alicePassword}, "scope": {"openid offline_access"}, "client_id": {cli.ID}})
		if err != nil || status != 200 {
			t.Fatalf("password grant = %d %v %v", status, body, err)
		}
		rt := body["refresh_token"].(string)
		type result struct {
			status int
			body   map[string]any
			err    error
		}
		results := make(chan result, 2)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				s, b, err := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {cli.ID}})
				results <- result{s, b, err}
			})
		}
		wg.Wait()
		close(results)
		var next []string
		reuse := 0
		for r := range results {
			switch {
			case r.err != nil:
				t.Fatal(r.err)
			case r.status == 200:
				next = append(next, r.body["refresh_token"].(string))
			case r.body["error_description"] == "refresh token already used; the session is revoked":
				reuse++
			default:
				t.Fatalf("concurrent refresh = %d %v", r.status, r.body)
			}
		}
		if len(next) != 1 || reuse != 1 {
			t.Fatalf("two concurrent refreshes of one token: %d rotated, %d detected as reuse; want 1 and 1", len(next), reuse)
		}
		if status, _, _ := post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next[0]}, "client_id": {cli.ID}}); status == 200 {
			survived++
		}
	}
	if survived > 0 {
		t.Errorf("the refresh token rotated concurrently with a detected reuse still worked in %d of %d trials, want 0", survived, trials)
	}
}

func (e *env) deviceStart() map[string]any {
	e.t.Helper()
	resp := e.postForm(e.DeviceAuthorizationURL(), url.Values{"client_id": {cli.ID}, "scope": {"openid offline_access"}}, "", "")
	if resp.StatusCode != 200 {
		e.t.Fatalf("device authorization: status %d", resp.StatusCode)
	}
	return decode(e.t, resp)
}

func (e *env) devicePoll(dc string) (int, map[string]any) {
	return e.token(url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {dc}, "client_id": {cli.ID}}, "", "")
}

func (e *env) devicePage(code, user, pass, action string) (int, string) {
	e.t.Helper()
	resp := e.postForm(e.DeviceVerificationURL(), url.Values{"user_code": {code}, "username": {user}, "password": {pass}, "action": {action}}, "", "")
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDeviceFlow(t *testing.T) {
	t.Parallel()
	e := start(t, devidp.WithDeviceInterval(2*time.Second))
	da := e.deviceStart()
	dc, uc := da["device_code"].(string), da["user_code"].(string)
	if da["interval"] != float64(2) || !strings.HasPrefix(da["verification_uri_complete"].(string), e.DeviceVerificationURL()+"?user_code=") {
		t.Errorf("device authorization response = %v", da)
	}
	if s, b := e.devicePoll(dc); s != 400 || b["error"] != "authorization_pending" {
		t.Fatalf("first poll = %d %v, want authorization_pending", s, b)
	}
	if s, b := e.devicePoll(dc); b["error"] != "slow_down" {
		t.Fatalf("immediate second poll = %d %v, want slow_down", s, b)
	}
	// The interval grew to 7s: polling after 3s is still too fast.
	e.clock.Add(3 * time.Second)
	if _, b := e.devicePoll(dc); b["error"] != "slow_down" {
		t.Fatalf("poll 3s later = %v, want slow_down (interval raised by 5s)", b)
	}
	e.clock.Add(13 * time.Second)
	if _, b := e.devicePoll(dc); b["error"] != "authorization_pending" {
		t.Fatalf("poll after the interval = %v, want authorization_pending", b)
	}
	page := e.get(da["verification_uri_complete"].(string))
	body, _ := io.ReadAll(page.Body)
	if !strings.Contains(string(body), `value="`+uc+`"`) {
		t.Errorf("verification page does not prefill the user code")
	}
	if s, _ := e.devicePage(uc, "alice", bobPassword, "approve"); s != http.StatusUnauthorized {
		t.Errorf("wrong password on the device page = %d, want 401", s)
	}
	if s, _ := e.devicePage("BBBB-BBBB", "alice", alicePassword, "approve"); s != http.StatusBadRequest {
		t.Errorf("unknown user code = %d, want 400", s)
	}
	if s, _ := e.devicePage(strings.ToLower(strings.ReplaceAll(uc, "-", "")), "alice", alicePassword, "approve"); s != 200 {
		t.Fatalf("approve = %d, want 200", s)
	}
	e.clock.Add(10 * time.Second)
	s, b := e.devicePoll(dc)
	if s != 200 || b["refresh_token"] == nil {
		t.Fatalf("poll after approval = %d %v, want tokens", s, b)
	}
	if c := e.claims(b["access_token"].(string)); c["preferred_username"] != "alice" || !slices.Contains(toStrings(c["amr"]), "mfa") {
		t.Errorf("device token claims = %v", c)
	}
	if _, b := e.devicePoll(dc); b["error"] != "invalid_grant" {
		t.Errorf("poll after the tokens were issued = %v, want invalid_grant", b)
	}

	t.Run("denied", func(t *testing.T) {
		da := e.deviceStart()
		if s, _ := e.devicePage(da["user_code"].(string), "", "", "deny"); s != 200 {
			t.Fatalf("deny = %d", s)
		}
		if _, b := e.devicePoll(da["device_code"].(string)); b["error"] != "access_denied" {
			t.Errorf("poll after deny = %v, want access_denied", b)
		}
	})
	t.Run("expired", func(t *testing.T) {
		da := e.deviceStart()
		e.clock.Add(11 * time.Minute)
		if _, b := e.devicePoll(da["device_code"].(string)); b["error"] != "expired_token" {
			t.Errorf("poll after expiry = %v, want expired_token", b)
		}
		if s, _ := e.devicePage(da["user_code"].(string), "alice", alicePassword, "approve"); s != http.StatusBadRequest {
			t.Errorf("approving an expired code = %d, want 400", s)
		}
	})
}

func TestShapes(t *testing.T) {
	t.Parallel()
	many := devidp.User{Username: "carol", Password: randomString(), Name: "Carol", Email: "carol@example.com", Groups: []string{"auditors", "g1", "g2", "g3"}}
	tests := []struct {
		shape devidp.Shape
		check func(t *testing.T, e *env, at, id, over map[string]any)
	}{
		{devidp.ShapeEntra, func(t *testing.T, e *env, at, id, over map[string]any) {
			for _, c := range []map[string]any{at, id} {
				if c["ver"] != "2.0" || c["tid"] != e.TenantID() || c["oid"] != e.ObjectID("alice") || c["preferred_username"] != "alice@example.com" || c["uti"] == nil {
					t.Errorf("entra claims = %v", c)
				}
				if got := toStrings(c["groups"]); !slices.Equal(got, []string{devidp.GroupID("sales")}) {
					t.Errorf("entra groups = %v, want the object id of sales", got)
				}
			}
			if at["sub"] != id["sub"] || at["sub"] == at["oid"] || at["scp"] == nil || at["azp"] != cli.ID {
				t.Errorf("entra access token = %v: want pairwise sub equal to the ID token's, scp, azp", at)
			}
			if !slices.Contains(toStrings(at["acrs"]), "c1") {
				t.Errorf("entra MFA user: acrs = %v, want c1", at["acrs"])
			}
			if over["groups"] != nil || over["_claim_names"] == nil || over["_claim_sources"] == nil {
				t.Errorf("entra overage = %v, want _claim_names/_claim_sources and no groups", over)
			}
		}},
		{devidp.ShapeOkta, func(t *testing.T, e *env, at, id, _ map[string]any) {
			uid := e.ObjectID("alice")
			if !strings.HasPrefix(uid, "00u") || at["uid"] != uid || id["sub"] != uid || at["sub"] != "alice@example.com" || at["cid"] != cli.ID {
				t.Errorf("okta ids: uid %s, access %v, id %v", uid, at, id)
			}
			if !strings.HasPrefix(at["jti"].(string), "AT.") || !strings.HasPrefix(id["jti"].(string), "ID.") || at["ver"] != float64(1) {
				t.Errorf("okta jti/ver = %v %v %v", at["jti"], id["jti"], at["ver"])
			}
			if scp := toStrings(at["scp"]); !slices.Contains(scp, "openid") || !slices.Equal(toStrings(at["groups"]), []string{"sales"}) {
				t.Errorf("okta scp/groups = %v %v", at["scp"], at["groups"])
			}
		}},
		{devidp.ShapeGeneric, func(t *testing.T, e *env, at, id, _ map[string]any) {
			if at["sub"] != e.ObjectID("alice") || at["email"] != "alice@example.com" || at["client_id"] != cli.ID || !slices.Equal(toStrings(at["groups"]), []string{"sales"}) {
				t.Errorf("generic access token = %v", at)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(string(tc.shape), func(t *testing.T) {
			t.Parallel()
			e := start(t, devidp.WithShape(tc.shape), devidp.WithUsers(many), devidp.WithGroupOverageThreshold(3))
			_, body := e.token(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {alicePassword}, "scope": {"openid profile"}, "client_id": {cli.ID}}, "", "")
			// The password grant never claims MFA; take MFA-bearing tokens from TokenFor.
			at, err := e.TokenFor("alice", "")
			if err != nil {
				t.Fatal(err)
			}
			over, err := e.TokenFor("carol", "")
			if err != nil {
				t.Fatal(err)
			}
			idc := e.claims(body["id_token"].(string))
			tc.check(t, e, e.claims(at), idc, e.claims(over))
			if e.claims(body["access_token"].(string))["iss"] != e.Issuer() {
				t.Errorf("token endpoint access token has the wrong issuer")
			}
		})
	}
}

func TestKeyPersistenceAndRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "idp", "signing-key.pem")
	issuer := "http://127.0.0.1:1/idp"
	p1, err := devidp.Open(keyFile, devidp.WithIssuer(issuer), devidp.WithUsers(alice))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	tok, err := p1.TokenFor("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := devidp.Open(keyFile, devidp.WithIssuer(issuer), devidp.WithUsers(alice))
	if err != nil {
		t.Fatal(err)
	}
	if p1.KeyID() != p2.KeyID() {
		t.Fatalf("restart changed the key id: %s -> %s", p1.KeyID(), p2.KeyID())
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(p2.PublicKey()); err != nil {
		t.Errorf("token from before the restart does not verify: %v", err)
	}

	oldKID := p2.KeyID()
	newKID, err := p2.RotateKey()
	if err != nil || newKID == oldKID {
		t.Fatalf("RotateKey = %s, %v", newKID, err)
	}
	p3, err := devidp.Open(keyFile, devidp.WithIssuer(issuer))
	if err != nil {
		t.Fatal(err)
	}
	if p3.KeyID() != newKID {
		t.Errorf("after rotation the key file's active key = %s, want %s", p3.KeyID(), newKID)
	}
	if err := p2.RetireOldKeys(); err != nil {
		t.Fatal(err)
	}
	if _, err := devidp.Open(filepath.Join(dir, "bad.pem"), devidp.WithIssuer("not a url")); err == nil {
		t.Errorf("Open with an invalid issuer succeeded")
	}
}

func TestRotationInJWKS(t *testing.T) {
	t.Parallel()
	e := start(t)
	old, _ := e.TokenFor("alice", "")
	if _, err := e.RotateKey(); err != nil {
		t.Fatal(err)
	}
	newer, _ := e.TokenFor("alice", "")
	e.claims(old) // still verifies: old key published
	e.claims(newer)
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(e.get(e.JWKSURL()).Body).Decode(&set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("JWKS after rotation: %d keys, %v; want 2", len(set.Keys), err)
	}
	if err := e.RetireOldKeys(); err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(e.get(e.JWKSURL()).Body).Decode(&set); err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != e.KeyID() {
		t.Fatalf("JWKS after retiring: %v", set.Keys)
	}
}

func TestUserinfo(t *testing.T) {
	t.Parallel()
	e := start(t)
	at, _ := e.TokenFor("alice", "")
	idt, _ := e.IDTokenFor("alice", cli.ID, "")
	foreign, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged, _ := e.Mint(e.mustClaims("alice"), devidp.MintKey(foreign))
	tests := []struct {
		name   string
		token  string
		status int
	}{
		{"access_token", at, 200},
		{"id_token", idt, 401},
		{"forged", forged, 401},
		{"garbage", "abc.def.ghi", 401},
		{"none", "", 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.Issuer()+"/userinfo", nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			r := readReply(t, resp)
			if r.StatusCode != tc.status {
				t.Fatalf("userinfo = %d, want %d", r.StatusCode, tc.status)
			}
			if tc.status == 200 {
				if b := decode(t, r); b["email"] != "alice@example.com" || b["sub"] != e.ObjectID("alice") {
					t.Errorf("userinfo = %v", b)
				}
			}
		})
	}
	e.clock.Add(2 * time.Hour)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.Issuer()+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("userinfo with an expired token = %d, want 401", resp.StatusCode)
	}
}

func (e *env) mustClaims(user string) map[string]any {
	c, err := e.AccessTokenClaims(user, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func TestMint(t *testing.T) {
	t.Parallel()
	e := start(t)
	c := e.mustClaims("bob")
	c["exp"] = e.clock.Now().Add(-time.Hour).Unix()
	tok, err := e.Mint(c, devidp.MintKeyID("no-such-key"), devidp.MintHeader("typ", "at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.KeyID != "no-such-key" || h.ExtraHeaders["typ"] != "at+jwt" {
		t.Errorf("minted header = kid %q typ %v", h.KeyID, h.ExtraHeaders["typ"])
	}
	payload, err := jws.Verify(e.PublicKey())
	if err != nil {
		t.Fatalf("minted token not signed with the provider key: %v", err)
	}
	var got map[string]any
	_ = json.Unmarshal(payload, &got)
	if got["exp"] != float64(c["exp"].(int64)) {
		t.Errorf("minted exp = %v, want %v", got["exp"], c["exp"])
	}
	if _, err := e.TokenFor("nobody", ""); err == nil {
		t.Errorf("TokenFor an unknown user succeeded")
	}
}

func TestOptionValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []devidp.Option
	}{
		{"no_issuer", nil},
		{"relative_issuer", []devidp.Option{devidp.WithIssuer("/idp")}},
		{"trailing_slash", []devidp.Option{devidp.WithIssuer("http://127.0.0.1/idp/")}},
		{"bad_shape", []devidp.Option{devidp.WithIssuer("http://127.0.0.1/idp"), devidp.WithShape("azure")}},
		{"user_without_password", []devidp.Option{devidp.WithIssuer("http://127.0.0.1/idp"), devidp.WithUsers(devidp.User{Username: "x"})}},
		{"duplicate_client", []devidp.Option{devidp.WithIssuer("http://127.0.0.1/idp"), devidp.WithClients(cli, cli)}},
		{"bad_grant", []devidp.Option{devidp.WithIssuer("http://127.0.0.1/idp"), devidp.WithClients(devidp.Client{ID: "x", Grants: []string{"implicit"}})}},
		{"short_interval", []devidp.Option{devidp.WithIssuer("http://127.0.0.1/idp"), devidp.WithDeviceInterval(time.Millisecond)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := devidp.New(append(tc.opts, devidp.WithKey(devidptest.Key(t)))...); err == nil {
				t.Errorf("New succeeded, want an error")
			}
		})
	}
}

// acrsC1 is the claims request parameter that asks for the c1
// authentication context, essential, in both tokens (what sqlgate's CLI and
// dashboard send for an entra issuer with mfaACRValues: [c1]).
const acrsC1 = `{"access_token":{"acrs":{"essential":true,"value":"c1"}},"id_token":{"acrs":{"essential":true,"value":"c1"}}}`

// TestEntraACRSOnlyWhenRequested: like Entra, the entra shape puts an
// authentication context (acrs) in a token only when the request asked for
// it with the claims parameter, and only for a user with MFA; a relying
// party that never asks sees no MFA evidence in an Entra v2.0 token. That
// holds for the authorization code, the device code and the refresh token
// grants each by its own request; the password grant never carries it.
func TestEntraACRSOnlyWhenRequested(t *testing.T) {
	t.Parallel()
	e := start(t, devidp.WithShape(devidp.ShapeEntra))
	redirect := "http://127.0.0.1:50002/callback"
	// codeLogin signs user in with the authorization code flow, sending
	// claims when not empty, and returns the token response.
	codeLogin := func(t *testing.T, user, pass, claims string) map[string]any {
		t.Helper()
		v, ch := pkce()
		p := authParams(cli.ID, redirect, ch)
		if claims != "" {
			p.Set("claims", claims)
		}
		res := e.authorize(p, user, pass, "login")
		if res.location == nil || res.location.Query().Get("code") == "" {
			t.Fatalf("login: %d %v %q, want a code", res.status, res.location, res.body)
		}
		status, body := e.token(url.Values{
			"grant_type": {"authorization_code"}, "code": {res.location.Query().Get("code")}, "redirect_uri": {redirect},
			"code_verifier": {v}, "client_id": {cli.ID},
		}, "", "")
		if status != http.StatusOK {
			t.Fatalf("code exchange: %d %v", status, body)
		}
		return body
	}
	acrsOf := func(t *testing.T, body map[string]any) (access, id []string) {
		t.Helper()
		return toStrings(e.claims(body["access_token"].(string))["acrs"]), toStrings(e.claims(body["id_token"].(string))["acrs"])
	}

	if doc := decode(t, e.get(e.Issuer()+"/.well-known/openid-configuration")); doc["claims_parameter_supported"] != true {
		t.Errorf("discovery claims_parameter_supported = %v, want true", doc["claims_parameter_supported"])
	}

	t.Run("code_without_claims", func(t *testing.T) {
		if at, id := acrsOf(t, codeLogin(t, "alice", alicePassword, "")); at != nil || id != nil {
			t.Errorf("alice (MFA) signed in without a claims request: acrs %v (access), %v (ID), want none", at, id)
		}
	})
	var refresh string
	t.Run("code_with_claims", func(t *testing.T) {
		body := codeLogin(t, "alice", alicePassword, acrsC1)
		if at, id := acrsOf(t, body); !slices.Equal(at, []string{"c1"}) || !slices.Equal(id, []string{"c1"}) {
			t.Errorf("alice asked for c1: acrs %v (access), %v (ID), want [c1] in both", at, id)
		}
		refresh, _ = body["refresh_token"].(string)
	})
	t.Run("code_access_token_only", func(t *testing.T) {
		body := codeLogin(t, "alice", alicePassword, `{"access_token":{"acrs":{"essential":true,"values":["c2","c1"]}}}`)
		if at, id := acrsOf(t, body); !slices.Equal(at, []string{"c2", "c1"}) || id != nil {
			t.Errorf("acrs asked for the access token only: %v (access), %v (ID), want [c2 c1] and none", at, id)
		}
	})
	t.Run("code_user_without_mfa", func(t *testing.T) {
		if at, id := acrsOf(t, codeLogin(t, "bob", bobPassword, acrsC1)); at != nil || id != nil {
			t.Errorf("bob (no MFA) asked for c1: acrs %v, %v, want none", at, id)
		}
	})
	t.Run("refresh_asks_again", func(t *testing.T) {
		if refresh == "" {
			t.Fatal("code_with_claims got no refresh token")
		}
		status, body := e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {cli.ID}}, "", "")
		if status != http.StatusOK {
			t.Fatalf("refresh: %d %v", status, body)
		}
		if at := toStrings(e.claims(body["access_token"].(string))["acrs"]); at != nil {
			t.Errorf("refresh without a claims request: acrs %v, want none", at)
		}
		status, body = e.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)}, "client_id": {cli.ID}, "claims": {acrsC1}}, "", "")
		if status != http.StatusOK {
			t.Fatalf("refresh with claims: %d %v", status, body)
		}
		if at := toStrings(e.claims(body["access_token"].(string))["acrs"]); !slices.Equal(at, []string{"c1"}) {
			t.Errorf("refresh asking for c1: acrs %v, want [c1]", at)
		}
	})
	t.Run("device", func(t *testing.T) {
		for _, claims := range []string{"", acrsC1} {
			form := url.Values{"client_id": {cli.ID}, "scope": {"openid offline_access"}}
			if claims != "" {
				form.Set("claims", claims)
			}
			resp := e.postForm(e.DeviceAuthorizationURL(), form, "", "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("device authorization: %d", resp.StatusCode)
			}
			da := decode(t, resp)
			if s, _ := e.devicePage(da["user_code"].(string), "alice", alicePassword, "approve"); s != http.StatusOK {
				t.Fatalf("approve = %d", s)
			}
			e.clock.Add(10 * time.Second)
			s, body := e.devicePoll(da["device_code"].(string))
			if s != http.StatusOK {
				t.Fatalf("device poll = %d %v", s, body)
			}
			at, id := acrsOf(t, body)
			if want := []string{"c1"}; claims == "" && (at != nil || id != nil) || claims != "" && (!slices.Equal(at, want) || !slices.Equal(id, want)) {
				t.Errorf("device sign-in with claims %q: acrs %v (access), %v (ID)", claims, at, id)
			}
		}
	})
	t.Run("password_never", func(t *testing.T) {
		status, body := e.token(url.Values{
			"grant_type": {"password"}, "username": {"alice"}, "password": {alicePassword}, "scope": {"openid"},
			"client_id": {cli.ID}, "claims": {acrsC1},
		}, "", "")
		if status != http.StatusOK {
			t.Fatalf("password grant: %d %v", status, body)
		}
		if at, id := acrsOf(t, body); at != nil || id != nil {
			t.Errorf("password grant asking for c1: acrs %v, %v, want none", at, id)
		}
	})
	t.Run("malformed_claims", func(t *testing.T) {
		for _, bad := range []string{`c1`, `{"access_token":"c1"}`, `{"access_token":{"acrs":{"value":1}}}`, `{"id_token":{"acrs":{"value":""}}}`} {
			_, ch := pkce()
			p := authParams(cli.ID, redirect, ch)
			p.Set("claims", bad)
			res := e.authorize(p, "alice", alicePassword, "login")
			if res.location == nil || res.location.Query().Get("error") != "invalid_request" || res.location.Query().Get("state") != p.Get("state") {
				t.Errorf("claims %s: %d %v, want a redirect with invalid_request", bad, res.status, res.location)
			}
		}
	})
}
