package broker_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/identity/oidc"
)

// calloutService is a broker over e that mints NATS credentials and verifies
// callout tokens with v.
func calloutService(t *testing.T, e *env, v broker.TokenVerifier) *broker.Service {
	t.Helper()
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub := keys.Public()
	return e.serviceWith(t, func(c *broker.Config) {
		c.Minter, c.UsersAccount, c.SigningKeys, c.MaxTTL = natsauth.NewMinter(keys), pub.Users, pub.UsersSigning, time.Hour
		c.Verifier = v
	})
}

// wantSignInAgain fails unless err is the refusal of a revoked credential's
// token.
func wantSignInAgain(t *testing.T, what string, cred *broker.NATSCredential, err error) {
	t.Helper()
	if cred != nil || !errors.Is(err, identity.ErrUnauthenticated) {
		t.Errorf("%s = credential %v, %v; want it refused", what, cred != nil, err)
	}
}

// TestCalloutRefusesAnotherSignatureOfARevokedToken: a revocation refuses
// the token's signed claims, not its text: the same header and payload
// under another signature that verifies (an ECDSA signature (r, s)
// verifies as (r, n−s) too, which anyone can compute) get no credential.
func TestCalloutRefusesAnotherSignatureOfARevokedToken(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := alice
	p.Expiry = time.Now().Add(time.Hour)
	const signed = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"
	first, twin := signed+".c2lnbmF0dXJlLW9uZQ", signed+".c2lnbmF0dXJlLXR3bw"
	// Both verify, as the two ECDSA signatures of one token do.
	svc := calloutService(t, e, tokens{first: p, twin: p})
	key := userKey(t)
	if _, err := svc.Callout(ctx, broker.CalloutRequest{Token: first, UserKey: key}); err != nil {
		t.Fatalf("Callout: %v", err)
	}
	if err := svc.RevokeNATS(ctx, alice, []string{key}, "test"); err != nil {
		t.Fatal(err)
	}
	cred, err := svc.Callout(ctx, broker.CalloutRequest{Token: twin, UserKey: userKey(t)})
	wantSignInAgain(t, "Callout(the revoked token under another signature)", cred, err)
	if err != nil && !strings.Contains(err.Error(), "sign in again") {
		t.Errorf("refusal %q does not tell to sign in again", err)
	}
}

// TestCalloutRefusesARespeltRevokedToken runs the real verifier: after a
// revocation, the revoked token with its signature spelt otherwise (the
// last character's unused bits set: the same signature bytes to a lenient
// decoder) gets no credential; nor does the token itself.
func TestCalloutRefusesARespeltRevokedToken(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	idp := devidptest.Start(t, devidp.WithUsers(devidp.User{Username: "alice", Password: "unused-test-password", Groups: []string{"sales"}}))
	v, err := oidc.Open(ctx, oidc.Config{Issuers: []oidc.IssuerConfig{{
		Name: "test", Issuer: idp.Issuer(), Preset: oidc.PresetGeneric, Audiences: []string{idp.Audience()},
	}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc := calloutService(t, e, v)
	tok, err := idp.TokenFor("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	key := userKey(t)
	if _, err := svc.Callout(ctx, broker.CalloutRequest{Token: tok, UserKey: key}); err != nil {
		t.Fatalf("Callout: %v", err)
	}
	if err := svc.RevokeNATS(ctx, alice, []string{key}, "test"); err != nil {
		t.Fatal(err)
	}
	// An RS256 signature is 256 bytes: 342 characters, the last with 4
	// unused bits; setting the lowest gives 'B' for 'A', 'A' for 'B'...
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	respelt := tok[:len(tok)-1] + string(alphabet[last^1])
	cred, err := svc.Callout(ctx, broker.CalloutRequest{Token: respelt, UserKey: userKey(t)})
	wantSignInAgain(t, "Callout(the revoked token respelt)", cred, err)
	cred, err = svc.Callout(ctx, broker.CalloutRequest{Token: tok, UserKey: userKey(t)})
	wantSignInAgain(t, "Callout(the revoked token)", cred, err)
}

// TestCalloutHonoursRefusalsByTheWholeToken: a refusal recorded by an
// older version, keyed by the SHA-256 of the whole token, still refuses
// that token.
func TestCalloutHonoursRefusalsByTheWholeToken(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	p := alice
	p.Expiry = time.Now().Add(time.Hour)
	const tok = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
	svc := calloutService(t, e, tokens{tok: p})
	// What an older version stored for a callout credential, then refused.
	old := userKey(t)
	whole := sha256.Sum256([]byte(tok))
	if err := e.registry.BindCalloutToken(ctx, old, hex.EncodeToString(whole[:]), time.Now().Add(time.Hour), p.Expiry); err != nil {
		t.Fatal(err)
	}
	if err := e.registry.RefuseCalloutTokens(ctx, []string{old}, time.Now()); err != nil {
		t.Fatal(err)
	}
	cred, err := svc.Callout(ctx, broker.CalloutRequest{Token: tok, UserKey: userKey(t)})
	wantSignInAgain(t, "Callout(a token refused by an older version)", cred, err)
	// Another token of the same principal is not affected.
	other := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSIsIm4iOjJ9.c2lnbmF0dXJl"
	svc = calloutService(t, e, tokens{other: p})
	if _, err := svc.Callout(ctx, broker.CalloutRequest{Token: other, UserKey: userKey(t)}); err != nil {
		t.Errorf("Callout(another token) = %v, want a credential", err)
	}
}
