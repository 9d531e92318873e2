package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/internal/header"
	"github.com/sqlgate/sqlgate/policy"
)

// Defaults of [LeasesConfig].
const (
	DefaultSQLTTL         = 15 * time.Minute
	DefaultReapInterval   = 30 * time.Second
	DefaultLeaseOpTimeout = 30 * time.Second
	DefaultLoginPrefix    = "sg_"
	DefaultMaxLeases      = 10
	// StuckAttempts is the number of failed revocation attempts after
	// which a lease whose login is disabled (sessions ended, the role not
	// removable) no longer counts toward MaxLeasesPerPrincipal, and a
	// warning asks an operator to finish it.
	StuckAttempts = 5
	// DefaultLeaseRetention is how long a final (revoked or failed) lease
	// stays in the lease table; the audit log keeps its history.
	DefaultLeaseRetention = 30 * 24 * time.Hour
	// leasePruneInterval is how often the reaper prunes final leases.
	leasePruneInterval = time.Hour
)

// ErrTooManyLeases refuses a credential to a principal who already holds
// the configured number of unrevoked SQL leases (a runaway client cannot
// create thousands of logins).
var ErrTooManyLeases = errors.New("too many active SQL credentials")

// LeasesConfig wires [Leases]. Service, Store and Issuers are required.
type LeasesConfig struct {
	// Service provides the policy engine, the audit log, the logger, the
	// clock, the credential maximum and (for RevokeAll) the NATS registry.
	Service *Service
	Store   LeaseStore
	// Issuers maps a database name (as in `sqlgate creds sql --database`)
	// to the login provisioner of that database.
	Issuers map[string]SQLLoginIssuer
	// Instance names this sqlgated process in lease claims. At start the
	// reaper releases the claims of this name at once (nothing of this
	// process is in flight), so it must be unique per running process.
	// Default: a random name (claims of a crashed process are then taken
	// over when they expire).
	Instance string
	// DefaultTTL is a lease's lifetime when none is requested (default
	// 15m); policy's `ttl` obligation and MaxTTL cap it.
	DefaultTTL time.Duration
	// MaxTTL caps every lease's total lifetime, renewals included (default:
	// the Service's MaxTTL).
	MaxTTL time.Duration
	// LoginPrefix starts every issued login name (default "sg_"): lower
	// case letters, digits and underscores, at most 16 characters.
	LoginPrefix string
	// MaxLeasesPerPrincipal bounds unrevoked leases per principal (default
	// 10; negative: unlimited).
	MaxLeasesPerPrincipal int
	// OpTimeout bounds one database operation (create, renew, one
	// revocation attempt; default 30s).
	OpTimeout time.Duration
	// ClaimTTL is how long a claim on a lease lasts before another instance
	// may take the work over (default 4 x OpTimeout; at least 2 x OpTimeout).
	ClaimTTL time.Duration
	// RetryBase and RetryMax bound the backoff between failed revocation
	// attempts: RetryBase doubled per attempt, at most RetryMax (defaults
	// 5s and 5m).
	RetryBase time.Duration
	RetryMax  time.Duration
	// Workers is how many revocations the reaper runs at once (default 4),
	// so that a storm of expiries does not overload a database.
	Workers int
	// MaxPerPass bounds the leases one reaper pass handles (default 200).
	MaxPerPass int
	// Retention is how long a lease stays in the lease table once it is
	// final (revoked or failed; default DefaultLeaseRetention, negative:
	// kept forever). The reaper deletes older ones once an hour; the audit
	// log keeps their history.
	Retention time.Duration
	// Logger and Now default to the Service's.
	Logger *slog.Logger
	Now    func() time.Time
}

// Leases issues short-lived SQL logins under policy and keeps their leases:
// renew up to the maximum, revoke (retried until the login is gone),
// revoke-all for offboarding, and a reaper that revokes expired leases and
// finishes or undoes half-done ones. Every step is an audit `credential`
// record. It is safe for concurrent use, also across sqlgated instances
// that share the control database.
type Leases struct {
	svc *Service
	cfg LeasesConfig
	log *slog.Logger
	now func() time.Time

	pruneMu   sync.Mutex
	nextPrune time.Time // the reaper's next prune of final leases
}

// NewLeases validates cfg and returns the lease manager.
func NewLeases(cfg LeasesConfig) (*Leases, error) {
	var errs []error
	if cfg.Service == nil {
		errs = append(errs, errors.New("leases: a broker service is required"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("leases: a lease store is required"))
	}
	if len(cfg.Issuers) == 0 {
		errs = append(errs, errors.New("leases: at least one database login issuer is required"))
	}
	for name, iss := range cfg.Issuers {
		if iss == nil || name == "" {
			errs = append(errs, fmt.Errorf("leases: issuer for database %q is missing", name))
		}
	}
	if cfg.LoginPrefix == "" {
		cfg.LoginPrefix = DefaultLoginPrefix
	}
	if !validPrefix(cfg.LoginPrefix) {
		errs = append(errs, fmt.Errorf("leases: loginPrefix %q must be 1 to 16 characters a-z, 0-9 or _, starting with a letter", cfg.LoginPrefix))
	}
	for name, d := range map[string]time.Duration{
		"defaultTTL": cfg.DefaultTTL, "maxTTL": cfg.MaxTTL, "opTimeout": cfg.OpTimeout,
		"claimTTL": cfg.ClaimTTL, "retryBase": cfg.RetryBase, "retryMax": cfg.RetryMax,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("leases: %s must not be negative", name))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	l := &Leases{svc: cfg.Service, log: cfg.Logger, now: cfg.Now}
	if l.log == nil {
		l.log = cfg.Service.log
	}
	if l.now == nil {
		l.now = cfg.Service.now
	}
	if cfg.Instance == "" {
		cfg.Instance = "sqlgated-" + randomHex(6)
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = DefaultSQLTTL
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = cfg.Service.cfg.MaxTTL
	}
	if cfg.MaxLeasesPerPrincipal == 0 {
		cfg.MaxLeasesPerPrincipal = DefaultMaxLeases
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = DefaultLeaseOpTimeout
	}
	if cfg.ClaimTTL == 0 {
		cfg.ClaimTTL = 4 * cfg.OpTimeout
	}
	cfg.ClaimTTL = max(cfg.ClaimTTL, 2*cfg.OpTimeout)
	if cfg.RetryBase == 0 {
		cfg.RetryBase = 5 * time.Second
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 5 * time.Minute
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryBase)
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.MaxPerPass <= 0 {
		cfg.MaxPerPass = 200
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultLeaseRetention
	}
	l.cfg = cfg
	return l, nil
}

// SQLCredRequest asks for a short-lived SQL login.
type SQLCredRequest struct {
	Principal identity.Principal
	// Database names a configured database that issues logins.
	Database string
	// Role is the database role to be a member of.
	Role string
	// TTL is the requested lifetime (0: the default).
	TTL    time.Duration
	Client policy.Client
}

// SQLCredential is an issued SQL login. The password is in no other place:
// not in the lease, the audit log or any log line.
type SQLCredential struct {
	LeaseID  string
	Database string
	Role     string
	Username string
	Password string
	// DSN is a connection string for the login, without the password.
	DSN       string
	ExpiresAt time.Time
	// MaxExpiry is the latest expiry renewals may reach.
	MaxExpiry time.Time
	// Capped explains a lifetime shorter than requested ("" when none).
	Capped     string
	Decision   policy.Decision
	AuditIndex int64
}

// String describes the credential without its password.
func (c SQLCredential) String() string {
	return fmt.Sprintf("sql login %s for %s/%s (lease %s, expires %s, password [redacted])",
		c.Username, c.Database, c.Role, c.LeaseID, c.ExpiresAt.UTC().Format(time.RFC3339))
}

// LogValue implements slog.LogValuer without the password.
func (c SQLCredential) LogValue() slog.Value {
	return slog.GroupValue(slog.String("lease_id", c.LeaseID), slog.String("database", c.Database),
		slog.String("role", c.Role), slog.String("username", c.Username), slog.Time("expires_at", c.ExpiresAt))
}

// Renewal is the result of [Leases.RenewLease].
type Renewal struct {
	Lease Lease
	// Capped explains an expiry earlier than requested ("" when none).
	Capped     string
	Decision   policy.Decision
	AuditIndex int64
}

// RevokeAllResult reports an offboarding revocation.
type RevokeAllResult struct {
	PrincipalID string
	// NATSKeys are the principal's unexpired NATS user keys, all revoked
	// now: by this call, or before it (their revocation is pushed to the
	// NATS servers again, so repeating a revoke-all whose push failed
	// finishes it).
	NATSKeys []string
	// Leases are the principal's SQL leases that were not yet revoked, in
	// their state after the attempt: revoked, or revoking when a database
	// could not be reached (the reaper retries until it succeeds).
	Leases []Lease
}

// Pending counts leases still being revoked.
func (r *RevokeAllResult) Pending() int {
	n := 0
	for _, l := range r.Leases {
		if !l.State.Final() {
			n++
		}
	}
	return n
}

// ReapStats counts what one reaper pass did.
type ReapStats struct {
	Expired   int // active leases past their expiry, moved to revoking
	Abandoned int // creating leases whose creator died, moved to revoking
	Revoked   int // logins removed
	Failed    int // revocation attempts that failed (retried later)
	// Pruned counts final leases deleted after their retention (at most
	// one prune an hour).
	Pruned int64
}

// IssueSQL decides, provisions and records a short-lived SQL login. Order
// of work (crash-safe): policy decision; lease row in state creating,
// claimed by this instance; the sign-in checked against its cutoff once
// more (a revoke-all may have come in between); the login (all or
// nothing); lease active; audit record. The password is returned only after
// the audit record is durable; any failure after the login exists removes
// it again.
func (l *Leases) IssueSQL(ctx context.Context, req SQLCredRequest) (*SQLCredential, error) {
	p := req.Principal
	now := l.now()
	if !p.Valid() {
		return nil, identity.Unauthenticated("principal without issuer or subject", nil)
	}
	if !p.Expiry.IsZero() && p.Expiry.Sub(now) < time.Second {
		return nil, identity.Unauthenticated("token expired or expires too soon to issue a credential", nil)
	}
	iss, err := l.issuer(req.Database)
	if err != nil {
		return nil, err
	}
	if !ValidRoleName(req.Role) {
		return nil, fmt.Errorf("%w: role must be 1 to 63 characters (letters, digits, _ $ -), starting with a letter or _", ErrInvalid)
	}
	if req.TTL < 0 {
		return nil, fmt.Errorf("%w: ttl must not be negative", ErrInvalid)
	}
	refuse := func(err error) error {
		return l.svc.refuseSignIn(ctx, l.actor(&p, req.Client.Host, ""), string(policy.SQLCredentials),
			&audit.Credential{Type: "sql", Action: "issue", Database: req.Database, Role: req.Role}, err)
	}
	if err := l.svc.checkSignIn(ctx, &p); err != nil {
		return nil, refuse(err)
	}

	in := &policy.Input{
		Principal:  policy.PrincipalOf(p),
		Request:    &policy.Request{CorrelationID: newID(), Time: now.UTC().Format(time.RFC3339Nano), TimeNS: now.UnixNano(), Transport: "http", Client: BoundClient(req.Client)},
		Credential: &policy.Credential{Type: "sql", Database: req.Database, Role: req.Role, TTL: int64(req.TTL / time.Second)},
	}
	actor := l.actor(&p, req.Client.Host, "")
	dec, err := l.svc.cfg.Authorizer.Decide(ctx, policy.SQLCredentials, in)
	if err != nil || !dec.Allow {
		return nil, l.deny(ctx, actor, "issue", req.Database, req.Role, &dec, in, err)
	}
	if err := l.checkLimit(ctx, p.ID(), false); err != nil {
		return nil, l.refuseLimit(ctx, actor, req, &dec, err)
	}

	ttl, maxTTL, capped := l.ttl(dec.Obligations.TTL, req.TTL)
	if !p.Expiry.IsZero() {
		// Credentials never outlive the sign-in token (identity.Principal).
		if left := p.Expiry.Sub(now); left < ttl {
			ttl = left
			capped = joinNotes(capped, "capped at the sign-in token's expiry")
		}
	}
	lease := &Lease{
		ID: newID(), Principal: p, Database: req.Database, Role: req.Role, Username: LoginName(l.cfg.LoginPrefix, &p),
		State: LeaseCreating, IssuedAt: now, ExpiresAt: now.Add(ttl).Truncate(time.Second),
		MaxExpiry: now.Add(maxTTL).Truncate(time.Second), DecisionID: dec.ID,
	}
	claim := l.claim(now)
	if err := l.cfg.Store.Create(ctx, lease, claim); err != nil {
		return nil, fmt.Errorf("lease store: %w", errors.Join(ErrUnavailable, err))
	}
	// The count above and this insert are not atomic: count again, this
	// lease included, so that concurrent requests cannot all pass the
	// limit. (Under such a race all of them may be refused; none is
	// issued beyond the limit.)
	if err := l.checkLimit(ctx, p.ID(), true); err != nil {
		l.abandon(ctx, lease, claim.Token)
		return nil, l.refuseLimit(ctx, actor, req, &dec, err)
	}
	// A revoke-all sets the cutoff, then revokes the leases it finds. One
	// that set it after the check above and looked before Create did not
	// find this lease, so check again now that a revoke-all would: if the
	// sign-in is cut off (or the cutoff cannot be read), the lease ends
	// before any login exists.
	if err := l.svc.checkSignIn(ctx, &p); err != nil {
		l.abandon(ctx, lease, claim.Token)
		return nil, refuse(err)
	}
	password, err := GeneratePassword()
	if err != nil {
		l.abandon(ctx, lease, claim.Token)
		return nil, err
	}
	spec := l.spec(lease)
	spec.Password = password
	actor.SQLLogin = lease.Username
	cctx, cancel := context.WithTimeout(ctx, l.cfg.OpTimeout)
	err = iss.CreateLogin(cctx, spec)
	cancel()
	if err != nil {
		undone := l.undoCreate(ctx, iss, lease, claim.Token, err)
		detail := "login creation failed: " + safeError(err)
		if undone {
			detail += "; nothing remains"
		} else {
			detail += "; removal pending"
		}
		l.record(ctx, &audit.Record{
			Kind: audit.KindCredential, Actor: actor, DecisionID: dec.ID, Entry: string(policy.SQLCredentials),
			PolicyRevision: dec.Revision, Allow: ptr(true), Result: &audit.Result{Status: errorCode(err)},
			Credential: l.credRecord(lease, "issue", detail),
		})
		return nil, fmt.Errorf("create login on database %s: %w", req.Database, err)
	}

	dctx := context.WithoutCancel(ctx)
	ok, err := l.cfg.Store.Activate(dctx, lease.ID, claim.Token, l.now())
	if err != nil || !ok {
		// Store unreachable, or the lease was revoked (revoke-all) or
		// abandoned while the login was being created: the password must
		// not be released, and the login must go.
		l.revokeClaimed(dctx, lease, claim.Token, l.actor(&p, req.Client.Host, lease.Username), "creation interrupted")
		if err != nil {
			return nil, fmt.Errorf("lease store: %w", errors.Join(ErrUnavailable, err))
		}
		return nil, fmt.Errorf("%w: the credential was revoked while it was being created", ErrInvalid)
	}
	lease.State = LeaseActive
	cred := l.credRecord(lease, "issue", capped)
	cred.Via = "api"
	idx, err := l.svc.appendDecision(ctx, &audit.Record{
		Kind: audit.KindCredential, Actor: actor, DecisionID: dec.ID, Entry: string(policy.SQLCredentials),
		PolicyRevision: dec.Revision, Allow: ptr(true), Reasons: dec.Reasons, Credential: cred,
	}, in, nil)
	if err != nil {
		// Not durable: the login must not be used. Revoke it now.
		l.log.ErrorContext(ctx, "audit of sql credential failed; revoking the login", "err", err, "lease_id", lease.ID)
		if _, rerr := l.revoke(dctx, lease.ID, l.actor(&p, req.Client.Host, lease.Username), "audit record not durable"); rerr != nil {
			l.log.ErrorContext(ctx, "revoke after failed audit", "err", rerr, "lease_id", lease.ID)
		}
		return nil, fmt.Errorf("audit credential record: %w", errors.Join(ErrUnavailable, err))
	}
	return &SQLCredential{
		LeaseID: lease.ID, Database: lease.Database, Role: lease.Role, Username: lease.Username, Password: password,
		DSN: iss.ClientDSN(lease.Username), ExpiresAt: lease.ExpiresAt, MaxExpiry: lease.MaxExpiry, Capped: capped,
		Decision: dec, AuditIndex: idx,
	}, nil
}

// RenewLease extends one of actor's own active leases: the policy is asked
// again (with actor's current groups and the client [WithClient] put in
// ctx), and the new expiry is now plus the requested TTL (0: the default),
// capped by the policy's `ttl`, MaxTTL, the lease's maximum expiry and the
// expiry of actor's sign-in token. A renewal never shortens a lease.
// Others' leases are [ErrNotFound].
func (l *Leases) RenewLease(ctx context.Context, actor identity.Principal, leaseID string, ttl time.Duration) (*Renewal, error) {
	now := l.now()
	client := ClientFrom(ctx)
	if !actor.Valid() {
		return nil, identity.Unauthenticated("principal without issuer or subject", nil)
	}
	if !actor.Expiry.IsZero() && !now.Add(time.Second).Before(actor.Expiry) {
		return nil, identity.Unauthenticated("token expired or expires too soon to renew a credential", nil)
	}
	if ttl < 0 {
		return nil, fmt.Errorf("%w: ttl must not be negative", ErrInvalid)
	}
	lease, err := l.Lease(ctx, leaseID)
	if err != nil {
		return nil, err
	}
	if lease.Principal.ID() != actor.ID() {
		return nil, ErrNotFound
	}
	if err := l.svc.checkSignIn(ctx, &actor); err != nil {
		return nil, l.svc.refuseSignIn(ctx, l.actor(&actor, client.Host, lease.Username), string(policy.SQLCredentials), l.credRecord(&lease, "renew", ""), err)
	}
	if lease.State != LeaseActive || !now.Before(lease.ExpiresAt) {
		state := string(lease.State)
		if lease.State == LeaseActive {
			state = "expired"
		}
		return nil, fmt.Errorf("%w: the credential is %s; only active credentials can be renewed", ErrInvalid, state)
	}
	iss, err := l.issuer(lease.Database)
	if err != nil {
		return nil, err
	}
	in := &policy.Input{
		Principal:  policy.PrincipalOf(actor),
		Request:    &policy.Request{CorrelationID: newID(), Time: now.UTC().Format(time.RFC3339Nano), TimeNS: now.UnixNano(), Transport: "http", Client: BoundClient(client)},
		Credential: &policy.Credential{Type: "sql", Database: lease.Database, Role: lease.Role, TTL: int64(ttl / time.Second)},
	}
	act := l.actor(&actor, client.Host, lease.Username)
	dec, err := l.svc.cfg.Authorizer.Decide(ctx, policy.SQLCredentials, in)
	if err != nil || !dec.Allow {
		return nil, l.deny(ctx, act, "renew", lease.Database, lease.Role, &dec, in, err)
	}
	want, _, capped := l.ttl(dec.Obligations.TTL, ttl)
	expires := now.Add(want).Truncate(time.Second)
	var notes []string
	if capped != "" {
		notes = append(notes, capped)
	}
	if expires.After(lease.MaxExpiry) {
		expires = lease.MaxExpiry
		notes = append(notes, "capped at the credential's maximum expiry "+lease.MaxExpiry.UTC().Format(time.RFC3339))
	}
	if !actor.Expiry.IsZero() && expires.After(actor.Expiry) {
		expires = actor.Expiry.Truncate(time.Second)
		notes = append(notes, "capped at the sign-in token's expiry")
	}
	if !expires.After(lease.ExpiresAt) {
		expires = lease.ExpiresAt
		notes = append(notes, "the credential already lasts that long")
	}
	capped = strings.Join(notes, "; ")
	old := lease.ExpiresAt
	spec := l.spec(&lease)
	spec.ExpiresAt = expires
	rctx, cancel := context.WithTimeout(ctx, l.cfg.OpTimeout)
	err = iss.RenewLogin(rctx, spec)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("renew login on database %s: %w", lease.Database, err)
	}
	dctx := context.WithoutCancel(ctx)
	ok, err := l.cfg.Store.Renew(dctx, lease.ID, expires, l.now())
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", errors.Join(ErrUnavailable, err))
	}
	if !ok {
		return nil, fmt.Errorf("%w: the credential is no longer active", ErrInvalid)
	}
	lease.ExpiresAt = expires
	idx, err := l.svc.appendDecision(ctx, &audit.Record{
		Kind: audit.KindCredential, Actor: act, DecisionID: dec.ID, Entry: string(policy.SQLCredentials),
		PolicyRevision: dec.Revision, Allow: ptr(true), Reasons: dec.Reasons, Credential: l.credRecord(&lease, "renew", capped),
	}, in, nil)
	if err != nil {
		// Not durable: take the extension back.
		spec.ExpiresAt = old
		rctx, cancel := context.WithTimeout(dctx, l.cfg.OpTimeout)
		if rerr := iss.RenewLogin(rctx, spec); rerr != nil {
			l.log.ErrorContext(ctx, "undo renewal after failed audit", "err", rerr, "lease_id", lease.ID)
		}
		cancel()
		if _, rerr := l.cfg.Store.Renew(dctx, lease.ID, old, l.now()); rerr != nil {
			l.log.ErrorContext(ctx, "undo renewal after failed audit", "err", rerr, "lease_id", lease.ID)
		}
		return nil, fmt.Errorf("audit credential record: %w", errors.Join(ErrUnavailable, err))
	}
	return &Renewal{Lease: lease, Capped: capped, Decision: dec, AuditIndex: idx}, nil
}

// RevokeLease revokes a lease now: it is marked revoking (so it is revoked
// even if this process dies), then the login is disabled, its sessions
// ended and it is dropped. If the database cannot be reached the lease
// stays revoking and the reaper retries until it succeeds; the returned
// lease says which. Revoking a revoked lease is a no-op. It does not check
// that actor may revoke the lease: the transport does (owner or admin).
// The audit records name the client [WithClient] put in ctx.
func (l *Leases) RevokeLease(ctx context.Context, actor identity.Principal, leaseID, reason string) (*Lease, error) {
	if reason == "" {
		reason = "revoked by " + actor.Display()
	}
	return l.revoke(ctx, leaseID, l.actor(&actor, ClientFrom(ctx).Host, ""), reason)
}

// RevokeAll revokes everything a principal holds (offboarding): what
// [Service.RevokeAll] revokes, then its SQL leases. It continues past
// failures and returns them joined; SQL leases whose database is
// unreachable stay revoking and are retried by the reaper (see
// [RevokeAllResult.Pending]).
func (l *Leases) RevokeAll(ctx context.Context, actor identity.Principal, principalID, reason string) (*RevokeAllResult, error) {
	res, err := l.svc.RevokeAll(ctx, actor, principalID, reason)
	if res == nil {
		return nil, err
	}
	errs := []error{err}
	if reason == "" {
		reason = "revoke-all by " + actor.Display()
	}
	leases, err := l.cfg.Store.UnfinishedByPrincipal(ctx, principalID)
	if err != nil {
		errs = append(errs, fmt.Errorf("lease store: %w", errors.Join(ErrUnavailable, err)))
	}
	for _, lease := range leases {
		got, err := l.revoke(ctx, lease.ID, l.actor(&actor, ClientFrom(ctx).Host, ""), reason)
		if err != nil {
			errs = append(errs, fmt.Errorf("revoke lease %s: %w", lease.ID, err))
			continue
		}
		res.Leases = append(res.Leases, *got)
	}
	return res, errors.Join(errs...)
}

// Leases lists a principal's SQL leases (by Principal.ID()), newest first.
func (l *Leases) Leases(ctx context.Context, principalID string) ([]Lease, error) {
	out, err := l.cfg.Store.ByPrincipal(ctx, principalID)
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", errors.Join(ErrUnavailable, err))
	}
	return out, nil
}

// LeasesPage lists one page of a principal's SQL leases (by
// Principal.ID()), newest first; see [ListPage].
func (l *Leases) LeasesPage(ctx context.Context, principalID string, page ListPage) ([]Lease, error) {
	if err := page.Check(); err != nil {
		return nil, err
	}
	out, err := l.cfg.Store.ByPrincipalPage(ctx, principalID, page)
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", errors.Join(ErrUnavailable, err))
	}
	return out, nil
}

// Lease returns one lease; [ErrNotFound] for an unknown id.
func (l *Leases) Lease(ctx context.Context, leaseID string) (Lease, error) {
	if !validLeaseID(leaseID) {
		return Lease{}, ErrNotFound
	}
	lease, err := l.cfg.Store.Get(ctx, leaseID)
	switch {
	case errors.Is(err, ErrNotFound):
		return Lease{}, ErrNotFound
	case err != nil:
		return Lease{}, fmt.Errorf("lease store: %w", errors.Join(ErrUnavailable, err))
	}
	return lease, nil
}

// RunReaper runs [Leases.Recover] once, then a reaper pass every interval
// (default 30s) until ctx ends; it returns nil then. Run one per process:
// instances sharing the control database coordinate through row claims.
func (l *Leases) RunReaper(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultReapInterval
	}
	if _, err := l.Recover(ctx); err != nil && ctx.Err() == nil {
		l.log.ErrorContext(ctx, "lease recovery failed; retrying on the next pass", "err", err)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := l.Reap(ctx); err != nil && ctx.Err() == nil {
				l.log.ErrorContext(ctx, "lease reaper pass failed", "err", err)
			}
		}
	}
}

// Recover is the start-up step: it releases the claims this instance held
// before it stopped (their work died with it) and runs a reaper pass, so
// half-done leases are finished or undone at once.
func (l *Leases) Recover(ctx context.Context) (ReapStats, error) {
	n, err := l.cfg.Store.ReleaseClaims(ctx, l.cfg.Instance)
	if err != nil {
		return ReapStats{}, fmt.Errorf("release lease claims: %w", err)
	}
	if n > 0 {
		l.log.WarnContext(ctx, "took over leases this instance left half done", "leases", n, "instance", l.cfg.Instance)
	}
	return l.Reap(ctx)
}

// Reap runs one reaper pass: expired active leases become revoking (audit
// `expire`), creating leases whose creator died become revoking, due
// revocations are claimed and attempted, Workers at a time, until none is
// due or MaxPerPass were handled, and, once an hour, final leases older
// than Retention are deleted.
func (l *Leases) Reap(ctx context.Context) (ReapStats, error) {
	st, err := l.reap(ctx)
	if err != nil {
		return st, err
	}
	st.Pruned, err = l.prune(ctx)
	return st, err
}

// prune deletes the final leases older than Retention, in statements of
// at most [PruneBatch] leases, when the last prune is an hour old.
func (l *Leases) prune(ctx context.Context) (int64, error) {
	if l.cfg.Retention < 0 {
		return 0, nil
	}
	now := l.now()
	l.pruneMu.Lock()
	if now.Before(l.nextPrune) {
		l.pruneMu.Unlock()
		return 0, nil
	}
	l.nextPrune = now.Add(leasePruneInterval)
	l.pruneMu.Unlock()
	cut := now.Add(-l.cfg.Retention)
	n, err := PruneInBatches(ctx, PruneBatch, func(ctx context.Context) (int64, error) {
		return l.cfg.Store.PruneFinal(ctx, cut, PruneBatch)
	})
	if n > 0 {
		l.log.InfoContext(ctx, "pruned final sql leases", "count", n, "before", cut)
	}
	if err != nil {
		return n, fmt.Errorf("prune leases: %w", err)
	}
	return n, nil
}

func (l *Leases) reap(ctx context.Context) (ReapStats, error) {
	var st ReapStats
	now := l.now()
	expired, err := l.cfg.Store.ExpireDue(ctx, now, l.cfg.MaxPerPass)
	if err != nil {
		return st, fmt.Errorf("expire leases: %w", err)
	}
	system := &audit.Actor{Transport: "system"}
	for i := range expired {
		st.Expired++
		a := *system
		a.SQLLogin = expired[i].Username
		l.record(ctx, &audit.Record{
			Kind: audit.KindCredential, Actor: &a,
			Credential: l.credRecord(&expired[i], "expire", "principal "+expired[i].Principal.Display()),
		})
	}
	stale, err := l.cfg.Store.AbandonStale(ctx, now, l.cfg.MaxPerPass)
	if err != nil {
		return st, fmt.Errorf("abandon stale leases: %w", err)
	}
	for _, s := range stale {
		st.Abandoned++
		l.log.WarnContext(ctx, "lease creation did not finish; undoing it", "lease_id", s.ID, "database", s.Database)
	}
	var mu sync.Mutex
	for handled := 0; handled < l.cfg.MaxPerPass && ctx.Err() == nil; {
		claim := l.claim(l.now())
		due, err := l.cfg.Store.ClaimDue(ctx, claim, l.now(), min(l.cfg.Workers, l.cfg.MaxPerPass-handled))
		if err != nil {
			return st, fmt.Errorf("claim due leases: %w", err)
		}
		if len(due) == 0 {
			break
		}
		handled += len(due)
		var wg sync.WaitGroup
		for i := range due {
			wg.Go(func() {
				a := *system
				a.SQLLogin = due[i].Username
				done := l.revokeClaimed(ctx, &due[i], claim.Token, &a, due[i].Reason)
				mu.Lock()
				if done {
					st.Revoked++
				} else {
					st.Failed++
				}
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	return st, nil
}

// revoke marks a lease revoking and, if no other instance is working on
// it, attempts the revocation at once. It returns the lease as it is
// afterwards.
func (l *Leases) revoke(ctx context.Context, leaseID string, actor *audit.Actor, reason string) (*Lease, error) {
	lease, err := l.Lease(ctx, leaseID)
	if err != nil {
		return nil, err
	}
	if lease.State.Final() {
		return &lease, nil
	}
	// Past this point the revocation must finish even if the caller goes.
	ctx = context.WithoutCancel(ctx)
	now := l.now()
	if _, err := l.cfg.Store.MarkRevoking(ctx, leaseID, reason, now); err != nil {
		return nil, fmt.Errorf("lease store: %w", errors.Join(ErrUnavailable, err))
	}
	claim := l.claim(now)
	ok, err := l.cfg.Store.Claim(ctx, leaseID, claim, now)
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", errors.Join(ErrUnavailable, err))
	}
	if ok {
		lease, err = l.Lease(ctx, leaseID)
		if err != nil {
			return nil, err
		}
		a := *actor
		a.SQLLogin = lease.Username
		l.revokeClaimed(ctx, &lease, claim.Token, &a, lease.Reason)
	}
	lease, err = l.Lease(ctx, leaseID)
	if err != nil {
		return nil, err
	}
	return &lease, nil
}

// revokeClaimed attempts the revocation of a lease this instance claimed
// with token and records the outcome: revoked (audit `revoke`), or
// rescheduled with backoff (audit `revoke_failed`). It reports whether the
// login is gone.
func (l *Leases) revokeClaimed(ctx context.Context, lease *Lease, token string, actor *audit.Actor, reason string) bool {
	ctx = context.WithoutCancel(ctx)
	iss, err := l.issuer(lease.Database)
	if err == nil {
		rctx, cancel := context.WithTimeout(ctx, l.cfg.OpTimeout)
		err = iss.RevokeLogin(rctx, l.spec(lease))
		cancel()
	}
	now := l.now()
	if err == nil {
		if _, ferr := l.cfg.Store.Finish(ctx, lease.ID, token, LeaseRevoked, now); ferr != nil {
			// The login is gone; the lease row catches up on a later pass
			// (the next attempt finds nothing to remove).
			l.log.ErrorContext(ctx, "mark lease revoked", "err", ferr, "lease_id", lease.ID)
		}
		l.record(ctx, &audit.Record{
			Kind: audit.KindCredential, Actor: actor,
			Credential: l.credRecord(lease, "revoke", reason),
		})
		return true
	}
	msg := safeError(err)
	next := now.Add(l.backoff(lease))
	l.log.WarnContext(ctx, "sql login revocation failed; will retry", "lease_id", lease.ID, "database", lease.Database,
		"attempt", lease.Attempts+1, "next_attempt", next, "err", msg)
	if lease.Attempts+1 == StuckAttempts {
		// Once per lease: retrying alone may never finish it.
		l.log.WarnContext(ctx, "sql login revocation keeps failing; an operator must finish it (docs/credentials.md, stuck revocations)",
			"lease_id", lease.ID, "database", lease.Database, "login", lease.Username, "attempts", lease.Attempts+1,
			"access_ended", errors.Is(err, ErrLoginDisabled), "err", msg)
	}
	if _, ferr := l.cfg.Store.RetryLater(ctx, lease.ID, token, next, msg, now); ferr != nil {
		l.log.ErrorContext(ctx, "reschedule lease revocation", "err", ferr, "lease_id", lease.ID)
	}
	l.record(ctx, &audit.Record{
		Kind: audit.KindCredential, Actor: actor, Result: &audit.Result{Status: errorCode(err)},
		Credential: l.credRecord(lease, "revoke_failed", fmt.Sprintf("attempt %d: %s; retrying", lease.Attempts+1, msg)),
	})
	return false
}

// undoCreate removes what a failed creation may have left. The lease ends
// failed when nothing remains, else revoking (the reaper retries).
func (l *Leases) undoCreate(ctx context.Context, iss SQLLoginIssuer, lease *Lease, token string, cause error) bool {
	ctx = context.WithoutCancel(ctx)
	rctx, cancel := context.WithTimeout(ctx, l.cfg.OpTimeout)
	err := iss.RevokeLogin(rctx, l.spec(lease))
	cancel()
	now := l.now()
	if err == nil {
		if _, ferr := l.cfg.Store.Finish(ctx, lease.ID, token, LeaseFailed, now); ferr != nil {
			l.log.ErrorContext(ctx, "mark lease failed", "err", ferr, "lease_id", lease.ID)
		}
		return true
	}
	if _, merr := l.cfg.Store.MarkRevoking(ctx, lease.ID, "creation failed: "+safeError(cause), now); merr != nil {
		l.log.ErrorContext(ctx, "mark lease revoking", "err", merr, "lease_id", lease.ID)
	}
	if _, rerr := l.cfg.Store.RetryLater(ctx, lease.ID, token, now.Add(l.backoff(lease)), safeError(err), now); rerr != nil {
		l.log.ErrorContext(ctx, "reschedule lease revocation", "err", rerr, "lease_id", lease.ID)
	}
	return false
}

// abandon ends a lease whose login was never attempted.
func (l *Leases) abandon(ctx context.Context, lease *Lease, token string) {
	if _, err := l.cfg.Store.Finish(context.WithoutCancel(ctx), lease.ID, token, LeaseFailed, l.now()); err != nil {
		l.log.ErrorContext(ctx, "mark lease failed", "err", err, "lease_id", lease.ID)
	}
}

// deny records a refused issue or renew and returns the error for the
// caller.
func (l *Leases) deny(ctx context.Context, actor *audit.Actor, action, database, role string, dec *policy.Decision, in *policy.Input, evalErr error) error {
	reasons := dec.Reasons
	if evalErr != nil {
		l.log.ErrorContext(ctx, "policy evaluation failed", "err", evalErr, "entry", string(policy.SQLCredentials))
		reasons = append(reasons, "policy evaluation failed")
	}
	if len(reasons) == 0 {
		reasons = []string{"denied by policy"}
	}
	rec := &audit.Record{
		Kind: audit.KindDecision, Actor: actor, DecisionID: dec.ID, Entry: string(policy.SQLCredentials),
		PolicyRevision: dec.Revision, Allow: ptr(false), Reasons: reasons,
		Credential: &audit.Credential{Type: "sql", Action: action, Database: database, Role: role, Login: actor.SQLLogin},
		Result:     &audit.Result{Status: CodeForbidden},
	}
	if _, err := l.svc.appendDecision(ctx, rec, in, nil); err != nil {
		l.log.ErrorContext(ctx, "audit sql credential decision failed", "err", err)
	}
	return &DeniedError{Reasons: reasons, DecisionID: dec.ID}
}

// ttl picks a lease's lifetime and maximum: the policy's `ttl` obligation
// is the longest lifetime policy grants (the default TTL when it sets
// none), MaxTTL caps it; the lifetime is the requested TTL (or the
// default) within that maximum. capped explains any reduction.
func (l *Leases) ttl(policyTTL, requested time.Duration) (ttl, maxTTL time.Duration, capped string) {
	maxTTL = l.cfg.DefaultTTL
	if policyTTL > 0 {
		maxTTL = policyTTL
	}
	var notes []string
	if maxTTL > l.cfg.MaxTTL {
		maxTTL = l.cfg.MaxTTL
	}
	ttl = min(l.cfg.DefaultTTL, maxTTL)
	if requested > 0 {
		ttl = requested
		if requested > maxTTL {
			ttl = maxTTL
			if policyTTL > 0 && policyTTL <= l.cfg.MaxTTL {
				notes = append(notes, fmt.Sprintf("requested %s exceeds the maximum %s policy grants", requested, maxTTL))
			} else {
				notes = append(notes, fmt.Sprintf("requested %s exceeds the configured maximum %s", requested, maxTTL))
			}
		}
	}
	return max(ttl, time.Second), max(maxTTL, time.Second), strings.Join(notes, "; ")
}

func (l *Leases) issuer(database string) (SQLLoginIssuer, error) {
	iss, ok := l.cfg.Issuers[database]
	if !ok {
		if len(database) > 128 || !printable(database) {
			return nil, fmt.Errorf("%w: database is not a configured database", ErrInvalid)
		}
		return nil, fmt.Errorf("%w: database %q does not issue SQL credentials", ErrInvalid, database)
	}
	return iss, nil
}

func (l *Leases) claim(now time.Time) Claim {
	return Claim{Token: randomHex(16), Owner: l.cfg.Instance, Until: now.Add(l.cfg.ClaimTTL)}
}

func (l *Leases) spec(lease *Lease) LoginSpec {
	return LoginSpec{LeaseID: lease.ID, Username: lease.Username, Role: lease.Role, ExpiresAt: lease.ExpiresAt, Principal: lease.Principal.Display()}
}

// backoff is the wait before the next revocation attempt: RetryBase
// doubled per failed attempt, at most RetryMax, minus up to a tenth
// derived from the lease id so that a storm of failures spreads out.
func (l *Leases) backoff(lease *Lease) time.Duration {
	d := l.cfg.RetryBase
	for i := 0; i < lease.Attempts && d < l.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, l.cfg.RetryMax)
	h := fnv.New32a()
	h.Write([]byte(lease.ID))
	return d - d/10*time.Duration(h.Sum32()%1000)/1000
}

func (l *Leases) actor(p *identity.Principal, host, login string) *audit.Actor {
	a := actorOf(p, &Caller{Transport: "http", Host: host})
	a.SQLLogin = login
	return a
}

func (l *Leases) credRecord(lease *Lease, action, detail string) *audit.Credential {
	return &audit.Credential{
		Type: "sql", Action: action, LeaseID: lease.ID, Login: lease.Username, Database: lease.Database,
		Role: lease.Role, ExpiresAt: lease.ExpiresAt, Detail: detail,
	}
}

// record appends a record with a detached, bounded context. A failure is
// logged: the step it records has happened and cannot be taken back.
func (l *Leases) record(ctx context.Context, rec *audit.Record) {
	l.svc.recordDetached(ctx, rec, "sql credential "+rec.Credential.Action+" (lease "+rec.Credential.LeaseID+")")
}

// safeError describes a provisioning error without secrets: adapters scrub
// SQL messages, and anything else is reduced to its class.
func safeError(err error) string {
	if errors.Is(err, ErrLoginDisabled) {
		return accessEndedPrefix + errorClass(err)
	}
	return errorClass(err)
}

// accessEndedPrefix starts the recorded error of a revocation attempt that
// failed after the login was disabled and its sessions ended
// ([ErrLoginDisabled]); see [Leases.checkLimit].
const accessEndedPrefix = "login disabled, sessions ended; removal failed: "

func errorClass(err error) string {
	var dbe *DBError
	switch {
	case errors.As(err, &dbe):
		return dbe.Error()
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return "database unavailable"
	case errors.Is(err, ErrInvalid):
		return err.Error()
	default:
		return "provisioning error"
	}
}

func errorCode(err error) string {
	var dbe *DBError
	switch {
	case errors.As(err, &dbe):
		return CodeDBError
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return CodeUnavailable
	case errors.Is(err, ErrInvalid):
		// The provisioner refused the request (a role that does not
		// exist, a privileged role): what the API answered.
		return CodeInvalidRequest
	default:
		return CodeInternal
	}
}

// refuseLimit audits a refusal by checkLimit (a decision record with the
// policy decision that allowed the credential, status rate_limited, the
// limit's message as the reason), as [Service.IssueNATS] does for its own
// limit, and returns err. Other errors are returned unaudited (the lease
// store could not be read: nothing was decided).
func (l *Leases) refuseLimit(ctx context.Context, actor *audit.Actor, req SQLCredRequest, dec *policy.Decision, err error) error {
	if !errors.Is(err, ErrTooManyLeases) {
		return err
	}
	l.record(ctx, &audit.Record{
		Kind: audit.KindDecision, Actor: actor, DecisionID: dec.ID, Entry: string(policy.SQLCredentials),
		PolicyRevision: dec.Revision, Allow: ptr(false), Reasons: []string{err.Error()},
		Credential: &audit.Credential{Type: "sql", Action: "issue", Database: req.Database, Role: req.Role},
		Result:     &audit.Result{Status: CodeRateLimited},
	})
	return err
}

// checkLimit refuses when principalID holds MaxLeasesPerPrincipal unrevoked
// leases (created: more than that, the new lease included). Leases whose
// login is disabled and whose removal failed StuckAttempts times do not
// count: their access has ended. The store counts them without reading the
// principal's final leases.
func (l *Leases) checkLimit(ctx context.Context, principalID string, created bool) error {
	limit := l.cfg.MaxLeasesPerPrincipal
	if limit <= 0 {
		return nil
	}
	n, err := l.cfg.Store.CountHeld(ctx, principalID, StuckAttempts, accessEndedPrefix)
	if err != nil {
		return fmt.Errorf("lease store: %w", errors.Join(ErrUnavailable, err))
	}
	if created {
		if n <= limit {
			return nil
		}
		n--
	} else if n < limit {
		return nil
	}
	return fmt.Errorf("%w: you hold %d unrevoked SQL credentials (the limit is %d); revoke some first", ErrTooManyLeases, n, limit)
}

// Stranded counts, per database, the unfinished leases (creating, active or
// revoking) of databases that have no issuer in this configuration: they
// cannot be revoked until the database is configured again. See
// [StrandedLeases].
func (l *Leases) Stranded(ctx context.Context) (map[string]int, error) {
	return StrandedLeases(ctx, l.cfg.Store, l.cfg.Issuers)
}

// StrandedLeases counts, per database, the unfinished leases in store of
// databases not in issuers (nil: none configured). Run it at start: a
// database renamed or removed from the configuration (or all of
// postgresLogins) leaves its logins valid until their VALID UNTIL, their
// open sessions alive, and their leases revoking forever.
func StrandedLeases(ctx context.Context, store LeaseStore, issuers map[string]SQLLoginIssuer) (map[string]int, error) {
	counts, err := store.Unfinished(ctx)
	if err != nil {
		return nil, fmt.Errorf("lease store: %w", errors.Join(ErrUnavailable, err))
	}
	out := map[string]int{}
	for db, n := range counts {
		if _, ok := issuers[db]; !ok && n > 0 {
			out[db] = n
		}
	}
	return out, nil
}

type clientKey struct{}

// WithClient returns ctx carrying the client of a request (address, user
// agent): [Leases.RenewLease] gives it to policy and the audit record, and
// [Leases.RevokeLease] and [Leases.RevokeAll] to the audit record.
// ([SQLCredRequest] carries it for IssueSQL.)
func WithClient(ctx context.Context, c policy.Client) context.Context {
	return context.WithValue(ctx, clientKey{}, c)
}

// ClientFrom returns the client [WithClient] put in ctx (zero if none).
func ClientFrom(ctx context.Context) policy.Client {
	c, _ := ctx.Value(clientKey{}).(policy.Client)
	return c
}

func joinNotes(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// ValidRoleName reports whether a requested role name is acceptable: 1 to
// 63 characters, ASCII letters, digits, _ $ -, starting with a letter or _.
// Anything else (quotes, brackets, semicolons, spaces, Unicode) is refused
// before it reaches policy or a database; the provisioners quote names on
// the database side regardless.
func ValidRoleName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '$' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ValidLoginName reports whether s has the shape [LoginName] generates with
// prefix: the prefix, then a-z, 0-9 and _, ending in _ and 10 random
// characters (a-z, 2-7), at most 63 characters. Provisioners refuse any
// other name, so that a tampered lease row cannot make them disable or drop
// a login sqlgate did not create.
func ValidLoginName(prefix, s string) bool {
	if !validPrefix(prefix) || len(s) > 63 || len(s) < len(prefix)+11 || !strings.HasPrefix(s, prefix) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	tail := s[len(s)-11:]
	if tail[0] != '_' {
		return false
	}
	for i := 1; i < len(tail); i++ {
		if c := tail[i]; (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// ValidIssuedLoginName reports whether s has the shape [LoginName]
// generates with some valid prefix (letters, digits and _, starting with a
// letter, ending in _ and 10 random characters). Revocation accepts it, so
// that leases issued before loginPrefix changed can still be revoked;
// provisioners still refuse to revoke a privileged role.
func ValidIssuedLoginName(s string) bool {
	return s != "" && ValidLoginName(s[:1], s)
}

// LoginName generates a login name: prefix, a readable label of the
// principal (the e-mail's local part or the subject, reduced to a-z, 0-9
// and _, at most 20 characters) and 10 random characters (50 bits).
func LoginName(prefix string, p *identity.Principal) string {
	label := p.Subject
	if p.Email != "" {
		label, _, _ = strings.Cut(p.Email, "@")
	}
	var b strings.Builder
	b.WriteString(prefix)
	n := 0
	under := true
	for _, r := range strings.ToLower(label) {
		if n >= 20 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			under = false
			n++
		case !under:
			b.WriteByte('_')
			under = true
			n++
		}
	}
	if n == 0 {
		b.WriteString("user_")
	} else if !under {
		b.WriteByte('_')
	}
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var r [10]byte
	_, _ = rand.Read(r[:])
	for _, c := range r {
		b.WriteByte(alphabet[c&31])
	}
	return b.String()
}

// GeneratePassword returns a 32-character password from crypto/rand:
// letters and digits only (nothing to quote or escape in a DSN or a shell),
// with at least one upper-case letter, one lower-case letter and one digit,
// which meets SQL Server's complexity policy. About 190 bits.
func GeneratePassword() (string, error) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	for {
		b := make([]byte, 0, 32)
		var buf [64]byte
		for len(b) < 32 {
			if _, err := rand.Read(buf[:]); err != nil {
				return "", fmt.Errorf("generate password: %w", err)
			}
			for _, c := range buf {
				// 248 = 4 * 62: reject the rest for a uniform choice.
				if c < 248 && len(b) < 32 {
					b = append(b, alphabet[c%62])
				}
			}
		}
		s := string(b)
		if strings.ContainsAny(s, alphabet[:26]) && strings.ContainsAny(s, alphabet[26:52]) && strings.ContainsAny(s, alphabet[52:]) {
			return s, nil
		}
	}
}

func validPrefix(s string) bool {
	if len(s) == 0 || len(s) > 16 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '_' && (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// validLeaseID accepts the ids sqlgate generates (UUIDs) and nothing long
// or odd, so lookups of garbage never reach the store.
func validLeaseID(s string) bool {
	return len(s) == 36 && header.Valid(s, 36)
}

func printable(s string) bool { return header.Valid(s, len(s)) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
