package web

import (
	"context"
	"encoding/json"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/identity"
)

// TestExampleInputJSON: the policy page's example input is a JSON document
// that carries the signed-in principal's issuer and groups exactly, also
// AD-style groups with a backslash, quotes and apostrophes.
func TestExampleInputJSON(t *testing.T) {
	for _, p := range []identity.Principal{
		{Issuer: "https://idp", Subject: "dave", Groups: []string{`CONTOSO\Security`, `Sec "admins"`, "o'brien's team"}},
		{Issuer: "https://idp/o'brien\"\\", Subject: "dave"},
		{Issuer: "https://idp", Subject: "dave", Groups: []string{"</script>", "a\nb"}},
	} {
		var doc struct {
			Principal struct {
				Issuer string   `json:"issuer"`
				Groups []string `json:"groups"`
			} `json:"principal"`
			Route struct {
				Subject string `json:"subject"`
			} `json:"route"`
			Request struct {
				TimeNS int64 `json:"time_ns"`
			} `json:"request"`
		}
		in := exampleInput(p)
		if err := json.Unmarshal([]byte(in), &doc); err != nil {
			t.Fatalf("example input for %q is not JSON: %v\n%s", p.Groups, err, in)
		}
		want := p.Groups
		if want == nil {
			want = []string{}
		}
		if doc.Principal.Issuer != p.Issuer || strings.Join(doc.Principal.Groups, "|") != strings.Join(want, "|") || doc.Principal.Groups == nil {
			t.Errorf("example input carries issuer %q groups %q, want %q %q", doc.Principal.Issuer, doc.Principal.Groups, p.Issuer, want)
		}
		if doc.Route.Subject != "orders.v1.create" || doc.Request.TimeNS != 1795773600000000000 {
			t.Errorf("example input lost its route or request: %s", in)
		}
	}
}

// twinAudit has two records by different principals that claim one email.
type twinAudit struct{ AuditService }

func (twinAudit) Checkpoint(context.Context) ([]byte, error) { return []byte("cp"), nil }

func (twinAudit) Recent(context.Context, int) ([]audit.Record, error) {
	return []audit.Record{
		{Index: 3, Kind: "decision", Route: "payroll.v1.pay", Actor: &audit.Actor{Issuer: "https://partner-idp.example", Subject: "mallory", Email: "ceo@corp.example"}},
		{Index: 2, Kind: "decision", Route: "payroll.v1.pay", Actor: &audit.Actor{Issuer: "https://login.corp.example", Subject: "ceo", Email: "ceo@corp.example"}},
		{Index: 1, Kind: "decision", Route: "payroll.v1.pay", Actor: &audit.Actor{Issuer: "https://login.corp.example/tenant", Subject: "svc-batch-0123456789abcdef"}},
		{Index: 0, Kind: "admin"},
	}, nil
}

// TestAuditPageWho: the audit page tells apart principals that share an
// email (different issuers or subjects): the visible text names the
// subject and issuer host, the title the full issuer and subject; without
// an email the subject and issuer host are shown.
func TestAuditPageWho(t *testing.T) {
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: twinAudit{}, AuditorGroups: []string{"auditors"}})
	if err != nil {
		t.Fatal(err)
	}
	sess := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "carol", Groups: []string{"auditors"}}, time.Now().Add(time.Hour))
	page := do(t, s, "GET", "/audit", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id})
	if page.Code != 200 {
		t.Fatalf("audit page = %d", page.Code)
	}
	cells := regexp.MustCompile(`<span class="who" title="([^"]*)">([^<]*)</span>`).FindAllStringSubmatch(page.Body.String(), -1)
	if len(cells) != 3 {
		t.Fatalf("%d who cells, want 3 (the admin record has no actor):\n%s", len(cells), page.Body)
	}
	want := []struct{ title, text string }{
		{"https://partner-idp.example mallory", "ceo@corp.example (mallory, partner-idp.example)"},
		{"https://login.corp.example ceo", "ceo@corp.example (ceo, login.corp.example)"},
		{"https://login.corp.example/tenant svc-batch-0123456789abcdef", "svc-batch-0123456789abcdef @ login.corp.example"},
	}
	for i, c := range cells {
		title, text := html.UnescapeString(c[1]), html.UnescapeString(c[2])
		if title != want[i].title || text != want[i].text {
			t.Errorf("who cell %d = %q (title %q), want %q (title %q)", i, text, title, want[i].text, want[i].title)
		}
	}
	if html.UnescapeString(cells[0][2]) == html.UnescapeString(cells[1][2]) {
		t.Error("two principals with one email look the same")
	}
}

// TestActorWhoShortensSubject: a long subject next to an email is
// shortened in the visible text (the title keeps it whole).
func TestActorWhoShortensSubject(t *testing.T) {
	w := actorWho(&audit.Actor{Issuer: "https://idp.example", Subject: "00u1a2b3c4d5e6f7g8h9", Email: "a@example.com"})
	if w.Text != "a@example.com (00u1a2b3c4d5…, idp.example)" || w.Title != "https://idp.example 00u1a2b3c4d5e6f7g8h9" {
		t.Errorf("who = %+v", w)
	}
}

// TestStaticNoListing: /static/ serves its files but lists no directory.
func TestStaticNoListing(t *testing.T) {
	s, _ := newTestServer(t, false)
	if rec := do(t, s, "GET", "/static/style.css", "", nil); rec.Code != http.StatusOK || rec.Body.Len() == 0 {
		t.Errorf("GET /static/style.css = %d (%d bytes), want 200", rec.Code, rec.Body.Len())
	}
	if rec := do(t, s, "GET", "/static/", "", nil); rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "style.css") {
		t.Errorf("GET /static/ = %d %q, want 404 listing nothing", rec.Code, rec.Body)
	}
}
