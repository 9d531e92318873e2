package oidc

import (
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"github.com/sqlgate/sqlgate/identity"
)

// tokenCache remembers verified tokens by their SHA-256 until they expire,
// so a client that presents the same token again costs a hash and a map
// lookup instead of a signature check. It is bounded: when full, expired
// entries go first, then arbitrary ones.
type tokenCache struct {
	max int

	mu sync.RWMutex
	m  map[[sha256.Size]byte]cacheEntry
}

type cacheEntry struct {
	p   identity.Principal
	exp time.Time
}

func newTokenCache(limit int) *tokenCache {
	return &tokenCache{max: limit, m: make(map[[sha256.Size]byte]cacheEntry, min(limit, 1024))}
}

func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (identity.Principal, bool) {
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || !now.Before(e.exp) {
		return identity.Principal{}, false
	}
	return clonePrincipal(e.p), true
}

func (c *tokenCache) put(key [sha256.Size]byte, p identity.Principal, now time.Time) {
	if !now.Before(p.Expiry) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k, e := range c.m {
			if !now.Before(e.exp) {
				delete(c.m, k)
			}
		}
		// Still full: drop a tenth, chosen by map order (effectively random).
		for k := range c.m {
			if len(c.m) < c.max-c.max/10 {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[key] = cacheEntry{p: clonePrincipal(p), exp: p.Expiry}
}

func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

// clonePrincipal copies the slices so callers cannot change a cached value.
func clonePrincipal(p identity.Principal) identity.Principal {
	p.Groups = slices.Clone(p.Groups)
	p.Roles = slices.Clone(p.Roles)
	p.Scopes = slices.Clone(p.Scopes)
	p.AMR = slices.Clone(p.AMR)
	return p
}
