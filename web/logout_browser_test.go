package web

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromium returns the browser for the browser tests: $SQLGATE_TEST_CHROMIUM,
// else chromium on PATH. Without one the test skips, naming the variable.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SQLGATE_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium: set SQLGATE_TEST_CHROMIUM (apt-get install chromium) to run the browser tests")
	return ""
}

// browserWithSession starts a headless Chromium for the test (at most
// timeout) and signs it in to the dashboard at dashboardURL: it holds the
// session cookie sessionID, as the sign-in callback sets it.
func browserWithSession(t *testing.T, dashboardURL, sessionID string, timeout time.Duration) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, timeout)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate(dashboardURL+"/")); err != nil {
		t.Fatal(err)
	}
	httpOnly := true
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
		Name: sessionCookie, Value: sessionID, URL: dashboardURL + "/", Path: "/", HTTPOnly: &httpOnly, SameSite: network.CookieSameSiteLax,
	}); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// TestLogoutFromAnotherSiteInChromium is the attack of
// [TestLogoutFromAnotherSite] in a real browser: a page on localhost posts a
// form to the dashboard on 127.0.0.1 (another site). Chromium sends no
// session cookie with it (SameSite=Lax) and used to apply the answer's
// Max-Age=0, dropping the cookie of a session that lived on. The user now
// stays signed in, and the cookie stays in the browser.
func TestLogoutFromAnotherSiteInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("browser tests: skipped with -short")
	}
	chromium(t)
	s, _ := newTestServer(t, false)
	sess := mustSession(t, s, cookieAlice, time.Now().Add(time.Hour))
	dashboard := httptest.NewServer(s) // on 127.0.0.1
	t.Cleanup(dashboard.Close)

	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><form method="post" action="` + dashboard.URL +
			`/logout"><input type="hidden" name="x" value="1"><button id="go">Win a prize</button></form>`))
	}))
	t.Cleanup(attacker.Close)
	au, _ := url.Parse(attacker.URL)
	attackerURL := "http://" + net.JoinHostPort("localhost", au.Port()) + "/"

	// Alice is signed in: her browser holds the session cookie.
	ctx := browserWithSession(t, dashboard.URL, sess.id, 60*time.Second)
	// She visits another site, which submits its form to /logout.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(attackerURL),
		chromedp.Click(chromedp.CSS("#go")),
		chromedp.WaitVisible(chromedp.CSS("#error")),
	); err != nil {
		t.Fatalf("the other site's sign-out form: %v", err)
	}
	got, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{dashboard.URL + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	kept := false
	for _, c := range got.Cookies {
		kept = kept || c.Name == sessionCookie && c.Value == sess.id
	}
	if !kept {
		t.Errorf("after another site's sign-out form the browser has cookies %+v, want the session cookie kept", got.Cookies)
	}
	if who := whoamiSubject(t, s, sessionCookie+"="+sess.id); who != "alice" {
		t.Errorf("after another site's sign-out form whoami = %q, want alice still signed in", who)
	}
}
