package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/internal/header"
	"github.com/sqlgate/sqlgate/policy"
)

// Defaults for credential lifetimes.
const (
	DefaultNATSTTL = 15 * time.Minute
	DefaultMaxTTL  = time.Hour
)

// Config wires a [Service]. Catalog, Databases, Authorizer and Recorder are
// required; the NATS and identity ports are needed only for the features
// that use them.
type Config struct {
	Catalog *route.Catalog
	// Databases maps a route's database name to its executor.
	Databases  map[string]Executor
	Authorizer Authorizer
	Recorder   Recorder
	Registry   Registry
	Minter     NATSMinter
	Revoker    NATSRevoker
	Verifier   TokenVerifier
	// Cutoffs, if set, refuses new credentials to sign-ins older than a
	// principal's offboarding (revoke-all records it).
	Cutoffs SignInCutoffs
	// UsersAccount is the NATS account people and services connect to;
	// SigningKeys are the users-account signing keys sqlgate mints with. A
	// NATS caller is identified only if the server attests both.
	UsersAccount string
	SigningKeys  []string
	// NATSTTL is the default NATS credential lifetime; MaxTTL caps every
	// credential lifetime whatever the policy says.
	NATSTTL time.Duration
	MaxTTL  time.Duration
	// MaxNATSCredentialsPerPrincipal bounds the live (unexpired, unrevoked)
	// NATS user keys of one principal: a new key beyond it is refused with
	// [ErrTooManyNATSCredentials]; a key the principal already holds may
	// always be issued again (refreshed). 0: [DefaultMaxNATSCredentials];
	// negative: unlimited.
	MaxNATSCredentialsPerPrincipal int
	// StoreInputs keeps each decision input beside its audit record for
	// policy replay (redacted parameters removed). Default true.
	StoreInputs *bool
	// OnBatch, if set, is called after each transaction a batched route ran
	// (routes with batch > 1): the route, how many calls it held, and
	// whether it failed as a whole, so its calls ran again alone. It must
	// not block.
	OnBatch func(subject string, calls int, fellBack bool)
	// OnRevocationSync, if set, is called after each attempt to make NATS
	// revocations effective on the servers (a revocation, a revoke-all, a
	// periodic re-application; see [Service.RunRevocationSync]) with its
	// error, nil when it succeeded. It must not block.
	OnRevocationSync func(err error)
	Logger           *slog.Logger
	Now              func() time.Time
}

// Service is sqlgate's request path and credential issuance. It is safe for
// concurrent use.
type Service struct {
	cfg         Config
	log         *slog.Logger
	now         func() time.Time
	routes      map[string]*routeInfo
	emits       []string // the catalog's emit subjects
	storeInputs bool
	outcomes    sync.WaitGroup
	// resync asks [Service.RunRevocationSync] for a pass now (a push of
	// revocations failed).
	resync chan struct{}
}

// routeInfo caches per-route values that every call needs.
type routeInfo struct {
	route  *route.Route
	policy *policy.Route
	exec   Executor
	// batch runs the route's calls that queue in shared transactions
	// (routes with batch > 1 on an executor that batches); nil otherwise.
	batch *batcher
	db    DatabaseInfo
}

// New validates cfg and builds a Service.
func New(cfg Config) (*Service, error) {
	var errs []error
	if cfg.Catalog == nil {
		errs = append(errs, errors.New("broker: a route catalog is required"))
	}
	if cfg.Authorizer == nil {
		errs = append(errs, errors.New("broker: an authorizer is required"))
	}
	if cfg.Recorder == nil {
		errs = append(errs, errors.New("broker: an audit recorder is required"))
	}
	s := &Service{cfg: cfg, log: cfg.Logger, now: cfg.Now, routes: map[string]*routeInfo{}, storeInputs: true, resync: make(chan struct{}, 1)}
	if cfg.StoreInputs != nil {
		s.storeInputs = *cfg.StoreInputs
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.NATSTTL <= 0 {
		s.cfg.NATSTTL = DefaultNATSTTL
	}
	if s.cfg.MaxTTL <= 0 {
		s.cfg.MaxTTL = DefaultMaxTTL
	}
	if s.cfg.MaxNATSCredentialsPerPrincipal == 0 {
		s.cfg.MaxNATSCredentialsPerPrincipal = DefaultMaxNATSCredentials
	}
	if cfg.Catalog != nil {
		for _, r := range cfg.Catalog.Routes() {
			ex, ok := cfg.Databases[r.Database]
			if !ok {
				errs = append(errs, fmt.Errorf("broker: route %s: database %q is not configured", r.Subject, r.Database))
				continue
			}
			if r.Emit != "" && !slices.Contains(s.emits, r.Emit) {
				s.emits = append(s.emits, r.Emit)
			}
			var batch *batcher
			if r.Batch > 1 {
				be, ok := ex.(BatchExecutor)
				if rb, can := ex.(RouteBatcher); ok && can && !rb.BatchesRoute(r) {
					ok = false // e.g. a statement on PostgreSQL
				}
				if ok {
					batch = newBatcher(be, r.Batch)
					subject := r.Subject
					if cfg.OnBatch != nil {
						batch.onBatch = func(calls int, fellBack bool) { cfg.OnBatch(subject, calls, fellBack) }
					}
					// A route that cannot batch because of what the database
					// holds (a PostgreSQL procedure, not a function) shows so
					// at its first batch: logged then, once.
					database, log := r.Database, s.log
					batch.onUnbatched = func() {
						log.Warn("route batch ignored: the database runs each call in its own transaction",
							"route", subject, "database", database, "dialect", ex.Describe().Dialect)
					}
				} else {
					s.log.Warn("route batch ignored: the database runs each call in its own transaction",
						"route", r.Subject, "database", r.Database, "dialect", ex.Describe().Dialect)
				}
			}
			s.routes[r.Subject] = &routeInfo{
				route: r, exec: ex, batch: batch, db: ex.Describe(),
				policy: &policy.Route{
					Subject: r.Subject, Kind: string(r.Kind), Target: r.Target,
					Database: r.Database, Mode: string(r.Mode), Tags: r.Tags,
				},
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Catalog returns the route catalog the service serves.
func (s *Service) Catalog() *route.Catalog { return s.cfg.Catalog }

// ValidCorrelationID reports whether a client's correlation id can be used:
// 1 to 128 printable ASCII characters.
func ValidCorrelationID(s string) bool { return header.Valid(s, header.MaxCorrelationID) }

// CorrelationID returns the client's correlation id if it is valid, else a
// new UUIDv7. Transports call it before anything can answer, so that every
// reply and audit record of a call carry the same id.
func CorrelationID(client string) string {
	if ValidCorrelationID(client) {
		return client
	}
	return newID()
}

// newID returns a UUIDv7 (time-ordered) string.
func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// canonicalNumbers returns v with every json.Number in one form per value,
// so that a retry whose client wrote a number differently (250.50, 250.5,
// 2.505e2) is the same request, not a conflict. changed is false, and v is
// returned as it is, when it holds no number to rewrite.
func canonicalNumbers(v any) (_ any, changed bool) {
	switch x := v.(type) {
	case json.Number:
		c := canonicalDecimal(string(x))
		return json.Number(c), c != string(x)
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			if c, ok := canonicalNumbers(e); ok {
				if out == nil {
					out = maps.Clone(x)
				}
				out[k] = c
			}
		}
		if out == nil {
			return x, false
		}
		return out, true
	case []any:
		var out []any
		for i, e := range x {
			if c, ok := canonicalNumbers(e); ok {
				if out == nil {
					out = slices.Clone(x)
				}
				out[i] = c
			}
		}
		if out == nil {
			return x, false
		}
		return out, true
	}
	return v, false
}

// canonicalDecimal writes the JSON number s in its shortest exact decimal
// form: no exponent, no trailing fraction zeros, no negative zero. s is a
// valid JSON number whose exponent route.Decode bounded.
func canonicalDecimal(s string) string {
	mant, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	if !hasExp {
		if strings.Contains(mant, ".") {
			mant = strings.TrimRight(strings.TrimRight(mant, "0"), ".")
		}
		if mant == "-0" {
			return "0"
		}
		return mant
	}
	r, ok := new(big.Rat).SetString(s)
	e, err := strconv.Atoi(exp)
	if !ok || err != nil {
		return s
	}
	if r.IsInt() {
		return r.Num().String()
	}
	_, frac, _ := strings.Cut(mant, ".")
	return strings.TrimRight(strings.TrimRight(r.FloatString(len(frac)-e), "0"), ".")
}

// requestHash is the hex SHA-256 over the route subject and the canonical
// JSON of the typed parameters (sorted keys, numbers by canonicalNumbers).
func requestHash(subject string, canonicalParams []byte) string {
	return hexSHA256(subject, canonicalParams)
}

// idempotencyKey scopes a client's key to the principal, so that one
// principal can never read another's stored result by guessing its key.
// The audit records hold it sealed (Recorder.SealIdempotencyKey), not as
// is: the principal is in the same record, so a plain hash of a simple
// client key (a business id) is found by hashing guesses.
func idempotencyKey(principalID, clientKey string) string {
	return hexSHA256(principalID, clientKey)
}

// hexSHA256 returns the hex SHA-256 of a, a newline and b, in one buffer
// (the hash's interface methods would allocate each part).
func hexSHA256[B string | []byte](a string, b B) string {
	msg := make([]byte, 0, len(a)+1+len(b))
	msg = append(append(append(msg, a...), '\n'), b...)
	sum := sha256.Sum256(msg)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

// intersect returns the elements of want that are in allowed, sorted and
// deduplicated.
func intersect(want, allowed []string) []string {
	var out []string
	for _, w := range want {
		if slices.Contains(allowed, w) && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	slices.Sort(out)
	return out
}
