package broker_test

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/identity/oidc"
)

// jws is a compact JWS of the given header and payload JSON and signature
// bytes.
func jws(header, payload string, sig []byte) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(sig)
}

// TestCalloutFloodOfUnverifiableTokensIsNotAudited runs a real NATS server
// with sqlgate's auth callout and the real OIDC verifier. Anyone holding
// the sentinel credentials (handed out freely) can connect with any token:
// tokens that name no one (not a JWT, an issuer not trusted, no issuer, a
// forged signature, a key the issuer does not have, alg none) are refused
// and counted, and add no audit record however many there are. A token the
// trusted issuer signed that has expired is refused and audited; a valid
// one still signs in.
func TestCalloutFloodOfUnverifiableTokensIsNotAudited(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	var back atomic.Int64 // how far behind the provider's clock is
	idp := devidptest.Start(t,
		devidp.WithUsers(
			devidp.User{Username: "alice", Password: "unused-test-password", Groups: []string{"sales"}},
			devidp.User{Username: "bob", Password: "unused-test-password", Groups: []string{"support"}}),
		devidp.WithClock(func() time.Time { return time.Now().Add(-time.Duration(back.Load())) }))
	v, err := oidc.Open(ctx, oidc.Config{Issuers: []oidc.IssuerConfig{{
		Name: "test", Issuer: idp.Issuer(), Preset: oidc.PresetGeneric, Audiences: []string{idp.Audience()},
	}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	subjects := e.svc.Catalog().Subjects()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: subjects})
	pub := env.Keys.Public()
	svc := e.serviceWith(t, func(c *broker.Config) {
		c.Minter, c.UsersAccount, c.SigningKeys, c.MaxTTL = env.Minter, pub.Users, pub.UsersSigning, time.Hour
		c.Verifier = v
	})
	co, err := natsauth.StartCallout(ctx, env.CalloutConn(t), env.Keys, natsauth.CalloutConfig{}, svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = co.Stop() })
	sentinel, err := env.Keys.SentinelCreds()
	if err != nil {
		t.Fatal(err)
	}
	connect := func(token string) error {
		nc, err := env.Connect(t, nats.UserCredentialBytes(sentinel), nats.Token(token))
		if err == nil {
			nc.Close()
		}
		return err
	}

	aliceTok, err := idp.TokenFor("alice", "")
	if err != nil {
		t.Fatal(err)
	}
	bobTok, err := idp.TokenFor("bob", "")
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 256)
	garbage := map[string]string{
		"not a jwt":        "garbage",
		"untrusted issuer": jws(`{"alg":"RS256"}`, `{"iss":"https://evil.test","sub":"alice"}`, sig),
		"no issuer":        jws(`{"alg":"RS256"}`, `{"sub":"alice"}`, sig),
		"alg none":         jws(`{"alg":"none"}`, `{"iss":"`+idp.Issuer()+`","sub":"alice"}`, nil) + "AA",
		"unknown key":      jws(`{"alg":"RS256","kid":"made-up"}`, `{"iss":"`+idp.Issuer()+`","sub":"alice"}`, sig),
		// alice's claims under bob's token's signature
		"forged signature": aliceTok[:strings.LastIndexByte(aliceTok, '.')] + bobTok[strings.LastIndexByte(bobTok, '.'):],
	}
	before := len(e.records(t))
	const rounds = 10
	for range rounds {
		for name, tok := range garbage {
			if err := connect(tok); !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("connect with a token with %s = %v, want an authorization violation", name, err)
			}
		}
	}
	for _, r := range e.records(t)[before:] {
		t.Errorf("a token that names no one was audited: %s, reasons %v", r.Kind, r.Reasons)
	}
	if got, want := co.Stats().Unverified, uint64(rounds*len(garbage)); got != want {
		t.Errorf("Stats().Unverified = %d, want %d", got, want)
	}

	// Signed by the trusted issuer two hours ago: expired.
	back.Store(int64(2 * time.Hour))
	expired, err := idp.TokenFor("alice", "")
	back.Store(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := connect(expired); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect with an expired token = %v, want an authorization violation", err)
	}
	recs := e.records(t)[before:]
	if len(recs) != 1 {
		t.Fatalf("%d audit records after the expired token, want its refusal", len(recs))
	}
	r := recs[0]
	if r.Kind != audit.KindDecision || r.Allow == nil || *r.Allow || !slices.Equal(r.Reasons, []string{oidc.ReasonExpired}) ||
		r.Credential == nil || r.Credential.Via != "callout" || r.Result == nil || r.Result.Status != broker.CodeUnauthenticated {
		t.Errorf("refusal of the expired token audited as %s allow=%v reasons %v credential %+v result %+v, want an unauthenticated callout decision",
			r.Kind, r.Allow, r.Reasons, r.Credential, r.Result)
	}
	if got, want := co.Stats().Unverified, uint64(rounds*len(garbage)); got != want {
		t.Errorf("Stats().Unverified = %d after the expired token, want %d (it names alice)", got, want)
	}

	if err := connect(aliceTok); err != nil {
		t.Errorf("a valid sign-in after the flood: %v", err)
	}
}

// failingVerifier refuses every token with err.
type failingVerifier struct{ err error }

func (f failingVerifier) Verify(context.Context, string) (identity.Principal, error) {
	return identity.Principal{}, f.err
}

// TestCalloutAuditsRefusalsThatMayNameSomeone: a refusal is unaudited only
// when the verifier says the token names no one; any other refusal, one
// the broker cannot read included, is audited (fail closed).
func TestCalloutAuditsRefusalsThatMayNameSomeone(t *testing.T) {
	withIss := jws(`{"alg":"RS256"}`, `{"iss":"https://idp.test","sub":"alice"}`, []byte("sig"))
	noIss := jws(`{"alg":"RS256"}`, `{"sub":"alice","iss":""}`, []byte("sig"))
	tests := []struct {
		name    string
		err     error
		token   string
		audited bool
	}{
		{"malformed", identity.Unauthenticated(oidc.ReasonMalformedToken, nil), "garbage", false},
		{"invalid signature", identity.Unauthenticated(oidc.ReasonInvalidSignature, nil), withIss, false},
		{"unknown issuer", identity.Unauthenticated(oidc.ReasonUnknownIssuer, nil), withIss, false},
		{"unknown kid", identity.Unauthenticated(oidc.ReasonUnknownKeyID, nil), withIss, false},
		{"algorithm", identity.Unauthenticated(oidc.ReasonAlgorithmNotAllowed, nil), withIss, false},
		{"no issuer", identity.Unauthenticated(oidc.ReasonMissingClaim, nil), noIss, false},
		{"missing claim of a signed token", identity.Unauthenticated(oidc.ReasonMissingClaim, nil), withIss, true},
		{"missing claim of an unreadable token", identity.Unauthenticated(oidc.ReasonMissingClaim, nil), "opaque", true},
		{"expired", identity.Unauthenticated(oidc.ReasonExpired, nil), withIss, true},
		{"audience", identity.Unauthenticated(oidc.ReasonAudienceMismatch, nil), withIss, true},
		{"client", identity.Unauthenticated(oidc.ReasonClientNotAllowed, nil), withIss, true},
		{"keys unavailable", identity.Unauthenticated(oidc.ReasonKeysUnavailable, nil), withIss, true},
		{"unknown reason", identity.Unauthenticated("something new", nil), withIss, true},
		{"not an auth error", errors.New("verifier broke"), withIss, true},
	}
	e := newEnv(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := calloutService(t, e, failingVerifier{tc.err})
			before := len(e.records(t))
			cred, err := svc.Callout(t.Context(), broker.CalloutRequest{Token: tc.token, UserKey: userKey(t)})
			if cred != nil || err == nil {
				t.Fatalf("Callout = credential %v, %v; want a refusal", cred != nil, err)
			}
			if unverified := errors.Is(err, broker.ErrUnverifiedToken); unverified == tc.audited {
				t.Errorf("Callout error %v matches ErrUnverifiedToken = %v, want %v", err, unverified, !tc.audited)
			}
			if errors.Is(tc.err, identity.ErrUnauthenticated) && !errors.Is(err, identity.ErrUnauthenticated) {
				t.Errorf("Callout error %v does not match identity.ErrUnauthenticated", err)
			}
			if n := len(e.records(t)) - before; (n == 1) != tc.audited || n > 1 {
				t.Errorf("%d audit records, want audited = %v", n, tc.audited)
			}
		})
	}
}
