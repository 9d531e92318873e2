package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// maxJWKSBytes bounds a key-set response.
const maxJWKSBytes = 1 << 20

// sigResult carries, through the context, why a signature check failed:
// go-oidc flattens the key set's error into a string.
type sigResult struct{ reason string }

type sigResultKey struct{}

// keySet is a JWKS cache that go-oidc verifies signatures with. Unlike
// go-oidc's RemoteKeySet it refetches for an unknown kid at most once per
// minInterval (a flood of made-up kids costs the provider one request per
// interval), and refetches a key set older than maxAge so withdrawn keys
// stop verifying.
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
	fetched    time.Time // keys are fresh until fetched+maxAge
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
	fail := func(reason string, err error) ([]byte, error) {
		if res != nil {
			res.reason = reason
		}
		return nil, err
	}
	jws, err := jose.ParseSigned(raw, k.algs)
	if err != nil || len(jws.Signatures) != 1 {
		return fail(ReasonMalformedToken, errors.New("malformed JWS"))
	}
	hdr := jws.Signatures[0].Header
	payload, found, verr := verifyWith(jws, k.current(ctx), hdr.KeyID, hdr.Algorithm)
	if found {
		if verr != nil {
			return fail(ReasonInvalidSignature, verr)
		}
		return payload, nil
	}
	keys, refreshed, err := k.refreshForUnknownKid(ctx)
	if err != nil {
		return fail(ReasonKeysUnavailable, err)
	}
	if !refreshed {
		return fail(ReasonUnknownKeyID, errors.New("unknown key id (key set refresh rate-limited)"))
	}
	payload, found, verr = verifyWith(jws, keys, hdr.KeyID, hdr.Algorithm)
	switch {
	case !found:
		return fail(ReasonUnknownKeyID, errors.New("unknown key id after key set refresh"))
	case verr != nil:
		return fail(ReasonInvalidSignature, verr)
	}
	return payload, nil
}

// verifyWith checks jws against the keys that match kid (all keys when the
// token names none) and alg. found is false when no key is a candidate.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid, alg string) (payload []byte, found bool, err error) {
	for i := range keys {
		key := &keys[i]
		if kid != "" && key.KeyID != kid {
			continue
		}
		if key.Use == "enc" || (key.Algorithm != "" && key.Algorithm != alg) {
			continue
		}
		found = true
		if p, err := jws.Verify(key); err == nil {
			return p, true, nil
		}
	}
	if found {
		return nil, true, errors.New("signature does not verify")
	}
	return nil, false, nil
}

// current returns the cached keys, refetching first when they are older
// than maxAge. A failed refetch keeps the old keys and is retried after
// minInterval.
func (k *keySet) current(ctx context.Context) []jose.JSONWebKey {
	k.mu.RLock()
	keys, fetched := k.keys, k.fetched
	k.mu.RUnlock()
	now := k.now()
	if now.Sub(fetched) < k.maxAge {
		return keys
	}
	fresh, err := k.refresh(ctx, "max_age")
	if err != nil {
		k.mu.Lock()
		// Try again after minInterval, not on every request.
		k.fetched = now.Add(-k.maxAge).Add(k.minInterval)
		k.mu.Unlock()
		return keys
	}
	return fresh
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
	defer resp.Body.Close()
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
