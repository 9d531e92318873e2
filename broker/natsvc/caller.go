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

// callerCache maps a Nats-Request-Info value to the Caller and server kind
// it yields under one trust. The mapping is a pure function of the value, so
// caching cannot change a decision.
type callerCache struct {
	mu sync.RWMutex
	m  map[string]cacheEntry
}

type cacheEntry struct {
	c    broker.Caller
	kind string
}

func newCallerCache() *callerCache { return &callerCache{m: make(map[string]cacheEntry)} }

// cachedCaller is caller with the cache in front.
func (t *trust) cachedCaller(values []string) (broker.Caller, string) {
	if t.cache == nil || len(values) != 1 {
		return t.caller(values)
	}
	t.cache.mu.RLock()
	e, ok := t.cache.m[values[0]]
	t.cache.mu.RUnlock()
	if !ok {
		e.c, e.kind = t.caller(values)
		t.cache.mu.Lock()
		if len(t.cache.m) >= callerCacheSize {
			clear(t.cache.m)
		}
		t.cache.m[values[0]] = e
		t.cache.mu.Unlock()
	}
	// Callers get their own tags: the cached slice is never handed out.
	e.c.Tags = slices.Clone(e.c.Tags)
	return e.c, e.kind
}

// serverKinds are the `kind`s of Nats-Request-Info (nats-server's
// kindStringMap) of the server's own internal clients: an account's (which
// publishes message-trace events, for instance), JetStream's and the
// system's. None is a user: a message one of them published names no one.
// A client's request says "Client", or "Leafnode" when it came in over a
// leafnode connection, also when it then crossed routes or gateways (the
// import is crossed, and the header written, on the server the client is
// connected to; verified on nats-server v2.15.3 for a route).
var serverKinds = map[string]bool{"Account": true, "JetStream": true, "System": true}

// requestInfo holds the Nats-Request-Info fields sqlgate reads.
type requestInfo struct {
	Account   string   `json:"acc"`
	IssuerKey string   `json:"issuer_key"`
	NameTag   string   `json:"name_tag"`
	Tags      []string `json:"tags"`
	Host      string   `json:"host"`
	Lang      string   `json:"lang"`
	Version   string   `json:"ver"`
	Kind      string   `json:"kind"`
}

// caller turns the Nats-Request-Info values of a request into a Caller, and
// returns the header's `kind` when it names one of the server's own internal
// clients (serverKinds; "" otherwise): the server published the message
// itself, and its caller is unattested.
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
func (t *trust) caller(values []string) (c broker.Caller, serverKind string) {
	c = broker.Caller{Transport: "nats"}
	if len(values) != 1 {
		return c, ""
	}
	var ri requestInfo
	if err := json.Unmarshal([]byte(values[0]), &ri); err != nil {
		return c, ""
	}
	if serverKinds[ri.Kind] {
		return c, ri.Kind
	}
	if ri.Account == "" || ri.Account != t.account {
		return c, ""
	}
	if _, ok := t.signingKeys[ri.IssuerKey]; !ok {
		return c, ""
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
			return c, ""
		}
		userKey = strings.ToUpper(rest)
	}
	if !nkeys.IsValidPublicUserKey(userKey) {
		return c, ""
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
	return c, ""
}
