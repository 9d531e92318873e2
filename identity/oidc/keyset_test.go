package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"log/slog"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// staticKeySet is a keySet whose keys are given and never refetched.
func staticKeySet(keys ...jose.JSONWebKey) *keySet {
	algs := make([]jose.SignatureAlgorithm, len(asymmetricAlgs))
	for i, a := range asymmetricAlgs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	now := time.Now()
	return &keySet{
		url: "http://127.0.0.1:1/keys", issuer: "static", client: nil, algs: algs,
		minInterval: time.Hour, maxAge: 24 * time.Hour, now: func() time.Time { return now },
		log: slog.New(slog.DiscardHandler), keys: keys, fetched: now, lastForced: now,
	}
}

func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid, payload string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKeySetAlgorithms(t *testing.T) {
	t.Parallel()
	rsaKey := foreignKey
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ks := staticKeySet(
		jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa"},
		jose.JSONWebKey{Key: &p256.PublicKey, KeyID: "p256"},
		jose.JSONWebKey{Key: &p384.PublicKey, KeyID: "p384"},
		jose.JSONWebKey{Key: &p521.PublicKey, KeyID: "p521"},
		jose.JSONWebKey{Key: edPub, KeyID: "ed"},
		jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa-rs256-only", Algorithm: "RS256"},
		jose.JSONWebKey{Key: &p256.PublicKey, KeyID: "p256-as-p384"},
	)
	const payload = `{"sub":"x"}`
	tests := []struct {
		name   string
		alg    jose.SignatureAlgorithm
		key    any
		kid    string
		reason string // "" = verifies
	}{
		{"RS256", jose.RS256, rsaKey, "rsa", ""},
		{"RS384", jose.RS384, rsaKey, "rsa", ""},
		{"RS512", jose.RS512, rsaKey, "rsa", ""},
		{"PS256", jose.PS256, rsaKey, "rsa", ""},
		{"PS384", jose.PS384, rsaKey, "rsa", ""},
		{"PS512", jose.PS512, rsaKey, "rsa", ""},
		{"ES256", jose.ES256, p256, "p256", ""},
		{"ES384", jose.ES384, p384, "p384", ""},
		{"ES512", jose.ES512, p521, "p521", ""},
		{"EdDSA", jose.EdDSA, edPriv, "ed", ""},
		{"no_kid_tries_all", jose.ES256, p256, "", ""},
		{"rsa_token_ec_key", jose.RS256, rsaKey, "p256", ReasonInvalidSignature},
		{"ec_token_rsa_key", jose.ES256, p256, "rsa", ReasonInvalidSignature},
		{"ed_token_rsa_key", jose.EdDSA, edPriv, "rsa", ReasonInvalidSignature},
		{"es384_token_p256_key", jose.ES384, p384, "p256-as-p384", ReasonInvalidSignature},
		{"ps256_against_rs256_only_key", jose.PS256, rsaKey, "rsa-rs256-only", ReasonUnknownKeyID},
		{"wrong_key", jose.ES256, p384, "p256", ReasonInvalidSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var tok string
			if tc.name == "wrong_key" {
				// ES256 signature made with a P-256 key that is not the published one.
				other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
				tok = sign(t, jose.ES256, other, "p256", payload)
			} else {
				tok = sign(t, tc.alg, tc.key, tc.kid, payload)
			}
			// As Verifier.verify does: header and payload decoded once.
			var hdr jwtHeader
			if err := decodeSegment(strings.Split(tok, ".")[0], &hdr, false); err != nil {
				t.Fatal(err)
			}
			res := &sigResult{alg: hdr.Alg, kid: hdr.Kid, payload: []byte(payload)}
			got, err := ks.VerifySignature(context.WithValue(t.Context(), sigResultKey{}, res), tok)
			if tc.reason == "" {
				if err != nil || string(got) != payload {
					t.Fatalf("VerifySignature(%s) = %q, %v (%s); want the payload", tc.name, got, err, res.reason)
				}
				// The stand-alone route (no context from the verifier) agrees.
				if got, err := ks.VerifySignature(t.Context(), tok); err != nil || string(got) != payload {
					t.Fatalf("VerifySignature(%s) without context = %q, %v", tc.name, got, err)
				}
				// Any change to the signed part breaks it.
				parts := strings.Split(tok, ".")
				tampered := parts[0] + "." + parts[1] + "fQ." + parts[2]
				if _, err := ks.VerifySignature(context.WithValue(t.Context(), sigResultKey{}, &sigResult{alg: hdr.Alg, kid: hdr.Kid}), tampered); err == nil {
					t.Errorf("tampered %s token verified", tc.name)
				}
				return
			}
			if err == nil {
				t.Fatalf("VerifySignature(%s) succeeded, want %s", tc.name, tc.reason)
			}
			if res.reason != tc.reason {
				t.Errorf("VerifySignature(%s) reason = %q, want %q", tc.name, res.reason, tc.reason)
			}
		})
	}
}

func TestKeySetSkipsSymmetricKeys(t *testing.T) {
	t.Parallel()
	// An "oct" key in a JWKS must never be used: parse a set holding one.
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON([]byte(`{"kty":"oct","kid":"h","k":"c2VjcmV0"}`)); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.Key.([]byte); !ok {
		t.Fatalf("test key is not symmetric: %T", k.Key)
	}
	if err := verifySignature("RS256", k.Key, "a.b", []byte("sig")); err == nil {
		t.Errorf("verifySignature with a symmetric key succeeded")
	}
}
