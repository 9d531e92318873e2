package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web/api"
)

var (
	sqlAlice = identity.Principal{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com", Groups: []string{"sales"}}
	sqlBob   = identity.Principal{Issuer: "https://idp.test", Subject: "bob", Email: "bob@example.com", Groups: []string{"support"}}
	sqlAdmin = identity.Principal{Issuer: "https://idp.test", Subject: "dana", Email: "dana@example.com", Groups: []string{"admins"}}
)

// sqlTestAuth accepts the tokens "alice", "bob" and "dana".
type sqlTestAuth struct{}

func (sqlTestAuth) Verify(_ context.Context, tok string) (identity.Principal, error) {
	for _, p := range []identity.Principal{sqlAlice, sqlBob, sqlAdmin} {
		if tok == p.Subject {
			return p, nil
		}
	}
	return identity.Principal{}, identity.Unauthenticated("unknown test token", nil)
}

// sqlTestBroker is a Broker that is never called by these tests.
type sqlTestBroker struct{}

func (sqlTestBroker) AllowedRoutes(context.Context, identity.Principal) ([]*route.Route, policy.Decision, error) {
	return nil, policy.Decision{}, errors.New("not used")
}

func (sqlTestBroker) IssueNATS(context.Context, broker.NATSRequest) (*broker.NATSCredential, error) {
	return nil, errors.New("not used")
}

func (sqlTestBroker) RevokeNATS(context.Context, identity.Principal, []string, string) error {
	return errors.New("not used")
}

// RevokeAll is not used: with SQL leases configured, revoke-all goes through
// them.
func (sqlTestBroker) RevokeAll(context.Context, identity.Principal, string, string) (*broker.RevokeAllResult, error) {
	return nil, errors.New("not used")
}

// fakeSQLLeases keeps leases in memory and returns scripted errors.
type fakeSQLLeases struct {
	leases  map[string]broker.Lease
	issued  []broker.SQLCredRequest
	failure error // returned by the next call, then cleared
	pending bool  // RevokeLease leaves the lease revoking
	revoked []string
	reasons []string
	clients []policy.Client // the client in the context of each renew and revoke
	reads   pageReads
}

var _ SQLLeases = (*fakeSQLLeases)(nil)

func (f *fakeSQLLeases) fail() error {
	err := f.failure
	f.failure = nil
	return err
}

func (f *fakeSQLLeases) IssueSQL(_ context.Context, req broker.SQLCredRequest) (*broker.SQLCredential, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	f.issued = append(f.issued, req)
	id := fmt.Sprintf("0190f0b8-0000-7000-8000-%012d", len(f.leases)+1)
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	l := broker.Lease{
		ID: id, Principal: req.Principal, Database: req.Database, Role: req.Role, Username: "sg_alice_abcdefghij",
		State: broker.LeaseActive, IssuedAt: now, ExpiresAt: now.Add(req.TTL), MaxExpiry: now.Add(time.Hour),
	}
	f.leases[id] = l
	return &broker.SQLCredential{
		LeaseID: id, Database: l.Database, Role: l.Role, Username: l.Username, Password: "Secret123secret123secret123ABCdef",
		DSN: "postgres://" + l.Username + "@db:5432/orders", ExpiresAt: l.ExpiresAt, MaxExpiry: l.MaxExpiry, Capped: "requested 3h0m0s exceeds the maximum",
	}, nil
}

func (f *fakeSQLLeases) RenewLease(ctx context.Context, actor identity.Principal, id string, ttl time.Duration) (*broker.Renewal, error) {
	f.clients = append(f.clients, broker.ClientFrom(ctx))
	if err := f.fail(); err != nil {
		return nil, err
	}
	l, ok := f.leases[id]
	if !ok || l.Principal.ID() != actor.ID() {
		return nil, broker.ErrNotFound
	}
	l.ExpiresAt = l.ExpiresAt.Add(ttl)
	f.leases[id] = l
	return &broker.Renewal{Lease: l, Capped: "capped", Decision: policy.Decision{ID: "dec-1"}}, nil
}

func (f *fakeSQLLeases) RevokeLease(ctx context.Context, _ identity.Principal, id, reason string) (*broker.Lease, error) {
	f.clients = append(f.clients, broker.ClientFrom(ctx))
	if err := f.fail(); err != nil {
		return nil, err
	}
	l := f.leases[id]
	l.State = broker.LeaseRevoked
	if f.pending {
		l.State = broker.LeaseRevoking
		l.LastError = "sql error 42501: must be a member of the role whose process is being terminated or member of pg_signal_backend"
	}
	f.leases[id] = l
	f.revoked = append(f.revoked, id)
	f.reasons = append(f.reasons, reason)
	return &l, nil
}

func (f *fakeSQLLeases) RevokeAll(_ context.Context, _ identity.Principal, principalID, reason string) (*broker.RevokeAllResult, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	res := &broker.RevokeAllResult{PrincipalID: principalID, NATSKeys: []string{"UKEY"}}
	for id, l := range f.leases {
		if l.Principal.ID() == principalID {
			l.State = broker.LeaseRevoked
			f.leases[id] = l
			res.Leases = append(res.Leases, l)
		}
	}
	f.reasons = append(f.reasons, reason)
	return res, nil
}

func (f *fakeSQLLeases) LeasesPage(_ context.Context, principalID string, page broker.ListPage) ([]broker.Lease, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	var held []broker.Lease
	for _, l := range f.leases {
		if l.Principal.ID() == principalID {
			held = append(held, l)
		}
	}
	return fakePage(held, page, &f.reads,
		func(l broker.Lease) broker.ListCursor {
			return broker.ListCursor{IssuedAt: l.IssuedAt.UnixNano(), Key: l.ID}
		},
		func(l broker.Lease) bool { return l.State == broker.LeaseActive && l.ExpiresAt.After(page.At) })
}

func (f *fakeSQLLeases) Lease(_ context.Context, id string) (broker.Lease, error) {
	if err := f.fail(); err != nil {
		return broker.Lease{}, err
	}
	l, ok := f.leases[id]
	if !ok {
		return broker.Lease{}, broker.ErrNotFound
	}
	return l, nil
}

func newSQLTestServer(t *testing.T) (*Server, *fakeSQLLeases) {
	t.Helper()
	f := &fakeSQLLeases{leases: map[string]broker.Lease{}}
	s, err := New(Config{
		Broker: sqlTestBroker{}, Auth: sqlTestAuth{}, AdminGroups: []string{"admins"}, SQLLeases: f,
		Now: func() time.Time { return time.Date(2026, 11, 27, 10, 5, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, f
}

func sqlDo(t *testing.T, s *Server, method, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w
}

func apiError(t *testing.T, w *httptest.ResponseRecorder) api.Error {
	t.Helper()
	var e api.ErrorResponse
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("error body %q: %v", w.Body, err)
	}
	return e.Error
}

func TestSQLCredsEndpoint(t *testing.T) {
	s, f := newSQLTestServer(t)
	const path = api.Prefix + "/sql/creds"
	w := sqlDo(t, s, "POST", path, "alice", `{"database":"orders","role":"reader","ttl_seconds":600}`)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var cred api.SQLCreds
	if err := json.Unmarshal(w.Body.Bytes(), &cred); err != nil {
		t.Fatal(err)
	}
	if cred.Password == "" || cred.Username != "sg_alice_abcdefghij" || cred.Capped == "" || cred.DSN == "" || cred.LeaseID == "" {
		t.Errorf("response = %+v", cred)
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Error("a response with a password may be cached")
	}
	if got := f.issued[0]; got.Principal.ID() != sqlAlice.ID() || got.TTL != 10*time.Minute || got.Database != "orders" || got.Role != "reader" {
		t.Errorf("broker request = %+v", got)
	}

	tests := []struct {
		name, token, body string
		failure           error
		status            int
		code              string
	}{
		{"unauthenticated", "", `{"database":"orders","role":"reader"}`, nil, 401, "unauthenticated"},
		{"unknown_field", "alice", `{"database":"orders","role":"reader","admin":true}`, nil, 400, "invalid_request"},
		{"trailing_data", "alice", `{"database":"orders","role":"reader"} {}`, nil, 400, "invalid_request"},
		{"missing_role", "alice", `{"database":"orders"}`, nil, 400, "invalid_request"},
		{"negative_ttl", "alice", `{"database":"orders","role":"reader","ttl_seconds":-1}`, nil, 400, "invalid_request"},
		{"denied", "bob", `{"database":"orders","role":"writer"}`, &broker.DeniedError{Reasons: []string{"role writer is not granted"}}, 403, "forbidden"},
		{"invalid_role", "alice", `{"database":"orders","role":"x]; DROP LOGIN sa"}`, fmt.Errorf("%w: role must be a plain name", broker.ErrInvalid), 400, "invalid_request"},
		{"db_error", "alice", `{"database":"orders","role":"reader"}`, &broker.DBError{Number: 15151, Message: "Cannot alter the role"}, 502, "db_error"},
		{"too_many", "alice", `{"database":"orders","role":"reader"}`, fmt.Errorf("%w: you hold 10", broker.ErrTooManyLeases), 429, "rate_limited"},
		{"unavailable", "alice", `{"database":"orders","role":"reader"}`, fmt.Errorf("%w: postgres database orders: cannot connect", broker.ErrUnavailable), 503, "unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.failure = tc.failure
			w := sqlDo(t, s, "POST", path, tc.token, tc.body)
			f.failure = nil
			if w.Code != tc.status || apiError(t, w).Code != tc.code {
				t.Fatalf("status %d body %s, want %d %s", w.Code, w.Body, tc.status, tc.code)
			}
			if strings.Contains(w.Body.String(), "cannot connect") {
				t.Error("an internal error detail reached the client")
			}
		})
	}
	if w := sqlDo(t, s, "POST", path, "bob", `{"database":"orders","role":"writer"}`); w.Code != 200 {
		t.Errorf("after the scripted failures: %d", w.Code)
	}
	if e := apiError(t, func() *httptest.ResponseRecorder {
		f.failure = &broker.DeniedError{Reasons: []string{"role writer is not granted"}}
		return sqlDo(t, s, "POST", path, "bob", `{"database":"orders","role":"writer"}`)
	}()); len(e.Reasons) != 1 || e.Reasons[0] != "role writer is not granted" {
		t.Errorf("denial reasons = %v, want the policy's", e.Reasons)
	}
}

func TestSQLLeaseRenewEndpoint(t *testing.T) {
	s, f := newSQLTestServer(t)
	cred, _ := f.IssueSQL(t.Context(), broker.SQLCredRequest{Principal: sqlAlice, Database: "orders", Role: "reader", TTL: time.Minute})
	path := api.Prefix + "/leases/" + cred.LeaseID + "/renew"
	w := sqlDo(t, s, "POST", path, "alice", `{"ttl_seconds":600}`)
	if w.Code != 200 {
		t.Fatalf("renew: %d %s", w.Code, w.Body)
	}
	var got api.LeaseRenewal
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != cred.LeaseID || got.Type != "sql" || got.Capped != "capped" || got.DecisionID != "dec-1" || !got.ExpiresAt.Equal(cred.ExpiresAt.Add(10*time.Minute)) {
		t.Errorf("renewal = %+v", got)
	}
	if w := sqlDo(t, s, "POST", path, "alice", ``); w.Code != 200 {
		t.Errorf("renew with an empty body: %d %s", w.Code, w.Body)
	}
	// Policy and the audit record see who renews, as for issuing.
	r := httptest.NewRequest("POST", path, strings.NewReader(`{}`))
	r.Header.Set("Authorization", "Bearer alice")
	r.Header.Set("User-Agent", "sqlgate-cli/1.2")
	r.RemoteAddr = "203.0.113.7:5555"
	f.clients = nil
	rec := httptest.NewRecorder()
	if s.ServeHTTP(rec, r); rec.Code != 200 {
		t.Fatalf("renew: %d %s", rec.Code, rec.Body)
	}
	if want := (policy.Client{Host: "203.0.113.7:5555", Name: "sqlgate-cli/1.2"}); len(f.clients) != 1 || f.clients[0] != want {
		t.Errorf("renewal client = %+v, want %+v", f.clients, want)
	}
	for _, tc := range []struct {
		name, token, path, body string
		status                  int
	}{
		{"other_principal", "bob", path, `{}`, 404},
		{"unknown", "alice", api.Prefix + "/leases/nope/renew", `{}`, 404},
		{"bad_body", "alice", path, `{"ttl":1}`, 400},
		{"negative", "alice", path, `{"ttl_seconds":-5}`, 400},
		{"unauthenticated", "", path, `{}`, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if w := sqlDo(t, s, "POST", tc.path, tc.token, tc.body); w.Code != tc.status {
				t.Errorf("status %d (%s), want %d", w.Code, w.Body, tc.status)
			}
		})
	}
}

func TestSQLRevokeAllEndpoint(t *testing.T) {
	s, f := newSQLTestServer(t)
	_, _ = f.IssueSQL(t.Context(), broker.SQLCredRequest{Principal: sqlAlice, Database: "orders", Role: "reader"})
	// alice is signed in to the dashboard, twice.
	sessions := []*session{
		mustSession(t, s, sqlAlice, time.Now().Add(time.Hour)),
		mustSession(t, s, sqlAlice, time.Now().Add(time.Hour)),
	}
	const path = api.Prefix + "/leases/revoke-all"
	body := `{"principal":"https://idp.test alice","reason":"left the company"}`
	if w := sqlDo(t, s, "POST", path, "alice", body); w.Code != 403 {
		t.Errorf("revoke-all by a non-admin: %d, want 403", w.Code)
	}
	if w := sqlDo(t, s, "POST", path, "dana", `{}`); w.Code != 400 {
		t.Errorf("revoke-all without a principal: %d, want 400", w.Code)
	}
	w := sqlDo(t, s, "POST", path, "dana", body)
	if w.Code != 200 {
		t.Fatalf("revoke-all: %d %s", w.Code, w.Body)
	}
	var got api.RevokeAllResult
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Principal != sqlAlice.ID() || len(got.NATSRevoked) != 1 || len(got.Leases) != 1 || got.Leases[0].State != "revoked" || got.Pending != 0 || got.SessionsEnded != 2 {
		t.Errorf("response = %+v", got)
	}
	for _, sess := range sessions {
		if w := do(t, s, "GET", "/api/v1/whoami", "", map[string]string{"Cookie": sessionCookie + "=" + sess.id}); w.Code != 401 {
			t.Errorf("alice's dashboard session after revoke-all: whoami = %d, want 401", w.Code)
		}
	}
	if last := f.reasons[len(f.reasons)-1]; last != "offboarding by dana@example.com: left the company" {
		t.Errorf("reason = %q", last)
	}
}

// TestSQLLeaseListAndRevoke covers the helpers GET leases and DELETE
// leases/{id} call.
func TestSQLLeaseListAndRevoke(t *testing.T) {
	s, f := newSQLTestServer(t)
	ctx := t.Context()
	short, _ := f.IssueSQL(ctx, broker.SQLCredRequest{Principal: sqlAlice, Database: "orders", Role: "reader", TTL: time.Minute})
	long, _ := f.IssueSQL(ctx, broker.SQLCredRequest{Principal: sqlAlice, Database: "orders", Role: "reader", TTL: time.Hour})
	list, more, err := s.leasePage(ctx, sqlAlice, broker.ListPage{Limit: 100})
	if err != nil || len(list) != 2 || more {
		t.Fatalf("leasePage = %v, %v, %v", list, more, err)
	}
	states := map[string]string{}
	for _, l := range list {
		states[l.ID] = l.State
		if l.Type != "sql" || l.Username == "" || l.Database != "orders" || l.Principal != "alice@example.com" {
			t.Errorf("listed lease = %+v", l)
		}
	}
	if states[short.LeaseID] != "expired" || states[long.LeaseID] != "active" {
		t.Errorf("states = %v, want the past-expiry lease shown expired", states)
	}
	none, err := New(Config{Broker: sqlTestBroker{}, Auth: sqlTestAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	if list, more, err := none.leasePage(ctx, sqlAlice, broker.ListPage{Limit: 100}); len(list) != 0 || more || err != nil {
		t.Errorf("without SQL leases configured: %v, %v, %v", list, more, err)
	}

	revoke := func(p identity.Principal, id string) (*httptest.ResponseRecorder, bool, error) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("DELETE", api.Prefix+"/leases/"+id, nil)
		handled, err := s.revokeSQLLease(w, r, p, f, id)
		return w, handled, err
	}
	if _, handled, err := revoke(sqlAlice, "UNATSKEY"); handled || err != nil {
		t.Errorf("unknown id: handled %v, %v; want it left to the NATS path", handled, err)
	}
	if _, handled, err := revoke(sqlBob, long.LeaseID); !handled || !errors.Is(err, broker.ErrNotFound) || len(f.revoked) != 0 {
		t.Errorf("bob revoking alice's lease: handled %v, %v; want not found", handled, err)
	}
	f.pending = true
	w, handled, err := revoke(sqlAlice, long.LeaseID)
	if !handled || err != nil || w.Code != http.StatusAccepted || !strings.Contains(w.Body.String(), `"state": "revoking"`) ||
		!strings.Contains(w.Body.String(), `"last_error": "sql error 42501: must be a member of the role`) {
		t.Errorf("owner revoke that did not finish: %v %v %d %s, want 202 revoking with the last error", handled, err, w.Code, w.Body)
	}
	if want := (policy.Client{Host: "192.0.2.1:1234"}); len(f.clients) != 1 || f.clients[0] != want {
		t.Errorf("revocation client = %+v, want %+v (the request's address)", f.clients, want)
	}
	f.pending = false
	w, handled, err = revoke(sqlAdmin, short.LeaseID)
	if !handled || err != nil || w.Code != http.StatusOK || f.reasons[len(f.reasons)-1] != "revoked by dana@example.com (admin)" {
		t.Errorf("admin revoke: %v %v %d %v", handled, err, w.Code, f.reasons)
	}
	f.failure = &broker.DBError{Number: 1, Message: "x"}
	if _, handled, err := revoke(sqlAlice, long.LeaseID); !handled || err == nil {
		t.Errorf("store failure: handled %v, %v", handled, err)
	}
}

// TestDashboardRevokesSQLLease: the dashboard's Revoke button works for SQL
// leases too (CSRF-checked, own leases only).
func TestDashboardRevokesSQLLease(t *testing.T) {
	f := &fakeSQLLeases{leases: map[string]broker.Lease{
		"L1": {ID: "L1", Principal: identity.Principal{Issuer: "https://idp", Subject: "alice"}, Username: "sg_alice_x", State: broker.LeaseActive},
		"L2": {ID: "L2", Principal: identity.Principal{Issuer: "https://idp", Subject: "bob"}, Username: "sg_bob_x", State: broker.LeaseActive},
	}}
	s, err := New(Config{Broker: sqlTestBroker{}, Auth: sqlTestAuth{}, SQLLeases: f})
	if err != nil {
		t.Fatal(err)
	}
	sess := mustSession(t, s, identity.Principal{Issuer: "https://idp", Subject: "alice"}, time.Now().Add(time.Hour))
	post := func(id, csrf string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/leases/"+id+"/revoke", strings.NewReader("csrf_token="+csrf))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("User-Agent", "dashboard-browser")
		req.RemoteAddr = "198.51.100.7:4711"
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: sess.id})
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	if rec := post("L1", "wrong"); rec.Code != http.StatusForbidden || len(f.revoked) != 0 {
		t.Fatalf("without the CSRF token: %d, revoked %v", rec.Code, f.revoked)
	}
	if rec := post("L2", sess.csrf); rec.Code != http.StatusNotFound || len(f.revoked) != 0 {
		t.Fatalf("bob's lease: %d, revoked %v", rec.Code, f.revoked)
	}
	rec := post("L1", sess.csrf)
	if rec.Code != http.StatusSeeOther || len(f.revoked) != 1 || f.revoked[0] != "L1" || rec.Header().Get("Location") != "/" {
		t.Fatalf("revoke L1: %d %q, revoked %v", rec.Code, rec.Header().Get("Location"), f.revoked)
	}
	// The audit record of the revocation names the browser's address.
	if c := f.clients[len(f.clients)-1]; c.Host != "198.51.100.7:4711" || c.Name != "dashboard-browser" {
		t.Errorf("the dashboard's revoke passed client %+v, want the request's address and user agent", c)
	}
	// The dashboard it redirects to says so, once.
	if flash := followFlash(t, s, rec, sess); !strings.Contains(flash, "revoked") {
		t.Errorf("flash after the revoke = %q", flash)
	}
}

// followFlash follows a form post's redirect with the cookies it set and
// returns the dashboard's flash message; it checks that the message is
// cleared as it is shown.
func followFlash(t *testing.T, s *Server, rec *httptest.ResponseRecorder, sess *session) string {
	t.Helper()
	req := httptest.NewRequest("GET", rec.Header().Get("Location"), nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: sess.id})
	for _, c := range rec.Result().Cookies() {
		req.AddCookie(c)
	}
	page := httptest.NewRecorder()
	s.ServeHTTP(page, req)
	cleared := false
	for _, c := range page.Result().Cookies() {
		cleared = cleared || (c.Name == flashCookie && c.MaxAge < 0)
	}
	if !cleared {
		t.Error("the flash message was not cleared when shown")
	}
	body := page.Body.String()
	i := strings.Index(body, `id="flash">`)
	if i < 0 {
		return ""
	}
	body = body[i+len(`id="flash">`):]
	return body[:strings.Index(body, "<")]
}

// TestSQLEndpointsWithoutLogins: a broker that issues no SQL logins says so
// on the SQL credential endpoints instead of "no such API endpoint", which
// reads like a CLI newer than the broker; a caller without a token still gets
// 401 first.
func TestSQLEndpointsWithoutLogins(t *testing.T) {
	s, err := New(Config{Broker: sqlTestBroker{}, Auth: sqlTestAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{api.Prefix + "/sql/creds", api.Prefix + "/leases/L1/renew"} {
		w := sqlDo(t, s, "POST", path, "alice", `{"database":"orders","role":"reader","ttl_seconds":600}`)
		if e := apiError(t, w); w.Code != http.StatusNotFound || e.Code != broker.CodeNotFound || !strings.Contains(e.Message, "issues no SQL logins") {
			t.Errorf("POST %s = %d %+v; want 404 not_found saying no SQL logins are issued", path, w.Code, e)
		}
		if w := sqlDo(t, s, "POST", path, "", `{}`); w.Code != http.StatusUnauthorized {
			t.Errorf("POST %s without a token = %d; want 401", path, w.Code)
		}
	}
}
