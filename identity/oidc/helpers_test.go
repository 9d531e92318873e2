package oidc

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
)

// Test-only credentials, generated per run; the cleanup of every env
// checks that none of them reached a log line.
var (
	alicePassword  = randomString()
	bobPassword    = randomString()
	carolPassword  = randomString()
	webSecret      = randomString()
	serviceSecret  = randomString()
	brokerSecret   = randomString()
	testSecretsAll = []string{alicePassword, bobPassword, carolPassword, webSecret, serviceSecret, brokerSecret}
)

func randomString() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var (
	userAlice = devidp.User{Username: "alice", Password: alicePassword, Email: "alice@example.com", Name: "Alice Example", Groups: []string{"sales"}, Roles: []string{"Orders.Write"}, MFA: true}
	userBob   = devidp.User{Username: "bob", Password: bobPassword, Email: "bob@example.com", Name: "Bob Example", Groups: []string{"support"}}
	userCarol = devidp.User{Username: "carol", Password: carolPassword, Email: "carol@example.com", Name: "Carol Example", Groups: []string{"auditors", "finance", "emea"}}

	clientCLI = devidp.Client{ID: "sqlgate-cli", Name: "sqlgate CLI", RedirectURIs: []string{"http://127.0.0.1/callback"}}
	// clientWeb's redirect URI is the test dashboard's, set per env: a
	// confidential client's loopback redirect URI matches only its own port.
	clientWeb = devidp.Client{ID: "sqlgate-web", Name: "sqlgate dashboard", Secret: webSecret}
	clientSvc = devidp.Client{ID: "orders-service", Secret: serviceSecret, Roles: []string{"Orders.Read"}, Grants: []string{"client_credentials"}}
	// clientBroker reads Graph for the group overage.
	clientBroker = devidp.Client{ID: "sqlgate-broker", Secret: brokerSecret, Grants: []string{"client_credentials"}}
)

// clock is a settable clock shared by the provider and the verifier.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// countingTransport counts requests per URL path.
type countingTransport struct {
	mu    sync.Mutex
	paths map[string]int
	fail  atomic.Bool
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.paths == nil {
		c.paths = map[string]int{}
	}
	c.paths[r.URL.Path]++
	c.mu.Unlock()
	if c.fail.Load() {
		return nil, &url.Error{Op: r.Method, URL: r.URL.String(), Err: errTransportDown}
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paths[path]
}

type transportError struct{}

func (transportError) Error() string { return "connection refused (test transport down)" }

var errTransportDown = transportError{}

// env is a provider and a verifier that trusts it.
type env struct {
	t         testing.TB
	idp       *devidptest.Server
	v         *Verifier
	clock     *clock
	logs      *syncBuffer
	transport *countingTransport
	cfg       Config
	// dashboard is the listener the test dashboard serves on, reserved
	// before the provider starts so that clientWeb can register its URL.
	dashboard net.Listener
}

type envOpt struct {
	shape   devidp.Shape
	idpOpts []devidp.Option
	issuer  func(*IssuerConfig)
	config  func(*Config)
}

func newEnv(t testing.TB, o envOpt) *env {
	t.Helper()
	if o.shape == "" {
		o.shape = devidp.ShapeGeneric
	}
	clk := newClock()
	dashboard, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dashboard.Close() })
	web := clientWeb
	web.RedirectURIs = []string{"http://" + dashboard.Addr().String() + "/auth/callback"}
	idpOpts := append([]devidp.Option{
		devidp.WithShape(o.shape), devidp.WithUsers(userAlice, userBob, userCarol),
		devidp.WithClients(clientCLI, web, clientSvc, clientBroker), devidp.WithClock(clk.Now),
	}, o.idpOpts...)
	idp := devidptest.Start(t, idpOpts...)
	webSecretFile := filepath.Join(t.TempDir(), "web-client-secret")
	if err := os.WriteFile(webSecretFile, []byte(webSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	preset := map[devidp.Shape]Preset{devidp.ShapeGeneric: PresetGeneric, devidp.ShapeEntra: PresetEntra, devidp.ShapeOkta: PresetOkta}[o.shape]
	ic := IssuerConfig{
		Name: "test", Issuer: idp.Issuer(), Preset: preset,
		Audiences: []string{idp.Audience(), clientCLI.ID, clientWeb.ID},
		ClientID:  clientWeb.ID, ClientSecretFile: webSecretFile,
	}
	if o.shape == devidp.ShapeEntra {
		ic.GroupMap = map[string]string{
			devidp.GroupID("sales"): "sales", devidp.GroupID("support"): "support", devidp.GroupID("auditors"): "auditors",
		}
	}
	if o.issuer != nil {
		o.issuer(&ic)
	}
	cfg := Config{Issuers: []IssuerConfig{ic}}
	if o.config != nil {
		o.config(&cfg)
	}
	e := &env{t: t, idp: idp, clock: clk, logs: &syncBuffer{}, transport: &countingTransport{}, cfg: cfg, dashboard: dashboard}
	v, err := Open(t.Context(), cfg, e.logger(), WithClock(clk.Now), WithHTTPClient(&http.Client{Transport: e.transport}))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	e.v = v
	t.Cleanup(func() {
		out := e.logs.String()
		for _, s := range testSecretsAll {
			if strings.Contains(out, s) {
				t.Errorf("log output contains a test secret")
			}
		}
	})
	return e
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (e *env) tokenFor(user string) string {
	e.t.Helper()
	tok, err := e.idp.TokenFor(user, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *env) claims(user string) map[string]any {
	e.t.Helper()
	c, err := e.idp.AccessTokenClaims(user, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) mint(c map[string]any, opts ...devidp.MintOption) string {
	e.t.Helper()
	tok, err := e.idp.Mint(c, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// logLines returns the JSON log records written so far.
func (e *env) logLines() []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(e.logs.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// passwordToken gets tokens from the real token endpoint.
func (e *env) passwordToken(user, pass, scope string) map[string]any {
	e.t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pass}, "scope": {scope}, "client_id": {clientCLI.ID}}
	req, _ := http.NewRequestWithContext(e.t.Context(), http.MethodPost, e.idp.TokenURL(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
		e.t.Fatalf("password grant: status %d, %v", resp.StatusCode, err)
	}
	return m
}

// browser plays the user's browser against the provider's login page.
type browser struct {
	t      testing.TB
	client *http.Client
}

func newBrowser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// signIn opens authURL, fills in the login form and returns where the
// provider redirects the browser (the client's redirect URI with code and
// state, or an error). action is "login" or "deny".
func (b *browser) signIn(authURL, user, pass, action string) (*url.URL, error) {
	resp, err := b.client.Get(authURL)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("login page: status %d", resp.StatusCode)
	}
	form := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	form.Set("username", user)
	form.Set("password", pass)
	form.Set("action", action)
	u, _ := url.Parse(authURL)
	u.RawQuery = ""
	resp, err = b.client.PostForm(u.String(), form)
	if err != nil {
		return nil, err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return nil, fmt.Errorf("login form: status %d", resp.StatusCode)
	}
	return url.Parse(resp.Header.Get("Location"))
}

// page is a fully read response seen by the browser.
type page struct {
	StatusCode int
	Header     http.Header
	Cookies    []*http.Cookie
	Body       string
}

// get follows nothing: it returns the response of one GET.
func (b *browser) get(u string) page {
	b.t.Helper()
	req, err := http.NewRequestWithContext(b.t.Context(), http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("GET %s: %v", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return page{StatusCode: resp.StatusCode, Header: resp.Header, Cookies: resp.Cookies(), Body: string(body)}
}
