package oidc

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// TestWebLoginFailedCallbackNotReplayable: the first callback that presents
// a state consumes it, even when the sign-in then fails. A callback replayed
// with the same state and login cookie (which the browser dropped, but an
// attacker kept) is refused before any request to the provider, so one
// /login cannot make sqlgate redeem codes at the provider, with the
// dashboard's client credentials, again and again.
func TestWebLoginFailedCallbackNotReplayable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	d := newDashboard(t, e)
	tokenPath := mustPath(t, e.idp.TokenURL())

	attacker := newBrowser(t)
	authURL, err := url.Parse(d.startLogin(t, attacker, "/"))
	if err != nil {
		t.Fatal(err)
	}
	cbURL, _ := url.Parse(d.URL + "/auth/callback")
	saved := attacker.client.Jar.Cookies(cbURL)
	callback := func(code string) map[string]any {
		for _, c := range saved {
			c.Path = "/auth/callback"
		}
		attacker.client.Jar.SetCookies(cbURL, saved)
		q := url.Values{"state": {authURL.Query().Get("state")}, "code": {code}}
		return decodeCallback(t, attacker.get(cbURL.String()+"?"+q.Encode()))
	}

	before := e.transport.count(tokenPath)
	if got := callback("bogus"); got["status"] != http.StatusUnauthorized || got["reason"] != ReasonCodeExchangeFailed {
		t.Fatalf("first callback = %v, want 401 %s", got, ReasonCodeExchangeFailed)
	}
	// The first callback reaches the provider (oauth2 may try both ways of
	// sending the client's credentials); the replays must add nothing.
	first := e.transport.count(tokenPath) - before
	if first == 0 {
		t.Fatalf("the first callback made no token request")
	}
	for range 3 {
		if got := callback("bogus"); got["status"] != http.StatusUnauthorized || got["reason"] != ReasonLoginStateInvalid {
			t.Errorf("replayed callback = %v, want 401 %s", got, ReasonLoginStateInvalid)
		}
	}
	if n := e.transport.count(tokenPath) - before; n != first {
		t.Errorf("token requests after 3 replays of a failed callback = %d, want %d, the first callback's (replays refused before the provider)", n, first)
	}
	if !strings.Contains(e.logs.String(), errCallbackUsed.Error()) {
		t.Errorf("log does not say why the replay was refused (%q):\n%s", errCallbackUsed, e.logs)
	}
}

// TestWebLoginConcurrentReplays: of callbacks sent at once with the same
// state and login cookie, exactly one reaches the provider.
func TestWebLoginConcurrentReplays(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	d := newDashboard(t, e)

	attacker := newBrowser(t)
	authURL, err := url.Parse(d.startLogin(t, attacker, "/"))
	if err != nil {
		t.Fatal(err)
	}
	cbURL, _ := url.Parse(d.URL + "/auth/callback")
	cookies := attacker.client.Jar.Cookies(cbURL)
	target := cbURL.String() + "?" + url.Values{"state": {authURL.Query().Get("state")}, "code": {"bogus"}}.Encode()

	const n = 16
	reasons := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
			if err != nil {
				reasons <- err.Error()
				return
			}
			for _, c := range cookies {
				req.AddCookie(c)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				reasons <- err.Error()
				return
			}
			defer func() { _ = resp.Body.Close() }()
			var body map[string]string
			_ = json.NewDecoder(resp.Body).Decode(&body)
			reasons <- body["reason"]
		})
	}
	wg.Wait()
	close(reasons)
	got := map[string]int{}
	for r := range reasons {
		got[r]++
	}
	if got[ReasonCodeExchangeFailed] != 1 || got[ReasonLoginStateInvalid] != n-1 {
		t.Errorf("reasons of %d concurrent callbacks with one state = %v, want 1 %s (the one sent to the provider) and %d %s",
			n, got, ReasonCodeExchangeFailed, n-1, ReasonLoginStateInvalid)
	}
}

// TestWebLoginErrorCallbackConsumesState: a callback that brings back the
// provider's error consumes its state too: the same sign-in cannot then be
// completed with a code.
func TestWebLoginErrorCallbackConsumesState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	d := newDashboard(t, e)
	tokenPath := mustPath(t, e.idp.TokenURL())

	b := newBrowser(t)
	loc, err := b.signIn(d.startLogin(t, b, "/"), "alice", alicePassword, "login")
	if err != nil {
		t.Fatal(err)
	}
	cbURL, _ := url.Parse(d.URL + "/auth/callback")
	saved := b.client.Jar.Cookies(cbURL)
	q := url.Values{"state": {loc.Query().Get("state")}, "error": {"access_denied"}}
	if got := decodeCallback(t, b.get(cbURL.String()+"?"+q.Encode())); got["status"] != http.StatusUnauthorized || got["reason"] != ReasonIDPError {
		t.Fatalf("error callback = %v, want 401 %s", got, ReasonIDPError)
	}
	for _, c := range saved {
		c.Path = "/auth/callback"
	}
	b.client.Jar.SetCookies(cbURL, saved)
	before := e.transport.count(tokenPath)
	if got := decodeCallback(t, b.get(loc.String())); got["status"] != http.StatusUnauthorized || got["reason"] != ReasonLoginStateInvalid {
		t.Errorf("callback with the code after the error callback = %v, want 401 %s", got, ReasonLoginStateInvalid)
	}
	if n := e.transport.count(tokenPath) - before; n != 0 {
		t.Errorf("token requests for the refused callback = %d, want 0", n)
	}
}

func mustPath(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}
