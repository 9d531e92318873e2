package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// sessionCookieSet returns the Set-Cookie of the response for the session
// cookie (bare or __Host-), nil when it sets none.
func sessionCookieSet(rec *httptest.ResponseRecorder) *http.Cookie {
	for _, c := range rec.Result().Cookies() {
		if strings.TrimPrefix(c.Name, hostPrefix) == sessionCookie {
			return c
		}
	}
	return nil
}

// TestLogoutFromAnotherSite: another site's form posting to /logout carries
// no session cookie (SameSite=Lax), and its answer used to clear the cookie
// all the same (401 with Max-Age=0, which the browser applies on a
// top-level navigation): any site could sign a user out of the browser
// while the session lived on, never ended. A sign-out from another origin
// is now refused before any cookie is touched, and a sign-out without a
// cookie clears none; the user stays signed in.
func TestLogoutFromAnotherSite(t *testing.T) {
	for _, secure := range []bool{false, true} {
		s, _ := newTestServer(t, secure)
		name := s.cookieName(sessionCookie)
		sess := mustSession(t, s, cookieAlice, time.Now().Add(time.Hour))
		cookie := name + "=" + sess.id
		form := url.Values{csrfField: {sess.csrf}}.Encode()
		for _, tc := range []struct {
			name string
			hdr  map[string]string
			body string
		}{
			// The reviewer's reproduction: the browser sends no cookie.
			{"cross_site_without_cookie", map[string]string{"Sec-Fetch-Site": "cross-site"}, "x=1"},
			// A browser without Sec-Fetch-Site sends Origin; under
			// Referrer-Policy same-origin a cross-origin POST's is "null".
			{"other_origin_without_cookie", map[string]string{"Origin": "https://evil.example"}, "x=1"},
			{"null_origin_without_cookie", map[string]string{"Origin": "null"}, "x=1"},
			// A sibling subdomain (same site) gets the cookie sent, but not
			// the token; with the token too it is still not this origin.
			{"same_site_with_cookie", map[string]string{"Sec-Fetch-Site": "same-site", "Cookie": cookie}, "x=1"},
			{"same_site_with_cookie_and_token", map[string]string{"Sec-Fetch-Site": "same-site", "Cookie": cookie}, form},
		} {
			tc.hdr["Content-Type"] = "application/x-www-form-urlencoded"
			rec := do(t, s, "POST", "/logout", tc.body, tc.hdr)
			if c := sessionCookieSet(rec); c != nil {
				t.Errorf("secure=%v %s: logout answered %d setting %s=%q Max-Age=%d, want the session cookie untouched",
					secure, tc.name, rec.Code, c.Name, c.Value, c.MaxAge)
			}
			if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "another site") {
				t.Errorf("secure=%v %s: logout = %d, want 403 saying the sign-out came from another site:\n%s", secure, tc.name, rec.Code, rec.Body)
			}
			if got := whoamiSubject(t, s, cookie); got != "alice" {
				t.Fatalf("secure=%v %s: after the refused sign-out whoami = %q, want alice still signed in", secure, tc.name, got)
			}
		}

		// From the dashboard itself but with no cookie (already signed
		// out): nothing is cleared that the request did not carry.
		rec := do(t, s, "POST", "/logout", "x=1", map[string]string{
			"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin", "Origin": "http://example.com",
		})
		if c := sessionCookieSet(rec); rec.Code != http.StatusUnauthorized || c != nil {
			t.Errorf("secure=%v: logout without a cookie = %d setting %+v, want 401 and no Set-Cookie", secure, rec.Code, c)
		}

		// The dashboard's own sign-out still ends the session and clears
		// its cookie.
		rec = do(t, s, "POST", "/logout", form, map[string]string{
			"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie,
			"Sec-Fetch-Site": "same-origin", "Origin": "http://example.com",
		})
		if c := sessionCookieSet(rec); rec.Code != http.StatusSeeOther || c == nil || c.MaxAge >= 0 {
			t.Errorf("secure=%v: the dashboard's sign-out = %d setting %+v, want 303 clearing the cookie", secure, rec.Code, c)
		}
		if got := whoamiSubject(t, s, cookie); got != "" {
			t.Errorf("secure=%v: after signing out whoami = %q, want 401", secure, got)
		}
	}
}
