package main

import (
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var devidpHidden = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// TestDevDashboardSignInFromAnotherHostName: the dashboard opened at
// http://localhost:PORT while the public URL is http://127.0.0.1:PORT. The
// login cookie used to be set for localhost while the provider sent the
// browser back to 127.0.0.1, whose callback found no sign-in in progress
// (401, login_state_missing). /login now sends the browser to the public
// URL first, and the sign-in completes there; a callback that still finds
// no sign-in says to use the public URL.
func TestDevDashboardSignInFromAnotherHostName(t *testing.T) {
	if testing.Short() {
		t.Skip("dev stack: skipped with -short")
	}
	s := startDev(t, t.TempDir())
	public, err := url.Parse(s.st.HTTPURL)
	if err != nil || public.Hostname() != "127.0.0.1" {
		t.Fatalf("public URL %q, want http://127.0.0.1:PORT", s.st.HTTPURL)
	}
	other := "http://" + net.JoinHostPort("localhost", public.Port())

	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	var hops []string
	browser := &http.Client{Jar: jar, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		hops = append(hops, r.URL.String())
		return nil
	}}
	get := func(u string) (*http.Response, string) {
		t.Helper()
		resp, err := browser.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	// /login at localhost: first to the same path on the public URL, then
	// the provider's login form.
	resp, body := get(other + "/login?return=/audit") //nolint:bodyclose // get closes it
	if len(hops) == 0 || hops[0] != s.st.HTTPURL+"/login?public_host=1&return=%2Faudit" {
		t.Fatalf("GET %s/login redirected to %q, want %s/login?public_host=1&return=%%2Faudit first", other, hops, s.st.HTTPURL)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.String(), s.st.Issuer+"/authorize?") {
		t.Fatalf("after /login: %d at %s, want the provider's login form", resp.StatusCode, resp.Request.URL)
	}
	form := url.Values{}
	for _, m := range devidpHidden.FindAllStringSubmatch(body, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	form.Set("username", "carol")
	form.Set("password", s.password(t, "carol"))
	form.Set("action", "login")
	hops = nil
	resp, err = browser.PostForm(s.st.Issuer+"/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Through the callback to the page the sign-in started from, signed in.
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != s.st.HTTPURL+"/audit" || !strings.Contains(string(page), "carol@example.com") {
		t.Fatalf("sign-in ended with %d at %s via %q, want the audit page on the public URL signed in as carol:\n%s", resp.StatusCode, resp.Request.URL, hops, page)
	}

	// The host redirect goes to the public URL only, whatever Host says.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.st.HTTPURL+"/login", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "evil.example"
	resp, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != s.st.HTTPURL+"/login?public_host=1" || len(resp.Cookies()) != 0 {
		t.Errorf("GET /login with Host evil.example = %d to %q setting %v, want 302 to %s/login?public_host=1 and no cookie", resp.StatusCode, loc, resp.Cookies(), s.st.HTTPURL)
	}

	// A callback in a browser with no sign-in in progress says what to do.
	jar, err = cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	browser = &http.Client{Jar: jar}
	resp, body = get(s.st.HTTPURL + "/auth/callback?state=" + strings.Repeat("A", 43) + "&code=x") //nolint:bodyclose // get closes it
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(html.UnescapeString(body), "Open the dashboard at its public URL") {
		t.Errorf("callback without a sign-in in progress = %d, want 401 saying to open the dashboard at its public URL:\n%s", resp.StatusCode, body)
	}
}
