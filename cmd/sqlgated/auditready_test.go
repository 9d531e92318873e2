package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// heldStore holds every write, while its gate is set, until the gate is
// closed or the write's context ends: a lock on the audit table.
type heldStore struct {
	*audittest.Store
	gate atomic.Pointer[chan struct{}]
}

func (s *heldStore) Write(ctx context.Context, origin string, b *audit.Batch) error {
	if gate := s.gate.Load(); gate != nil {
		select {
		case <-*gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Write(ctx, origin, b)
}

// claimHeld is an origin claim that holds.
type claimHeld struct{}

func (claimHeld) Err() error { return nil }

// TestReadyWhileAuditStoreHoldsWrites: while the audit store holds every
// write, the calls hang until the write times out and no write has failed
// yet; readiness names the audit log once the oldest append has waited past
// audit.StallBound, and is back once the store lets the write through.
func TestReadyWhileAuditStoreHoldsWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &heldStore{Store: audittest.NewStore()}
		log, err := audit.Open(t.Context(), store, audittest.Config(t, "sqlgate.test/ready"))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = log.Close(context.Background()) }()
		if err := auditNotReady(log, claimHeld{}); err != nil {
			t.Fatalf("auditNotReady of a healthy log = %v", err)
		}
		release := make(chan struct{})
		store.gate.Store(&release)
		done := make(chan error, 1)
		go func() {
			_, err := log.Append(context.Background(), &audit.Record{Kind: audit.KindIntent, CorrelationID: "c"})
			done <- err
		}()
		time.Sleep(audit.StallBound + time.Second)
		synctest.Wait()
		if err := auditNotReady(log, claimHeld{}); !errors.Is(err, audit.ErrStalled) {
			t.Errorf("auditNotReady with an append held %s = %v, want ErrStalled", audit.StallBound+time.Second, err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := auditNotReady(log, claimHeld{}); err != nil {
			t.Errorf("auditNotReady once the store let the write through = %v", err)
		}
	})
}
