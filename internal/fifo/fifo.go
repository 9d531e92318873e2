// Package fifo admits callers to a limited resource in the order they ask.
//
// database/sql hands a freed connection to a random waiter. When more calls
// wait than a pool has connections, an unlucky call is overtaken again and
// again: with one SQLite writer connection and 64 concurrent calls, one call
// was overtaken by hundreds that asked after it. A [Gate] in front of the pool,
// sized to it, queues the callers first come, first served, so no call waits
// longer than the calls ahead of it take.
package fifo

import "context"

// Gate is a counting semaphore with first-come, first-served waiters. The
// zero value is not usable; call [NewGate].
type Gate struct {
	slots chan struct{}
}

// NewGate returns a gate that admits n callers at a time (at least one).
func NewGate(n int) *Gate {
	return &Gate{slots: make(chan struct{}, max(n, 1))}
}

// Enter waits for a free slot, behind every caller that asked before, or
// until ctx ends (then it returns ctx's error and holds nothing). A caller
// that entered must call [Gate.Leave] once.
//
// Goroutines blocked sending on a full channel are queued in order, and a
// slot that frees goes to the first of them: that is the whole mechanism.
func (g *Gate) Enter(ctx context.Context) error {
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Leave frees the caller's slot for the next in line.
func (g *Gate) Leave() { <-g.slots }
