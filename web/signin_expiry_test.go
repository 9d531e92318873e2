package web

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/identity/oidc"
)

// oidcLogin adapts oidc.WebLogin to [Login], as sqlgated does.
type oidcLogin struct{ l *oidc.WebLogin }

func (o oidcLogin) Start(w http.ResponseWriter, r *http.Request, returnTo string) error {
	return o.l.Start(w, r, returnTo)
}

func (o oidcLogin) Callback(w http.ResponseWriter, r *http.Request) (identity.Principal, string, error) {
	p, _, returnTo, err := o.l.Callback(w, r)
	return p, returnTo, err
}

// TestSignInTooSlow: a dashboard sign-in completed more than 10 minutes
// after it started is refused with a page that says so. The login cookie
// used to expire in the browser exactly at the limit, so the callback found
// no sign-in in progress and the page blamed the host name ("Open the
// dashboard at its public URL…"). A callback that finds no sign-in now also
// says that an old sign-in page may have expired.
func TestSignInTooSlow(t *testing.T) {
	const public = "http://127.0.0.1:8470"
	var mu sync.Mutex
	now := time.Now().Truncate(time.Second)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	idp := devidptest.Start(t, devidp.WithClock(clock), devidp.WithClients(devidp.Client{
		ID: "sqlgate-web", Secret: "web-secret", RedirectURIs: []string{public + "/auth/callback"},
	}))
	v, err := oidc.Open(t.Context(), oidc.Config{Issuers: []oidc.IssuerConfig{{
		Name: "dev", Issuer: idp.Issuer(), Audiences: []string{"sqlgate-web"},
	}}}, nil, oidc.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	wl, err := oidc.NewWebLogin(oidc.WebLoginConfig{
		Verifier: v, Issuer: "dev", RedirectURL: public + "/auth/callback", ClientID: "sqlgate-web", ClientSecret: "web-secret",
		CookieKey: []byte(strings.Repeat("k", 32)),
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Login: oidcLogin{wl}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}

	start := do(t, s, "GET", public+"/login", "", nil)
	loc, err := url.Parse(start.Header().Get("Location"))
	cookies := start.Result().Cookies()
	if start.Code != http.StatusFound || err != nil || len(cookies) != 1 {
		t.Fatalf("GET /login = %d to %q setting %+v", start.Code, start.Header().Get("Location"), cookies)
	}
	login, started := cookies[0], clock()
	callback := public + "/auth/callback?code=x&state=" + url.QueryEscape(loc.Query().Get("state"))

	mu.Lock()
	now = now.Add(10*time.Minute + time.Second)
	mu.Unlock()
	// As a browser: the login cookie goes with the callback while its
	// Max-Age has not run out.
	hdr := map[string]string{}
	if started.Add(time.Duration(login.MaxAge) * time.Second).After(clock()) {
		hdr["Cookie"] = login.Name + "=" + login.Value
	}
	rec := do(t, s, "GET", callback, "", hdr)
	page := html.UnescapeString(rec.Body.String())
	if rec.Code != http.StatusUnauthorized || !strings.Contains(page, "the sign-in took longer than 10 minutes; sign in again") {
		t.Errorf("callback 10m1s after the start = %d, want 401 saying the sign-in took longer than 10 minutes:\n%s", rec.Code, page)
	}
	if strings.Contains(page, "public URL") {
		t.Errorf("the page of a slow sign-in blames the host name:\n%s", page)
	}

	// No sign-in in progress in this browser: the page names both causes.
	rec = do(t, s, "GET", callback, "", nil)
	page = html.UnescapeString(rec.Body.String())
	if rec.Code != http.StatusUnauthorized || !strings.Contains(page, "Open the dashboard at its public URL") || !strings.Contains(page, "sign-in page was left open so long that it expired") {
		t.Errorf("callback without a login cookie = %d, want 401 naming another host name and an expired sign-in page:\n%s", rec.Code, page)
	}
}
