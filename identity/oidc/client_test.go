package oidc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

	"golang.org/x/oauth2"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
)

func (e *env) openClient(cfg ClientConfig) *Client {
	e.t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = e.idp.Issuer()
	}
	if cfg.ClientID == "" {
		cfg.ClientID = clientCLI.ID
	}
	c, err := OpenClient(e.t.Context(), cfg)
	if err != nil {
		e.t.Fatalf("OpenClient: %v", err)
	}
	return c
}

// lockedBuffer is an io.Writer the test can read while the flow writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// onWrite, when set, sees every write (to react to printed URLs).
	onWrite func(string)
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.buf.Write(p)
	f := b.onWrite
	b.mu.Unlock()
	if f != nil {
		f(string(p))
	}
	return n, err
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type pageResult struct {
	status int
	body   string
	err    error
}

// userAt runs a browser that signs in at authURL and follows the redirect
// to the CLI's loopback listener; the final page arrives on the channel.
func userAt(t *testing.T, authURL, user, pass, action string) <-chan pageResult {
	out := make(chan pageResult, 1)
	go func() {
		b := newBrowser(t)
		loc, err := b.signIn(authURL, user, pass, action)
		if err != nil {
			out <- pageResult{err: err}
			return
		}
		resp, err := b.client.Get(loc.String())
		if err != nil {
			out <- pageResult{err: err}
			return
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		out <- pageResult{status: resp.StatusCode, body: string(body)}
	}()
	return out
}

func TestLoginBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	c := e.openClient(ClientConfig{})
	var page <-chan pageResult
	out := &lockedBuffer{}
	tok, err := c.LoginBrowser(t.Context(), BrowserLogin{
		Out: out,
		OpenBrowser: func(u string) error {
			page = userAt(t, u, "alice", alicePassword, "login")
			return nil
		},
	})
	if err != nil {
		t.Fatalf("LoginBrowser: %v", err)
	}
	pr := <-page
	if pr.err != nil || pr.status != 200 || !strings.Contains(pr.body, "Signed in") {
		t.Errorf("browser's final page = %d %q %v, want 200 Signed in", pr.status, pr.body, pr.err)
	}
	if tok.Grant != GrantAuthorizationCode || tok.RefreshToken == "" || tok.IDToken == "" || tok.Expiry.IsZero() {
		t.Errorf("tokens = %v, want code grant with refresh and ID tokens", tok)
	}
	p, err := e.v.Verify(t.Context(), tok.Bearer())
	if err != nil || p.Email != "alice@example.com" || !p.MFA {
		t.Fatalf("bearer verifies as %+v, %v; want alice with MFA", p, err)
	}
	if !strings.Contains(out.String(), e.idp.AuthorizeURL()) || !strings.Contains(out.String(), "code_challenge_method=S256") {
		t.Errorf("output %q does not show the sign-in URL", out.String())
	}
}

func TestLoginBrowserWithoutBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	c := e.openClient(ClientConfig{})
	urlRE := regexp.MustCompile(`https?://\S+/authorize\S+`)
	var page <-chan pageResult
	out := &lockedBuffer{}
	out.onWrite = func(s string) {
		if u := urlRE.FindString(s); u != "" && page == nil {
			page = userAt(t, u, "bob", bobPassword, "login") // the user copies the URL
		}
	}
	tok, err := c.LoginBrowser(t.Context(), BrowserLogin{
		Out:         out,
		OpenBrowser: func(string) error { return errors.New("no display") },
	})
	if err != nil {
		t.Fatalf("LoginBrowser: %v", err)
	}
	<-page
	if !strings.Contains(out.String(), "Open this URL in a browser") {
		t.Errorf("output %q lacks the instructions for opening the URL by hand", out.String())
	}
	if p, err := e.v.Verify(t.Context(), tok.Bearer()); err != nil || p.Email != "bob@example.com" {
		t.Errorf("bearer = %+v, %v", p, err)
	}
}

func TestLoginBrowserRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	c := e.openClient(ClientConfig{})
	t.Run("wrong_state", func(t *testing.T) {
		var page <-chan pageResult
		_, err := c.LoginBrowser(t.Context(), BrowserLogin{OpenBrowser: func(u string) error {
			au, _ := url.Parse(u)
			cb, _ := url.Parse(au.Query().Get("redirect_uri"))
			cb.RawQuery = url.Values{"code": {"stolen-code"}, "state": {randomToken()}}.Encode()
			ch := make(chan pageResult, 1)
			page = ch
			go func() {
				resp, err := http.Get(cb.String())
				if err != nil {
					ch <- pageResult{err: err}
					return
				}
				_ = resp.Body.Close()
				ch <- pageResult{status: resp.StatusCode}
			}()
			return nil
		}})
		if reasonOf(err) != ReasonStateMismatch {
			t.Errorf("LoginBrowser with a forged callback = %v, want %s", err, ReasonStateMismatch)
		}
		if pr := <-page; pr.status != http.StatusBadRequest {
			t.Errorf("forged callback page status = %d, want 400", pr.status)
		}
	})
	t.Run("user_cancels", func(t *testing.T) {
		var page <-chan pageResult
		_, err := c.LoginBrowser(t.Context(), BrowserLogin{OpenBrowser: func(u string) error {
			page = userAt(t, u, "", "", "deny")
			return nil
		}})
		if !errors.Is(err, ErrAccessDenied) {
			t.Errorf("LoginBrowser after cancel = %v, want ErrAccessDenied", err)
		}
		<-page
	})
	t.Run("gives_up_with_context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		_, err := c.LoginBrowser(ctx, BrowserLogin{OpenBrowser: func(string) error { cancel(); return nil }})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("LoginBrowser after cancel = %v, want context.Canceled", err)
		}
	})
	t.Run("listen_address_must_be_loopback", func(t *testing.T) {
		if _, err := c.LoginBrowser(t.Context(), BrowserLogin{ListenAddr: "0.0.0.0:0"}); err == nil {
			t.Errorf("LoginBrowser on 0.0.0.0 succeeded")
		}
	})
}

// deviceUser approves or denies a device code on the verification page.
func deviceUser(t *testing.T, e *env, userCode, user, pass, action string) {
	t.Helper()
	resp, err := http.PostForm(e.idp.DeviceVerificationURL(), url.Values{
		"user_code": {userCode}, "username": {user}, "password": {pass}, "action": {action},
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("device page: status %d", resp.StatusCode)
	}
}

var userCodeRE = regexp.MustCompile(`enter the code ([A-Z]{4}-[A-Z]{4})`)

func TestLoginDevice(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{idpOpts: []devidp.Option{devidp.WithDeviceInterval(2 * time.Second)}})
	tests := []struct {
		name string
		// wake returns how long the fake sleep really lets pass (less than
		// asked: polling too early) and acts as the user.
		wake      func(t *testing.T, call int, asked time.Duration, code string) time.Duration
		wantErr   error
		wantSleep []time.Duration
	}{
		{
			name: "approved",
			wake: func(t *testing.T, call int, asked time.Duration, code string) time.Duration {
				if call == 2 {
					deviceUser(t, e, code, "carol", carolPassword, "approve")
				}
				return asked
			},
			wantSleep: []time.Duration{2 * time.Second, 2 * time.Second},
		},
		{
			name: "slow_down",
			wake: func(t *testing.T, call int, asked time.Duration, code string) time.Duration {
				switch call {
				case 2:
					return asked / 2 // woke early: the provider says slow_down
				case 3:
					deviceUser(t, e, code, "carol", carolPassword, "approve")
				}
				return asked
			},
			wantSleep: []time.Duration{2 * time.Second, 2 * time.Second, 7 * time.Second},
		},
		{
			name: "denied",
			wake: func(t *testing.T, call int, asked time.Duration, code string) time.Duration {
				if call == 1 {
					deviceUser(t, e, code, "", "", "deny")
				}
				return asked
			},
			wantErr: ErrAccessDenied,
		},
		{
			name: "expired",
			wake: func(t *testing.T, call int, asked time.Duration, code string) time.Duration {
				return 11 * time.Minute
			},
			wantErr: ErrDeviceCodeExpired,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := e.openClient(ClientConfig{})
			out := &lockedBuffer{}
			var slept []time.Duration
			c.sleep = func(ctx context.Context, d time.Duration) error {
				slept = append(slept, d)
				m := userCodeRE.FindStringSubmatch(out.String())
				if m == nil {
					t.Fatalf("no user code printed before polling: %q", out.String())
				}
				e.clock.Add(tc.wake(t, len(slept), d, m[1]))
				return nil
			}
			tok, err := c.LoginDevice(t.Context(), out)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("LoginDevice = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoginDevice: %v", err)
			}
			if fmt.Sprint(slept) != fmt.Sprint(tc.wantSleep) {
				t.Errorf("waits between polls = %v, want %v", slept, tc.wantSleep)
			}
			p, err := e.v.Verify(t.Context(), tok.Bearer())
			if err != nil || p.Email != "carol@example.com" || tok.Grant != GrantDeviceCode || tok.RefreshToken == "" {
				t.Errorf("device tokens: %v; principal %+v, %v", tok, p, err)
			}
			if !strings.Contains(out.String(), e.idp.DeviceVerificationURL()) {
				t.Errorf("output %q lacks the verification URL", out.String())
			}
		})
	}
}

func TestLoginPasswordAndClientCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	c := e.openClient(ClientConfig{})
	tok, err := c.LoginPassword(t.Context(), "bob", bobPassword)
	if err != nil {
		t.Fatalf("LoginPassword: %v", err)
	}
	if p, err := e.v.Verify(t.Context(), tok.Bearer()); err != nil || p.Email != "bob@example.com" || p.MFA {
		t.Errorf("password bearer = %+v, %v; want bob without MFA", p, err)
	}
	_, err = c.LoginPassword(t.Context(), "bob", alicePassword)
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.Code != "invalid_grant" || errors.Is(err, ErrIDPUnreachable) {
		t.Errorf("LoginPassword with a wrong password = %v, want invalid_grant", err)
	}
	if strings.Contains(fmt.Sprint(err), alicePassword) {
		t.Errorf("error echoes the password")
	}

	svc := e.openClient(ClientConfig{ClientID: clientSvc.ID, ClientSecret: serviceSecret, Scopes: []string{"orders.read"}})
	st, err := svc.LoginClientCredentials(t.Context())
	if err != nil {
		t.Fatalf("LoginClientCredentials: %v", err)
	}
	if p, err := e.v.Verify(t.Context(), st.Bearer()); err != nil || !p.Service || p.Subject != clientSvc.ID {
		t.Errorf("service bearer = %+v, %v", p, err)
	}
	wrong := e.openClient(ClientConfig{ClientID: clientSvc.ID, ClientSecret: webSecret})
	if _, err := wrong.LoginClientCredentials(t.Context()); !errors.As(err, &oe) || oe.Code != "invalid_client" {
		t.Errorf("LoginClientCredentials with a wrong secret = %v, want invalid_client", err)
	}
	if _, err := c.LoginClientCredentials(t.Context()); err == nil {
		t.Errorf("LoginClientCredentials without a secret succeeded")
	}
}

func TestFreshAndRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	c := e.openClient(ClientConfig{})
	tok, err := c.LoginPassword(t.Context(), "alice", alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	same, changed, err := c.Fresh(t.Context(), tok, time.Minute)
	if err != nil || changed || same.AccessToken != tok.AccessToken {
		t.Fatalf("Fresh(valid) = changed %v, %v; want the same tokens", changed, err)
	}
	old := tok
	tok.Expiry = time.Now().Add(-time.Minute)
	renewed, changed, err := c.Fresh(t.Context(), tok, time.Minute)
	if err != nil || !changed || renewed.AccessToken == old.AccessToken || renewed.RefreshToken == old.RefreshToken {
		t.Fatalf("Fresh(expired) = changed %v, %v; want new tokens and a rotated refresh token", changed, err)
	}
	if _, err := e.v.Verify(t.Context(), renewed.Bearer()); err != nil {
		t.Errorf("renewed bearer: %v", err)
	}
	// The provider rotates refresh tokens: the old one is now refused, and
	// the user is told to sign in again (not that the IdP is down).
	if _, err := c.Refresh(t.Context(), old); !errors.Is(err, ErrLoginExpired) || errors.Is(err, ErrIDPUnreachable) {
		t.Errorf("Refresh(used refresh token) = %v, want ErrLoginExpired", err)
	}
	noRT := renewed
	noRT.RefreshToken = ""
	noRT.Expiry = time.Now().Add(-time.Second)
	if _, _, err := c.Fresh(t.Context(), noRT, 0); !errors.Is(err, ErrLoginExpired) {
		t.Errorf("Fresh(expired, no refresh token) = %v, want ErrLoginExpired", err)
	}
	// A service renews with its credentials.
	svc := e.openClient(ClientConfig{ClientID: clientSvc.ID, ClientSecret: serviceSecret})
	st, _ := svc.LoginClientCredentials(t.Context())
	st.Expiry = time.Now().Add(-time.Second)
	if nt, changed, err := svc.Fresh(t.Context(), st, time.Minute); err != nil || !changed || nt.AccessToken == st.AccessToken {
		t.Errorf("Fresh(service) = %v, %v", changed, err)
	}
	// ID token as bearer.
	idc := e.openClient(ClientConfig{UseIDToken: true})
	it, err := idc.LoginPassword(t.Context(), "bob", bobPassword)
	if err != nil || it.Bearer() != it.IDToken || it.BearerExpiry() != it.IDTokenExpiry {
		t.Errorf("UseIDToken: bearer is not the ID token (%v)", err)
	}
}

func TestUnreachableIdP(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.WithUsers(userAlice), devidp.WithClients(clientCLI))
	c, err := OpenClient(t.Context(), ClientConfig{Issuer: idp.Issuer(), ClientID: clientCLI.ID})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.LoginPassword(t.Context(), "alice", alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	idp.HTTP.Close()
	if _, err := c.LoginPassword(t.Context(), "alice", alicePassword); !errors.Is(err, ErrIDPUnreachable) {
		t.Errorf("LoginPassword with the IdP down = %v, want ErrIDPUnreachable", err)
	}
	tok.Expiry = time.Now().Add(-time.Second)
	_, _, err = c.Fresh(t.Context(), tok, 0)
	if !errors.Is(err, ErrIDPUnreachable) || errors.Is(err, ErrLoginExpired) {
		t.Errorf("Fresh with the IdP down = %v, want ErrIDPUnreachable only", err)
	}
	if _, err := OpenClient(t.Context(), ClientConfig{Issuer: idp.Issuer(), ClientID: clientCLI.ID}); !errors.Is(err, ErrIDPUnreachable) {
		t.Errorf("OpenClient with the IdP down = %v, want ErrIDPUnreachable", err)
	}
}

func TestServerErrorIsUnreachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	c := e.openClient(ClientConfig{})
	err := c.wrapErr("refresh", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 503, Status: "503 Service Unavailable"}})
	if !errors.Is(err, ErrIDPUnreachable) {
		t.Errorf("503 from the token endpoint = %v, want ErrIDPUnreachable", err)
	}
	// And for real: a token endpoint behind a failing proxy.
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down", http.StatusBadGateway)
	}))
	t.Cleanup(down.Close)
	c2 := e.openClient(ClientConfig{})
	cfg := c2.oauthConfig("", nil)
	cfg.Endpoint.TokenURL = down.URL
	_, err = cfg.PasswordCredentialsToken(c2.ctx(t.Context()), "alice", alicePassword)
	if err = c2.wrapErr("password sign-in", err); !errors.Is(err, ErrIDPUnreachable) {
		t.Errorf("502 from the token endpoint = %v, want ErrIDPUnreachable", err)
	}
}

func TestTokensNeverPrintSecrets(t *testing.T) {
	t.Parallel()
	tok := Tokens{Issuer: "https://idp.example", Grant: GrantPassword, AccessToken: "at-" + randomString(), IDToken: "it-" + randomString(), RefreshToken: "rt-" + randomString(), Expiry: time.Now()}
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %s", tok, tok, tok)} {
		for _, secret := range []string{tok.AccessToken, tok.IDToken, tok.RefreshToken} {
			if strings.Contains(s, secret) {
				t.Errorf("formatted Tokens contain a token: %q", s)
			}
		}
	}
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, nil))
	l.Info("saved", "tokens", tok, "config", ClientConfig{Issuer: "x", ClientID: "y", ClientSecret: serviceSecret})
	for _, secret := range []string{tok.AccessToken, tok.IDToken, tok.RefreshToken, serviceSecret} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("log line contains a secret: %s", buf.String())
		}
	}
}
