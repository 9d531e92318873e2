package oidc

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/identity/devidp"
)

// acrsC1 is the claims request of Microsoft's authentication context
// developer guide, for c1 in both tokens.
const acrsC1 = `{"access_token":{"acrs":{"essential":true,"value":"c1"}},"id_token":{"acrs":{"essential":true,"value":"c1"}}}`

func TestAuthContextClaims(t *testing.T) {
	t.Parallel()
	if got := AuthContextClaims("c1"); got != acrsC1 {
		t.Errorf("AuthContextClaims(c1) = %s, want %s", got, acrsC1)
	}
	if got := AuthContextClaims(""); got != "" {
		t.Errorf(`AuthContextClaims("") = %q, want none`, got)
	}
	for _, tc := range []struct {
		ic   IssuerConfig
		want string
	}{
		{IssuerConfig{Preset: PresetEntra, MFAACRValues: []string{"c1", "c2"}}, "c1"},
		{IssuerConfig{Preset: PresetEntra}, ""},
		// Other providers have no acrs claim: their acr is not asked for.
		{IssuerConfig{Preset: PresetGeneric, MFAACRValues: []string{"gold"}}, ""},
		{IssuerConfig{Preset: PresetOkta, MFAACRValues: []string{"urn:okta:loa:2fa:any"}}, ""},
	} {
		if got := SignInAuthContext(tc.ic); got != tc.want {
			t.Errorf("SignInAuthContext(%s %v) = %q, want %q", tc.ic.Preset, tc.ic.MFAACRValues, got, tc.want)
		}
	}
}

// entraMFAEnv is an Entra-shaped provider whose issuer counts the c1
// authentication context as MFA evidence (mfaACRValues: [c1]); its tokens
// carry no amr, so acrs is the only evidence there is.
func entraMFAEnv(t *testing.T) *env {
	return newEnv(t, envOpt{
		shape: devidp.ShapeEntra, idpOpts: []devidp.Option{devidp.WithDeviceInterval(time.Second)},
		issuer: func(ic *IssuerConfig) { ic.MFAACRValues = []string{"c1"} },
	})
}

// TestLoginBrowserAuthContext: with an auth context set, the CLI's browser
// sign-in asks for it with the claims parameter, and the user with MFA ends
// with an MFA principal, which the renewed token still is (the refresh asks
// again). Without it, Entra gives the same user no MFA evidence.
func TestLoginBrowserAuthContext(t *testing.T) {
	t.Parallel()
	e := entraMFAEnv(t)
	login := func(t *testing.T, authContext string) (Tokens, string, *Client) {
		t.Helper()
		c := e.openClient(ClientConfig{AuthContext: authContext})
		var page <-chan pageResult
		var authURL string
		tok, err := c.LoginBrowser(t.Context(), BrowserLogin{OpenBrowser: func(u string) error {
			authURL = u
			page = userAt(t, u, "alice", alicePassword, "login")
			return nil
		}})
		if err != nil {
			t.Fatalf("LoginBrowser: %v", err)
		}
		if pr := <-page; pr.err != nil || pr.status != http.StatusOK {
			t.Fatalf("browser's final page = %d %v", pr.status, pr.err)
		}
		return tok, authURL, c
	}
	verify := func(t *testing.T, raw string) identity.Principal {
		t.Helper()
		p, err := e.v.Verify(t.Context(), raw)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		return p
	}

	t.Run("without", func(t *testing.T) {
		tok, authURL, _ := login(t, "")
		u, _ := url.Parse(authURL)
		if u.Query().Has("claims") {
			t.Errorf("sign-in URL %s asks for claims, want none", authURL)
		}
		if p := verify(t, tok.Bearer()); p.MFA {
			t.Errorf("alice without an auth context request: MFA, want none (Entra adds acrs only when asked)")
		}
	})
	t.Run("with", func(t *testing.T) {
		tok, authURL, c := login(t, "c1")
		u, _ := url.Parse(authURL)
		if got := u.Query().Get("claims"); got != acrsC1 {
			t.Errorf("sign-in URL claims = %q, want %s", got, acrsC1)
		}
		if p := verify(t, tok.Bearer()); !p.MFA || p.Email != "alice@example.com" {
			t.Errorf("access token principal = %+v, want alice with MFA", p)
		}
		if p := verify(t, tok.IDToken); !p.MFA {
			t.Errorf("ID token principal has no MFA, want acrs c1 there too")
		}
		renewed, err := c.Refresh(t.Context(), tok)
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if renewed.AccessToken == tok.AccessToken || renewed.RefreshToken == tok.RefreshToken || renewed.RefreshToken == "" {
			t.Fatalf("Refresh returned the same tokens or no refresh token")
		}
		if p := verify(t, renewed.Bearer()); !p.MFA {
			t.Errorf("renewed access token has no MFA: the refresh must ask for the auth context again")
		}
		// The rotated-out refresh token is refused as by the token source:
		// the sign-in expired (and the provider revokes the family).
		if _, err := c.Refresh(t.Context(), tok); !errors.Is(err, ErrLoginExpired) {
			t.Errorf("Refresh with a used refresh token = %v, want ErrLoginExpired", err)
		}
	})
}

// TestLoginDeviceAuthContext: the device sign-in asks for the auth context
// in its device authorization request and ends with an MFA principal.
func TestLoginDeviceAuthContext(t *testing.T) {
	t.Parallel()
	e := entraMFAEnv(t)
	c := e.openClient(ClientConfig{AuthContext: "c1"})
	out := &lockedBuffer{}
	c.sleep = func(context.Context, time.Duration) error {
		m := userCodeRE.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no user code printed before polling: %q", out.String())
		}
		deviceUser(t, e, m[1], "alice", alicePassword, "approve")
		e.clock.Add(2 * time.Second)
		return nil
	}
	tok, err := c.LoginDevice(t.Context(), out)
	if err != nil {
		t.Fatalf("LoginDevice: %v", err)
	}
	p, err := e.v.Verify(t.Context(), tok.Bearer())
	if err != nil || !p.MFA {
		t.Errorf("device sign-in with auth context c1: principal %+v, %v; want MFA", p, err)
	}
}

// TestWebLoginAuthContext: the dashboard's sign-in with an Entra issuer
// that has mfaACRValues asks for the first one with the claims parameter,
// and the user with MFA ends with an MFA principal.
func TestWebLoginAuthContext(t *testing.T) {
	t.Parallel()
	e := entraMFAEnv(t)
	var wl *WebLogin
	got := make(chan identity.Principal, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		if err := wl.Start(w, r, "/"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET /auth/callback", func(w http.ResponseWriter, r *http.Request) {
		p, _, _, err := wl.Callback(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		got <- p
	})
	srv := httptest.NewUnstartedServer(mux)
	_ = srv.Listener.Close()
	srv.Listener = e.dashboard
	srv.Start()
	t.Cleanup(srv.Close)
	var err error
	wl, err = NewWebLogin(WebLoginConfig{
		Verifier: e.v, Issuer: "test", RedirectURL: srv.URL + "/auth/callback", CookieKey: []byte(randomString() + randomString()),
	})
	if err != nil {
		t.Fatalf("NewWebLogin: %v", err)
	}
	b := newBrowser(t)
	resp := b.get(srv.URL + "/login")
	authURL := resp.Header.Get("Location")
	if u, _ := url.Parse(authURL); resp.StatusCode != http.StatusFound || !strings.HasPrefix(authURL, e.idp.AuthorizeURL()) || u.Query().Get("claims") != acrsC1 {
		t.Fatalf("/login = %d to %s, want the provider's sign-in asking for claims %s", resp.StatusCode, authURL, acrsC1)
	}
	loc, err := b.signIn(authURL, "alice", alicePassword, "login")
	if err != nil {
		t.Fatal(err)
	}
	if cb := b.get(loc.String()); cb.StatusCode != http.StatusOK {
		t.Fatalf("callback = %d %s", cb.StatusCode, cb.Body)
	}
	if p := <-got; !p.MFA || p.Email != "alice@example.com" {
		t.Errorf("dashboard principal = %+v, want alice with MFA", p)
	}
}
