package web

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web/api"
)

// fakeBroker records revocations and refuses NATS credentials for carol.
type fakeBroker struct {
	revoked, offboarded []string
	pushFails           bool // RevokeAll revokes but cannot reach the NATS servers
	routes              []*route.Route
	routesErr           error // AllowedRoutes fails with it
}

func (f *fakeBroker) RevokeAll(_ context.Context, _ identity.Principal, principalID, _ string) (*broker.RevokeAllResult, error) {
	if !strings.HasPrefix(principalID, "https://") {
		return nil, fmt.Errorf("%w: principal must be \"<issuer> <subject>\"", broker.ErrInvalid) // as broker.Service
	}
	f.offboarded = append(f.offboarded, principalID)
	res := &broker.RevokeAllResult{PrincipalID: principalID, NATSKeys: []string{"UALICE"}}
	if f.pushFails {
		return res, fmt.Errorf("push nats revocation (retrying in the background): %w", broker.ErrUnavailable)
	}
	return res, nil
}

func (f *fakeBroker) AllowedRoutes(context.Context, identity.Principal) ([]*route.Route, policy.Decision, error) {
	if f.routesErr != nil {
		return nil, policy.Deny(""), f.routesErr
	}
	return f.routes, policy.Decision{Revision: "rev"}, nil
}

func (f *fakeBroker) IssueNATS(_ context.Context, req broker.NATSRequest) (*broker.NATSCredential, error) {
	if req.Principal.Subject == "carol" {
		return nil, &broker.DeniedError{Reasons: []string{"no route is granted"}}
	}
	if req.UserKey == "bad" {
		return nil, errors.Join(broker.ErrInvalid, errors.New("public_key must be a NATS user public key"))
	}
	return &broker.NATSCredential{JWT: "jwt", InboxPrefix: "_INBOX_x"}, nil
}

func (f *fakeBroker) RevokeNATS(_ context.Context, _ identity.Principal, keys []string, _ string) error {
	f.revoked = append(f.revoked, keys...)
	return nil
}

// tokenAuth accepts "token-<subject>".
type tokenAuth struct{}

func (tokenAuth) Verify(_ context.Context, raw string) (identity.Principal, error) {
	sub, ok := strings.CutPrefix(raw, "token-")
	if !ok {
		return identity.Principal{}, identity.Unauthenticated("bad token", nil)
	}
	return identity.Principal{Issuer: "https://idp", Subject: sub, Email: sub + "@example.com", Groups: []string{"sales"}}, nil
}

type fakeIssuances struct {
	m     map[string]broker.Issuance
	reads *pageReads // nil: not counted
}

func (f fakeIssuances) ByPrincipalPage(_ context.Context, id string, page broker.ListPage) ([]broker.Issuance, error) {
	var held []broker.Issuance
	for _, i := range f.m {
		if i.Principal.ID() == id {
			held = append(held, i)
		}
	}
	return fakePage(held, page, f.reads,
		func(i broker.Issuance) broker.ListCursor {
			return broker.ListCursor{IssuedAt: i.IssuedAt.UnixNano(), Key: i.UserKey}
		},
		func(i broker.Issuance) bool { return i.RevokedAt.IsZero() && i.ExpiresAt.After(page.At) })
}

// pageReads counts what a fake store returned to paged reads.
type pageReads struct {
	calls int
	most  int // the most rows one read returned
}

// fakePage answers page as the control database does (see
// broker.ListPage) from a principal's held items, and counts the rows it
// returns in reads (nil: not counted).
func fakePage[T any](held []T, page broker.ListPage, reads *pageReads, at func(T) broker.ListCursor, live func(T) bool) ([]T, error) {
	if err := page.Check(); err != nil {
		return nil, err
	}
	var out []T
	for _, it := range held {
		c := at(it)
		if b := page.Before; b != nil && c.IssuedAt >= b.IssuedAt && (c.IssuedAt != b.IssuedAt || c.Key >= b.Key) {
			continue
		}
		if (page.Filter == broker.ListLive && !live(it)) || (page.Filter == broker.ListEnded && live(it)) {
			continue
		}
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b T) int {
		ca, cb := at(a), at(b)
		if ca.IssuedAt != cb.IssuedAt {
			return cmp.Compare(cb.IssuedAt, ca.IssuedAt)
		}
		return strings.Compare(cb.Key, ca.Key)
	})
	out = out[:min(len(out), page.Limit)]
	if reads != nil {
		reads.calls++
		reads.most = max(reads.most, len(out))
	}
	return out, nil
}

func (f fakeIssuances) Get(_ context.Context, k string) (broker.Issuance, error) {
	i, ok := f.m[k]
	if !ok {
		return i, broker.ErrNotFound
	}
	return i, nil
}

func newTestServer(t testing.TB, secure bool) (*Server, *fakeBroker) {
	t.Helper()
	fb := &fakeBroker{}
	alice := identity.Principal{Issuer: "https://idp", Subject: "alice"}
	bob := identity.Principal{Issuer: "https://idp", Subject: "bob"}
	iss := fakeIssuances{m: map[string]broker.Issuance{
		"UALICE": {UserKey: "UALICE", Principal: alice, ExpiresAt: time.Now().Add(time.Hour)},
		"UBOB":   {UserKey: "UBOB", Principal: bob, ExpiresAt: time.Now().Add(time.Hour)},
	}}
	s, err := New(Config{Broker: fb, Auth: tokenAuth{}, Issuances: iss, AuditorGroups: []string{"auditors"}, Secure: secure})
	if err != nil {
		t.Fatal(err)
	}
	return s, fb
}

func do(t testing.TB, h http.Handler, method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestAPIErrors(t *testing.T) {
	s, _ := newTestServer(t, false)
	bearer := map[string]string{"Authorization": "Bearer token-alice"}
	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string
	}{
		{"no_token", "GET", "/api/v1/whoami", "", nil, 401, "unauthenticated"},
		{"bad_scheme", "GET", "/api/v1/whoami", "", map[string]string{"Authorization": "Basic abc"}, 401, "unauthenticated"},
		{"bad_token", "GET", "/api/v1/whoami", "", map[string]string{"Authorization": "Bearer nope"}, 401, "unauthenticated"},
		{"malformed_json", "POST", "/api/v1/nats/creds", `{"public_key":`, bearer, 400, "invalid_request"},
		{"unknown_field", "POST", "/api/v1/nats/creds", `{"public_key":"U","admin":true}`, bearer, 400, "invalid_request"},
		{"trailing_data", "POST", "/api/v1/nats/creds", `{"public_key":"U"} {}`, bearer, 400, "invalid_request"},
		{"too_large", "POST", "/api/v1/nats/creds", `{"public_key":"` + strings.Repeat("U", 70<<10) + `"}`, bearer, 413, "too_large"},
		{"negative_ttl", "POST", "/api/v1/nats/creds", `{"public_key":"U","ttl_seconds":-1}`, bearer, 400, "invalid_request"},
		{"invalid_key", "POST", "/api/v1/nats/creds", `{"public_key":"bad"}`, bearer, 400, "invalid_request"},
		{"denied", "POST", "/api/v1/nats/creds", `{"public_key":"U"}`, map[string]string{"Authorization": "Bearer token-carol"}, 403, "forbidden"},
		{"audit_not_served", "GET", "/api/v1/audit/records", "", bearer, 404, "not_found"},
		{"no_endpoint", "GET", "/api/v1/nope", "", bearer, 404, "not_found"},
		{"no_api_version", "GET", "/api/v9/whoami", "", nil, 404, "not_found"},
		{"wrong_method", "GET", "/api/v1/nats/creds", "", bearer, 405, "invalid_request"},
		{"others_lease", "DELETE", "/api/v1/leases/UBOB", "", bearer, 404, "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, s, tc.method, tc.path, tc.body, tc.hdr)
			if rec.Code != tc.status {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, rec.Code, rec.Body, tc.status)
			}
			if tc.code == "" {
				return
			}
			var body api.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != tc.code || body.Error.RequestID == "" {
				t.Errorf("body = %s, want code %s with a request id", rec.Body, tc.code)
			}
			if strings.Contains(rec.Body.String(), "UUUUUUUU") || strings.Contains(rec.Body.String(), "nope") {
				t.Error("error body echoes the request")
			}
		})
	}
	if rec := do(t, s, "PUT", "/api/v1/nats/creds", "", bearer); rec.Header().Get("Allow") != "POST" || !strings.Contains(rec.Body.String(), "method not allowed here (allowed: POST)") {
		t.Errorf("wrong method: Allow %q, body %s", rec.Header().Get("Allow"), rec.Body)
	}
	if rec := do(t, s, "GET", "/api/v1/whoami", "", bearer); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"subject": "alice"`) {
		t.Errorf("whoami = %d %s", rec.Code, rec.Body)
	}
}

// TestPageNotFound checks that a path nothing serves gets the dashboard's
// error page (not Go's plain text), and a known page with another method a
// 405 naming the allowed one.
func TestPageNotFound(t *testing.T) {
	s, _ := newTestServer(t, false)
	rec := do(t, s, "GET", "/nope", "", nil)
	if rec.Code != 404 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") || !strings.Contains(rec.Body.String(), "no such page") {
		t.Errorf("GET /nope = %d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	if strings.Contains(rec.Body.String(), "nope") {
		t.Error("the error page repeats the path")
	}
	rec = do(t, s, "DELETE", "/", "", nil)
	if rec.Code != 405 || rec.Header().Get("Allow") != "GET" {
		t.Errorf("DELETE / = %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestSessionCookieAndCSRF(t *testing.T) {
	for _, secure := range []bool{false, true} {
		s, fb := newTestServer(t, secure)
		sess := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "alice"}, time.Now().Add(time.Hour))
		rec := httptest.NewRecorder()
		s.setSessionCookie(rec, sess)
		c := rec.Result().Cookies()[0]
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure != secure {
			t.Errorf("secure=%v: cookie HttpOnly=%v SameSite=%v Secure=%v", secure, c.HttpOnly, c.SameSite, c.Secure)
		}
		// Behind TLS the cookie is __Host- (this host only, Path=/, no
		// Domain): no sibling subdomain can plant or shadow it.
		wantName := sessionCookie
		if secure {
			wantName = "__Host-" + sessionCookie
		}
		if c.Name != wantName || c.Path != "/" || c.Domain != "" {
			t.Errorf("secure=%v: cookie %q Path=%q Domain=%q, want %q Path=/ and no Domain", secure, c.Name, c.Path, c.Domain, wantName)
		}
		cookie := map[string]string{"Cookie": c.Name + "=" + sess.id, "Content-Type": "application/x-www-form-urlencoded"}
		// State-changing form posts need the session's CSRF token.
		for _, form := range []string{"", "csrf_token=wrong"} {
			if rec := do(t, s, "POST", "/leases/UALICE/revoke", form, cookie); rec.Code != http.StatusForbidden {
				t.Errorf("revoke without the CSRF token = %d, want 403", rec.Code)
			}
			if rec := do(t, s, "DELETE", "/api/v1/leases/UALICE", "", map[string]string{"Cookie": c.Name + "=" + sess.id}); rec.Code != http.StatusForbidden {
				t.Errorf("API delete with a session and no CSRF header = %d, want 403", rec.Code)
			}
		}
		if len(fb.revoked) != 0 {
			t.Fatalf("revoked without CSRF: %v", fb.revoked)
		}
		form := url.Values{"csrf_token": {sess.csrf}}.Encode()
		if rec := do(t, s, "POST", "/leases/UALICE/revoke", form, cookie); rec.Code != http.StatusSeeOther {
			t.Fatalf("revoke with the token = %d %s", rec.Code, rec.Body)
		}
		if len(fb.revoked) != 1 || fb.revoked[0] != "UALICE" {
			t.Errorf("revoked = %v", fb.revoked)
		}
		// Someone else's credential is not found, even with a valid token.
		if rec := do(t, s, "POST", "/leases/UBOB/revoke", form, cookie); rec.Code != http.StatusNotFound {
			t.Errorf("revoke bob's credential = %d, want 404", rec.Code)
		}
		// A link from elsewhere cannot put words on the dashboard.
		if page := do(t, s, "GET", "/?flash=Call+IT+at+555-0100", "", cookie); strings.Contains(page.Body.String(), "555-0100") {
			t.Error("the dashboard shows a message from its URL")
		}
		// Logout ends the session server-side.
		if rec := do(t, s, "POST", "/logout", form, cookie); rec.Code != http.StatusSeeOther {
			t.Fatalf("logout = %d", rec.Code)
		}
		if rec := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Cookie": c.Name + "=" + sess.id}); rec.Code != 401 {
			t.Errorf("whoami after logout = %d, want 401", rec.Code)
		}
	}
}

func TestSessionExpiry(t *testing.T) {
	now := time.Now()
	s, _ := newTestServer(t, false)
	s.sessions.now = func() time.Time { return now }
	sess := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "alice"}, now.Add(time.Minute))
	hdr := map[string]string{"Cookie": sessionCookie + "=" + sess.id}
	if rec := do(t, s, "GET", "/api/v1/whoami", "", hdr); rec.Code != 200 {
		t.Fatalf("whoami = %d", rec.Code)
	}
	now = now.Add(2 * time.Minute) // the sign-in token expired
	if rec := do(t, s, "GET", "/api/v1/whoami", "", hdr); rec.Code != 401 {
		t.Errorf("whoami after expiry = %d, want 401", rec.Code)
	}
}

func TestSafeReturn(t *testing.T) {
	for in, want := range map[string]string{"/audit": "/audit", "": "/", "//evil.example": "/", "https://evil.example": "/", "/\\evil": "/"} {
		if got := safeReturn(in); got != want {
			t.Errorf("safeReturn(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	for _, secure := range []bool{false, true} {
		s, _ := newTestServer(t, secure)
		rec := do(t, s, "GET", "/", "", nil)
		if rec.Code != 200 {
			t.Fatalf("GET / = %d", rec.Code)
		}
		h := rec.Header()
		if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") || h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("headers = %v", h)
		}
		// Browsers that reached it over TLS keep to TLS.
		if hsts := do(t, s, "GET", "/api/v1/whoami", "", nil).Header().Get("Strict-Transport-Security"); (hsts != "") != secure {
			t.Errorf("secure=%v: Strict-Transport-Security %q", secure, hsts)
		}
	}
}

// countingReader counts what a handler reads of a request body.
type countingReader struct{ n int64 }

func (c *countingReader) Read(p []byte) (int, error) {
	c.n += int64(len(p))
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// TestCSRFDoesNotReadBodies: an API request with a session and no CSRF
// header is refused before its body is read (a form field there does not
// count), and a dashboard form larger than the bound is refused.
func TestCSRFDoesNotReadBodies(t *testing.T) {
	s, fb := newTestServer(t, false)
	sess := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "alice"}, time.Now().Add(time.Hour))
	body := &countingReader{}
	req := httptest.NewRequest("POST", "/api/v1/nats/creds", io.LimitReader(body, 40<<20))
	req.Header.Set("Cookie", sessionCookie+"="+sess.id)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || body.n != 0 {
		t.Errorf("API post without the CSRF header = %d after reading %d bytes; want 403 after none", rec.Code, body.n)
	}
	form := "csrf_token=" + sess.csrf + "&pad=" + strings.Repeat("a", maxDocBody)
	hdr := map[string]string{"Cookie": sessionCookie + "=" + sess.id, "Content-Type": "application/x-www-form-urlencoded"}
	if rec := do(t, s, "POST", "/leases/UALICE/revoke", form, hdr); rec.Code != http.StatusBadRequest || len(fb.revoked) != 0 {
		t.Errorf("oversized form = %d (revoked %v), want 400 and nothing revoked", rec.Code, fb.revoked)
	}
}

// TestMetricsMethodLabel: a request with a made-up method does not become a
// series of its own in /metrics.
func TestMetricsMethodLabel(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Issuances: fakeIssuances{}, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	odd := "X" + strings.Repeat("Y", 2000)
	do(t, s, odd, "/api/v1/whoami", "", nil)
	do(t, s, "GET", "/api/v1/whoami", "", nil)
	out := do(t, s, "GET", "/metrics", "", nil).Body.String()
	if strings.Contains(out, "XYY") || !strings.Contains(out, `method="OTHER"`) || !strings.Contains(out, `method="GET"`) {
		t.Errorf("/metrics:\n%s", out)
	}
}

// FuzzNATSCredsRequest throws arbitrary bodies at the credential endpoint:
// every answer is a JSON envelope with a client or policy status, never a
// 5xx, and a credential is issued only for a well-formed request (each
// member named exactly, once).
func FuzzNATSCredsRequest(f *testing.F) {
	for _, s := range []string{
		`{"public_key":"U"}`, `{"public_key":"U","ttl_seconds":60}`, `{`, `[]`, `{"public_key":1}`, `{"public_key":"U"}x`, "\x00",
		`{"public_key":"U","public_key":"bad"}`, `{"PUBLIC_KEY":"U"}`, `{"public_key":"U","ttl_ſeconds":60}`,
	} {
		f.Add(s)
	}
	s, _ := newTestServer(f, false)
	f.Fuzz(func(t *testing.T, body string) {
		rec := do(t, s, "POST", "/api/v1/nats/creds", body, map[string]string{"Authorization": "Bearer token-alice"})
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if rec.Code == 200 {
			var req api.NATSCredsRequest
			if !strictly(body, &req, "public_key", "ttl_seconds") || req.TTLSeconds < 0 {
				t.Fatalf("issued for a malformed request %q", body)
			}
		}
	})
}

// fakeAudit serves two records: index 1 caused by alice, index 2 by bob.
type fakeAudit struct{ AuditService }

func (fakeAudit) Record(_ context.Context, index int64) (*audit.Record, error) {
	who := map[int64]string{1: "alice", 2: "bob"}[index]
	if who == "" {
		return nil, broker.ErrNotFound
	}
	return &audit.Record{Index: index, Actor: &audit.Actor{Issuer: "https://idp", Subject: who}}, nil
}

func (fakeAudit) Proof(_ context.Context, index int64) (json.RawMessage, error) {
	return json.RawMessage(`{"index":` + strconv.FormatInt(index, 10) + `}`), nil
}

func (fakeAudit) Inputs(_ context.Context, since time.Time, w io.Writer) error {
	_, err := io.WriteString(w, since.UTC().Format(time.RFC3339)+"\n")
	return err
}

// TestAuditProofAndInputsAccess: receipts only for one's own records
// (auditors: any), recorded inputs only for admins, `since` validated.
func TestAuditProofAndInputsAccess(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: fakeAudit{}, Policy: fakePolicy{},
		AdminGroups: []string{"sales"}, AuditorGroups: []string{"auditors"}, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	alice := map[string]string{"Authorization": "Bearer token-alice"}
	bob := map[string]string{"Authorization": "Bearer token-bob"} // tokenAuth puts everyone in sales
	tests := []struct {
		name, path string
		hdr        map[string]string
		status     int
		body       string
	}{
		{"own_record", "/api/v1/audit/proof?index=1", alice, 200, `"index":1`},
		{"others_record", "/api/v1/audit/proof?index=2", alice, 404, ""},
		{"unknown_record", "/api/v1/audit/proof?index=9", alice, 404, ""},
		{"no_index", "/api/v1/audit/proof", alice, 400, ""},
		{"bad_index", "/api/v1/audit/proof?index=x", alice, 400, ""},
		{"inputs_duration", "/api/v1/policy/inputs?since=24h", bob, 200, "2026-11-26T12:00:00Z"},
		{"inputs_time", "/api/v1/policy/inputs?since=2026-11-01T00:00:00Z", bob, 200, "2026-11-01T00:00:00Z"},
		{"inputs_bad_since", "/api/v1/policy/inputs?since=yesterday", bob, 400, ""},
		{"inputs_negative_since", "/api/v1/policy/inputs?since=-1h", bob, 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, s, "GET", tc.path, "", tc.hdr)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("GET %s = %d %s, want %d containing %q", tc.path, rec.Code, rec.Body, tc.status, tc.body)
			}
		})
	}
	// Outside the admin groups, recorded inputs (parameter values) are refused.
	s2, _ := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: fakeAudit{}, Policy: fakePolicy{},
		AdminGroups: []string{"security"}, AuditorGroups: []string{"auditors"},
	})
	if rec := do(t, s2, "GET", "/api/v1/policy/inputs", "", alice); rec.Code != http.StatusForbidden {
		t.Errorf("inputs for a non-admin = %d, want 403", rec.Code)
	}
}

func (fakeAudit) Evidence(_ context.Context, w io.Writer, from, to time.Time) error {
	_, err := io.WriteString(w, "PK "+from.Format(time.RFC3339)+" "+to.Format(time.RFC3339))
	return err
}

// TestAuditEvidenceParams: the evidence download takes dates or RFC 3339
// times, refuses anything else and backwards periods, and only auditors get
// it.
func TestAuditEvidenceParams(t *testing.T) {
	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: fakeAudit{}, Policy: fakePolicy{},
		AuditorGroups: []string{"sales"}, // tokenAuth puts everyone in sales
	})
	if err != nil {
		t.Fatal(err)
	}
	alice := map[string]string{"Authorization": "Bearer token-alice"}
	for _, tc := range []struct {
		name, query string
		status      int
		body        string
	}{
		{"dates", "from=2026-10-01&to=2026-11-01", 200, "PK 2026-10-01T00:00:00Z 2026-11-01T00:00:00Z"},
		{"times", "from=2026-10-01T08:00:00%2B02:00&to=2026-10-02T00:00:00Z", 200, "PK 2026-10-01T06:00:00Z 2026-10-02T00:00:00Z"},
		{"bad_from", "from=yesterday&to=2026-11-01", 400, "from must be a date"},
		{"missing_to", "from=2026-10-01", 400, "to must be a date"},
		{"backwards", "from=2026-11-01&to=2026-10-01", 400, "from must be before to"},
		{"empty", "from=2026-11-01&to=2026-11-01", 400, "from must be before to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, s, "GET", "/api/v1/audit/evidence?"+tc.query, "", alice)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) {
				t.Errorf("GET evidence?%s = %d %s, want %d containing %q", tc.query, rec.Code, rec.Body, tc.status, tc.body)
			}
			if tc.status == 200 && rec.Header().Get("Content-Type") != "application/zip" {
				t.Errorf("content type %q", rec.Header().Get("Content-Type"))
			}
		})
	}
	other, _ := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{}, Audit: fakeAudit{}, Policy: fakePolicy{}, AuditorGroups: []string{"auditors"},
	})
	if rec := do(t, other, "GET", "/api/v1/audit/evidence?from=2026-10-01&to=2026-11-01", "", alice); rec.Code != http.StatusForbidden {
		t.Errorf("evidence for a non-auditor = %d, want 403", rec.Code)
	}
}

type fakePolicy struct{ PolicyService }

// mustSession starts a dashboard session for p.
func mustSession(t *testing.T, s *Server, p identity.Principal, expires time.Time) *session {
	t.Helper()
	sess, err := s.sessions.create(t.Context(), p, expires)
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

// TestSessionsSharedAcrossInstances: two instances over one session store
// (the replicas behind one address) know each other's sessions, a sign-out
// on one ends the session on both, and the store never holds the cookie.
func TestSessionsSharedAcrossInstances(t *testing.T) {
	store := &recordingSessions{memSessions: newMemSessions()}
	a, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Issuances: fakeIssuances{}, Sessions: store})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Issuances: fakeIssuances{}, Sessions: store})
	if err != nil {
		t.Fatal(err)
	}
	sess := mustSession(t, a, identity.Principal{Issuer: "https://idp", Subject: "alice"}, time.Now().Add(time.Hour))
	cookie := map[string]string{"Cookie": sessionCookie + "=" + sess.id, "Content-Type": "application/x-www-form-urlencoded"}
	if rec := do(t, b, "GET", "/api/v1/whoami", "", cookie); rec.Code != 200 {
		t.Fatalf("whoami on the other instance = %d", rec.Code)
	}
	for _, k := range store.keys {
		if strings.Contains(k, sess.id) {
			t.Error("the store holds the session cookie itself")
		}
	}
	if rec := do(t, b, "POST", "/logout", url.Values{"csrf_token": {sess.csrf}}.Encode(), cookie); rec.Code != http.StatusSeeOther {
		t.Fatalf("logout on the other instance = %d", rec.Code)
	}
	if rec := do(t, a, "GET", "/api/v1/whoami", "", cookie); rec.Code != 401 {
		t.Errorf("whoami on the first instance after the sign-out = %d, want 401", rec.Code)
	}
}

// recordingSessions remembers the keys it was given.
type recordingSessions struct {
	*memSessions
	keys []string
}

func (r *recordingSessions) PutSession(ctx context.Context, s Session, now time.Time) error {
	r.keys = append(r.keys, s.Key)
	return r.memSessions.PutSession(ctx, s, now)
}

// TestRevokeAllWithoutSQLLogins: a broker where no database issues SQL
// logins still offboards (sign-in cutoff, NATS credentials, dashboard
// sessions) through the broker itself.
func TestRevokeAllWithoutSQLLogins(t *testing.T) {
	fb := &fakeBroker{}
	s, err := New(Config{Broker: fb, Auth: tokenAuth{}, Issuances: fakeIssuances{}, AdminGroups: []string{"sales"}})
	if err != nil {
		t.Fatal(err)
	}
	alice := identity.Principal{Issuer: "https://idp", Subject: "alice"}
	sess := mustSession(t, s, alice, time.Now().Add(time.Hour))
	rec := do(t, s, "POST", api.Prefix+"/leases/revoke-all", `{"principal":"https://idp alice"}`, map[string]string{"Authorization": "Bearer token-dana"})
	var got api.RevokeAllResult
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 || len(fb.offboarded) != 1 || got.SessionsEnded != 1 || len(got.NATSRevoked) != 1 {
		t.Fatalf("revoke-all = %d %s (offboarded %v)", rec.Code, rec.Body, fb.offboarded)
	}
	if w := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id}); w.Code != 401 {
		t.Errorf("alice's session after revoke-all: whoami = %d, want 401", w.Code)
	}
	// A revoke-all that could not finish (the NATS push is retried in the
	// background) still ends the sessions, and says to repeat it.
	fb.pushFails = true
	sess = mustSession(t, s, alice, time.Now().Add(time.Hour))
	rec = do(t, s, "POST", api.Prefix+"/leases/revoke-all", `{"principal":"https://idp alice"}`, map[string]string{"Authorization": "Bearer token-dana"})
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("revoke-all with a failed push = %d %s, want 503", rec.Code, rec.Body)
	}
	if w := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id}); w.Code != 401 {
		t.Errorf("alice's session after a partly failed revoke-all: whoami = %d, want 401", w.Code)
	}
}

// countingSessions counts the calls that end a principal's sessions.
type countingSessions struct {
	*memSessions
	principalDeletes []string
}

func (c *countingSessions) DeletePrincipalSessions(ctx context.Context, principalID string) (int64, error) {
	c.principalDeletes = append(c.principalDeletes, principalID)
	return c.memSessions.DeletePrincipalSessions(ctx, principalID)
}

// TestRevokeAllRefusesBadPrincipal: a revoke-all of something that is not
// a principal answers invalid_request and changes nothing: no session of
// that name is ended either.
func TestRevokeAllRefusesBadPrincipal(t *testing.T) {
	for _, withSQL := range []bool{false, true} {
		store := &countingSessions{memSessions: newMemSessions()}
		cfg := Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Issuances: fakeIssuances{}, AdminGroups: []string{"sales"}, Sessions: store}
		if withSQL {
			cfg.SQLLeases = &fakeSQLLeases{leases: map[string]broker.Lease{}, failure: fmt.Errorf("%w: not a principal", broker.ErrInvalid)}
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		odd := identity.Principal{Issuer: "idp", Subject: "alice"}
		sess := mustSession(t, s, odd, time.Now().Add(time.Hour))
		rec := do(t, s, "POST", api.Prefix+"/leases/revoke-all", `{"principal":"idp alice"}`, map[string]string{"Authorization": "Bearer token-dana"})
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"invalid_request"`) {
			t.Errorf("SQL %v: revoke-all of a bad principal = %d %s, want 400 invalid_request", withSQL, rec.Code, rec.Body)
		}
		if len(store.principalDeletes) != 0 {
			t.Errorf("SQL %v: a refused revoke-all ended the sessions of %q", withSQL, store.principalDeletes)
		}
		if w := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id}); w.Code != 200 {
			t.Errorf("SQL %v: the session after a refused revoke-all: whoami = %d, want 200", withSQL, w.Code)
		}
	}
}

// TestMetricsElsewhere: with MetricsElsewhere, /metrics (unauthenticated,
// naming every route called) is not served on the API's port but by
// MetricsHandler; without it, it stays on the API's port.
func TestMetricsElsewhere(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Registry: reg, MetricsElsewhere: true})
	if err != nil {
		t.Fatal(err)
	}
	do(t, s, "GET", "/api/v1/routes", "", map[string]string{"Authorization": "Bearer token-alice"})
	if rec := do(t, s, "GET", "/metrics", "", nil); rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "sqlgate_http_requests_total") {
		t.Errorf("GET /metrics on the API's port = %d, want 404 without metrics", rec.Code)
	}
	rec := do(t, MetricsHandler(reg), "GET", "/metrics", "", nil)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `sqlgate_http_requests_total{method="GET",pattern="GET /api/v1/routes",status="200"} 1`) {
		t.Errorf("MetricsHandler GET /metrics = %d:\n%s", rec.Code, rec.Body)
	}
	if rec := do(t, MetricsHandler(reg), "GET", "/api/v1/routes", "", nil); rec.Code != http.StatusNotFound {
		t.Errorf("MetricsHandler serves another path: %d", rec.Code)
	}
	same, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(t, same, "GET", "/metrics", "", nil); rec.Code != 200 {
		t.Errorf("GET /metrics without MetricsElsewhere = %d, want 200 (compatibility)", rec.Code)
	}
}

// partialLeases answers revoke-all with a result and an error that wraps
// broker.ErrInvalid: a partial failure after the cutoff was recorded.
type partialLeases struct{ *fakeSQLLeases }

func (p partialLeases) RevokeAll(ctx context.Context, actor identity.Principal, principalID, reason string) (*broker.RevokeAllResult, error) {
	res, _ := p.fakeSQLLeases.RevokeAll(ctx, actor, principalID, reason)
	return res, fmt.Errorf("lease L1: %w: login name is not one sqlgate generates", broker.ErrInvalid)
}

// TestRevokeAllPartialFailureEndsSessions: a revoke-all that did its work
// but reports a failure that wraps broker.ErrInvalid still ends the
// principal's sessions; only a refusal before anything was done leaves
// them.
func TestRevokeAllPartialFailureEndsSessions(t *testing.T) {
	store := &countingSessions{memSessions: newMemSessions()}
	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: tokenAuth{}, Issuances: fakeIssuances{}, AdminGroups: []string{"sales"}, Sessions: store,
		SQLLeases: partialLeases{&fakeSQLLeases{leases: map[string]broker.Lease{}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	do(t, s, "POST", api.Prefix+"/leases/revoke-all", `{"principal":"https://idp alice"}`, map[string]string{"Authorization": "Bearer token-dana"})
	if len(store.principalDeletes) != 1 || store.principalDeletes[0] != "https://idp alice" {
		t.Errorf("sessions ended after a partial failure: %q, want those of https://idp alice", store.principalDeletes)
	}
}
