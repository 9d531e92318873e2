package broker

import (
	"context"
	"time"
)

// Pruner is an [Executor] that deletes old idempotency records. A retry with
// a key whose record was pruned executes again.
type Pruner interface {
	// Prune deletes the records committed before t and returns how many.
	Prune(ctx context.Context, before time.Time) (int64, error)
}

// PruneBatch is how many idempotency records one delete statement removes.
// It stays under SQL Server's lock escalation threshold (5,000 locks), so a
// prune never takes a table lock that would stall the calls inserting
// records, and it bounds how long SQLite's single writer is held.
const PruneBatch = 4000

// PruneInBatches runs del, which deletes at most batch records, until it
// deletes fewer than batch, fails, or ctx ends, and returns the total.
func PruneInBatches(ctx context.Context, batch int64, del func(context.Context) (int64, error)) (int64, error) {
	var total int64
	for {
		n, err := del(ctx)
		total += n
		if err != nil || n < batch {
			return total, err
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}
