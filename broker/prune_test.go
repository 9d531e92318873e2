package broker_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sqlgate/sqlgate/broker"
)

func TestPruneInBatches(t *testing.T) {
	// 10 records in batches of 4: 4, 4, 2.
	left := int64(10)
	calls := 0
	del := func(context.Context) (int64, error) {
		calls++
		n := min(left, 4)
		left -= n
		return n, nil
	}
	if n, err := broker.PruneInBatches(t.Context(), 4, del); n != 10 || err != nil || calls != 3 {
		t.Errorf("PruneInBatches = %d, %v after %d statements; want 10, nil after 3", n, err, calls)
	}
	// An exact multiple takes one more statement that deletes nothing.
	left, calls = 8, 0
	if n, err := broker.PruneInBatches(t.Context(), 4, del); n != 8 || err != nil || calls != 3 {
		t.Errorf("PruneInBatches(8) = %d, %v after %d statements; want 8, nil after 3", n, err, calls)
	}
	// A failure stops it and reports what was deleted before.
	boom := errors.New("boom")
	calls = 0
	failing := func(context.Context) (int64, error) {
		calls++
		if calls == 2 {
			return 0, boom
		}
		return 4, nil
	}
	if n, err := broker.PruneInBatches(t.Context(), 4, failing); n != 4 || !errors.Is(err, boom) {
		t.Errorf("PruneInBatches(failing) = %d, %v; want 4, boom", n, err)
	}
	// A cancelled context stops between statements.
	ctx, cancel := context.WithCancel(t.Context())
	calls = 0
	full := func(context.Context) (int64, error) {
		calls++
		cancel()
		return 4, nil
	}
	if n, err := broker.PruneInBatches(ctx, 4, full); n != 4 || !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("PruneInBatches(cancelled) = %d, %v after %d statements; want 4, canceled after 1", n, err, calls)
	}
}
