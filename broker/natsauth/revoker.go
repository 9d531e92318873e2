package natsauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
)

const (
	claimsUpdateSubject = "$SYS.REQ.CLAIMS.UPDATE"
	claimsLookupSubject = "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP"
)

// RevokerConfig configures a [Revoker].
type RevokerConfig struct {
	// Subjects and Emits are this instance's route and emit subjects:
	// [Revoker.Sync] exports and imports them. A revocation push keeps the
	// imports of the users account the server holds instead.
	Subjects, Emits []string
	// MaxTTL is the longest lifetime of any user credential. Revocation
	// entries older than it are pruned: every JWT they cover has expired.
	// 0: [DefaultRevocationHorizon].
	MaxTTL time.Duration
	// Timeout bounds each request to the servers (0: 5s).
	Timeout time.Duration
	// Logger receives operational messages (nil: discard).
	Logger *slog.Logger
}

// Revoker makes revocations effective on the NATS servers: it adds
// revocation entries to the users account JWT, re-signs it with the operator
// key and pushes it through the system account (`$SYS.REQ.CLAIMS.UPDATE`),
// which every server with a full resolver stores; the servers then close the
// live connections of the revoked users and refuse their reconnects. It
// implements [broker.NATSRevoker] and is safe for concurrent use.
//
// Before each push it looks up the users account JWT the server holds
// (`$SYS.REQ.ACCOUNT.<users>.CLAIMS.LOOKUP`) and merges its revocations, so
// that several sqlgated instances do not undo each other's revocations; a
// revocation push changes nothing else of that JWT, so an instance does not
// undo the routes or signing keys another instance pushed either (a push
// racing another instance's can still lose one entry or one such change,
// and a push can fail: the broker re-applies the issuance registry's
// revocations with [Revoker.RevokeUsers] at startup and periodically, see
// [broker.Service.RunRevocationSync]).
type Revoker struct {
	nc      *nats.Conn
	keys    *Keys
	horizon time.Duration
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time

	mu              sync.Mutex
	subjects, emits []string
	revs            jwt.RevocationList
}

var _ broker.NATSRevoker = (*Revoker)(nil)

// NewRevoker returns a Revoker that pushes through nc, a connection of the
// system-account user ([Keys.SystemUser]).
func NewRevoker(nc *nats.Conn, keys *Keys, cfg RevokerConfig) *Revoker {
	r := &Revoker{
		nc: nc, keys: keys,
		horizon:  cfg.MaxTTL,
		timeout:  cfg.Timeout,
		log:      cfg.Logger,
		now:      time.Now,
		subjects: slices.Clone(cfg.Subjects),
		emits:    slices.Clone(cfg.Emits),
		revs:     jwt.RevocationList{},
	}
	if r.horizon <= 0 {
		r.horizon = DefaultRevocationHorizon
	}
	if r.timeout <= 0 {
		r.timeout = 5 * time.Second
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

// RevokeUsers revokes every user JWT issued for the given user keys up to
// max(at, now) and pushes the users account, unless the users account the
// server holds already revokes every key at or after at (then it pushes
// nothing: re-applying revocations costs the servers a lookup, not an
// account update). Idempotent. Keys that are not user public keys are an
// error and nothing is pushed. Once started, the push is not cut short by
// ctx's cancellation (each server request is bounded by the configured
// timeout).
//
// The pushed JWT is the one the server holds with only its revocations
// changed: its imports, signing keys and limits stay as they are, even when
// this instance's routes or signing keys differ (a rolling deployment where
// a newer instance already pushed a new route or signing key with
// [Revoker.Sync]). When the lookup fails, or the server answers that it
// holds no users account (a cluster member that has not caught up), nothing
// is pushed and the error says so; the broker retries.
func (r *Revoker) RevokeUsers(ctx context.Context, userKeys []string, at time.Time) error {
	ctx = context.WithoutCancel(ctx)
	for _, k := range userKeys {
		if !nkeys.IsValidPublicUserKey(k) {
			return errors.New("revoke: not a user public key")
		}
	}
	if len(userKeys) == 0 {
		return nil
	}
	ts := at.Unix()
	if n := r.now().Unix(); n > ts {
		ts = n
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	held, err := r.lookupUsers(ctx)
	if err != nil {
		return fmt.Errorf("revoke %d users: %w", len(userKeys), err)
	}
	switch {
	case held.empty:
		return fmt.Errorf("revoke %d users: %w", len(userKeys), errNoUsersAccount)
	case held.claims == nil:
		// Not signed by our operator: the server cannot have accepted it
		// from us, so there is nothing of ours to keep; ours replaces it.
		r.log.WarnContext(ctx, "nats users account on server not signed by our operator; replacing it")
	}
	var serverRevs jwt.RevocationList
	if held.claims != nil {
		serverRevs = held.claims.Revocations
	}
	missing := 0
	for _, k := range userKeys {
		if serverRevs[k] < at.Unix() {
			missing++
		}
		if ts > r.revs[k] {
			r.revs[k] = ts
		}
	}
	if missing == 0 {
		return nil
	}
	base := held.claims
	if base == nil {
		base = r.keys.usersAccountClaims(r.subjects, r.emits, nil)
	}
	if err := r.signAndPushUsers(ctx, base); err != nil {
		return fmt.Errorf("revoke %d users: %w", len(userKeys), err)
	}
	r.log.InfoContext(ctx, "nats users revoked", slog.Int("count", missing))
	return nil
}

// errNoUsersAccount: the server answered a lookup of the users account with
// nothing. A revocation is not pushed onto an account this instance did not
// see: its own routes and signing keys may be older than the servers'.
var errNoUsersAccount = errors.New("the nats server holds no users account JWT (sqlgated pushes it at startup); revocation not pushed, will retry")

// Sync brings the servers' broker and users accounts to this process's view
// of them (current routes and signing keys, with the revocations of the
// server's users account merged in). sqlgated calls it at startup, so that a
// restart after a route catalog change or a signing key rotation brings the
// servers' account JWTs up to date. It replaces the accounts' exports,
// imports and signing keys with this instance's: an instance started with
// an older catalog or key file undoes a newer one's.
//
// It pushes an account only when the JWT the server holds (looked up with
// `$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`) carries other claims than this
// instance's; the claims that change with every signing (jti, iat) do not
// count. A server applying a pushed broker account rebuilds its exports and
// forgets where the replies to the requests then in flight through the
// users account's imports go: those replies are lost, so starting an
// instance of an unchanged deployment must not push it. When the broker
// account lookup fails or its answer is not our operator's broker account,
// the account is pushed as it is (logged); a failed lookup of the users
// account fails Sync, as its revocations would be lost.
func (r *Revoker) Sync(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.keys.brokerAccountJWT(r.subjects, r.emits)
	if err != nil {
		return err
	}
	if r.brokerAccountHeld(ctx, b) {
		r.log.InfoContext(ctx, "nats broker account up to date on the server; not pushed")
	} else {
		if err := r.push(ctx, b); err != nil {
			return fmt.Errorf("push broker account: %w", err)
		}
		r.log.InfoContext(ctx, "nats broker account pushed")
	}
	held, err := r.lookupUsers(ctx)
	if err != nil {
		return fmt.Errorf("push users account: %w", err)
	}
	u, err := r.signUsers(r.keys.usersAccountClaims(r.subjects, r.emits, nil))
	if err != nil {
		return fmt.Errorf("push users account: %w", err)
	}
	if held.claims != nil && sameAccountClaims(held.claims, u) {
		r.log.InfoContext(ctx, "nats users account up to date on the server; not pushed")
		return nil
	}
	if err := r.push(ctx, u); err != nil {
		return fmt.Errorf("push users account: %w", err)
	}
	r.log.InfoContext(ctx, "nats users account pushed")
	return nil
}

// brokerAccountHeld reports whether the server holds a broker account JWT of
// our operator with the claims of want (an encoded broker account JWT).
// False, with a warning, when the lookup fails or its answer is not such a
// JWT: the caller then pushes want. r.mu is held.
func (r *Revoker) brokerAccountHeld(ctx context.Context, want string) bool {
	s, err := r.lookup(ctx, r.keys.pub.Broker)
	if err != nil {
		r.log.WarnContext(ctx, "nats broker account lookup failed; pushing it (calls in flight through the users account may lose their replies)", slog.String("error", err.Error()))
		return false
	}
	if s == "" {
		return false
	}
	held := ourAccount(r.keys, s, r.keys.pub.Broker)
	if held == nil {
		r.log.WarnContext(ctx, "nats broker account on server not signed by our operator; replacing it")
		return false
	}
	return sameAccountClaims(held, want)
}

// sameAccountClaims reports whether held carries the claims of want (an
// encoded account JWT) apart from those that differ with every signing: the
// JWT ID and the issue time. Exports, imports, signing keys, limits and
// revocations all count. want is decoded rather than compared as built so
// that both went through the same encoding (sorted exports and imports,
// claim type and version set).
func sameAccountClaims(held *jwt.AccountClaims, want string) bool {
	w, err := jwt.DecodeAccountClaims(want)
	if err != nil {
		return false
	}
	a, b := *held, *w
	a.ID, b.ID = "", ""
	a.IssuedAt, b.IssuedAt = 0, 0
	ja, errA := json.Marshal(&a)
	jb, errB := json.Marshal(&b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// ourAccount decodes s as the JWT of the account pub signed by our operator;
// nil when it is anything else.
func ourAccount(keys *Keys, s, pub string) *jwt.AccountClaims {
	ac, err := jwt.DecodeAccountClaims(strings.TrimSpace(s))
	if err != nil || ac.Issuer != keys.pub.Operator || ac.Subject != pub {
		return nil
	}
	return ac
}

// signAndPushUsers prunes the merged revocations, sets them on ac (a users
// account's claims), signs it with the operator key and pushes it. r.mu is
// held.
func (r *Revoker) signAndPushUsers(ctx context.Context, ac *jwt.AccountClaims) error {
	u, err := r.signUsers(ac)
	if err != nil {
		return err
	}
	return r.push(ctx, u)
}

// signUsers prunes the merged revocations, sets them on ac (a users
// account's claims) and signs it with the operator key. r.mu is held.
func (r *Revoker) signUsers(ac *jwt.AccountClaims) (string, error) {
	r.revs = pruneRevocations(r.revs, r.now().Add(-r.horizon))
	ac.Revocations = nil
	if len(r.revs) > 0 {
		ac.Revocations = maps.Clone(r.revs)
	}
	return encode(ac, r.keys.operator, "users account")
}

// heldUsers is what a lookup of the users account returned.
type heldUsers struct {
	// empty: the server holds no JWT for the users account.
	empty bool
	// claims of the held JWT when our operator signed it (nil otherwise).
	claims *jwt.AccountClaims
}

// lookupUsers looks up the users account JWT the server holds and merges its
// revocations into r.revs. An answer that is not an account JWT is an error.
// r.mu is held.
func (r *Revoker) lookupUsers(ctx context.Context) (heldUsers, error) {
	s, err := r.lookup(ctx, r.keys.pub.Users)
	if err != nil {
		return heldUsers{}, fmt.Errorf("look up users account: %w", err)
	}
	if s == "" {
		return heldUsers{empty: true}, nil
	}
	ac := ourUsersAccount(r.keys, s)
	if ac == nil {
		return heldUsers{}, nil
	}
	for k, t := range ac.Revocations {
		if t > r.revs[k] {
			r.revs[k] = t
		}
	}
	return heldUsers{claims: ac}, nil
}

// lookup asks the servers for the JWT of the account pub they hold: "" when
// the answering server holds none, an error when there is no answer or the
// answer is not an account JWT.
func (r *Revoker) lookup(ctx context.Context, pub string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	msg, err := r.nc.RequestWithContext(ctx, fmt.Sprintf(claimsLookupSubject, pub), nil)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(msg.Data))
	if s == "" {
		return "", nil
	}
	if _, err := jwt.DecodeAccountClaims(s); err != nil {
		return "", errors.New("the server's answer is not an account JWT")
	}
	return s, nil
}

// claimUpdateResponse mirrors nats-server's ServerAPIClaimUpdateResponse.
type claimUpdateResponse struct {
	Data *struct {
		Account string `json:"account"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"data"`
	Error *struct {
		Account     string `json:"account"`
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

func (r *Revoker) push(ctx context.Context, accountJWT string) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	msg, err := r.nc.RequestWithContext(ctx, claimsUpdateSubject, []byte(accountJWT))
	if err != nil {
		return fmt.Errorf("claims update: %w", err)
	}
	var resp claimUpdateResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("claims update: decode response: %w", err)
	}
	if resp.Error != nil {
		return fmt.Errorf("claims update: server refused (%d): %s", resp.Error.Code, resp.Error.Description)
	}
	return nil
}
