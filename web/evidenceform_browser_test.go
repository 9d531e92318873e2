package web

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sqlgate/sqlgate/identity"
)

// otherOriginLogin sends the browser to sign in at an identity provider on
// another origin, as every real one is.
type otherOriginLogin struct{ idp string }

func (l otherOriginLogin) Start(w http.ResponseWriter, r *http.Request, returnTo string) error {
	http.Redirect(w, r, l.idp+"/authorize?return="+url.QueryEscape(returnTo), http.StatusFound)
	return nil
}

func (otherOriginLogin) Callback(http.ResponseWriter, *http.Request) (identity.Principal, string, error) {
	return identity.Principal{}, "", nil
}

// TestEvidenceFormSignedOutInChromium: an auditor whose session ended while
// the audit page was open submits the evidence form. The dashboard used to
// redirect the submission to /login and on to the identity provider, and
// Chromium refused the redirect to another origin (the CSP's form-action
// 'self' covers a form submission's redirects): the click did nothing. Now
// the answer is the error page, whose Sign in leads to the identity
// provider, asked to return to the audit page.
func TestEvidenceFormSignedOutInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("browser tests: skipped with -short")
	}
	chromium(t) // skips without one, before any server starts
	var (
		mu       sync.Mutex
		returnTo []string // what the identity provider was asked to return to
	)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/authorize" { // e.g. the full Chromium's /favicon.ico
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		returnTo = append(returnTo, r.URL.Query().Get("return"))
		mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><h1 id="idp">Sign in at the identity provider</h1>`))
	}))
	t.Cleanup(idp.Close)
	iu, _ := url.Parse(idp.URL)
	idpURL := "http://" + net.JoinHostPort("localhost", iu.Port()) // the dashboard is on 127.0.0.1

	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: evidenceAudit{}, AuditorGroups: []string{"auditors"},
		Login: otherOriginLogin{idpURL},
	})
	if err != nil {
		t.Fatal(err)
	}
	carol := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "carol", Groups: []string{"auditors"}}, time.Now().Add(time.Hour))
	dashboard := httptest.NewServer(s)
	t.Cleanup(dashboard.Close)

	// Carol is signed in and opens the audit page.
	ctx := browserWithSession(t, dashboard.URL, carol.id, 90*time.Second)
	if err := chromedp.Do(ctx, chromedp.Navigate(dashboard.URL+"/audit"), chromedp.WaitVisible(chromedp.CSS("#evidence-download"))); err != nil {
		t.Fatal(err)
	}
	// Her session ends while the page is open.
	if err := s.sessions.delete(t.Context(), carol.id); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#evidence-from"), "2026-10-01"),
		chromedp.SetValue(chromedp.CSS("#evidence-to"), "2026-11-01"),
		chromedp.Click(chromedp.CSS("#evidence-download")),
		chromedp.WaitVisible(chromedp.CSS("#error")),
	); err != nil {
		t.Fatalf("the evidence form with an ended session shows no error page: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#sign-in")), chromedp.WaitVisible(chromedp.CSS("#idp"))); err != nil {
		t.Fatalf("the error page's Sign in does not reach the identity provider: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(returnTo) != 1 || returnTo[0] != "/audit" {
		t.Errorf("the identity provider was asked to return to %q, want once to /audit", returnTo)
	}
}
