package web

import (
	"context"
	"errors"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity"
)

// evidenceAudit is the audit page's log (twinAudit) with an evidence
// archive that names its period, or fails with fail.
type evidenceAudit struct {
	twinAudit
	fail error
}

func (a evidenceAudit) Evidence(_ context.Context, w io.Writer, from, to time.Time) error {
	if a.fail != nil {
		return a.fail
	}
	_, err := io.WriteString(w, "PK "+from.Format(time.RFC3339)+" "+to.Format(time.RFC3339))
	return err
}

// returnLogin is a dashboard sign-in that notes where it was asked to
// return to.
type returnLogin struct{ returnTo *string }

func (l returnLogin) Start(w http.ResponseWriter, r *http.Request, returnTo string) error {
	*l.returnTo = returnTo
	http.Redirect(w, r, "https://idp/authorize", http.StatusFound)
	return nil
}

func (returnLogin) Callback(http.ResponseWriter, *http.Request) (identity.Principal, string, error) {
	return identity.Principal{}, "", errors.New("not used")
}

// dashboardPage fails t unless rec is an HTML page in the dashboard's
// layout (header and navigation), not a JSON error.
func dashboardPage(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	body := rec.Body.String()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("%s: content type %q, want the dashboard's HTML:\n%s", what, ct, body)
	}
	if !strings.Contains(body, `<a class="brand" href="/">sqlgate</a>`) || !strings.Contains(body, "<nav>") {
		t.Errorf("%s: no dashboard header or navigation:\n%s", what, body)
	}
	if cd := rec.Header().Get("Content-Disposition"); cd != "" {
		t.Errorf("%s: an error page sent as a download (%q)", what, cd)
	}
}

// signInLink returns the target of an error page's Sign in button.
func signInLink(t *testing.T, body string) *url.URL {
	t.Helper()
	m := regexp.MustCompile(`<a class="button" href="([^"]*)" id="sign-in">`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no sign-in link on the page:\n%s", body)
	}
	u, err := url.Parse(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestEvidenceForm: the audit page's evidence form downloads from a
// dashboard route that answers as the dashboard: the archive (as the API
// serves it) for an auditor, the audit page naming what is wrong with the
// period, the error page for a non-auditor or a log whose evidence cannot
// be built, and the 401 error page with a sign-in that returns to the audit
// page for a browser without a session or with an expired one.
func TestEvidenceForm(t *testing.T) {
	t.Parallel()
	var returnTo string
	newServer := func(t *testing.T, a AuditService, login Login) *Server {
		t.Helper()
		s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: a, AuditorGroups: []string{"auditors"}, Login: login})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := newServer(t, evidenceAudit{}, returnLogin{&returnTo})
	carol := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "carol", Groups: []string{"auditors"}}, time.Now().Add(time.Hour))
	cookie := func(sess *session) map[string]string {
		return map[string]string{"Cookie": sessionCookie + "=" + sess.id}
	}

	t.Run("form_targets_the_dashboard", func(t *testing.T) {
		page := do(t, s, "GET", "/audit", "", cookie(carol))
		if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), `<form method="get" action="/audit/evidence">`) {
			t.Errorf("audit page = %d, want its evidence form to submit to /audit/evidence:\n%s", page.Code, page.Body)
		}
	})

	t.Run("download", func(t *testing.T) {
		rec := do(t, s, "GET", "/audit/evidence?from=2026-10-01&to=2026-11-01", "", cookie(carol))
		if rec.Code != http.StatusOK || rec.Body.String() != "PK 2026-10-01T00:00:00Z 2026-11-01T00:00:00Z" {
			t.Fatalf("evidence = %d %q, want 200 and the archive", rec.Code, rec.Body)
		}
		h := rec.Header()
		if h.Get("Content-Type") != "application/zip" || h.Get("Cache-Control") != "no-store" ||
			h.Get("Content-Disposition") != `attachment; filename="sqlgate-evidence-20261001T000000Z-20261101T000000Z.zip"` {
			t.Errorf("evidence headers = %v, want the API's (zip attachment, no-store)", h)
		}
	})

	for _, tc := range []struct{ name, query, msg string }{
		{"backwards", "from=2026-11-01&to=2026-10-01", "from must be before to"},
		{"empty", "from=2026-11-01&to=2026-11-01", "from must be before to"},
		{"bad_date", "from=yesterday&to=2026-11-01", "from must be a date"},
	} {
		t.Run("refused_period_"+tc.name, func(t *testing.T) {
			rec := do(t, s, "GET", "/audit/evidence?"+tc.query, "", cookie(carol))
			body := rec.Body.String()
			if rec.Code != http.StatusBadRequest || !strings.Contains(body, `<p class="error" id="evidence-error">`+tc.msg) {
				t.Errorf("evidence?%s = %d, want 400 naming %q beside the form:\n%s", tc.query, rec.Code, tc.msg, body)
			}
			dashboardPage(t, "refused period", rec)
			if !strings.Contains(body, `id="checkpoint"`) || !strings.Contains(body, `id="records"`) || !strings.Contains(body, `id="nav-audit"`) {
				t.Errorf("the refused period is not shown on the audit page:\n%s", body)
			}
		})
	}
	t.Run("refused_period_refills_the_form", func(t *testing.T) {
		body := do(t, s, "GET", "/audit/evidence?from=2026-11-01&to=2026-10-01", "", cookie(carol)).Body.String()
		if !strings.Contains(body, `id="evidence-from" value="2026-11-01"`) || !strings.Contains(body, `id="evidence-to" value="2026-10-01"`) {
			t.Errorf("the form lost the period it was sent:\n%s", body)
		}
	})

	t.Run("non_auditor", func(t *testing.T) {
		bob := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "bob", Groups: []string{"sales"}}, time.Now().Add(time.Hour))
		rec := do(t, s, "GET", "/audit/evidence?from=2026-10-01&to=2026-11-01", "", cookie(bob))
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `id="error"`) || !strings.Contains(rec.Body.String(), "auditors") || strings.Contains(rec.Body.String(), "PK ") {
			t.Errorf("evidence for a non-auditor = %d, want the 403 error page naming the auditor groups:\n%s", rec.Code, rec.Body)
		}
		dashboardPage(t, "non-auditor", rec)
	})

	t.Run("log_does_not_verify", func(t *testing.T) {
		// As the service answers a log that does not verify (the reason
		// is the auditor's to see); a plain error is the log unavailable.
		notVerified := &HTTPError{Status: http.StatusInternalServerError, Code: "internal", Msg: "no evidence: the audit log did not verify: origin x: bad signature"}
		broken := newServer(t, evidenceAudit{fail: notVerified}, returnLogin{&returnTo})
		sess := mustSession(t, broken, identity.Principal{Issuer: "https://idp", Subject: "carol", Groups: []string{"auditors"}}, time.Now().Add(time.Hour))
		rec := do(t, broken, "GET", "/audit/evidence?from=2026-10-01&to=2026-11-01", "", cookie(sess))
		body := rec.Body.String()
		if rec.Code != http.StatusInternalServerError || !strings.Contains(body, `id="error"`) || !strings.Contains(body, "Request id") || !strings.Contains(body, `id="who"`) {
			t.Errorf("evidence of a broken log = %d, want the signed-in 500 error page with the request id:\n%s", rec.Code, body)
		}
		dashboardPage(t, "broken log", rec)
	})

	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"signed_out", nil},
		{"expired_session", cookie(mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "carol", Groups: []string{"auditors"}}, time.Now().Add(-time.Minute)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A page, not a redirect: the form's submission would follow a
			// redirect on to the identity provider (another origin), which
			// the CSP's form-action 'self' makes browsers refuse
			// (TestEvidenceFormSignedOutInChromium).
			rec := do(t, s, "GET", "/audit/evidence?from=2026-10-01&to=2026-11-01", "", tc.hdr)
			if rec.Code != http.StatusUnauthorized || rec.Header().Get("Location") != "" || !strings.Contains(rec.Body.String(), `id="error"`) {
				t.Fatalf("evidence %s = %d to %q, want the 401 error page:\n%s", tc.name, rec.Code, rec.Header().Get("Location"), rec.Body)
			}
			dashboardPage(t, tc.name, rec)
			link := signInLink(t, rec.Body.String())
			if link.Path != "/login" || link.Query().Get("return") != "/audit" || link.Query().Has("fresh") {
				t.Errorf("the error page's sign-in goes to %q, want /login returning to /audit", link)
			}
			returnTo = ""
			if login := do(t, s, "GET", link.String(), "", nil); login.Code != http.StatusFound || returnTo != "/audit" {
				t.Errorf("sign-in = %d returning to %q, want it started returning to /audit", login.Code, returnTo)
			}
		})
	}

	// A link or a script on another site may not make an auditor's browser
	// build an archive (a check of the whole log): browsers say which site
	// started a request. The dashboard's own form, a bookmark or a typed
	// address still download.
	for _, tc := range []struct {
		site   string
		status int
	}{{"cross-site", 403}, {"same-origin", 200}, {"none", 200}, {"", 200}} {
		for _, path := range []string{"/audit/evidence", "/api/v1/audit/evidence"} {
			t.Run("fetch_site_"+tc.site+strings.ReplaceAll(path, "/", "_"), func(t *testing.T) {
				hdr := cookie(carol)
				if tc.site != "" {
					hdr["Sec-Fetch-Site"] = tc.site
				}
				rec := do(t, s, "GET", path+"?from=2026-10-01&to=2026-11-01", "", hdr)
				if rec.Code != tc.status || (tc.status != 200) == strings.Contains(rec.Body.String(), "PK ") {
					t.Errorf("GET %s with Sec-Fetch-Site %q = %d, want %d:\n%s", path, tc.site, rec.Code, tc.status, rec.Body)
				}
				if tc.status == 403 && !strings.Contains(rec.Body.String(), "audit page") {
					t.Errorf("the refusal does not say where to download the archive:\n%s", rec.Body)
				}
			})
		}
	}

	t.Run("signed_out_without_sign_in", func(t *testing.T) {
		api := newServer(t, evidenceAudit{}, nil)
		rec := do(t, api, "GET", "/audit/evidence?from=2026-10-01&to=2026-11-01", "", nil)
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), `id="error"`) {
			t.Errorf("evidence without a session or a sign-in = %d, want the 401 error page:\n%s", rec.Code, rec.Body)
		}
		dashboardPage(t, "signed out, no sign-in", rec)
	})
}
