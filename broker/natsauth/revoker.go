package natsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	// Subjects and Emits are the current route and emit subjects; the
	// re-signed account JWTs must keep exporting and importing them.
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
// Before each push it merges the revocations of the JWT the server holds
// (`$SYS.REQ.ACCOUNT.<users>.CLAIMS.LOOKUP`), so that several sqlgated
// instances do not undo each other's revocations (a push racing another
// instance's can still lose one entry, and a push can fail: the broker
// re-applies the issuance registry's revocations with [Revoker.RevokeUsers]
// at startup and periodically, see [broker.Service.RunRevocationSync]).
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
	server, err := r.mergeServer(ctx)
	if err != nil {
		return fmt.Errorf("revoke %d users: %w", len(userKeys), err)
	}
	missing := 0
	for _, k := range userKeys {
		if server[k] < at.Unix() {
			missing++
		}
		if ts > r.revs[k] {
			r.revs[k] = ts
		}
	}
	if missing == 0 {
		return nil
	}
	if err := r.signAndPushUsers(ctx); err != nil {
		return fmt.Errorf("revoke %d users: %w", len(userKeys), err)
	}
	r.log.InfoContext(ctx, "nats users revoked", slog.Int("count", missing))
	return nil
}

// UpdateRoutes re-signs and pushes the broker and users accounts for a new
// set of route and emit subjects (route catalog reload).
func (r *Revoker) UpdateRoutes(ctx context.Context, subjects, emits []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subjects, r.emits = slices.Clone(subjects), slices.Clone(emits)
	return r.pushAll(ctx)
}

// Sync pushes the broker and users accounts as this process knows them
// (current routes, merged revocations). Call it at startup against an
// external cluster whose account JWTs may predate the current routes.
func (r *Revoker) Sync(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pushAll(ctx)
}

func (r *Revoker) pushAll(ctx context.Context) error {
	b, err := r.keys.brokerAccountJWT(r.subjects, r.emits)
	if err != nil {
		return err
	}
	if err := r.push(ctx, b); err != nil {
		return fmt.Errorf("push broker account: %w", err)
	}
	if err := r.pushUsers(ctx); err != nil {
		return fmt.Errorf("push users account: %w", err)
	}
	return nil
}

// pushUsers merges the server's revocations, prunes, signs and pushes the
// users account. r.mu is held.
func (r *Revoker) pushUsers(ctx context.Context) error {
	if _, err := r.mergeServer(ctx); err != nil {
		return err
	}
	return r.signAndPushUsers(ctx)
}

// signAndPushUsers prunes, signs and pushes the users account with the
// revocations as merged. r.mu is held.
func (r *Revoker) signAndPushUsers(ctx context.Context) error {
	r.revs = pruneRevocations(r.revs, r.now().Add(-r.horizon))
	u, err := r.keys.usersAccountJWT(r.subjects, r.emits, r.revs)
	if err != nil {
		return err
	}
	return r.push(ctx, u)
}

// mergeServer merges the revocations of the users account the server holds
// into r.revs and returns them (nil when the server holds none of ours).
// r.mu is held.
func (r *Revoker) mergeServer(ctx context.Context) (jwt.RevocationList, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	msg, err := r.nc.RequestWithContext(ctx, fmt.Sprintf(claimsLookupSubject, r.keys.pub.Users), nil)
	if err != nil {
		return nil, fmt.Errorf("look up users account: %w", err)
	}
	s := strings.TrimSpace(string(msg.Data))
	if s == "" {
		return nil, nil
	}
	ac := ourUsersAccount(r.keys, s)
	if ac == nil {
		// Not ours or unreadable: ours replaces it.
		r.log.WarnContext(ctx, "nats users account on server not signed by our operator")
		return nil, nil
	}
	for k, t := range ac.Revocations {
		if t > r.revs[k] {
			r.revs[k] = t
		}
	}
	return ac.Revocations, nil
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
