package audit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// holdingStore is a store whose writes, while it holds them, wait until it
// releases them or their context ends: a lock on the audit table.
type holdingStore struct {
	*audittest.Store
	mu   sync.Mutex
	gate chan struct{} // nil: writes go through
}

func (s *holdingStore) hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = make(chan struct{})
}

func (s *holdingStore) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.gate)
	s.gate = nil
}

func (s *holdingStore) Write(ctx context.Context, origin string, b *audit.Batch) error {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Store.Write(ctx, origin, b)
}

// TestStalledWhileStoreHoldsWrites: while the store holds every write (the
// appends hang until the write times out), the log reports itself stalled
// once its oldest pending append has waited longer than StallBound, long
// before any write fails; once the store lets the write through it does not.
func TestStalledWhileStoreHoldsWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &holdingStore{Store: audittest.NewStore()}
		l, err := audit.Open(t.Context(), store, audittest.Config(t, origin))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close(context.Background()) }()
		if age, err := l.PendingWriteAge(), l.Stalled(); age != 0 || err != nil {
			t.Fatalf("idle log: PendingWriteAge = %s, Stalled = %v; want 0, nil", age, err)
		}

		store.hold()
		done := make(chan error, 1)
		go func() {
			_, err := l.Append(context.Background(), intent("a"))
			done <- err
		}()
		time.Sleep(time.Second)
		synctest.Wait()
		if age, err := l.PendingWriteAge(), l.Stalled(); age != time.Second || err != nil {
			t.Fatalf("an append held 1s: PendingWriteAge = %s, Stalled = %v; want 1s, nil", age, err)
		}
		time.Sleep(audit.StallBound)
		synctest.Wait()
		if age := l.PendingWriteAge(); age != time.Second+audit.StallBound {
			t.Errorf("PendingWriteAge = %s, want %s", age, time.Second+audit.StallBound)
		}
		if err := l.Stalled(); !errors.Is(err, audit.ErrStalled) {
			t.Errorf("Stalled with an append held past the bound = %v, want ErrStalled", err)
		}
		if err := l.WriteError(); err != nil {
			t.Errorf("WriteError = %v: no write has failed yet", err)
		}

		store.release()
		if err := <-done; err != nil {
			t.Fatalf("append once the store let it through = %v", err)
		}
		synctest.Wait()
		if age, err := l.PendingWriteAge(), l.Stalled(); age != 0 || err != nil {
			t.Errorf("after the store let the write through: PendingWriteAge = %s, Stalled = %v; want 0, nil", age, err)
		}
	})
}
