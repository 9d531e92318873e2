package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// maxJWKSBytes bounds a key-set response.
const maxJWKSBytes = 1 << 20

// staleKeysFactor bounds the use of a key set that could not be refetched:
// it verifies until staleKeysFactor×jwksMaxAge after its fetch (the grace
// period is one more jwksMaxAge, 1h by default), then no more.
const staleKeysFactor = 2

// errKeysStale refuses a token while the key set is too old to use and
// cannot be fetched again.
var errKeysStale = errors.New("the cached key set is older than twice jwksMaxAge and the JWKS endpoint cannot be fetched")

// sigResult carries information between the verifier and the key set
// through go-oidc, which calls the key set with the context it was given:
// the already decoded header and payload going in (so the token is not
// parsed twice), and why a check failed coming out (go-oidc flattens the
// key set's error into a string).
type sigResult struct {
	alg, kid string
	payload  []byte
	reason   string
	// verified: the signature verified with a key of the issuer's set, so
	// whatever go-oidc refuses afterwards is in a token the issuer signed.
	verified bool
}

type sigResultKey struct{}

// keySet is a JWKS cache that go-oidc verifies signatures with. Unlike
// go-oidc's RemoteKeySet it refetches for an unknown kid at most once per
// minInterval (a flood of made-up kids costs the provider one request per
// interval), and refetches a key set older than maxAge so withdrawn keys
// stop verifying. When the refetch fails the cached keys serve for at most
// [staleKeysFactor]×maxAge after the last successful fetch; past that every
// token of the issuer is refused (jwks_unavailable) until a fetch succeeds,
// so a withdrawn key does not verify for as long as the provider's JWKS
// endpoint is unreachable.
type keySet struct {
	url         string
	issuer      string // for logs
	client      *http.Client
	algs        []jose.SignatureAlgorithm
	minInterval time.Duration
	maxAge      time.Duration
	now         func() time.Time
	log         *slog.Logger

	flight singleflight.Group

	mu         sync.RWMutex
	keys       []jose.JSONWebKey
	fetched    time.Time // the last successful fetch: keys are fresh until fetched+maxAge
	retryAt    time.Time // after a failed max-age refetch: no other before this
	lastForced time.Time
}

var _ gooidc.KeySet = (*keySet)(nil)

// load fetches the key set the first time; Open fails if it cannot.
func (k *keySet) load(ctx context.Context) error {
	keys, err := k.fetch(ctx)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.keys, k.fetched = keys, k.now()
	k.mu.Unlock()
	return nil
}

// VerifySignature implements [gooidc.KeySet].
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	res, _ := ctx.Value(sigResultKey{}).(*sigResult)
	if res == nil {
		// Not called through Verifier.verify: decode here.
		res = &sigResult{}
		// go-jose decodes leniently: refuse the other spellings first.
		if err := checkCanonicalJWS(raw); err != nil {
			return nil, errors.New("malformed JWS")
		}
		jws, err := jose.ParseSignedCompact(raw, k.algs)
		if err != nil || len(jws.Signatures) != 1 {
			return nil, errors.New("malformed JWS")
		}
		res.alg, res.kid = jws.Signatures[0].Header.Algorithm, jws.Signatures[0].Header.KeyID
		res.payload = jws.UnsafePayloadWithoutVerification()
	}
	fail := func(reason string, err error) ([]byte, error) {
		res.reason = reason
		return nil, err
	}
	if !slices.Contains(k.algs, jose.SignatureAlgorithm(res.alg)) {
		return fail(ReasonAlgorithmNotAllowed, errors.New("algorithm not allowed"))
	}
	dot := strings.LastIndexByte(raw, '.')
	if dot < 0 {
		return fail(ReasonMalformedToken, errors.New("malformed JWS"))
	}
	sig, err := decodeCanonical(raw[dot+1:])
	if err != nil {
		return fail(ReasonMalformedToken, errors.New("signature is not canonical base64url"))
	}
	signed := raw[:dot]
	cur, err := k.current(ctx)
	if err != nil {
		return fail(ReasonKeysUnavailable, err)
	}
	found, verr := verifyWith(cur, res.kid, res.alg, signed, sig)
	if found {
		if verr != nil {
			return fail(ReasonInvalidSignature, verr)
		}
		res.verified = true
		return res.payload, nil
	}
	keys, refreshed, err := k.refreshForUnknownKid(ctx)
	if err != nil {
		return fail(ReasonKeysUnavailable, err)
	}
	if !refreshed {
		return fail(ReasonUnknownKeyID, errors.New("unknown key id (key set refresh rate-limited)"))
	}
	found, verr = verifyWith(keys, res.kid, res.alg, signed, sig)
	switch {
	case !found:
		return fail(ReasonUnknownKeyID, errors.New("unknown key id after key set refresh"))
	case verr != nil:
		return fail(ReasonInvalidSignature, verr)
	}
	res.verified = true
	return res.payload, nil
}

// verifyWith checks the signature over signed against the keys that match
// kid (all keys when the token names none) and alg. found is false when no
// key is a candidate.
func verifyWith(keys []jose.JSONWebKey, kid, alg, signed string, sig []byte) (found bool, err error) {
	for i := range keys {
		key := &keys[i]
		if kid != "" && key.KeyID != kid {
			continue
		}
		if key.Use == "enc" || (key.Algorithm != "" && key.Algorithm != alg) {
			continue
		}
		found = true
		if verifySignature(alg, key.Key, signed, sig) == nil {
			return true, nil
		}
	}
	if found {
		return true, errors.New("signature does not verify")
	}
	return false, nil
}

// verifySignature checks a JWS signature (RFC 7518 section 3) with the
// standard library. The key's type must suit the algorithm: an RSA key
// never verifies an ECDSA or EdDSA signature and the reverse.
func verifySignature(alg string, key any, signed string, sig []byte) error {
	var h crypto.Hash
	switch alg {
	case "RS256", "PS256", "ES256":
		h = crypto.SHA256
	case "RS384", "PS384", "ES384":
		h = crypto.SHA384
	case "RS512", "PS512", "ES512":
		h = crypto.SHA512
	case "EdDSA":
		pub, ok := key.(ed25519.PublicKey)
		if !ok || len(pub) != ed25519.PublicKeySize {
			return errors.New("EdDSA needs an Ed25519 key")
		}
		if !ed25519.Verify(pub, []byte(signed), sig) {
			return errors.New("bad signature")
		}
		return nil
	default:
		return fmt.Errorf("unsupported algorithm %q", alg)
	}
	hh := h.New()
	hh.Write([]byte(signed))
	digest := hh.Sum(nil)
	switch alg[0] {
	case 'R':
		pub, ok := key.(*rsa.PublicKey)
		if !ok {
			return errors.New("RS* needs an RSA key")
		}
		return rsa.VerifyPKCS1v15(pub, h, digest, sig)
	case 'P':
		pub, ok := key.(*rsa.PublicKey)
		if !ok {
			return errors.New("PS* needs an RSA key")
		}
		return rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	default: // 'E'
		pub, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return errors.New("ES* needs an ECDSA key")
		}
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		if pub.Curve != want {
			return errors.New("ECDSA key on the wrong curve for the algorithm")
		}
		size := (want.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return errors.New("bad ECDSA signature length")
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, digest, r, s) {
			return errors.New("bad signature")
		}
		return nil
	}
}

// current returns the cached keys, refetching first when they are older
// than maxAge. After a failed refetch the old keys serve on (the next try
// is after minInterval, not on every request), but only until they are
// staleKeysFactor×maxAge old: then current fails, and keeps failing
// without asking the provider more than once per minInterval, until a
// fetch succeeds.
func (k *keySet) current(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.RLock()
	keys, fetched, retryAt := k.keys, k.fetched, k.retryAt
	k.mu.RUnlock()
	now := k.now()
	age := now.Sub(fetched)
	if age < k.maxAge {
		return keys, nil
	}
	usable := age < staleKeysFactor*k.maxAge
	if now.Before(retryAt) {
		if usable {
			return keys, nil
		}
		return nil, errKeysStale
	}
	fresh, err := k.refresh(ctx, "max_age")
	if err == nil {
		return fresh, nil
	}
	k.mu.Lock()
	k.retryAt = now.Add(k.minInterval)
	k.mu.Unlock()
	if usable {
		return keys, nil
	}
	return nil, fmt.Errorf("%w: %w", errKeysStale, err)
}

// refreshForUnknownKid refetches the key set unless that happened less
// than minInterval ago because of an unknown kid.
func (k *keySet) refreshForUnknownKid(ctx context.Context) ([]jose.JSONWebKey, bool, error) {
	now := k.now()
	k.mu.Lock()
	if !k.lastForced.IsZero() && now.Sub(k.lastForced) < k.minInterval {
		k.mu.Unlock()
		return nil, false, nil
	}
	k.lastForced = now
	k.mu.Unlock()
	keys, err := k.refresh(ctx, "unknown_kid")
	if err != nil {
		return nil, false, err
	}
	return keys, true, nil
}

// refresh fetches the key set once for all concurrent callers.
func (k *keySet) refresh(ctx context.Context, trigger string) ([]jose.JSONWebKey, error) {
	v, err, _ := k.flight.Do("jwks", func() (any, error) {
		keys, err := k.fetch(ctx)
		if err != nil {
			k.log.WarnContext(ctx, "jwks refresh failed", "issuer", k.issuer, "trigger", trigger, "error", err)
			return nil, err
		}
		k.mu.Lock()
		k.keys, k.fetched = keys, k.now()
		k.mu.Unlock()
		k.log.InfoContext(ctx, "jwks refreshed", "issuer", k.issuer, "trigger", trigger, "keys", len(keys))
		return keys, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]jose.JSONWebKey), nil
}

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, &UnreachableError{URL: k.url, Err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, &UnreachableError{URL: k.url, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &UnreachableError{URL: k.url, Err: fmt.Errorf("status %s", resp.Status)}
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks %s: larger than %d bytes", k.url, maxJWKSBytes)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("jwks %s: %w", k.url, err)
	}
	var keys []jose.JSONWebKey
	for _, r := range raw.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(r); err != nil {
			// RFC 7517 section 5: skip keys we do not understand.
			continue
		}
		if !key.Valid() {
			continue
		}
		if !key.IsPublic() {
			key = key.Public()
		}
		switch key.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			keys = append(keys, key)
		}
		// Anything else (symmetric "oct" keys above all) never verifies.
	}
	return keys, nil
}
