package web

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/web/api"
)

// TestCredsTTLBounds: a NATS credential lifetime beyond a year is refused
// as invalid_request naming the field (the bound SQL credentials have),
// before the seconds can overflow a time.Duration (18446744074 s wrapped
// to a few seconds and came back as 401 "token expires too soon").
func TestCredsTTLBounds(t *testing.T) {
	s, _ := newTestServer(t, false)
	bearer := map[string]string{"Authorization": "Bearer token-alice"}
	tests := []struct {
		name, body string
		status     int
	}{
		{"overflows_duration", `{"public_key":"U","ttl_seconds":18446744074}`, 400},
		{"max_int64", `{"public_key":"U","ttl_seconds":9223372036854775807}`, 400},
		{"just_over_a_year", `{"public_key":"U","ttl_seconds":31622401}`, 400},
		{"negative", `{"public_key":"U","ttl_seconds":-1}`, 400},
		{"a_year", `{"public_key":"U","ttl_seconds":31622400}`, 200},
		{"default", `{"public_key":"U"}`, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, s, "POST", api.Prefix+"/nats/creds", tc.body, bearer)
			if rec.Code != tc.status {
				t.Fatalf("POST nats/creds %s = %d %s, want %d", tc.body, rec.Code, rec.Body, tc.status)
			}
			if tc.status == 200 {
				return
			}
			var body api.ErrorResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != "invalid_request" || !strings.Contains(body.Error.Message, "ttl_seconds") {
				t.Errorf("body = %s, want invalid_request naming ttl_seconds", rec.Body)
			}
		})
	}
}

// offboardedBroker refuses every credential as after a revoke-all.
type offboardedBroker struct{ fakeBroker }

func (offboardedBroker) IssueNATS(context.Context, broker.NATSRequest) (*broker.NATSCredential, error) {
	cut := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	return nil, fmt.Errorf("issue: %w", &broker.SignInRevokedError{Cutoff: cut})
}

// TestSignInRevokedAnswer: a principal offboarded after signing in is told
// to sign in again (401 unauthenticated), not just "token invalid".
func TestSignInRevokedAnswer(t *testing.T) {
	s, err := New(Config{Broker: &offboardedBroker{}, Auth: tokenAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	rec := do(t, s, "POST", api.Prefix+"/nats/creds", `{"public_key":"U"}`, map[string]string{"Authorization": "Bearer token-alice"})
	var body api.ErrorResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 401 || body.Error.Code != "unauthenticated" ||
		!strings.Contains(body.Error.Message, "sign in again") || !strings.Contains(body.Error.Message, "2026-11-27T10:00:00Z") {
		t.Errorf("POST nats/creds after offboarding = %d %s, want 401 unauthenticated telling when and to sign in again", rec.Code, rec.Body)
	}
}

// subscribingBroker issues a credential that may follow an event.
type subscribingBroker struct{ fakeBroker }

func (subscribingBroker) IssueNATS(context.Context, broker.NATSRequest) (*broker.NATSCredential, error) {
	return &broker.NATSCredential{
		JWT: "jwt", InboxPrefix: "_INBOX_x", Pub: []string{"orders.v1.create"}, Sub: []string{"_INBOX_x.>", "orders.v1.created"},
	}, nil
}

// TestNATSCredsListsSubscriptions: the response says what the credential
// may subscribe to, the granted events included, as it says what it may
// publish to (the CLI showed only the latter).
func TestNATSCredsListsSubscriptions(t *testing.T) {
	s, err := New(Config{Broker: &subscribingBroker{}, Auth: tokenAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	rec := do(t, s, "POST", api.Prefix+"/nats/creds", `{"public_key":"U"}`, map[string]string{"Authorization": "Bearer token-alice"})
	var body api.NATSCreds
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 200 ||
		strings.Join(body.Pub, ",") != "orders.v1.create" || strings.Join(body.Sub, ",") != "_INBOX_x.>,orders.v1.created" {
		t.Errorf("POST nats/creds = %d %s, want pub and sub", rec.Code, rec.Body)
	}
}
