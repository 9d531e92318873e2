package web

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlgate/sqlgate/identity"
)

// brokenPolicy serves a policy whose last reload failed.
type brokenPolicy struct{ PolicyService }

var brokenLoadedAt = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func (brokenPolicy) Status() PolicyStatus {
	return PolicyStatus{
		Revision: "4f2a", LoadedAt: brokenLoadedAt, Source: "/etc/sqlgate/policy",
		LastError: "/etc/sqlgate/policy/sqlgate.rego:7: rego_parse_error: unexpected eof",
	}
}

// TestPolicyStatusDetail: why the policy failed to reload (file paths,
// parser output) and where it lives are for the admin and auditor groups;
// any other signed-in user learns which revision serves and that the last
// reload failed.
func TestPolicyStatusDetail(t *testing.T) {
	t.Parallel()
	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{}, Policy: brokenPolicy{},
		AdminGroups: []string{"security"}, AuditorGroups: []string{"auditors"},
	})
	if err != nil {
		t.Fatal(err)
	}
	full := brokenPolicy{}.Status()
	full.ReloadFailed = true
	plain := PolicyStatus{Revision: "4f2a", LoadedAt: brokenLoadedAt, ReloadFailed: true}
	for _, tc := range []struct {
		name   string
		groups []string
		want   PolicyStatus
	}{
		{"member", []string{"sales"}, plain},
		{"admin", []string{"security"}, full},
		{"auditor", []string{"auditors"}, full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: tc.name, Groups: tc.groups}, time.Now().Add(time.Hour))
			cookie := map[string]string{"Cookie": sessionCookie + "=" + sess.id}

			rec := do(t, s, "GET", "/api/v1/policy/status", "", cookie)
			var got PolicyStatus
			if err := json.Unmarshal(rec.Body.Bytes(), &got); rec.Code != 200 || err != nil {
				t.Fatalf("GET /api/v1/policy/status = %d %s", rec.Code, rec.Body)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("GET /api/v1/policy/status (-want +got):\n%s", diff)
			}

			page := do(t, s, "GET", "/policy", "", cookie)
			body := page.Body.String()
			if page.Code != 200 || !strings.Contains(body, "the previous policy keeps serving") {
				t.Fatalf("GET /policy = %d, want 200 saying the previous policy keeps serving:\n%s", page.Code, body)
			}
			if shows := strings.Contains(body, "rego_parse_error") || strings.Contains(body, "/etc/sqlgate"); shows != (tc.want.LastError != "") {
				t.Errorf("GET /policy shows the reload error and directory = %v, want %v:\n%s", shows, tc.want.LastError != "", body)
			}
		})
	}
}
