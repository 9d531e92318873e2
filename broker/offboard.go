package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/identity"
)

// SignInCutoffs remembers, per principal, the instant of its last
// offboarding (revoke-all): sign-ins at or before it get no new
// credentials. The control database keeps it (broker/control), so every
// instance refuses at once. Safe for concurrent use.
type SignInCutoffs interface {
	// SetCutoff records t for the principal (by Principal.ID()); an earlier
	// t never replaces a later one.
	SetCutoff(ctx context.Context, principalID string, t time.Time) error
	// Cutoff returns the principal's cutoff, the zero time when it has
	// none. It reads the shared store, never a cache.
	Cutoff(ctx context.Context, principalID string) (time.Time, error)
}

// SignInRevokedError refuses a credential (NATS creds, the auth callout, a
// SQL login, a renewal) to a principal whose sign-in is not newer than the
// revoke-all of its credentials at Cutoff: the token's auth_time, else its
// iat, is at or before Cutoff, or the token carries neither. A fresh
// sign-in is accepted again (offboarding must also disable the user at the
// identity provider). It matches [identity.ErrUnauthenticated]; its text
// is safe to show the client.
type SignInRevokedError struct {
	Cutoff time.Time
}

// Error implements error.
func (e *SignInRevokedError) Error() string {
	return "your credentials were revoked at " + e.Cutoff.UTC().Format(time.RFC3339) +
		" and your sign-in is older; sign in again"
}

// Is makes SignInRevokedError match [identity.ErrUnauthenticated].
func (e *SignInRevokedError) Is(target error) bool { return target == identity.ErrUnauthenticated }

// CheckSignIn refuses p with a [*SignInRevokedError] when its sign-in is
// not newer than the principal's cutoff (its offboarding), and with an
// error matching [ErrUnavailable] when the cutoffs cannot be read (fail
// closed). Transports call it on every authenticated request, so that an
// offboarded principal's unexpired token or dashboard session stops
// acting, not only stops getting credentials. It audits nothing (the
// credential paths audit their refusals); it is safe for concurrent use.
func (s *Service) CheckSignIn(ctx context.Context, p identity.Principal) error {
	return s.checkSignIn(ctx, &p)
}

// checkSignIn refuses p with a [*SignInRevokedError] when its sign-in is
// not newer than the principal's cutoff. It fails closed: a cutoff store
// that cannot be read refuses (unavailable).
func (s *Service) checkSignIn(ctx context.Context, p *identity.Principal) error {
	if s.cfg.Cutoffs == nil {
		return nil
	}
	cut, err := s.cfg.Cutoffs.Cutoff(ctx, p.ID())
	if err != nil {
		return fmt.Errorf("sign-in cutoffs: %w", errors.Join(ErrUnavailable, err))
	}
	if cut.IsZero() {
		return nil
	}
	signedIn := p.AuthTime
	if signedIn.IsZero() {
		signedIn = p.IssuedAt
	}
	if signedIn.IsZero() || !signedIn.After(cut) {
		return &SignInRevokedError{Cutoff: cut}
	}
	return nil
}

// refuseSignIn audits a refusal by [Service.checkSignIn] (a decision record
// with status unauthenticated, like a refused callout token) and returns
// err. Errors other than a [*SignInRevokedError] are returned unaudited
// (the store could not be read: nothing was decided).
func (s *Service) refuseSignIn(ctx context.Context, actor *audit.Actor, entry string, cred *audit.Credential, err error) error {
	var sre *SignInRevokedError
	if !errors.As(err, &sre) {
		return err
	}
	rec := &audit.Record{
		Kind: audit.KindDecision, Actor: actor, Entry: entry, Allow: ptr(false),
		Reasons:    []string{"sign-in predates the revocation of all credentials at " + sre.Cutoff.UTC().Format(time.RFC3339Nano) + " (offboarding)"},
		Credential: cred, Result: &audit.Result{Status: CodeUnauthenticated},
	}
	s.recordDetached(ctx, rec, "sign-in refusal")
	return err
}

// cutOffSignIns records the offboarding of principalID at t (sign-ins at or
// before t get no new credentials) and audits it like the revocations of
// the revoke-all: a `credential` record of type `signin`, action `revoke`,
// by the admin.
func (s *Service) cutOffSignIns(ctx context.Context, actor identity.Principal, principalID, reason string, t time.Time) error {
	if s.cfg.Cutoffs == nil {
		return nil
	}
	if err := s.cfg.Cutoffs.SetCutoff(ctx, principalID, t); err != nil {
		return fmt.Errorf("sign-in cutoffs: %w", errors.Join(ErrUnavailable, err))
	}
	rec := &audit.Record{
		Kind: audit.KindCredential, Actor: actorOf(&actor, &Caller{Transport: "http"}),
		Credential: &audit.Credential{
			Type: "signin", Action: "revoke",
			Detail: fmt.Sprintf("principal %q: sign-ins at or before %s get no new credentials; %s", principalID, t.UTC().Format(time.RFC3339Nano), reason),
		},
	}
	if _, err := s.cfg.Recorder.Append(ctx, rec); err != nil {
		return fmt.Errorf("audit sign-in cutoff: %w", err)
	}
	return nil
}

// checkPrincipalID refuses (invalid) what cannot be a [identity.Principal.ID]
// (see [identity.CheckPrincipalID]): a revoke-all of anything else (an
// e-mail address, a bare subject) would record a cutoff for a principal
// that cannot exist and leave the real one signed in.
func checkPrincipalID(id string) error {
	if err := identity.CheckPrincipalID(id); err != nil {
		return fmt.Errorf("%w: principal must be %s; %w", ErrInvalid, identity.PrincipalIDShape, err)
	}
	return nil
}

// RevokeAll offboards a principal from everything the service itself holds:
// it records the instant in the sign-in cutoffs (the principal's sign-ins
// up to now get no new credentials, see [SignInRevokedError]), then revokes
// its unexpired NATS credentials (through [Service.RevokeNATS]; those
// revoked before are pushed to the NATS servers again). [Leases.RevokeAll]
// adds the SQL leases; a broker without SQL logins offboards with this
// alone. It continues past failures and returns them joined; NATS
// revocations that did not reach the servers are retried by
// [Service.RunRevocationSync].
func (s *Service) RevokeAll(ctx context.Context, actor identity.Principal, principalID, reason string) (*RevokeAllResult, error) {
	if err := checkPrincipalID(principalID); err != nil {
		return nil, err
	}
	if reason == "" {
		reason = "revoke-all by " + actor.Display()
	}
	res := &RevokeAllResult{PrincipalID: principalID, NATSKeys: []string{}, Leases: []Lease{}}
	var errs []error
	// First, so that the principal's current sign-in cannot get new
	// credentials while the old ones are being revoked.
	if err := s.cutOffSignIns(ctx, actor, principalID, reason, s.now()); err != nil {
		errs = append(errs, err)
	}
	if reg := s.cfg.Registry; reg != nil {
		list, err := reg.ByPrincipal(ctx, principalID)
		if err != nil {
			errs = append(errs, fmt.Errorf("issuance registry: %w", errors.Join(ErrUnavailable, err)))
		}
		now := s.now()
		var again []string // revoked before: pushed again
		var since time.Time
		for _, iss := range list {
			switch {
			case !now.Before(iss.ExpiresAt):
			case iss.RevokedAt.IsZero():
				res.NATSKeys = append(res.NATSKeys, iss.UserKey)
			default:
				again = append(again, iss.UserKey)
				if since.IsZero() || iss.RevokedAt.Before(since) {
					since = iss.RevokedAt
				}
			}
		}
		if len(res.NATSKeys) > 0 {
			if err := s.RevokeNATS(ctx, actor, res.NATSKeys, reason); err != nil {
				errs = append(errs, fmt.Errorf("revoke nats credentials: %w", err))
			}
		}
		if err := s.pushRevocations(ctx, again, since); err != nil {
			s.requestRevocationSync()
			errs = append(errs, fmt.Errorf("push nats revocation (retrying in the background): %w", errors.Join(ErrUnavailable, err)))
		}
		res.NATSKeys = append(res.NATSKeys, again...)
	}
	return res, errors.Join(errs...)
}
