package web

import (
	"html"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity"
)

// TestAuditPageVerifyCommandsTrustAKey: every offline check the audit page
// suggests names the key to trust: `sqlgate audit verify` and `audit
// evidence` refuse to run without --key or --keys-file (exit 2), so a
// command without one fails for the auditor who copies it.
func TestAuditPageVerifyCommandsTrustAKey(t *testing.T) {
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: twinAudit{}, AuditorGroups: []string{"auditors"}})
	if err != nil {
		t.Fatal(err)
	}
	sess := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "carol", Groups: []string{"auditors"}}, time.Now().Add(time.Hour))
	page := do(t, s, "GET", "/audit", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id})
	if page.Code != 200 {
		t.Fatalf("audit page = %d", page.Code)
	}
	var checks []string
	for _, m := range regexp.MustCompile(`<code>([^<]*)</code>`).FindAllStringSubmatch(page.Body.String(), -1) {
		cmd := html.UnescapeString(m[1])
		if strings.HasPrefix(cmd, "sqlgate audit verify") || strings.HasPrefix(cmd, "sqlgate audit evidence") {
			checks = append(checks, cmd)
			if !strings.Contains(cmd, " --key ") && !strings.Contains(cmd, " --keys-file ") {
				t.Errorf("the audit page suggests %q, which is refused without --key or --keys-file", cmd)
			}
		}
	}
	if len(checks) != 2 {
		t.Errorf("the audit page suggests %q, want the verify and evidence commands", checks)
	}
	if !strings.Contains(page.Body.String(), "verifier_key=") {
		t.Error("the audit page does not say where the verifier key is found")
	}
}
