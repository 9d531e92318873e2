package broker

import (
	"context"
	"errors"
	"time"

	"github.com/sqlgate/sqlgate/identity"
)

// SQLLoginIssuer provisions short-lived logins in one database
// (broker/postgres, broker/sqlserver). Implementations quote every name on
// the database side and pass the password only as a parameter; errors never
// carry the password. Safe for concurrent use.
type SQLLoginIssuer interface {
	// CreateLogin creates spec.Username with spec.Password, a member of
	// spec.Role, valid until spec.ExpiresAt where the database can enforce
	// it. It is all or nothing: on error nothing of the login remains, or
	// what remains is removed by RevokeLogin.
	CreateLogin(ctx context.Context, spec LoginSpec) error
	// RenewLogin moves the login's expiry to spec.ExpiresAt (PostgreSQL
	// VALID UNTIL; SQL Server has no login expiry and only checks that the
	// login still exists). spec.Password is empty.
	RenewLogin(ctx context.Context, spec LoginSpec) error
	// RevokeLogin removes every trace of the login: it stops new sessions,
	// ends open ones and drops the database user(s) and the login. Each step
	// is idempotent and "not found" is success, so a revocation that failed
	// half-way can be retried until it succeeds. An error after the login
	// was disabled and its sessions ended wraps [ErrLoginDisabled].
	// spec.Username may carry another prefix than the configured one (a
	// lease issued before loginPrefix changed); it has the generated shape
	// ([ValidIssuedLoginName]). spec.Password is empty.
	RevokeLogin(ctx context.Context, spec LoginSpec) error
	// ClientDSN is a connection string for the issued login without its
	// password (e.g. postgres://user@host:5432/db), shown to the user.
	ClientDSN(username string) string
}

// ErrLoginDisabled wraps a revocation failure that came after the login was
// disabled and its sessions were ended (the role itself could not be
// removed, e.g. PostgreSQL 2BP01 "objects depend on it"): access has ended,
// the lease stays revoking and is retried.
var ErrLoginDisabled = errors.New("login disabled and its sessions ended, but not removed")

// LoginSpec describes one issued login.
type LoginSpec struct {
	// LeaseID is the lease the login belongs to.
	LeaseID string
	// Username is the generated login name: a readable principal prefix
	// and random characters, [a-z0-9_] only (see [ValidLoginName]).
	Username string
	// Password is set for CreateLogin only (crypto/rand, see
	// [GeneratePassword]).
	Password string
	// Role is the database role the login is made a member of.
	Role string
	// ExpiresAt is the lease's expiry.
	ExpiresAt time.Time
	// Principal is a readable label of whom the login was issued to (for
	// templates that record it; never used as SQL text).
	Principal string
}

// LeaseState is where a lease is in its life:
//
//	creating -> active -> revoking -> revoked
//	creating -> failed                (creation failed, undone)
//	creating -> revoking -> revoked   (undo after a crash or failure)
//
// creating is written before the login exists (crash safety); revoking is
// written before revocation starts and stays until the login is gone.
type LeaseState string

// Lease states.
const (
	LeaseCreating LeaseState = "creating"
	LeaseActive   LeaseState = "active"
	LeaseRevoking LeaseState = "revoking"
	LeaseRevoked  LeaseState = "revoked"
	LeaseFailed   LeaseState = "failed"
)

// Final reports whether the state is terminal (the login is gone).
func (s LeaseState) Final() bool { return s == LeaseRevoked || s == LeaseFailed }

// Lease is a short-lived SQL login and its lifecycle, as kept in the
// control database. It never holds the password.
type Lease struct {
	ID        string
	Principal identity.Principal
	Database  string
	Role      string
	Username  string
	State     LeaseState
	IssuedAt  time.Time
	ExpiresAt time.Time
	// MaxExpiry is the latest expiry renewals may reach.
	MaxExpiry time.Time
	// RevokedAt is when the login was removed (revoked or failed leases).
	RevokedAt time.Time
	// DecisionID is the policy decision that granted the lease.
	DecisionID string
	// Reason says why revocation began ("expired", "revoked by ...").
	Reason string
	// Attempts counts failed revocation attempts; NextAttempt is when the
	// reaper tries again; LastError is the last failure (no secrets).
	Attempts    int
	NextAttempt time.Time
	LastError   string
	UpdatedAt   time.Time
}

// Claim is a time-limited right of one sqlgated instance to work on a lease
// (create its login, or revoke it), so that several instances sharing the
// control database never work on the same lease at once. Another instance
// may take over once Until has passed.
type Claim struct {
	// Token is random per claim; only its holder may finish the work.
	Token string
	// Owner names the instance (for operators and startup recovery).
	Owner string
	Until time.Time
}

// LeaseStore keeps leases in the control database (broker/control). Every
// state change is one conditional UPDATE that reports whether it applied,
// so concurrent instances cannot both make it. Get returns [ErrNotFound]
// for unknown ids. Safe for concurrent use.
type LeaseStore interface {
	// Create inserts a lease in state creating, claimed by c.
	Create(ctx context.Context, l *Lease, c Claim) error
	Get(ctx context.Context, id string) (Lease, error)
	// ByPrincipal lists a principal's leases (by Principal.ID()), newest
	// first.
	ByPrincipal(ctx context.Context, principalID string) ([]Lease, error)
	// UnfinishedByPrincipal lists a principal's leases that are not final
	// (creating, active, revoking), newest first, without reading the
	// final ones.
	UnfinishedByPrincipal(ctx context.Context, principalID string) ([]Lease, error)
	// CountHeld counts a principal's leases that are not final, except the
	// revoking ones with at least stuckAttempts failed attempts whose last
	// error starts with endedPrefix (their login is disabled, its sessions
	// ended), without reading the final ones.
	CountHeld(ctx context.Context, principalID string, stuckAttempts int, endedPrefix string) (int, error)
	// PruneFinal deletes up to limit leases that became final (revoked,
	// failed) before t, oldest first, and returns how many.
	PruneFinal(ctx context.Context, before time.Time, limit int) (int64, error)
	// ByPrincipalPage lists one page of a principal's leases, newest first
	// (by IssuedAt, then ID), reading at most page.Limit rows; an invalid
	// page is an error wrapping [ErrInvalid].
	ByPrincipalPage(ctx context.Context, principalID string, page ListPage) ([]Lease, error)
	// Activate moves a creating lease claimed with token to active and
	// releases the claim.
	Activate(ctx context.Context, id, token string, now time.Time) (bool, error)
	// Renew sets the expiry of an active, unexpired lease.
	Renew(ctx context.Context, id string, expiresAt, now time.Time) (bool, error)
	// MarkRevoking moves a creating or active lease to revoking with the
	// reason, due at once. A claim on it stays.
	MarkRevoking(ctx context.Context, id, reason string, now time.Time) (bool, error)
	// Claim claims a revoking lease whose claim is free or expired.
	Claim(ctx context.Context, id string, c Claim, now time.Time) (bool, error)
	// Finish moves a lease claimed with token to revoked or failed and
	// releases the claim.
	Finish(ctx context.Context, id, token string, state LeaseState, now time.Time) (bool, error)
	// RetryLater records a failed revocation attempt of a lease claimed with
	// token: state revoking, attempts+1, next attempt at next, claim
	// released.
	RetryLater(ctx context.Context, id, token string, next time.Time, lastErr string, now time.Time) (bool, error)
	// ExpireDue moves up to limit active leases that expired at or before
	// now to revoking (reason "expired") and returns them; each lease is
	// returned to exactly one caller.
	ExpireDue(ctx context.Context, now time.Time, limit int) ([]Lease, error)
	// AbandonStale moves up to limit creating leases whose claim expired
	// to revoking (their creator died) and returns them.
	AbandonStale(ctx context.Context, now time.Time, limit int) ([]Lease, error)
	// ClaimDue claims up to limit revoking leases that are due
	// (NextAttempt <= now) and not claimed, and returns them.
	ClaimDue(ctx context.Context, c Claim, now time.Time, limit int) ([]Lease, error)
	// ReleaseClaims releases every claim held by owner (startup: nothing
	// of this instance is in flight).
	ReleaseClaims(ctx context.Context, owner string) (int, error)
	// Unfinished counts the leases that are not final (creating, active,
	// revoking) per database name.
	Unfinished(ctx context.Context) (map[string]int, error)
}
