package broker

import (
	"context"
	"fmt"
	"time"
)

// DefaultRevocationSyncInterval is how often [Service.RunRevocationSync]
// re-applies the registry's revocations by default.
const DefaultRevocationSyncInterval = time.Minute

// RunRevocationSync re-applies the issuance registry's revocations to the
// NATS servers ([Service.ReapplyRevocations]) every interval (default
// [DefaultRevocationSyncInterval]), and at once after a push of a
// revocation failed, until ctx ends; it returns nil then. A failed pass is
// logged and retried on the next one. Without a registry or a revoker it
// does nothing. Run one per process.
func (s *Service) RunRevocationSync(ctx context.Context, interval time.Duration) error {
	if s.cfg.Registry == nil || s.cfg.Revoker == nil {
		return nil
	}
	if interval <= 0 {
		interval = DefaultRevocationSyncInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.resync:
		}
		if n, err := s.ReapplyRevocations(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "nats revocations not re-applied; retrying", "keys", n, "err", err, "retry_in", interval)
		}
	}
}

// ReapplyRevocations pushes every revoked, unexpired key of the issuance
// registry to the NATS servers; the revoker pushes only what the servers
// lack (a push that failed, a server that lost its state, a push that raced
// another instance's). It returns how many keys it asked for. sqlgated
// calls it at startup and [Service.RunRevocationSync] periodically.
func (s *Service) ReapplyRevocations(ctx context.Context) (int, error) {
	if s.cfg.Registry == nil || s.cfg.Revoker == nil {
		return 0, nil
	}
	revoked, err := s.cfg.Registry.RevokedActive(ctx, s.now())
	if err != nil {
		err = fmt.Errorf("issuance registry: %w", err)
		s.revocationSynced(err)
		return 0, err
	}
	if len(revoked) == 0 {
		return 0, nil
	}
	keys := make([]string, 0, len(revoked))
	earliest := revoked[0].RevokedAt
	for _, iss := range revoked {
		keys = append(keys, iss.UserKey)
		earliest = minTime(earliest, iss.RevokedAt)
	}
	// One push for all: a revocation at the earliest time or later is one
	// the servers hold (each key's own entry is at or after its revocation),
	// and the JWTs it covers extend to now, past every key's revocation; no
	// JWT is ever issued for a revoked key.
	return len(keys), s.pushRevocations(ctx, keys, earliest)
}

// pushRevocations asks the revoker to make the revocations of keys at t
// effective on the NATS servers and reports the attempt. No revoker or no
// keys: nothing to do.
func (s *Service) pushRevocations(ctx context.Context, keys []string, at time.Time) error {
	if s.cfg.Revoker == nil || len(keys) == 0 {
		return nil
	}
	err := s.cfg.Revoker.RevokeUsers(ctx, keys, at)
	s.revocationSynced(err)
	return err
}

// requestRevocationSync asks RunRevocationSync for a pass now.
func (s *Service) requestRevocationSync() {
	select {
	case s.resync <- struct{}{}:
	default: // one is pending already
	}
}

func (s *Service) revocationSynced(err error) {
	if s.cfg.OnRevocationSync != nil {
		s.cfg.OnRevocationSync(err)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
