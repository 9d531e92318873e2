package oidc

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
)

var ignoreVolatile = cmpopts.IgnoreFields(identity.Principal{}, "TokenID", "AuthTime", "IssuedAt", "Expiry")

func TestVerifyPresetsEndToEnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		shape     devidp.Shape
		wantAlice func(e *env) identity.Principal
		wantBobPW func(e *env) identity.Principal
	}{
		{
			shape: devidp.ShapeGeneric,
			wantAlice: func(e *env) identity.Principal {
				return identity.Principal{
					Issuer: e.idp.Issuer(), Subject: e.idp.ObjectID("alice"), Email: "alice@example.com", Name: "Alice Example",
					Groups: []string{"sales"}, Roles: []string{"Orders.Write"}, Scopes: []string{"openid", "profile", "email"},
					AMR: []string{"pwd", "mfa", "otp"}, MFA: true,
				}
			},
			wantBobPW: func(e *env) identity.Principal {
				return identity.Principal{
					Issuer: e.idp.Issuer(), Subject: e.idp.ObjectID("bob"), Email: "bob@example.com", Name: "Bob Example",
					Groups: []string{"support"}, Scopes: []string{"openid", "offline_access"}, AMR: []string{"pwd"},
				}
			},
		},
		{
			shape: devidp.ShapeEntra,
			wantAlice: func(e *env) identity.Principal {
				return identity.Principal{
					Issuer: e.idp.Issuer(), ObjectID: e.idp.ObjectID("alice"), Email: "alice@example.com", Name: "Alice Example",
					Groups: []string{"sales"}, Roles: []string{"Orders.Write"}, Scopes: []string{"user_impersonation"},
					Tenant: e.idp.TenantID(), MFA: true,
				}
			},
			wantBobPW: func(e *env) identity.Principal {
				return identity.Principal{
					Issuer: e.idp.Issuer(), ObjectID: e.idp.ObjectID("bob"), Email: "bob@example.com", Name: "Bob Example",
					Groups: []string{"support"}, Scopes: []string{"user_impersonation"}, Tenant: e.idp.TenantID(),
				}
			},
		},
		{
			shape: devidp.ShapeOkta,
			wantAlice: func(e *env) identity.Principal {
				// Okta access tokens carry no amr: no MFA evidence.
				return identity.Principal{
					Issuer: e.idp.Issuer(), Subject: e.idp.ObjectID("alice"), ObjectID: e.idp.ObjectID("alice"), Email: "alice@example.com",
					Groups: []string{"sales"}, Scopes: []string{"openid", "profile", "email"},
				}
			},
			wantBobPW: func(e *env) identity.Principal {
				return identity.Principal{
					Issuer: e.idp.Issuer(), Subject: e.idp.ObjectID("bob"), ObjectID: e.idp.ObjectID("bob"), Email: "bob@example.com",
					Groups: []string{"support"}, Scopes: []string{"openid", "offline_access"},
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(string(tc.shape), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpt{shape: tc.shape, issuer: func(ic *IssuerConfig) { ic.MFAACRValues = []string{"c1"} }})
			ctx := t.Context()

			got, err := e.v.Verify(ctx, e.tokenFor("alice"))
			if err != nil {
				t.Fatalf("Verify(alice access token): %v", err)
			}
			want := tc.wantAlice(e)
			ignore := ignoreVolatile
			if tc.shape == devidp.ShapeEntra {
				// Entra's sub is pairwise: check it is stable instead.
				ignore = cmpopts.IgnoreFields(identity.Principal{}, "TokenID", "AuthTime", "IssuedAt", "Expiry", "Subject")
			}
			if diff := cmp.Diff(want, got, ignore); diff != "" {
				t.Errorf("Verify(alice) mismatch (-want +got):\n%s", diff)
			}
			if got.Expiry.IsZero() || got.TokenID == "" || got.IssuedAt.IsZero() || got.IssuedAt.After(got.Expiry) {
				t.Errorf("Verify(alice): Expiry %v TokenID %q IssuedAt %v, want all set (issued before expiry)", got.Expiry, got.TokenID, got.IssuedAt)
			}

			// Tokens from the real token endpoint: access token and ID token
			// must name the same principal.
			resp := e.passwordToken("bob", bobPassword, "openid offline_access")
			fromAT, err := e.v.Verify(ctx, resp["access_token"].(string))
			if err != nil {
				t.Fatalf("Verify(bob access token): %v", err)
			}
			if diff := cmp.Diff(tc.wantBobPW(e), fromAT, ignore); diff != "" {
				t.Errorf("Verify(bob access token) mismatch (-want +got):\n%s", diff)
			}
			fromID, err := e.v.Verify(ctx, resp["id_token"].(string))
			if err != nil {
				t.Fatalf("Verify(bob ID token): %v", err)
			}
			if fromID.ID() != fromAT.ID() || fromID.Email != "bob@example.com" || fromID.Service {
				t.Errorf("ID token principal %q (%s) != access token principal %q", fromID.ID(), fromID.Email, fromAT.ID())
			}

			// A service with client credentials.
			svc, err := e.idp.ServiceTokenFor(clientSvc.ID, "")
			if err != nil {
				t.Fatal(err)
			}
			sp, err := e.v.Verify(ctx, svc)
			if err != nil {
				t.Fatalf("Verify(service token): %v", err)
			}
			if !sp.Service || sp.Email != "" || len(sp.Groups) != 0 {
				t.Errorf("service principal = %+v, want Service and no user attributes", sp)
			}
			if tc.shape != devidp.ShapeOkta && (len(sp.Roles) != 1 || sp.Roles[0] != "Orders.Read") {
				t.Errorf("service roles = %v, want [Orders.Read]", sp.Roles)
			}
		})
	}
}

// hs256 signs claims with HMAC-SHA256 under key: the classic confusion
// attack when key is the provider's public key.
func hs256(t testing.TB, key []byte, kid string, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "JWT", "kid": kid})
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]any{"alg": "none", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

var foreignKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

// badTokenCase is one row of the bad-input table; the fuzz target reuses
// the tokens as seeds.
type badTokenCase struct {
	name   string
	reason string
	token  func(t testing.TB, e *env) string
}

func badTokenCases() []badTokenCase {
	return []badTokenCase{
		{"alg_none", ReasonAlgorithmNotAllowed, func(t testing.TB, e *env) string { return unsigned(e.claims("alice")) }},
		{"alg_none_with_signature", ReasonAlgorithmNotAllowed, func(t testing.TB, e *env) string {
			good := e.tokenFor("alice")
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`))
			return h + good[strings.Index(good, "."):]
		}},
		{"hs256_public_key_pem", ReasonAlgorithmNotAllowed, func(t testing.TB, e *env) string {
			der, _ := x509.MarshalPKIXPublicKey(e.idp.PublicKey())
			return hs256(t, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), e.idp.KeyID(), e.claims("alice"))
		}},
		{"hs256_public_key_der", ReasonAlgorithmNotAllowed, func(t testing.TB, e *env) string {
			return hs256(t, x509.MarshalPKCS1PublicKey(e.idp.PublicKey()), e.idp.KeyID(), e.claims("alice"))
		}},
		{"other_issuer", ReasonUnknownIssuer, func(t testing.TB, e *env) string {
			other := devidptest.Start(t, devidp.WithUsers(userAlice))
			tok, err := other.TokenFor("alice", e.idp.Audience())
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{"our_issuer_foreign_key", ReasonUnknownKeyID, func(t testing.TB, e *env) string {
			return e.mint(e.claims("alice"), devidp.MintKey(foreignKey))
		}},
		{"our_issuer_foreign_key_our_kid", ReasonInvalidSignature, func(t testing.TB, e *env) string {
			return e.mint(e.claims("alice"), devidp.MintKey(foreignKey), devidp.MintKeyID(e.idp.KeyID()))
		}},
		{"other_audience", ReasonAudienceMismatch, func(t testing.TB, e *env) string {
			tok, err := e.idp.TokenFor("alice", "https://other-api.example.com")
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{"no_audience", ReasonMissingClaim, func(t testing.TB, e *env) string {
			c := e.claims("alice")
			delete(c, "aud")
			return e.mint(c)
		}},
		{"expired", ReasonExpired, func(t testing.TB, e *env) string {
			c := e.claims("alice")
			c["iat"] = e.clock.Now().Add(-2 * time.Hour).Unix()
			c["nbf"] = c["iat"]
			c["exp"] = e.clock.Now().Add(-DefaultClockSkew - time.Second).Unix()
			return e.mint(c)
		}},
		{"no_exp", ReasonMissingClaim, func(t testing.TB, e *env) string {
			c := e.claims("alice")
			delete(c, "exp")
			return e.mint(c)
		}},
		{"not_yet_valid", ReasonNotYetValid, func(t testing.TB, e *env) string {
			c := e.claims("alice")
			c["nbf"] = e.clock.Now().Add(DefaultClockSkew + time.Minute).Unix()
			return e.mint(c)
		}},
		{"iat_in_future", ReasonIssuedInFuture, func(t testing.TB, e *env) string {
			c := e.claims("alice")
			delete(c, "nbf")
			c["iat"] = e.clock.Now().Add(10 * time.Minute).Unix()
			return e.mint(c)
		}},
		{"unknown_kid", ReasonUnknownKeyID, func(t testing.TB, e *env) string {
			return e.mint(e.claims("alice"), devidp.MintKeyID("kid-nobody-published"))
		}},
		{"modified_payload", ReasonInvalidSignature, func(t testing.TB, e *env) string {
			good := strings.Split(e.tokenFor("bob"), ".")
			c := e.claims("bob")
			c["groups"] = []string{"sales", "admins"}
			b, _ := json.Marshal(c)
			return good[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + good[2]
		}},
		{"swapped_signature", ReasonInvalidSignature, func(t testing.TB, e *env) string {
			a := strings.Split(e.tokenFor("alice"), ".")
			b := strings.Split(e.tokenFor("bob"), ".")
			return a[0] + "." + a[1] + "." + b[2]
		}},
		{"truncated", ReasonMalformedToken, func(t testing.TB, e *env) string {
			tok := e.tokenFor("alice")
			return tok[:len(tok)/2]
		}},
		{"truncated_signature", ReasonInvalidSignature, func(t testing.TB, e *env) string {
			// Six bytes short, spelt canonically (a cut spelling is
			// malformed_token: its last character's unused bits are set).
			tok := e.tokenFor("alice")
			dot := strings.LastIndexByte(tok, '.')
			sig, _ := base64.RawURLEncoding.DecodeString(tok[dot+1:])
			return tok[:dot+1] + base64.RawURLEncoding.EncodeToString(sig[:len(sig)-6])
		}},
		{"non_base64", ReasonMalformedToken, func(t testing.TB, e *env) string { return "!!!!.@@@@.####" }},
		{"not_json", ReasonMalformedToken, func(t testing.TB, e *env) string {
			seg := base64.RawURLEncoding.EncodeToString([]byte("not json"))
			return seg + "." + seg + "." + seg
		}},
		{"two_segments", ReasonMalformedToken, func(t testing.TB, e *env) string {
			tok := e.tokenFor("alice")
			return tok[:strings.LastIndex(tok, ".")]
		}},
		{"empty", ReasonMissingToken, func(t testing.TB, e *env) string { return "" }},
		{"one_mib", ReasonTokenTooLarge, func(t testing.TB, e *env) string { return strings.Repeat("a", 1<<20) }},
		{"crit_header", ReasonMalformedToken, func(t testing.TB, e *env) string {
			return e.mint(e.claims("alice"), devidp.MintHeader("crit", []string{"exp"}))
		}},
		{"no_subject", ReasonMissingClaim, func(t testing.TB, e *env) string {
			c := e.claims("alice")
			delete(c, "sub")
			return e.mint(c)
		}},
		// Signed by the issuer, refused by go-oidc after the signature
		// verified: it names someone (the broker audits its refusal).
		{"exp_not_a_number", ReasonInvalidClaim, func(t testing.TB, e *env) string {
			c := e.claims("alice")
			c["exp"] = "tomorrow"
			return e.mint(c)
		}},
		{"groups_not_strings", ReasonInvalidClaim, func(t testing.TB, e *env) string {
			c := e.claims("alice")
			c["groups"] = []any{"sales", 7}
			return e.mint(c)
		}},
	}
}

func TestVerifyRejectsBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	for _, tc := range badTokenCases() {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token(t, e)
			before := len(e.logLines())
			e.v.anonymous.Reset() // each case logs its line (TestRefusalsOfAnonymousTokensSampled)
			p, err := e.v.Verify(t.Context(), tok)
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", p)
			}
			if !errors.Is(err, identity.ErrUnauthenticated) {
				t.Errorf("Verify error %v does not match ErrUnauthenticated", err)
			}
			var ae *identity.AuthError
			if !errors.As(err, &ae) || ae.Reason != tc.reason {
				t.Errorf("Verify reason = %q (%v), want %q", reasonOf(err), err, tc.reason)
			}
			if p.Valid() {
				t.Errorf("Verify returned a principal with the error: %+v", p)
			}
			lines := e.logLines()[before:]
			var rejected []map[string]any
			for _, l := range lines {
				if l["msg"] == "token rejected" {
					rejected = append(rejected, l)
				}
			}
			if len(rejected) != 1 || rejected[0]["reason"] != tc.reason {
				t.Errorf("log lines = %v, want one \"token rejected\" line with reason %s", lines, tc.reason)
			}
			assertNoTokenLeak(t, tok, err.Error(), e.logs.String())
		})
	}
}

// TestRefusalsOfAnonymousTokensSampled: anyone on the network can send
// tokens that name no one (not a JWT, a forged signature) as fast as they
// like, and each logged a warning: such refusals log one line per 10 s,
// which counts the others (`suppressed`). A refusal of a token a trusted
// issuer signed (expired) is logged every time.
func TestRefusalsOfAnonymousTokensSampled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{})
	rejected := func(reason string) (n int, suppressed []float64) {
		for _, l := range e.logLines() {
			if l["msg"] == "token rejected" && l["reason"] == reason {
				n++
				if s, ok := l["suppressed"].(float64); ok {
					suppressed = append(suppressed, s)
				}
			}
		}
		return n, suppressed
	}
	for range 50 {
		if _, err := e.v.Verify(t.Context(), "not-a-jwt"); reasonOf(err) != ReasonMalformedToken {
			t.Fatalf("Verify(not-a-jwt) = %v, want %s", err, ReasonMalformedToken)
		}
	}
	if n, _ := rejected(ReasonMalformedToken); n != 1 {
		t.Errorf("50 malformed tokens logged %d lines, want 1", n)
	}
	e.clock.Add(11 * time.Second)
	if _, err := e.v.Verify(t.Context(), "not-a-jwt"); reasonOf(err) != ReasonMalformedToken {
		t.Fatal(err)
	}
	if n, suppressed := rejected(ReasonMalformedToken); n != 2 || len(suppressed) != 2 || suppressed[1] != 49 {
		t.Errorf("after 10 s: %d lines, suppressed %v; want a second line counting the 49 not logged", n, suppressed)
	}
	c := e.claims("alice")
	c["exp"] = e.clock.Now().Add(-time.Hour).Unix()
	expired := e.mint(c)
	for range 3 {
		if _, err := e.v.Verify(t.Context(), expired); reasonOf(err) != ReasonExpired {
			t.Fatalf("Verify(expired) = %v, want %s", err, ReasonExpired)
		}
	}
	if n, _ := rejected(ReasonExpired); n != 3 {
		t.Errorf("3 expired tokens of the trusted issuer logged %d lines, want 3", n)
	}
}

func reasonOf(err error) string {
	var ae *identity.AuthError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	return ""
}

// assertNoTokenLeak checks that no segment of the token (nor the token)
// appears in the given texts.
func assertNoTokenLeak(t *testing.T, tok string, texts ...string) {
	t.Helper()
	for _, seg := range strings.Split(tok, ".") {
		if len(seg) < 12 {
			continue
		}
		probe := seg
		if len(probe) > 40 {
			probe = probe[len(probe)-40:]
		}
		for _, s := range texts {
			if strings.Contains(s, probe) {
				t.Fatalf("token material leaked into an error or log line")
			}
		}
	}
}

func TestVerifyClockSkew(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{issuer: func(ic *IssuerConfig) { ic.ClockSkew = Duration(2 * time.Minute) }})
	c := e.claims("alice")
	c["exp"] = e.clock.Now().Add(-time.Minute).Unix() // expired, within skew
	c["nbf"] = e.clock.Now().Add(time.Minute).Unix()  // future, within skew
	c["iat"] = e.clock.Now().Add(time.Minute).Unix()
	if _, err := e.v.Verify(t.Context(), e.mint(c)); err != nil {
		t.Errorf("Verify within the 2m skew: %v", err)
	}
	c["exp"] = e.clock.Now().Add(-3 * time.Minute).Unix()
	if _, err := e.v.Verify(t.Context(), e.mint(c)); reasonOf(err) != ReasonExpired {
		t.Errorf("Verify beyond the skew: %v, want %s", err, ReasonExpired)
	}
}

func TestVerifyAlgorithmAllowList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{issuer: func(ic *IssuerConfig) { ic.Algorithms = []string{"ES256"} }})
	if _, err := e.v.Verify(t.Context(), e.tokenFor("alice")); reasonOf(err) != ReasonAlgorithmNotAllowed {
		t.Errorf("RS256 token with an ES256-only allow-list: %v, want %s", err, ReasonAlgorithmNotAllowed)
	}
}

func TestVerifyKeyRotationAndRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{config: func(c *Config) {
		c.CacheEntries = -1
		c.JWKSRefreshInterval = Duration(time.Minute)
		c.JWKSMaxAge = Duration(10 * time.Minute)
	}})
	ctx := t.Context()
	jwksPath := strings.TrimPrefix(e.idp.JWKSURL(), e.idp.HTTP.URL)
	fetches := func() int { return e.transport.count(jwksPath) }
	if fetches() != 1 {
		t.Fatalf("JWKS fetches after Open = %d, want 1", fetches())
	}
	old := e.tokenFor("alice")
	if _, err := e.v.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}

	// A rotated key: the unknown kid triggers one refresh, then verifies.
	if _, err := e.idp.RotateKey(); err != nil {
		t.Fatal(err)
	}
	fresh := e.tokenFor("alice")
	if _, err := e.v.Verify(ctx, fresh); err != nil {
		t.Fatalf("Verify with the rotated key: %v", err)
	}
	if fetches() != 2 {
		t.Fatalf("JWKS fetches after rotation = %d, want 2", fetches())
	}
	// A flood of made-up kids within the interval costs no fetch.
	for i := range 50 {
		tok := e.mint(e.claims("alice"), devidp.MintKeyID("made-up-"+string(rune('a'+i%26))))
		if _, err := e.v.Verify(ctx, tok); reasonOf(err) != ReasonUnknownKeyID {
			t.Fatalf("made-up kid: %v, want %s", err, ReasonUnknownKeyID)
		}
	}
	if got := fetches(); got != 2 {
		t.Errorf("JWKS fetches after 50 unknown kids within the interval = %d, want 2", got)
	}
	// After the interval, one more refresh is allowed.
	e.clock.Add(2 * time.Minute)
	if _, err := e.v.Verify(ctx, e.mint(e.claims("alice"), devidp.MintKeyID("made-up-later"))); reasonOf(err) != ReasonUnknownKeyID {
		t.Fatalf("made-up kid after the interval: %v", err)
	}
	if fetches() != 3 {
		t.Errorf("JWKS fetches after the interval = %d, want 3", fetches())
	}

	// The old key is withdrawn: once the cached key set is older than
	// jwksMaxAge, tokens signed with it stop verifying.
	if err := e.idp.RetireOldKeys(); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(11 * time.Minute)
	if _, err := e.v.Verify(ctx, e.tokenFor("bob")); err != nil {
		t.Fatalf("Verify with the active key after max age: %v", err)
	}
	if _, err := e.v.Verify(ctx, old); reasonOf(err) != ReasonUnknownKeyID {
		t.Errorf("token of a withdrawn key: %v, want %s", err, ReasonUnknownKeyID)
	}
}

func TestVerifyIdPDownKeepsKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{config: func(c *Config) { c.CacheEntries = -1 }})
	ctx := t.Context()
	tok := e.tokenFor("alice")
	e.transport.fail.Store(true)
	if _, err := e.v.Verify(ctx, tok); err != nil {
		t.Errorf("Verify with a cached key while the IdP is down: %v", err)
	}
	if _, err := e.v.Verify(ctx, e.mint(e.claims("alice"), devidp.MintKeyID("new-kid"))); reasonOf(err) != ReasonKeysUnavailable {
		t.Errorf("unknown kid while the IdP is down: %v, want %s", err, ReasonKeysUnavailable)
	}
}

func TestOpenFailsWhenIdPUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	_, err := Open(t.Context(), Config{Issuers: []IssuerConfig{{Name: "gone", Issuer: u, Audiences: []string{"x"}}}}, nil)
	if !errors.Is(err, ErrIDPUnreachable) {
		t.Errorf("Open against a closed server = %v, want ErrIDPUnreachable", err)
	}
}

func TestVerifyCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{config: func(c *Config) { c.CacheEntries = 8 }})
	ctx := t.Context()
	tok := e.tokenFor("alice")
	p1, err := e.v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if e.v.cache.len() != 1 {
		t.Fatalf("cache entries = %d, want 1", e.v.cache.len())
	}
	p1.Groups[0] = "admins" // the caller's copy
	p2, err := e.v.Verify(ctx, tok)
	if err != nil || p2.Groups[0] != "sales" {
		t.Fatalf("cached Verify = %v %v, want the original groups", p2.Groups, err)
	}
	// Bounded.
	for range 20 {
		if _, err := e.v.Verify(ctx, e.tokenFor("bob")); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.v.cache.len(); n > 8 {
		t.Errorf("cache entries = %d, want at most 8", n)
	}
	// Never past the token's expiry.
	e.clock.Add(time.Hour + 2*time.Minute)
	if _, err := e.v.Verify(ctx, tok); reasonOf(err) != ReasonExpired {
		t.Errorf("cached token after expiry: %v, want %s", err, ReasonExpired)
	}
}

func TestVerifyMultiTenantEntra(t *testing.T) {
	t.Parallel()
	const t1, t2 = "11111111-2222-3333-4444-555555555555", "99999999-8888-7777-6666-555555555555"
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	clk := newClock()
	opts := func(tid string) []devidp.Option {
		return []devidp.Option{devidp.WithShape(devidp.ShapeEntra), devidp.WithTenantID(tid), devidp.WithUsers(userAlice), devidp.WithClock(clk.Now)}
	}
	idp1 := devidptest.Mount(t, srv, mux, "/"+t1+"/v2.0", opts(t1)...)
	idp2 := devidptest.Mount(t, srv, mux, "/"+t2+"/v2.0", opts(t2)...)
	template := srv.URL + "/{tenantid}/v2.0"
	// Entra's multi-tenant discovery ("organizations") announces the
	// template as issuer and the keys shared by all tenants.
	mux.HandleFunc("GET /organizations/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(idp1.Issuer() + "/.well-known/openid-configuration")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer func() { _ = resp.Body.Close() }()
		var doc map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&doc)
		doc["issuer"] = template
		_ = json.NewEncoder(w).Encode(doc)
	})
	cfg := Config{Issuers: []IssuerConfig{{
		Name: "entra", Issuer: template, Preset: PresetEntra, Audiences: []string{idp1.Audience()},
		AllowedTenants: []string{strings.ToUpper(t1)},
	}}}
	v, err := Open(t.Context(), cfg, nil, WithClock(clk.Now))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	tok1, _ := idp1.TokenFor("alice", "")
	p, err := v.Verify(t.Context(), tok1)
	if err != nil {
		t.Fatalf("Verify(allowed tenant): %v", err)
	}
	if p.Tenant != t1 || p.Issuer != idp1.Issuer() {
		t.Errorf("principal tenant %q issuer %q, want %s and %s", p.Tenant, p.Issuer, t1, idp1.Issuer())
	}
	tok2, _ := idp2.TokenFor("alice", "")
	if _, err := v.Verify(t.Context(), tok2); reasonOf(err) != ReasonTenantNotAllowed {
		t.Errorf("Verify(other tenant) = %v, want %s", err, ReasonTenantNotAllowed)
	}
	// Right issuer, tid of another tenant: refused.
	c, _ := idp1.AccessTokenClaims("alice", "")
	c["tid"] = t2
	mixed, _ := idp1.Mint(c)
	if _, err := v.Verify(t.Context(), mixed); reasonOf(err) != ReasonTenantNotAllowed {
		t.Errorf("Verify(iss of t1, tid of t2) = %v, want %s", err, ReasonTenantNotAllowed)
	}
	// A path-shaped "tenant" never matches the template.
	c, _ = idp1.AccessTokenClaims("alice", "")
	c["iss"] = srv.URL + "/" + t1 + "/evil/v2.0"
	if _, err := v.Verify(t.Context(), mustMint(t, idp1.Provider, c)); reasonOf(err) != ReasonUnknownIssuer {
		t.Errorf("Verify(iss with a path as tenant) = %v, want %s", err, ReasonUnknownIssuer)
	}
}

func mustMint(t *testing.T, p *devidp.Provider, c map[string]any) string {
	t.Helper()
	tok, err := p.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestVerifySingleTenantAllowList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{shape: devidp.ShapeEntra, issuer: func(ic *IssuerConfig) { ic.AllowedTenants = []string{"aaaaaaaa-0000-0000-0000-000000000000"} }})
	if _, err := e.v.Verify(t.Context(), e.tokenFor("alice")); reasonOf(err) != ReasonTenantNotAllowed {
		t.Errorf("Verify(tenant not allow-listed) = %v, want %s", err, ReasonTenantNotAllowed)
	}
}

// fakeGraph is an httptest Microsoft Graph that answers getMemberObjects
// for the users of a devidp provider, checking the app token it gets.
func fakeGraph(t *testing.T, idp *devidptest.Server, users ...devidp.User) *httptest.Server {
	t.Helper()
	members := map[string][]string{}
	for _, u := range users {
		for _, g := range u.Groups {
			members[idp.ObjectID(u.Username)] = append(members[idp.ObjectID(u.Username)], devidp.GroupID(g))
		}
		members[idp.ObjectID(u.Username)] = append(members[idp.ObjectID(u.Username)], "62e90394-69f5-4237-9190-012177145e10") // a directory role
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.0/users/{oid}/getMemberObjects", func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
		if !ok || err != nil {
			http.Error(w, `{"error":{"code":"InvalidAuthenticationToken"}}`, http.StatusUnauthorized)
			return
		}
		payload, err := jws.Verify(idp.PublicKey())
		var c map[string]any
		_ = json.Unmarshal(payload, &c)
		if err != nil || c["aud"] != "https://graph.microsoft.com" || c["azp"] != clientBroker.ID {
			http.Error(w, `{"error":{"code":"Authorization_RequestDenied"}}`, http.StatusForbidden)
			return
		}
		var body struct {
			SecurityEnabledOnly *bool `json:"securityEnabledOnly"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.SecurityEnabledOnly == nil {
			http.Error(w, `{"error":{"code":"BadRequest"}}`, http.StatusBadRequest)
			return
		}
		ids, ok := members[r.PathValue("oid")]
		if !ok {
			http.Error(w, `{"error":{"code":"Request_ResourceNotFound"}}`, http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)", "value": ids})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestGroupOverage(t *testing.T) {
	t.Parallel()
	secretFile := filepath.Join(t.TempDir(), "broker-secret")
	if err := os.WriteFile(secretFile, []byte(brokerSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	overIDP := []devidp.Option{devidp.WithGroupOverageThreshold(2)}
	groupMap := func(ic *IssuerConfig) {
		ic.GroupMap[devidp.GroupID("finance")] = "finance"
		ic.GroupMap[devidp.GroupID("emea")] = "emea"
	}

	t.Run("refuse", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOpt{shape: devidp.ShapeEntra, idpOpts: overIDP})
		_, err := e.v.Verify(t.Context(), e.tokenFor("carol"))
		if reasonOf(err) != ReasonGroupsOverage {
			t.Fatalf("overage in refuse mode: %v, want %s", err, ReasonGroupsOverage)
		}
		if !strings.Contains(err.Error(), "overage") {
			t.Errorf("error %q does not explain the overage", err)
		}
		// A user under the threshold is unaffected.
		if _, err := e.v.Verify(t.Context(), e.tokenFor("alice")); err != nil {
			t.Errorf("Verify(alice): %v", err)
		}
	})
	t.Run("hasgroups_refused", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOpt{shape: devidp.ShapeEntra})
		c := e.claims("alice")
		delete(c, "groups")
		c["hasgroups"] = true
		if _, err := e.v.Verify(t.Context(), e.mint(c)); reasonOf(err) != ReasonGroupsOverage {
			t.Errorf("hasgroups: %v, want %s", err, ReasonGroupsOverage)
		}
	})
	t.Run("graph", func(t *testing.T) {
		t.Parallel()
		var graphURL string
		e := newEnv(t, envOpt{shape: devidp.ShapeEntra, idpOpts: overIDP, issuer: func(ic *IssuerConfig) {
			groupMap(ic)
			ic.Overage = OverageConfig{Mode: OverageGraph, ClientID: clientBroker.ID, ClientSecretFile: secretFile, GraphURL: "http://127.0.0.1:1"}
		}})
		graph := fakeGraph(t, e.idp, userCarol)
		graphURL = graph.URL
		// Reopen with the fake Graph's address and the provider's token endpoint.
		cfg := e.cfg
		cfg.Issuers[0].Overage.GraphURL = graphURL
		cfg.Issuers[0].Overage.TokenURL = e.idp.TokenURL()
		v, err := Open(t.Context(), cfg, e.logger(), WithClock(e.clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		p, err := v.Verify(t.Context(), e.tokenFor("carol"))
		if err != nil {
			t.Fatalf("overage with Graph: %v", err)
		}
		if want := []string{"62e90394-69f5-4237-9190-012177145e10", "auditors", "emea", "finance"}; !cmp.Equal(p.Groups, want) {
			t.Errorf("groups from Graph = %v, want %v", p.Groups, want)
		}
		cfg.Issuers[0].DropUnmappedGroups = true
		v, err = Open(t.Context(), cfg, e.logger(), WithClock(e.clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		if p, err := v.Verify(t.Context(), e.tokenFor("carol")); err != nil || !cmp.Equal(p.Groups, []string{"auditors", "emea", "finance"}) {
			t.Errorf("groups with dropUnmappedGroups = %v %v", p.Groups, err)
		}
	})
	t.Run("graph_refuses", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOpt{shape: devidp.ShapeEntra, idpOpts: overIDP})
		graph := fakeGraph(t, e.idp, userCarol)
		cfg := e.cfg
		// The web client is not the app Graph trusts: 403.
		webSecretFile := filepath.Join(t.TempDir(), "web-secret")
		_ = os.WriteFile(webSecretFile, []byte(webSecret), 0o600)
		cfg.Issuers[0].Overage = OverageConfig{Mode: OverageGraph, ClientID: clientWeb.ID, ClientSecretFile: webSecretFile, GraphURL: graph.URL, TokenURL: e.idp.TokenURL()}
		v, err := Open(t.Context(), cfg, e.logger(), WithClock(e.clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(t.Context(), e.tokenFor("carol")); reasonOf(err) != ReasonGroupsLookupFailed {
			t.Errorf("Graph refusing: %v, want %s", err, ReasonGroupsLookupFailed)
		}
		// Graph unreachable: refused too, never "no groups".
		cfg.Issuers[0].Overage.GraphURL = "http://127.0.0.1:1"
		v, err = Open(t.Context(), cfg, e.logger(), WithClock(e.clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(t.Context(), e.tokenFor("carol")); reasonOf(err) != ReasonGroupsLookupFailed {
			t.Errorf("Graph unreachable: %v, want %s", err, ReasonGroupsLookupFailed)
		}
	})
}

func TestSeveralIssuers(t *testing.T) {
	t.Parallel()
	people := newEnv(t, envOpt{shape: devidp.ShapeEntra, issuer: func(ic *IssuerConfig) { ic.DropUnmappedGroups, ic.DropUnmappedRoles = true, true }})
	clk := people.clock
	// The contractors' Okta administrators named groups like ours.
	mallory := devidp.User{Username: "mallory", Password: randomString(), Groups: []string{"support", "sales", "sqlgate-admins"}}
	contractors := devidptest.Start(t, devidp.WithShape(devidp.ShapeOkta), devidp.WithUsers(userBob, mallory), devidp.WithClock(clk.Now), devidp.WithAudience("api://sqlgate"))
	contractorIssuer := IssuerConfig{
		Name: "contractors", Issuer: contractors.Issuer(), Preset: PresetOkta, Audiences: []string{"api://sqlgate"},
		GroupMap: map[string]string{"support": "contractor-support"}, DropUnmappedRoles: true,
	}
	cfg := people.cfg
	cfg.Issuers = append(slices.Clone(cfg.Issuers), contractorIssuer)
	// Unmapped groups passing through: refused before anything starts.
	if _, err := Open(t.Context(), cfg, nil, WithClock(clk.Now)); err == nil ||
		!strings.Contains(err.Error(), `issuer "contractors": with several issuers every issuer needs dropUnmappedGroups: true`) {
		t.Fatalf("Open(contractors' groups passing through) = %v, want a refusal naming dropUnmappedGroups", err)
	}
	cfg.Issuers[1].DropUnmappedGroups = true
	v, err := Open(t.Context(), cfg, nil, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := contractors.TokenFor("mallory", "")
	if pm, err := v.Verify(t.Context(), tok); err != nil || !cmp.Equal(pm.Groups, []string{"contractor-support"}) {
		t.Errorf("contractor in groups named sales and sqlgate-admins: %+v %v, want only contractor-support", pm, err)
	}
	pa, err := v.Verify(t.Context(), people.tokenFor("alice"))
	if err != nil || pa.Issuer != people.idp.Issuer() {
		t.Fatalf("Entra token: %+v %v", pa, err)
	}
	tok, _ = contractors.TokenFor("bob", "")
	pb, err := v.Verify(t.Context(), tok)
	if err != nil || pb.Issuer != contractors.Issuer() || !cmp.Equal(pb.Groups, []string{"contractor-support"}) {
		t.Fatalf("Okta token: %+v %v", pb, err)
	}
	if u, ok := v.Issuer("contractors"); !ok || u != contractors.Issuer() {
		t.Errorf("Issuer(contractors) = %q %v", u, ok)
	}
	// The Entra audience does not open the Okta issuer.
	tok, _ = contractors.TokenFor("bob", people.idp.Audience())
	if _, err := v.Verify(t.Context(), tok); reasonOf(err) != ReasonAudienceMismatch {
		t.Errorf("cross-issuer audience: %v, want %s", err, ReasonAudienceMismatch)
	}
}

func TestVerifyWithdrawnKeyRefusedWhileJWKSStaysDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{config: func(c *Config) {
		c.CacheEntries = -1
		c.JWKSRefreshInterval = Duration(time.Minute)
		c.JWKSMaxAge = Duration(10 * time.Minute)
	}})
	ctx := t.Context()
	c := e.claims("alice")
	c["exp"] = e.clock.Now().Add(3 * time.Hour).Unix()
	old := e.mint(c) // signed with the key about to be withdrawn
	if _, err := e.idp.RotateKey(); err != nil {
		t.Fatal(err)
	}
	if err := e.idp.RetireOldKeys(); err != nil {
		t.Fatal(err)
	}
	e.transport.fail.Store(true)
	// Within the grace period (up to twice jwksMaxAge after the last
	// fetch) the cached keys still serve while the JWKS cannot be fetched.
	e.clock.Add(11 * time.Minute)
	if _, err := e.v.Verify(ctx, old); err != nil {
		t.Errorf("cached key within the grace period: %v", err)
	}
	// Past it, nothing verifies until a fetch succeeds.
	for _, d := range []time.Duration{10 * time.Minute, 40 * time.Minute} {
		e.clock.Add(d)
		if _, err := e.v.Verify(ctx, old); reasonOf(err) != ReasonKeysUnavailable {
			t.Errorf("key set past twice jwksMaxAge, JWKS down: %v, want %s", err, ReasonKeysUnavailable)
		}
	}
	// The JWKS is back: the withdrawn key stays refused, the current one
	// verifies.
	e.transport.fail.Store(false)
	e.clock.Add(2 * time.Minute)
	if _, err := e.v.Verify(ctx, old); reasonOf(err) != ReasonUnknownKeyID {
		t.Errorf("withdrawn key after the JWKS is back: %v, want %s", err, ReasonUnknownKeyID)
	}
	if _, err := e.v.Verify(ctx, e.tokenFor("bob")); err != nil {
		t.Errorf("current key after the JWKS is back: %v", err)
	}
}

// noAuthTimeWarnings counts the log lines warning that an issuer's tokens
// carry no auth_time.
func noAuthTimeWarnings(e *env) int {
	n := 0
	for _, l := range e.logLines() {
		if msg, _ := l["msg"].(string); strings.Contains(msg, "carry no auth_time") && l["level"] == "WARN" {
			n++
		}
	}
	return n
}

func TestVerifyEntraWithoutAuthTimeWarnsOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{shape: devidp.ShapeEntra, config: func(c *Config) { c.CacheEntries = -1 }})
	for range 3 {
		if _, err := e.v.Verify(t.Context(), e.tokenFor("alice")); err != nil {
			t.Fatalf("Entra token without auth_time: %v", err)
		}
	}
	if n := noAuthTimeWarnings(e); n != 1 {
		t.Errorf("warnings about the missing auth_time after three tokens = %d, want 1", n)
	}
}

func TestVerifyRequireAuthTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{shape: devidp.ShapeEntra, issuer: func(ic *IssuerConfig) { ic.RequireAuthTime = true }})
	ctx := t.Context()
	if _, err := e.v.Verify(ctx, e.tokenFor("alice")); reasonOf(err) != ReasonMissingClaim {
		t.Errorf("user token without auth_time: %v, want %s", err, ReasonMissingClaim)
	}
	// With the optional claim configured at Entra.
	c := e.claims("alice")
	c["auth_time"] = e.clock.Now().Add(-time.Hour).Unix()
	p, err := e.v.Verify(ctx, e.mint(c))
	if err != nil || !p.AuthTime.Equal(e.clock.Now().Add(-time.Hour)) {
		t.Errorf("user token with auth_time = %v, %v", p.AuthTime, err)
	}
	// Service tokens never carry auth_time: each is a new authentication.
	svc := e.openClient(ClientConfig{ClientID: clientSvc.ID, ClientSecret: serviceSecret})
	st, err := svc.LoginClientCredentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := e.v.Verify(ctx, st.Bearer()); err != nil || !p.Service {
		t.Errorf("service token under requireAuthTime = %+v, %v", p, err)
	}
	if n := noAuthTimeWarnings(e); n != 0 {
		t.Errorf("warnings about the missing auth_time with requireAuthTime = %d, want 0", n)
	}
}

// TestVerifyAllowedClients: a token addressed to sqlgate's audience but
// obtained by another application of the provider (Okta's default
// authorization server serves every app of the org; any Entra app of the
// tenant can get an app-only token for the API) is refused, by the client
// it names: azp, client_id, cid or appid, else an ID token's audience.
func TestVerifyAllowedClients(t *testing.T) {
	t.Parallel()
	otherSecret := randomString()
	other := devidp.Client{ID: "hr-portal", Name: "HR portal", Secret: otherSecret}
	for _, shape := range []devidp.Shape{devidp.ShapeGeneric, devidp.ShapeEntra, devidp.ShapeOkta} {
		t.Run(string(shape), func(t *testing.T) {
			t.Parallel()
			idpOpts := []devidp.Option{devidp.WithClients(other)}
			if shape == devidp.ShapeOkta {
				idpOpts = append(idpOpts, devidp.WithAudience("api://default"))
			}
			e := newEnv(t, envOpt{shape: shape, idpOpts: idpOpts, issuer: func(ic *IssuerConfig) {
				// The dashboard's client (clientID) is allowed implicitly.
				ic.AllowedClients = []string{clientCLI.ID, clientSvc.ID}
			}})
			ctx := t.Context()

			// sqlgate's own clients: the CLI's user token, the service's
			// token, the dashboard's ID token.
			if p, err := e.v.Verify(ctx, e.passwordToken("alice", alicePassword, "openid")["access_token"].(string)); err != nil || len(p.Groups) == 0 {
				t.Fatalf("Verify(CLI's token) = %+v, %v", p, err)
			}
			svc, err := e.idp.ServiceTokenFor(clientSvc.ID, "")
			if err != nil {
				t.Fatal(err)
			}
			if p, err := e.v.Verify(ctx, svc); err != nil || !p.Service {
				t.Errorf("Verify(allowed service's token) = %+v, %v", p, err)
			}
			id, err := e.idp.IDTokenFor("alice", clientWeb.ID, "")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.v.Verify(ctx, id); err != nil {
				t.Errorf("Verify(dashboard's ID token) = %v", err)
			}

			// Another application of the same provider: its user's access
			// token for sqlgate's audience, and its app-only token.
			oc := e.openClient(ClientConfig{ClientID: other.ID, ClientSecret: otherSecret, Scopes: []string{"openid"}})
			ut, err := oc.LoginPassword(ctx, "alice", alicePassword)
			if err != nil {
				t.Fatal(err)
			}
			st, err := oc.LoginClientCredentials(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for name, tok := range map[string]string{"user token": ut.AccessToken, "app-only token": st.AccessToken} {
				p, err := e.v.Verify(ctx, tok)
				if reasonOf(err) != ReasonClientNotAllowed || !errors.Is(err, identity.ErrUnauthenticated) {
					t.Errorf("Verify(other app's %s) = %+v, %v; want %s", name, p, err, ReasonClientNotAllowed)
					continue
				}
				if !strings.Contains(err.Error(), `client "hr-portal" is not in the issuer's allowedClients`) {
					t.Errorf("refusal %q does not name the client", err)
				}
				assertNoTokenLeak(t, tok, err.Error(), e.logs.String())
			}
		})
	}
}

// TestVerifyClientClaims: the client is read from azp, client_id, cid,
// appid (first present); a token naming none is an ID token whose single
// audience is its client.
func TestVerifyClientClaims(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{shape: devidp.ShapeEntra, config: func(c *Config) { c.CacheEntries = -1 }, issuer: func(ic *IssuerConfig) {
		ic.AllowedClients = []string{clientCLI.ID}
		ic.Audiences = append(ic.Audiences, "hr-portal")
	}})
	ctx := t.Context()
	tests := []struct {
		name   string
		edit   func(c map[string]any)
		reason string
	}{
		{"azp_allowed", func(map[string]any) {}, ""},
		{"azp_other", func(c map[string]any) { c["azp"] = "hr-portal" }, ReasonClientNotAllowed},
		{"azp_first", func(c map[string]any) { c["azp"] = "hr-portal"; c["appid"] = clientCLI.ID }, ReasonClientNotAllowed},
		{"client_id", func(c map[string]any) { delete(c, "azp"); c["client_id"] = "hr-portal" }, ReasonClientNotAllowed},
		{"cid", func(c map[string]any) { delete(c, "azp"); c["cid"] = "hr-portal" }, ReasonClientNotAllowed},
		{"appid_v1", func(c map[string]any) { delete(c, "azp"); c["appid"] = "hr-portal" }, ReasonClientNotAllowed},
		{"appid_v1_allowed", func(c map[string]any) { delete(c, "azp"); c["appid"] = clientCLI.ID }, ""},
		{"azp_not_string", func(c map[string]any) { c["azp"] = []string{clientCLI.ID} }, ReasonInvalidClaim},
		{"id_token_audience", func(c map[string]any) { delete(c, "azp"); c["aud"] = clientWeb.ID }, ""},
		{"id_token_other_audience", func(c map[string]any) { delete(c, "azp"); c["aud"] = "hr-portal" }, ReasonClientNotAllowed},
		{"no_client_two_audiences", func(c map[string]any) { delete(c, "azp"); c["aud"] = []string{clientCLI.ID, "hr-portal"} }, ReasonClientNotAllowed},
	}
	for _, tc := range tests {
		c := e.claims("alice")
		tc.edit(c)
		_, err := e.v.Verify(ctx, e.mint(c))
		if got := reasonOf(err); got != tc.reason {
			t.Errorf("%s: Verify = %v, want reason %q", tc.name, err, tc.reason)
		}
	}
}

// TestVerifyMFAEvidence: only amr values saying several factors were used
// (mfa, mca) count as MFA by default; a one-time code or a key alone is one
// factor. mfaAMRValues adds values an issuer uses for MFA sign-ins.
func TestVerifyMFAEvidence(t *testing.T) {
	t.Parallel()
	plain := newEnv(t, envOpt{config: func(c *Config) { c.CacheEntries = -1 }})
	extended := newEnv(t, envOpt{config: func(c *Config) { c.CacheEntries = -1 }, issuer: func(ic *IssuerConfig) {
		ic.MFAAMRValues = []string{"hwk", "ngcmfa"}
	}})
	tests := []struct {
		amr           []string
		mfa, extended bool
	}{
		{[]string{"pwd", "mfa", "otp"}, true, true},
		{[]string{"mca"}, true, true},
		{[]string{"otp"}, false, false},
		{[]string{"swk"}, false, false},
		{[]string{"sc"}, false, false},
		{[]string{"fido"}, false, false},
		{[]string{"pwd", "otp"}, false, false},
		{[]string{"hwk"}, false, true},
		{[]string{"ngcmfa"}, false, true},
		{[]string{"pwd"}, false, false},
	}
	for _, tc := range tests {
		for _, x := range []struct {
			e    *env
			want bool
		}{{plain, tc.mfa}, {extended, tc.extended}} {
			c := x.e.claims("bob")
			c["amr"] = tc.amr
			p, err := x.e.v.Verify(t.Context(), x.e.mint(c))
			if err != nil {
				t.Fatal(err)
			}
			if p.MFA != x.want {
				t.Errorf("amr %v (mfaAMRValues %v): MFA = %v, want %v", tc.amr, x.e.cfg.Issuers[0].MFAAMRValues, p.MFA, x.want)
			}
		}
	}
}

// TestOpenWarnsWithoutAllowedClients: a production issuer without
// allowedClients is named in a warning at start; a loopback development
// provider, or an issuer with allowedClients, is not.
func TestOpenWarnsWithoutAllowedClients(t *testing.T) {
	t.Parallel()
	warnings := func(e *env) int {
		n := 0
		for _, l := range e.logLines() {
			if msg, _ := l["msg"].(string); strings.Contains(msg, "no allowedClients") && l["level"] == "WARN" {
				n++
			}
		}
		return n
	}
	if n := warnings(newEnv(t, envOpt{})); n != 0 {
		t.Errorf("loopback development issuer: %d warnings, want 0", n)
	}
	// A provider on a real name: example.com, which the httptest
	// certificate names, served by a TLS test server.
	mux := http.NewServeMux()
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	idp := devidptest.Mount(t, srv, mux, "/idp", devidp.WithIssuer("https://example.com/idp"), devidp.WithUsers(userAlice))
	base, ok := srv.Client().Transport.(*http.Transport)
	if !ok {
		t.Fatal("the TLS test server's client has no *http.Transport")
	}
	tr := base.Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
	}
	for _, tc := range []struct {
		clients []string
		want    int
	}{{nil, 1}, {[]string{"sqlgate-cli"}, 0}} {
		logs := &syncBuffer{}
		cfg := Config{Issuers: []IssuerConfig{{Name: "corp", Issuer: idp.Issuer(), Audiences: []string{"sqlgate"}, AllowedClients: tc.clients}}}
		if _, err := Open(t.Context(), cfg, slog.New(slog.NewJSONHandler(logs, nil)), WithHTTPClient(&http.Client{Transport: tr})); err != nil {
			t.Fatalf("Open: %v", err)
		}
		e := &env{logs: logs}
		if n := warnings(e); n != tc.want {
			t.Errorf("issuer %s with allowedClients %v: %d warnings, want %d; logs: %s", idp.Issuer(), tc.clients, n, tc.want, logs)
		}
		if tc.want > 0 && !strings.Contains(logs.String(), `"issuer":"corp"`) {
			t.Errorf("the warning does not name the issuer: %s", logs)
		}
	}
}
