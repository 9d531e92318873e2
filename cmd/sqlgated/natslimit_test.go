package main

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/web/api"
)

// TestServeNATSCredentialLimit: credentials.maxNATSCredentialsPerPrincipal
// reaches the broker: over the limit `POST nats/creds` answers 429
// rate_limited naming the limit and how to free credentials; a refresh of a
// key already held still gets a credential, and revoking one
// (`sqlgate leases revoke`) makes room.
func TestServeNATSCredentialLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("serve end to end: skipped with -short")
	}
	st := startDemoServe(t, func(cfg string) string {
		return strings.Replace(cfg, "credentials:\n", "credentials:\n  maxNATSCredentialsPerPrincipal: 2\n", 1)
	})
	ctx := t.Context()
	alice, _ := st.s.login(t, "alice")
	newKey := func() string {
		t.Helper()
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		return pub
	}
	var held []string
	for range 2 {
		key := newKey()
		if _, err := alice.NATSCreds(ctx, api.NATSCredsRequest{PublicKey: key}); err != nil {
			t.Fatalf("credential %d of 2: %v", len(held)+1, err)
		}
		held = append(held, key)
	}
	_, err := alice.NATSCreds(ctx, api.NATSCredsRequest{PublicKey: newKey()})
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests || se.Body.Code != "rate_limited" ||
		!strings.Contains(se.Body.Message, "the limit is 2") || !strings.Contains(se.Body.Message, "sqlgate leases revoke") {
		t.Fatalf("a third credential at the limit 2 = %v; want 429 rate_limited naming the limit and sqlgate leases revoke", err)
	}
	if _, err := alice.NATSCreds(ctx, api.NATSCredsRequest{PublicKey: held[0]}); err != nil {
		t.Errorf("refresh of a held key at the limit: %v", err)
	}
	if _, err := alice.RevokeLease(ctx, held[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.NATSCreds(ctx, api.NATSCredsRequest{PublicKey: newKey()}); err != nil {
		t.Errorf("a credential after revoking one: %v", err)
	}
}
