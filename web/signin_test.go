package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/web/api"
)

// cutoffs is a SignInChecker with the broker's rule: a sign-in dated (by
// auth_time, else iat) at or before the principal's cutoff is revoked.
type cutoffs struct {
	mu    sync.Mutex
	at    map[string]time.Time
	down  bool // the cutoff store cannot be read
	calls int  // how many times the store was asked
}

func (c *cutoffs) set(principalID string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at == nil {
		c.at = map[string]time.Time{}
	}
	c.at[principalID] = t
}

func (c *cutoffs) CheckSignIn(_ context.Context, p identity.Principal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.down {
		return fmt.Errorf("sign-in cutoffs: %w", errors.Join(broker.ErrUnavailable, errors.New("control database down")))
	}
	cut, ok := c.at[p.ID()]
	if !ok {
		return nil
	}
	signedIn := p.AuthTime
	if signedIn.IsZero() {
		signedIn = p.IssuedAt
	}
	if signedIn.IsZero() || !signedIn.After(cut) {
		return &broker.SignInRevokedError{Cutoff: cut}
	}
	return nil
}

// datedAuth accepts the tokens it holds, each naming a dated sign-in.
type datedAuth map[string]identity.Principal

func (a datedAuth) Verify(_ context.Context, raw string) (identity.Principal, error) {
	p, ok := a[raw]
	if !ok {
		return p, identity.Unauthenticated("bad token", nil)
	}
	return p, nil
}

// ssoLogin completes every dashboard sign-in as its principal, as an
// identity provider does that still has the user's own session.
type ssoLogin struct{ p identity.Principal }

func (ssoLogin) Start(w http.ResponseWriter, r *http.Request, _ string) error {
	http.Redirect(w, r, "https://idp/authorize", http.StatusFound)
	return nil
}

func (l ssoLogin) Callback(http.ResponseWriter, *http.Request) (identity.Principal, string, error) {
	return l.p, "/", nil
}

// errorBody decodes a JSON error answer.
func errorBody(t *testing.T, rec *httptest.ResponseRecorder) api.Error {
	t.Helper()
	var body api.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %q: %v", rec.Body, err)
	}
	return body.Error
}

// TestRevokedSignInRefused: after a revoke-all of alice (her sign-in
// cutoff), her bearer tokens and dashboard sessions from before it are
// refused on every endpoint with a 401 telling her to sign in again, also
// a session that the revoke-all did not end (it was being created at that
// moment), which is then ended; a sign-in after the cutoff works.
func TestRevokedSignInRefused(t *testing.T) {
	cut := time.Now().Truncate(time.Second)
	signedIn := func(sub string, at time.Time) identity.Principal {
		return identity.Principal{Issuer: "https://idp", Subject: sub, Groups: []string{"admins", "auditors"}, IssuedAt: at, Expiry: cut.Add(time.Hour)}
	}
	auth := datedAuth{
		"old":       signedIn("alice", cut.Add(-time.Minute)),
		"refreshed": {Issuer: "https://idp", Subject: "alice", Groups: []string{"admins"}, AuthTime: cut.Add(-time.Hour), IssuedAt: cut.Add(time.Minute)},
		"new":       signedIn("alice", cut.Add(time.Minute)),
		"dana":      signedIn("dana", cut.Add(-time.Hour)),
	}
	checks := &cutoffs{}
	checks.set("https://idp alice", cut)
	s, err := New(Config{
		Broker: &fakeBroker{}, Auth: auth, Issuances: fakeIssuances{}, SignIns: checks,
		AdminGroups: []string{"admins"}, AuditorGroups: []string{"auditors"}, Audit: fakeAudit{},
	})
	if err != nil {
		t.Fatal(err)
	}
	endpoints := []struct{ method, path, body string }{
		{"GET", "/api/v1/whoami", ""},
		{"GET", "/api/v1/leases", ""},
		{"POST", "/api/v1/leases/revoke-all", `{"principal":"https://idp bob"}`},
		{"GET", "/api/v1/audit/checkpoint", ""},
		{"GET", "/api/v1/audit/export", ""},
	}
	for _, token := range []string{"old", "refreshed"} {
		for _, e := range endpoints {
			rec := do(t, s, e.method, e.path, e.body, map[string]string{"Authorization": "Bearer " + token})
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("%s %s with the %s token = %d %s, want 401", e.method, e.path, token, rec.Code, rec.Body)
				continue
			}
			if body := errorBody(t, rec); body.Code != "unauthenticated" || !strings.Contains(body.Message, "revoked") || !strings.Contains(body.Message, "sign in again") {
				t.Errorf("%s %s with the %s token: %+v, want the revocation and to sign in again", e.method, e.path, token, body)
			}
		}
	}
	for _, token := range []string{"new", "dana"} {
		if rec := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Authorization": "Bearer " + token}); rec.Code != http.StatusOK {
			t.Errorf("whoami with the %s token = %d %s, want 200", token, rec.Code, rec.Body)
		}
	}

	// A session of the old sign-in that the revoke-all missed.
	old := mustSession(t, s, auth["old"], cut.Add(time.Hour))
	cookie := map[string]string{"Cookie": sessionCookie + "=" + old.id}
	if rec := do(t, s, "GET", "/api/v1/whoami", "", cookie); rec.Code != http.StatusUnauthorized || !strings.Contains(errorBody(t, rec).Message, "sign in again") {
		t.Errorf("whoami with a session of the old sign-in = %d %s, want 401", rec.Code, rec.Body)
	}
	if _, found, _ := s.sessions.backend.Session(t.Context(), sessionKey(old.id)); found {
		t.Error("the session of the revoked sign-in was not ended")
	}
	for _, path := range []string{"/", "/audit", "/policy"} {
		old := mustSession(t, s, auth["old"], cut.Add(time.Hour))
		rec := do(t, s, "GET", path, "", map[string]string{"Cookie": sessionCookie + "=" + old.id})
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "sign in again") || strings.Contains(rec.Body.String(), "Sign out") {
			t.Errorf("GET %s with a session of the old sign-in = %d, want 401 telling to sign in again, signed out", path, rec.Code)
		}
	}
	fresh := mustSession(t, s, auth["new"], cut.Add(time.Hour))
	if rec := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Cookie": sessionCookie + "=" + fresh.id}); rec.Code != http.StatusOK {
		t.Errorf("whoami with a session of the new sign-in = %d %s", rec.Code, rec.Body)
	}
}

// TestDashboardSignInAfterRevokeAll: an identity provider that signs alice
// in from its own session (auth_time before her revoke-all) gets her no
// dashboard session; a new sign-in does.
func TestDashboardSignInAfterRevokeAll(t *testing.T) {
	cut := time.Now().Truncate(time.Second)
	checks := &cutoffs{}
	checks.set("https://idp alice", cut)
	for _, tc := range []struct {
		name     string
		authTime time.Time
		status   int
	}{
		{"sso_session_from_before", cut.Add(-time.Hour), http.StatusUnauthorized},
		{"new_sign_in", cut.Add(time.Second), http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := identity.Principal{Issuer: "https://idp", Subject: "alice", AuthTime: tc.authTime, IssuedAt: cut.Add(time.Minute), Expiry: cut.Add(time.Hour)}
			s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, SignIns: checks, Login: ssoLogin{p: p}})
			if err != nil {
				t.Fatal(err)
			}
			rec := do(t, s, "GET", "/auth/callback?state=x&code=y", "", nil)
			var cookie string
			for _, c := range rec.Result().Cookies() {
				if c.Name == sessionCookie && c.Value != "" {
					cookie = c.Value
				}
			}
			if rec.Code != tc.status || (cookie != "") != (tc.status == http.StatusSeeOther) {
				t.Fatalf("callback = %d (session cookie %v), want %d", rec.Code, cookie != "", tc.status)
			}
			if tc.status == http.StatusUnauthorized && !strings.Contains(rec.Body.String(), "sign in again") {
				t.Errorf("callback page does not tell to sign in again: %s", rec.Body)
			}
			// Its sign-in button asks the provider for a new
			// authentication, not the session that was refused.
			if tc.status == http.StatusUnauthorized && !strings.Contains(rec.Body.String(), `href="/login?fresh=1"`) {
				t.Errorf("callback page's sign-in does not ask for a fresh sign-in: %s", rec.Body)
			}
		})
	}
}

// TestSignInCheckUnavailable: when the sign-in cutoffs cannot be read,
// bearer requests and sessions are refused as unavailable (503), not let
// through and not told to sign in again; the session is kept.
func TestSignInCheckUnavailable(t *testing.T) {
	checks := &cutoffs{down: true}
	alice := identity.Principal{Issuer: "https://idp", Subject: "alice", IssuedAt: time.Now()}
	s, err := New(Config{Broker: &fakeBroker{}, Auth: datedAuth{"t": alice}, SignIns: checks})
	if err != nil {
		t.Fatal(err)
	}
	sess := mustSession(t, s, alice, time.Now().Add(time.Hour))
	for name, hdr := range map[string]map[string]string{
		"bearer":  {"Authorization": "Bearer t"},
		"session": {"Cookie": sessionCookie + "=" + sess.id},
	} {
		rec := do(t, s, "GET", "/api/v1/whoami", "", hdr)
		if rec.Code != http.StatusServiceUnavailable || errorBody(t, rec).Code != "unavailable" {
			t.Errorf("%s: whoami with the cutoff store down = %d %s, want 503 unavailable", name, rec.Code, rec.Body)
		}
	}
	if _, found, _ := s.sessions.backend.Session(t.Context(), sessionKey(sess.id)); !found {
		t.Error("a session was ended because the cutoff store could not be read")
	}
	checks.down = false
	if rec := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id}); rec.Code != http.StatusOK {
		t.Errorf("whoami once the store is back = %d", rec.Code)
	}
}

// checkingBroker is a broker that checks sign-ins itself (like
// broker.Service).
type checkingBroker struct {
	fakeBroker
	*cutoffs
}

// TestSignInCheckFromBroker: without Config.SignIns the broker's own
// CheckSignIn is asked.
func TestSignInCheckFromBroker(t *testing.T) {
	checks := &cutoffs{}
	checks.set("https://idp alice", time.Now())
	s, err := New(Config{Broker: &checkingBroker{cutoffs: checks}, Auth: tokenAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	if rec := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Authorization": "Bearer token-alice"}); rec.Code != http.StatusUnauthorized {
		t.Errorf("whoami of a revoked sign-in = %d, want 401", rec.Code)
	}
	if rec := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Authorization": "Bearer token-bob"}); rec.Code != http.StatusOK {
		t.Errorf("whoami of another principal = %d, want 200", rec.Code)
	}
}

// outageAuth refuses every token with the given oidc reason.
type outageAuth string

func (a outageAuth) Verify(context.Context, string) (identity.Principal, error) {
	return identity.Principal{}, identity.Unauthenticated(string(a), errors.New("status 429 Too Many Requests"))
}

// TestIdentityProviderOutage: a token refused because the identity
// provider cannot be reached (key set, Graph) is answered 503 "try again",
// not 401 "token invalid"; a bad token is still 401.
func TestIdentityProviderOutage(t *testing.T) {
	for _, tc := range []struct {
		reason string
		status int
		code   string
	}{
		{oidc.ReasonKeysUnavailable, http.StatusServiceUnavailable, "unavailable"},
		{oidc.ReasonGroupsLookupFailed, http.StatusServiceUnavailable, "unavailable"},
		{oidc.ReasonInvalidSignature, http.StatusUnauthorized, "unauthenticated"},
		{oidc.ReasonExpired, http.StatusUnauthorized, "unauthenticated"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			s, err := New(Config{Broker: &fakeBroker{}, Auth: outageAuth(tc.reason)})
			if err != nil {
				t.Fatal(err)
			}
			rec := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Authorization": "Bearer x.y.z"})
			body := errorBody(t, rec)
			if rec.Code != tc.status || body.Code != tc.code {
				t.Errorf("whoami = %d %+v, want %d %s", rec.Code, body, tc.status, tc.code)
			}
			if tc.status == http.StatusServiceUnavailable && !strings.Contains(body.Message, "identity provider unreachable") {
				t.Errorf("message %q does not say the identity provider is unreachable", body.Message)
			}
			if strings.Contains(body.Message, "429") {
				t.Errorf("message %q shows the internal detail", body.Message)
			}
		})
	}
}

// auditingBroker checks sign-ins itself before issuing, as broker.Service
// does, and keeps the refusals it would audit (decision records).
type auditingBroker struct {
	fakeBroker
	checks  *cutoffs
	refused []string
}

func (b *auditingBroker) IssueNATS(ctx context.Context, req broker.NATSRequest) (*broker.NATSCredential, error) {
	if err := b.checks.CheckSignIn(ctx, req.Principal); err != nil {
		b.refused = append(b.refused, "nats issue "+req.Principal.ID())
		return nil, err
	}
	return b.fakeBroker.IssueNATS(ctx, req)
}

// auditingLeases is auditingBroker for SQL credentials (broker.Leases).
type auditingLeases struct {
	*fakeSQLLeases
	checks  *cutoffs
	refused []string
}

func (l *auditingLeases) IssueSQL(ctx context.Context, req broker.SQLCredRequest) (*broker.SQLCredential, error) {
	if err := l.checks.CheckSignIn(ctx, req.Principal); err != nil {
		l.refused = append(l.refused, "sql issue "+req.Principal.ID())
		return nil, err
	}
	return l.fakeSQLLeases.IssueSQL(ctx, req)
}

func (l *auditingLeases) RenewLease(ctx context.Context, actor identity.Principal, id string, ttl time.Duration) (*broker.Renewal, error) {
	if err := l.checks.CheckSignIn(ctx, actor); err != nil {
		l.refused = append(l.refused, "sql renew "+actor.ID())
		return nil, err
	}
	return l.fakeSQLLeases.RenewLease(ctx, actor, id, ttl)
}

// TestCredentialRefusalAudited: a revoked sign-in asking for credentials
// (NATS, SQL, a lease renewal) is refused by the broker, which audits the
// refusal, not before it by the web layer, which would leave no record;
// her dashboard session is then ended. Her other requests are still
// refused by the web layer.
func TestCredentialRefusalAudited(t *testing.T) {
	cut := time.Now().Truncate(time.Second)
	old := identity.Principal{Issuer: "https://idp", Subject: "alice", IssuedAt: cut.Add(-time.Minute), Expiry: cut.Add(time.Hour)}
	checks := &cutoffs{}
	checks.set(old.ID(), cut)
	b := &auditingBroker{checks: checks}
	l := &auditingLeases{fakeSQLLeases: &fakeSQLLeases{leases: map[string]broker.Lease{}}, checks: checks}
	s, err := New(Config{Broker: b, Auth: datedAuth{"old": old}, SignIns: checks, SQLLeases: l})
	if err != nil {
		t.Fatal(err)
	}
	endpoints := []struct{ path, body, record string }{
		{"/api/v1/nats/creds", `{"public_key":"UALICE"}`, "nats issue "},
		{"/api/v1/sql/creds", `{"database":"sales","role":"reader"}`, "sql issue "},
		{"/api/v1/leases/0190f0b8-0000-7000-8000-000000000001/renew", "", "sql renew "},
	}
	for _, viaSession := range []bool{false, true} {
		for _, e := range endpoints {
			// A session of the old sign-in that the revoke-all missed
			// (it was being created at that moment).
			sess := mustSession(t, s, old, cut.Add(time.Hour))
			auth := map[string]string{"Authorization": "Bearer old"}
			if viaSession {
				auth = map[string]string{"Cookie": sessionCookie + "=" + sess.id, csrfHeader: sess.csrf}
			}
			b.refused, l.refused = nil, nil
			rec := do(t, s, "POST", e.path, e.body, auth)
			if rec.Code != http.StatusUnauthorized || !strings.Contains(errorBody(t, rec).Message, "sign in again") {
				t.Errorf("POST %s of the revoked sign-in (session %v) = %d %s, want 401 telling to sign in again", e.path, viaSession, rec.Code, rec.Body)
			}
			if got := append(b.refused, l.refused...); len(got) != 1 || got[0] != e.record+old.ID() {
				t.Errorf("POST %s (session %v): refusals audited by the broker = %q, want one", e.path, viaSession, got)
			}
			if len(l.issued) != 0 {
				t.Errorf("POST %s issued %v", e.path, l.issued)
			}
			if _, found, _ := s.sessions.backend.Session(t.Context(), sessionKey(sess.id)); viaSession && found {
				t.Errorf("POST %s: the session of the revoked sign-in was not ended", e.path)
			}
		}
	}
	b.refused = nil
	if rec := do(t, s, "GET", "/api/v1/leases", "", map[string]string{"Authorization": "Bearer old"}); rec.Code != http.StatusUnauthorized || len(b.refused) != 0 {
		t.Errorf("GET /api/v1/leases of the revoked sign-in = %d (broker asked: %v), want 401 from the web layer", rec.Code, b.refused)
	}
}

// TestLogoutWithoutCutoffCheck: signing out ends the session and clears its
// cookie whatever the sign-in cutoff says, also when it was revoked or
// cannot be read; a sign-out without the CSRF token changes nothing.
func TestLogoutWithoutCutoffCheck(t *testing.T) {
	cut := time.Now().Truncate(time.Second)
	alice := identity.Principal{Issuer: "https://idp", Subject: "alice", IssuedAt: cut.Add(-time.Minute), Expiry: cut.Add(time.Hour)}
	for _, tc := range []struct {
		name string
		set  func(*cutoffs)
	}{
		{"revoked", func(c *cutoffs) { c.set(alice.ID(), cut) }},
		{"cutoff_store_down", func(c *cutoffs) { c.down = true }},
		{"not_revoked", func(*cutoffs) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checks := &cutoffs{}
			tc.set(checks)
			s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, SignIns: checks})
			if err != nil {
				t.Fatal(err)
			}
			sess := mustSession(t, s, alice, cut.Add(time.Hour))
			hdr := map[string]string{"Cookie": sessionCookie + "=" + sess.id, "Content-Type": "application/x-www-form-urlencoded"}
			// Without the CSRF token: refused, the cookie kept (its error
			// page ends a revoked session all the same).
			if rec := do(t, s, "POST", "/logout", csrfField+"=wrong", hdr); rec.Code != http.StatusForbidden || cookieCleared(rec) {
				t.Fatalf("logout without the CSRF token = %d (cookie cleared %v), want 403 and the cookie kept", rec.Code, cookieCleared(rec))
			}
			if tc.name != "revoked" {
				if _, found, _ := s.sessions.backend.Session(t.Context(), sessionKey(sess.id)); !found {
					t.Fatal("logout without the CSRF token ended the session")
				}
			} else {
				sess = mustSession(t, s, alice, cut.Add(time.Hour))
				hdr["Cookie"] = sessionCookie + "=" + sess.id
			}
			rec := do(t, s, "POST", "/logout", csrfField+"="+sess.csrf, hdr)
			if rec.Code != http.StatusSeeOther || !cookieCleared(rec) {
				t.Errorf("logout = %d (cookie cleared %v), want 303 clearing the cookie: %s", rec.Code, cookieCleared(rec), rec.Body)
			}
			if _, found, _ := s.sessions.backend.Session(t.Context(), sessionKey(sess.id)); found {
				t.Error("the session outlived the sign-out")
			}
		})
	}
}

// cookieCleared reports whether the response removes the session cookie.
func cookieCleared(rec *httptest.ResponseRecorder) bool {
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionCookie && c.MaxAge < 0 {
			return true
		}
	}
	return false
}

// TestErrorPageAsksCutoffsOnce: the error page of a request whose session
// could not be checked (the cutoff store is down) is signed out and does
// not ask the store a second time.
func TestErrorPageAsksCutoffsOnce(t *testing.T) {
	checks := &cutoffs{down: true}
	alice := identity.Principal{Issuer: "https://idp", Subject: "alice", IssuedAt: time.Now()}
	s, err := New(Config{Broker: &fakeBroker{}, Auth: tokenAuth{}, SignIns: checks})
	if err != nil {
		t.Fatal(err)
	}
	sess := mustSession(t, s, alice, time.Now().Add(time.Hour))
	rec := do(t, s, "GET", "/", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id})
	if rec.Code != http.StatusServiceUnavailable || strings.Contains(rec.Body.String(), "Sign out") {
		t.Errorf("dashboard with the cutoff store down = %d, want 503, signed out: %s", rec.Code, rec.Body)
	}
	if checks.calls != 1 {
		t.Errorf("the cutoff store was asked %d times, want once", checks.calls)
	}
}
