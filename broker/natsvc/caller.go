package natsvc

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
)

// RequestInfoHeader is the header the NATS server adds when a request
// crosses a service import (server.ClientInfoHdr).
const RequestInfoHeader = "Nats-Request-Info"

// userKeyTagPrefix is natsauth.UserKeyTagPrefix (not imported: transports
// and adapters do not import each other); a test keeps them equal.
const userKeyTagPrefix = "nkey:"

// trust is what an attested caller must match.
type trust struct {
	account     string
	signingKeys map[string]struct{}
	cache       *callerCache
}

// callerCacheSize bounds the cache of parsed headers. A connection's
// Nats-Request-Info is the same on every request until its RTT is
// re-measured, so a small cache saves the JSON decoding on the hot path.
const callerCacheSize = 2048

// callerCache maps a Nats-Request-Info value to the Caller it yields under
// one trust. The mapping is a pure function of the value, so caching cannot
// change a decision.
type callerCache struct {
	mu sync.RWMutex
	m  map[string]broker.Caller
}

func newCallerCache() *callerCache { return &callerCache{m: make(map[string]broker.Caller)} }

// cachedCaller is caller with the cache in front.
func (t *trust) cachedCaller(values []string) broker.Caller {
	if t.cache == nil || len(values) != 1 {
		return t.caller(values)
	}
	t.cache.mu.RLock()
	c, ok := t.cache.m[values[0]]
	t.cache.mu.RUnlock()
	if !ok {
		c = t.caller(values)
		t.cache.mu.Lock()
		if len(t.cache.m) >= callerCacheSize {
			clear(t.cache.m)
		}
		t.cache.m[values[0]] = c
		t.cache.mu.Unlock()
	}
	// Callers get their own tags: the cached slice is never handed out.
	c.Tags = slices.Clone(c.Tags)
	return c
}

// requestInfo holds the Nats-Request-Info fields sqlgate reads.
type requestInfo struct {
	Account   string   `json:"acc"`
	IssuerKey string   `json:"issuer_key"`
	NameTag   string   `json:"name_tag"`
	Tags      []string `json:"tags"`
	Host      string   `json:"host"`
	Lang      string   `json:"lang"`
	Version   string   `json:"ver"`
}

// caller turns the Nats-Request-Info values of a request into a Caller.
//
// The caller is attested only when there is exactly one header value, it
// names the users account as `acc`, its `issuer_key` is one of our users
// signing keys, and its tags carry exactly one user key tag
// (natsauth.UserKeyTagPrefix). The user key is taken from that tag, which
// the server copies from the user JWT we signed, never from the header's
// `user` field: for JWT users the server fills `user` from the `nkey` or
// `user` fields of CONNECT when the client sends them (a client can name
// any key there; verified on nats-server v2.15.3), and for callout users it
// is the JWT's name. Name is the JWT's name (`name_tag`); Host, Lang and
// Version are informational (the client asserts Lang and Version).
//
// An unattested caller carries only Transport "nats": nothing the client
// could have written reaches the broker.
func (t *trust) caller(values []string) broker.Caller {
	c := broker.Caller{Transport: "nats"}
	if len(values) != 1 {
		return c
	}
	var ri requestInfo
	if err := json.Unmarshal([]byte(values[0]), &ri); err != nil {
		return c
	}
	if ri.Account == "" || ri.Account != t.account {
		return c
	}
	if _, ok := t.signingKeys[ri.IssuerKey]; !ok {
		return c
	}
	userKey := ""
	tags := make([]string, 0, len(ri.Tags))
	for _, tag := range ri.Tags {
		rest, ok := strings.CutPrefix(tag, userKeyTagPrefix)
		if !ok {
			tags = append(tags, tag)
			continue
		}
		if userKey != "" {
			return c
		}
		userKey = strings.ToUpper(rest)
	}
	if !nkeys.IsValidPublicUserKey(userKey) {
		return c
	}
	c.Attested = true
	c.UserKey = userKey
	c.IssuerKey = ri.IssuerKey
	c.Account = ri.Account
	c.Name = ri.NameTag
	c.Tags = tags
	c.Host = ri.Host
	c.Lang = ri.Lang
	c.Version = ri.Version
	return c
}
