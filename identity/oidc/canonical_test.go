package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/sqlgate/sqlgate/identity/devidp"
)

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// respell returns seg with the lowest unused bit of its last character set:
// another spelling of the same bytes, which a lenient decoder accepts. ok
// is false when seg has no unused bits (its length is a multiple of 4).
func respell(seg string) (string, bool) {
	if n := len(seg) % 4; n != 2 && n != 3 {
		return "", false
	}
	last := strings.IndexByte(base64URLAlphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(base64URLAlphabet[last^1]), true
}

// respellPart returns tok with segment i respelt (see respell).
func respellPart(t *testing.T, tok string, i int) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	v, ok := respell(parts[i])
	if !ok {
		t.Fatalf("segment %d of %d characters has no unused bits", i, len(parts[i]))
	}
	parts[i] = v
	return strings.Join(parts, ".")
}

func TestRespellIsTheSameBytes(t *testing.T) {
	t.Parallel()
	for _, b := range [][]byte{{0xff}, {0xff, 0xfe}, []byte("hello")} {
		seg := base64.RawURLEncoding.EncodeToString(b)
		v, ok := respell(seg)
		if !ok || v == seg {
			t.Fatalf("respell(%q) = %q, %v", seg, v, ok)
		}
		got, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || string(got) != string(b) {
			t.Fatalf("lenient decoding of %q = %x, %v; want %x", v, got, err, b)
		}
		if _, err := decodeCanonical(v); err == nil {
			t.Errorf("decodeCanonical(%q) accepted a non-canonical spelling", v)
		}
		if got, err := decodeCanonical(seg); err != nil || string(got) != string(b) {
			t.Errorf("decodeCanonical(%q) = %x, %v", seg, got, err)
		}
	}
	for _, bad := range []string{"AB\nC", "AB\rCD", "AB=", "QQ=="} {
		if _, err := decodeCanonical(bad); err == nil {
			t.Errorf("decodeCanonical(%q) accepted", bad)
		}
	}
}

// TestVerifyRefusesNonCanonicalSegments: a token with any segment spelt
// otherwise than canonically (the same bytes: its signature still
// verifies when the signature is respelt) is refused as malformed_token,
// also right after the canonical token was verified and cached, so that
// no other spelling of a token passes for it.
func TestVerifyRefusesNonCanonicalSegments(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{config: func(c *Config) { c.CacheEntries = 8 }})
	ctx := t.Context()
	// A token whose three segments all have unused bits: pad the header
	// and the payload until they do (the RS256 signature, 256 bytes, has).
	var tok string
	for i := 0; tok == ""; i++ {
		c := e.claims("alice")
		c["pad"] = strings.Repeat("x", i%3)
		cand := e.mint(c, devidp.MintHeader("pad", strings.Repeat("y", i/3)))
		parts := strings.Split(cand, ".")
		if len(parts[0])%4 > 1 && len(parts[1])%4 > 1 && len(parts[2])%4 > 1 {
			tok = cand
		}
		if i > 20 {
			t.Fatal("no token with unused bits in every segment")
		}
	}
	if _, err := e.v.Verify(ctx, tok); err != nil {
		t.Fatalf("Verify(canonical) = %v", err)
	}
	for i, name := range []string{"header", "payload", "signature"} {
		v := respellPart(t, tok, i)
		_, err := e.v.Verify(ctx, v)
		if got := reasonOf(err); got != ReasonMalformedToken {
			t.Errorf("Verify(token with the %s respelt) = %v, want %s", name, err, ReasonMalformedToken)
		}
		assertNoTokenLeak(t, v, e.logs.String())
		// Through go-oidc with the verifier's context, as the web login
		// path does.
		if _, _, _, err := e.v.verify(ctx, v, e.clock.Now(), ownClient{}); reasonOf(err) != ReasonMalformedToken {
			t.Errorf("verify(token with the %s respelt) = %v, want %s", name, err, ReasonMalformedToken)
		}
	}
	if n := e.v.cache.len(); n != 1 {
		t.Errorf("cache entries = %d, want the canonical token only", n)
	}
	if _, err := e.v.Verify(ctx, tok); err != nil {
		t.Errorf("Verify(canonical) after the respelt ones = %v", err)
	}
}

// TestKeySetRefusesNonCanonicalSignature: the key set, also called
// without the verifier (go-jose parses then, leniently), verifies only the
// canonical spelling of a signature.
func TestKeySetRefusesNonCanonicalSignature(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks := staticKeySet(jose.JSONWebKey{Key: &key.PublicKey, KeyID: "p256"})
	const payload = `{"sub":"x"}`
	tok := sign(t, jose.ES256, key, "p256", payload) // 64-byte signature: 86 characters, 4 unused bits
	if _, err := ks.VerifySignature(t.Context(), tok); err != nil {
		t.Fatalf("VerifySignature(canonical) = %v", err)
	}
	v := respellPart(t, tok, 2)
	if _, err := ks.VerifySignature(t.Context(), v); err == nil {
		t.Error("VerifySignature(respelt signature) without the verifier's context succeeded")
	}
	var hdr jwtHeader
	if err := decodeSegment(strings.Split(tok, ".")[0], &hdr, false); err != nil {
		t.Fatal(err)
	}
	res := &sigResult{alg: hdr.Alg, kid: hdr.Kid, payload: []byte(payload)}
	if _, err := ks.VerifySignature(context.WithValue(t.Context(), sigResultKey{}, res), v); err == nil || res.reason != ReasonMalformedToken {
		t.Errorf("VerifySignature(respelt signature) = %v (%s), want %s", err, res.reason, ReasonMalformedToken)
	}
}
