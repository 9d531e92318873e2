package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/web/api"
)

// cutoffBroker notes the sign-in cutoffs revoke-all records (with the
// reason its audit record carries) and revokes the principal's unexpired
// NATS credentials in iss, as broker.Service does.
type cutoffBroker struct {
	fakeBroker
	iss     fakeIssuances
	cutoffs []string
	reasons []string
}

func (b *cutoffBroker) RevokeAll(_ context.Context, _ identity.Principal, principalID, reason string) (*broker.RevokeAllResult, error) {
	if err := identity.CheckPrincipalID(principalID); err != nil {
		return nil, errors.Join(broker.ErrInvalid, err) // as broker.Service
	}
	b.cutoffs = append(b.cutoffs, principalID)
	b.reasons = append(b.reasons, reason)
	res := &broker.RevokeAllResult{PrincipalID: principalID}
	for k, i := range b.iss.m {
		if i.Principal.ID() == principalID && time.Now().Before(i.ExpiresAt) {
			res.NATSKeys = append(res.NATSKeys, k)
		}
	}
	return res, nil
}

// cutoffLeases is SQL leases whose revoke-all is the broker's (the
// principal's leases are revoked already).
type cutoffLeases struct {
	*fakeSQLLeases
	b *cutoffBroker
}

func (c cutoffLeases) RevokeAll(ctx context.Context, actor identity.Principal, principalID, reason string) (*broker.RevokeAllResult, error) {
	return c.b.RevokeAll(ctx, actor, principalID, reason)
}

// brokenIssuances is an issuance registry that cannot be read.
type brokenIssuances struct{ fakeIssuances }

func (brokenIssuances) ByPrincipalPage(context.Context, string, broker.ListPage) ([]broker.Issuance, error) {
	return nil, errors.New("connection refused")
}

// TestRevokeAllChecksThePrincipal: revoke-all refuses a principal of an
// issuer that is not configured (a trailing slash, another host; an Entra
// multi-tenant issuer accepts any one tenant) with invalid_request, before
// it records a cutoff or ends a session; and it flags a principal of a
// configured issuer that nothing names (a subject that is an e-mail
// address) as unknown_principal, recording its cutoff all the same, with
// an audit reason that says so. Someone with a credential (live or
// expired), a SQL lease or a dashboard session is not flagged.
func TestRevokeAllChecksThePrincipal(t *testing.T) {
	t.Parallel()
	const entra = "https://login.microsoftonline.com/{tenantid}/v2.0"
	idp := func(sub string) identity.Principal { return identity.Principal{Issuer: "https://idp", Subject: sub} }
	now := time.Now()
	iss := fakeIssuances{m: map[string]broker.Issuance{
		"UALICE": {UserKey: "UALICE", Principal: idp("alice"), IssuedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour)},
		"UBOB":   {UserKey: "UBOB", Principal: idp("bob"), IssuedAt: now.Add(-48 * time.Hour), ExpiresAt: now.Add(-47 * time.Hour)},
	}}
	tests := []struct {
		name, principal string
		issuers         []string
		status          int
		unknown         bool
		msg             string // in the refusal
		// noted: the audit reason says that no credential or lease names
		// the principal (a dashboard session is not on record).
		noted bool
	}{
		{"trailing_slash", "https://idp/ alice", []string{"https://idp", entra}, 400, false, `"https://idp/" is none of the configured identity issuers (https://idp, ` + entra + `)`, false},
		{"other_host", "https://idp.example alice", []string{"https://idp"}, 400, false, "none of the configured identity issuers", false},
		{"not_a_principal", "alice@example.com", []string{"https://idp"}, 400, false, "principal must be", false},
		{"entra_no_tenant", "https://login.microsoftonline.com//v2.0 alice", []string{entra}, 400, false, "none of the configured", false},
		{"entra_two_segments", "https://login.microsoftonline.com/a/b/v2.0 alice", []string{entra}, 400, false, "none of the configured", false},
		{"email_subject", "https://idp alice@example.com", []string{"https://idp"}, 200, true, "", true},
		{"entra_tenant", "https://login.microsoftonline.com/0b7e5c1a/v2.0 alice", []string{"https://idp", entra}, 200, true, "", true},
		{"live_credential", "https://idp alice", []string{"https://idp"}, 200, false, "", false},
		{"expired_credential", "https://idp bob", []string{"https://idp"}, 200, false, "", false},
		{"past_lease", "https://idp erin", []string{"https://idp"}, 200, false, "", false},
		{"session_only", "https://idp carol", []string{"https://idp"}, 200, false, "", true},
		// Without the issuers (not wired) the issuer is not checked, and
		// the principal that nothing names is flagged.
		{"issuers_unset", "https://idp/ alice", nil, 200, true, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fb := &cutoffBroker{iss: iss}
			leases := cutoffLeases{&fakeSQLLeases{leases: map[string]broker.Lease{
				"L1": {ID: "L1", Principal: idp("erin"), State: broker.LeaseRevoked, IssuedAt: now.Add(-48 * time.Hour), ExpiresAt: now.Add(-47 * time.Hour)},
			}}, fb}
			store := &countingSessions{memSessions: newMemSessions()}
			s, err := New(Config{
				Broker: fb, Auth: tokenAuth{}, Issuers: tc.issuers, Issuances: iss, SQLLeases: leases,
				AdminGroups: []string{"sales"}, Sessions: store,
			})
			if err != nil {
				t.Fatal(err)
			}
			mustSession(t, s, idp("carol"), time.Now().Add(time.Hour))
			body, _ := json.Marshal(api.RevokeAllRequest{Principal: tc.principal, Reason: "left"})
			rec := do(t, s, "POST", api.Prefix+"/leases/revoke-all", string(body), map[string]string{"Authorization": "Bearer token-dana"})
			if rec.Code != tc.status {
				t.Fatalf("revoke-all of %q = %d %s, want %d", tc.principal, rec.Code, rec.Body, tc.status)
			}
			if tc.status != 200 {
				var e api.ErrorResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != "invalid_request" || !strings.Contains(e.Error.Message, tc.msg) {
					t.Errorf("refusal = %s, want invalid_request naming %q", rec.Body, tc.msg)
				}
				if len(fb.cutoffs) != 0 || len(store.principalDeletes) != 0 {
					t.Errorf("a refused revoke-all recorded cutoffs %q and ended the sessions of %q, want nothing done", fb.cutoffs, store.principalDeletes)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got["unknown_principal"] != tc.unknown {
				t.Errorf("revoke-all of %q: unknown_principal = %v, want %v (%s)", tc.principal, got["unknown_principal"], tc.unknown, rec.Body)
			}
			if len(fb.cutoffs) != 1 || fb.cutoffs[0] != tc.principal {
				t.Fatalf("cutoffs = %q, want the one of %q (recorded even for a principal nothing names)", fb.cutoffs, tc.principal)
			}
			if noted := strings.Contains(fb.reasons[0], unknownPrincipalNote); noted != tc.noted {
				t.Errorf("audit reason %q: notes that nothing names the principal = %v, want %v", fb.reasons[0], noted, tc.noted)
			}
		})
	}
}

// TestRevokeAllUncheckedPrincipal: when whether anything names the
// principal cannot be read, revoke-all still offboards (cutoff, sessions)
// but does not answer as done.
func TestRevokeAllUncheckedPrincipal(t *testing.T) {
	t.Parallel()
	fb := &cutoffBroker{}
	store := &countingSessions{memSessions: newMemSessions()}
	s, err := New(Config{Broker: fb, Auth: tokenAuth{}, Issuers: []string{"https://idp"}, Issuances: brokenIssuances{}, AdminGroups: []string{"sales"}, Sessions: store})
	if err != nil {
		t.Fatal(err)
	}
	rec := do(t, s, "POST", api.Prefix+"/leases/revoke-all", `{"principal":"https://idp alice"}`, map[string]string{"Authorization": "Bearer token-dana"})
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "repeat revoke-all") || strings.Contains(rec.Body.String(), "connection refused") {
		t.Errorf("revoke-all with an unreadable registry = %d %s, want 503 saying to repeat it", rec.Code, rec.Body)
	}
	if len(fb.cutoffs) != 1 || len(store.principalDeletes) != 1 {
		t.Errorf("cutoffs %q, sessions ended for %q: want the offboarding done all the same", fb.cutoffs, store.principalDeletes)
	}
}
