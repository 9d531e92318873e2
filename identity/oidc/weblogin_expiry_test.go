package oidc

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity"
)

// TestWebLoginTooSlowIsToldSo: a sign-in whose callback comes after the
// limit (MaxAge) is refused as one that took too long, naming the limit. The
// login cookie's Max-Age used to equal the limit, so a browser, which
// honours Max-Age, had dropped it by then: the callback found no sign-in in
// progress (login_state_missing), and the dashboard blamed the host name.
func TestWebLoginTooSlowIsToldSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	const public = "http://127.0.0.1:8470"
	wl, err := NewWebLogin(WebLoginConfig{
		Verifier: e.v, Issuer: "test", RedirectURL: public + "/auth/callback", CookieKey: []byte(strings.Repeat("k", 32)),
	})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := wl.Start(w, httptest.NewRequest(http.MethodGet, public+"/login", nil), "/"); err != nil {
		t.Fatal(err)
	}
	started := e.clock.Now()
	res := w.Result()
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || len(res.Cookies()) != 1 {
		t.Fatalf("Start set %+v, redirected to %q", res.Cookies(), res.Header.Get("Location"))
	}
	cookie := res.Cookies()[0]

	e.clock.Add(10*time.Minute + time.Second) // the default MaxAge, and a second
	r := httptest.NewRequest(http.MethodGet, public+"/auth/callback?code=x&state="+url.QueryEscape(loc.Query().Get("state")), nil)
	// As a browser: the cookie is sent while its Max-Age has not run out.
	if started.Add(time.Duration(cookie.MaxAge) * time.Second).After(e.clock.Now()) {
		r.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	}
	_, _, _, err = wl.Callback(httptest.NewRecorder(), r)
	var ae *identity.AuthError
	if !errors.As(err, &ae) || ae.Reason != ReasonLoginStateInvalid || ae.Err == nil || ae.Err.Error() != "the sign-in took longer than 10 minutes" {
		t.Errorf("callback 10m1s after the start = %v, want %s: the sign-in took longer than 10 minutes", err, ReasonLoginStateInvalid)
	}
}
