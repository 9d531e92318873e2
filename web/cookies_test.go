package web

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity"
)

var (
	cookieAlice   = identity.Principal{Issuer: "https://idp", Subject: "alice"}
	cookieMallory = identity.Principal{Issuer: "https://idp", Subject: "mallory"}
)

// whoamiSubject returns the subject whoami answers for the Cookie header
// cookie, "" when it answers 401.
func whoamiSubject(t *testing.T, s *Server, cookie string) string {
	t.Helper()
	rec := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Cookie": cookie})
	switch rec.Code {
	case http.StatusOK:
		return whoamiOf(t, rec)
	case http.StatusUnauthorized:
		return ""
	}
	t.Fatalf("whoami = %d %s", rec.Code, rec.Body)
	return ""
}

func whoamiOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	_, rest, ok := strings.Cut(rec.Body.String(), `"subject": "`)
	if !ok {
		t.Fatalf("whoami body %s", rec.Body)
	}
	sub, _, _ := strings.Cut(rest, `"`)
	return sub
}

// TestSecureSessionCookieName: behind TLS only the __Host- cookie is a
// session: a bare sqlgate_session cookie (which a sibling subdomain can set
// for the parent domain) is not read.
func TestSecureSessionCookieName(t *testing.T) {
	s, _ := newTestServer(t, true)
	sess := mustSession(t, s, cookieAlice, time.Now().Add(time.Hour))
	if got := whoamiSubject(t, s, "__Host-sqlgate_session="+sess.id); got != "alice" {
		t.Errorf("whoami with the __Host- cookie = %q, want alice", got)
	}
	if got := whoamiSubject(t, s, "sqlgate_session="+sess.id); got != "" {
		t.Errorf("whoami with a bare cookie behind TLS = %q, want signed out", got)
	}
	plain, _ := newTestServer(t, false)
	sess = mustSession(t, plain, cookieAlice, time.Now().Add(time.Hour))
	if got := whoamiSubject(t, plain, "sqlgate_session="+sess.id); got != "alice" {
		t.Errorf("whoami over plain HTTP with the bare cookie = %q, want alice", got)
	}
}

// TestDuplicateSessionCookies: a request with two session cookies (one
// planted beside the browser's own, by a sibling domain or for another
// path) is signed out, whichever comes first: serving the first let a
// planted session stand in for the user's (session fixation).
func TestDuplicateSessionCookies(t *testing.T) {
	s, _ := newTestServer(t, false)
	own := mustSession(t, s, cookieAlice, time.Now().Add(time.Hour))
	planted := mustSession(t, s, cookieMallory, time.Now().Add(time.Hour))
	for _, cookie := range []string{
		sessionCookie + "=" + planted.id + "; " + sessionCookie + "=" + own.id,
		sessionCookie + "=" + own.id + "; " + sessionCookie + "=" + planted.id,
	} {
		if got := whoamiSubject(t, s, cookie); got != "" {
			t.Errorf("whoami with two session cookies (%s) = %q, want signed out", cookie, got)
		}
		if rec := do(t, s, "GET", "/", "", map[string]string{"Cookie": cookie}); rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "Sign out") {
			t.Errorf("dashboard with two session cookies = %d, want the signed-out page", rec.Code)
		}
	}
	// Neither session was ended by being seen twice.
	if got := whoamiSubject(t, s, sessionCookie+"="+own.id); got != "alice" {
		t.Errorf("alice's own cookie alone = %q, want alice", got)
	}
	// An empty cookie beside the session is no second session.
	if got := whoamiSubject(t, s, sessionCookie+"=; "+sessionCookie+"="+own.id); got != "alice" {
		t.Errorf("with an empty second cookie = %q, want alice", got)
	}
}

// dashboardFlash returns the flash message the dashboard shows for the
// Cookie header cookie.
func dashboardFlash(t *testing.T, s *Server, cookie string) string {
	t.Helper()
	rec := do(t, s, "GET", "/", "", map[string]string{"Cookie": cookie})
	if rec.Code != http.StatusOK {
		t.Fatalf("dashboard = %d", rec.Code)
	}
	_, rest, ok := strings.Cut(rec.Body.String(), `id="flash">`)
	if !ok {
		return ""
	}
	msg, _, _ := strings.Cut(rest, "<")
	return msg
}

// TestFlashNotPlantable: the dashboard's flash message comes from a fixed
// set, and its value (a login name) is signed with the session's secret:
// a flash cookie planted by another site (a sibling subdomain) cannot put
// words on the dashboard, not even a signed one of another session.
func TestFlashNotPlantable(t *testing.T) {
	s, _ := newTestServer(t, false)
	alice := mustSession(t, s, cookieAlice, time.Now().Add(time.Hour))
	mallory := mustSession(t, s, cookieMallory, time.Now().Add(time.Hour))
	b64 := func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }
	lure := "Call IT at 555-0100 and give them your password"
	aliceCookie := sessionCookie + "=" + alice.id
	for name, flash := range map[string]string{
		"free_text":             b64(lure),
		"unsigned_value":        flashSQLRevoked + "." + b64(lure),
		"bad_signature":         flashSQLRevoked + "." + b64(lure) + "." + b64("x"),
		"other_sessions":        flashSQLRevoked + "." + b64(lure) + "." + base64.RawURLEncoding.EncodeToString(flashMAC(mallory, flashSQLRevoked, lure)),
		"signature_of_other_id": flashSQLRevoking + "." + b64(lure) + "." + base64.RawURLEncoding.EncodeToString(flashMAC(alice, flashSQLRevoked, lure)),
		"unknown_id":            "call-it." + b64(lure) + "." + base64.RawURLEncoding.EncodeToString(flashMAC(alice, "call-it", lure)),
	} {
		if got := dashboardFlash(t, s, aliceCookie+"; "+flashCookie+"="+flash); got != "" {
			t.Errorf("%s: the dashboard shows the planted flash %q", name, got)
		}
	}
	// A message this server signed for alice's session is shown (once).
	own := flashSQLRevoked + "." + b64("sg_alice_x") + "." + base64.RawURLEncoding.EncodeToString(flashMAC(alice, flashSQLRevoked, "sg_alice_x"))
	if got := dashboardFlash(t, s, aliceCookie+"; "+flashCookie+"="+own); got != "SQL login sg_alice_x revoked." {
		t.Errorf("the server's own flash = %q", got)
	}
	// ... but not to a signed-out page, nor when a second flash cookie
	// comes with it.
	if got := dashboardFlash(t, s, flashCookie+"="+own); got != "" {
		t.Errorf("signed out: flash %q", got)
	}
	if got := dashboardFlash(t, s, aliceCookie+"; "+flashCookie+"="+own+"; "+flashCookie+"="+flashSignedOut); got != "" {
		t.Errorf("two flash cookies: flash %q", got)
	}
	// A message without a value is its fixed text whoever sent it.
	if got := dashboardFlash(t, s, flashCookie+"="+flashSignedOut); got != "Signed out." {
		t.Errorf("sign-out flash = %q", got)
	}
}

// TestFlashCookieSecure: behind TLS the flash cookie is __Host- too, and a
// bare one is not read.
func TestFlashCookieSecure(t *testing.T) {
	s, _ := newTestServer(t, true)
	sess := mustSession(t, s, cookieAlice, time.Now().Add(time.Hour))
	hdr := map[string]string{"Cookie": "__Host-" + sessionCookie + "=" + sess.id, "Content-Type": "application/x-www-form-urlencoded"}
	rec := do(t, s, "POST", "/logout", url.Values{csrfField: {sess.csrf}}.Encode(), hdr)
	var flash *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if strings.HasSuffix(c.Name, flashCookie) {
			flash = c
		}
	}
	if rec.Code != http.StatusSeeOther || flash == nil || flash.Name != "__Host-"+flashCookie || !flash.Secure || flash.Path != "/" || flash.Domain != "" {
		t.Fatalf("logout = %d, flash cookie %+v, want a __Host- one", rec.Code, flash)
	}
	if got := dashboardFlash(t, s, flash.Name+"="+flash.Value); got != "Signed out." {
		t.Errorf("flash = %q", got)
	}
	if got := dashboardFlash(t, s, flashCookie+"="+flash.Value); got != "" {
		t.Errorf("a bare flash cookie behind TLS shows %q", got)
	}
}

// flakySessions is a session store whose reads or deletes fail.
type flakySessions struct {
	*memSessions
	readFails, deleteFails bool
	deletes                int
}

var errStoreDown = errors.New("session store: connection refused")

func (f *flakySessions) Session(ctx context.Context, key string) (Session, bool, error) {
	if f.readFails {
		return Session{}, false, errStoreDown
	}
	return f.memSessions.Session(ctx, key)
}

func (f *flakySessions) DeleteSession(ctx context.Context, key string) error {
	f.deletes++
	if f.deleteFails {
		return errStoreDown
	}
	return f.memSessions.DeleteSession(ctx, key)
}

// stored reports whether the store holds the session of cookie id.
func (f *flakySessions) stored(id string) bool {
	_, found, _ := f.memSessions.Session(context.Background(), sessionKey(id))
	return found
}

// TestLogoutStoreUnreadable: a sign-out while the session store cannot be
// read still ends the session (by its cookie's hash) and clears the
// cookie; when the store cannot delete it either, the answer is 503 "not
// signed out" and the cookie is kept (it was cleared with a 401 while the
// session lived on, valid again once the store was back).
func TestLogoutStoreUnreadable(t *testing.T) {
	store := &flakySessions{memSessions: newMemSessions()}
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Sessions: store})
	if err != nil {
		t.Fatal(err)
	}
	logout := func(cookie, csrf string) *httptest.ResponseRecorder {
		return do(t, s, "POST", "/logout", csrfField+"="+csrf, map[string]string{"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
	}

	sess := mustSession(t, s, cookieAlice, time.Now().Add(time.Hour))
	store.readFails, store.deleteFails = true, true
	rec := logout(sessionCookie+"="+sess.id, sess.csrf)
	if rec.Code != http.StatusServiceUnavailable || cookieCleared(rec) || !strings.Contains(rec.Body.String(), "not signed out") {
		t.Errorf("logout with the store down = %d (cookie cleared %v), want 503 not signed out, cookie kept", rec.Code, cookieCleared(rec))
	}
	if !store.stored(sess.id) {
		t.Fatal("the session vanished")
	}

	store.deleteFails = false // reads still fail
	rec = logout(sessionCookie+"="+sess.id, sess.csrf)
	if rec.Code != http.StatusSeeOther || !cookieCleared(rec) {
		t.Errorf("logout with the store unreadable = %d (cookie cleared %v), want 303 clearing the cookie", rec.Code, cookieCleared(rec))
	}
	store.readFails = false
	if store.stored(sess.id) {
		t.Error("the session outlived the sign-out while the store was unreadable")
	}

	// Two session cookies: both sessions are ended (neither is trusted,
	// and whoever holds a cookie holds its session).
	a := mustSession(t, s, cookieAlice, time.Now().Add(time.Hour))
	m := mustSession(t, s, cookieMallory, time.Now().Add(time.Hour))
	rec = logout(sessionCookie+"="+m.id+"; "+sessionCookie+"="+a.id, a.csrf)
	if rec.Code != http.StatusSeeOther || !cookieCleared(rec) || store.stored(a.id) || store.stored(m.id) {
		t.Errorf("logout with two session cookies = %d (cookie cleared %v), sessions left: alice %v, mallory %v",
			rec.Code, cookieCleared(rec), store.stored(a.id), store.stored(m.id))
	}

	// A readable store still wants the CSRF token.
	sess = mustSession(t, s, cookieAlice, time.Now().Add(time.Hour))
	if rec := logout(sessionCookie+"="+sess.id, "wrong"); rec.Code != http.StatusForbidden || !store.stored(sess.id) {
		t.Errorf("logout without the CSRF token = %d (session kept %v), want 403", rec.Code, store.stored(sess.id))
	}
}

// TestSignInEndsEarlierSession: signing in again in a browser that has a
// session (bob after alice on a shared machine) ends the earlier session:
// alice's old cookie no longer works. When it cannot be ended, the sign-in
// is not completed.
func TestSignInEndsEarlierSession(t *testing.T) {
	store := &flakySessions{memSessions: newMemSessions()}
	bob := identity.Principal{Issuer: "https://idp", Subject: "bob", Expiry: time.Now().Add(time.Hour)}
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Sessions: store, Login: ssoLogin{p: bob}})
	if err != nil {
		t.Fatal(err)
	}
	alice := mustSession(t, s, cookieAlice, time.Now().Add(time.Hour))
	rec := do(t, s, "GET", "/auth/callback?state=x&code=y", "", map[string]string{"Cookie": sessionCookie + "=" + alice.id})
	var fresh string
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			fresh = c.Value
		}
	}
	if rec.Code != http.StatusSeeOther || fresh == "" || fresh == alice.id {
		t.Fatalf("callback = %d (new session cookie %v)", rec.Code, fresh != "")
	}
	if got := whoamiSubject(t, s, sessionCookie+"="+alice.id); got != "" {
		t.Errorf("alice's earlier cookie after bob signed in = %q, want signed out", got)
	}
	if got := whoamiSubject(t, s, sessionCookie+"="+fresh); got != "bob" {
		t.Errorf("the new cookie = %q, want bob", got)
	}

	store.deleteFails = true
	rec = do(t, s, "GET", "/auth/callback?state=x&code=y", "", map[string]string{"Cookie": sessionCookie + "=" + fresh})
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			t.Errorf("a session cookie was set although the earlier session could not be ended")
		}
	}
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("callback with the earlier session not ended = %d, want 503", rec.Code)
	}
}
