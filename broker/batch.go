package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// BatchExecutor is an [Executor] that can run several calls in one SQL
// transaction (routes with `batch`, DESIGN section 2).
type BatchExecutor interface {
	Executor
	// ExecuteBatch runs calls in one transaction, in order, each as
	// Execute would (session context, idempotency check, the call, its
	// record), and commits once. It returns one outcome per call: a
	// result (the executed calls share the transaction's id; a committed
	// record with the same request hash is a replay), or an error for a
	// call that executed nothing ([ErrConflict]). If any call fails
	// otherwise, or the commit does, the whole transaction is rolled back
	// and the error is returned: nothing of the batch took effect, and the
	// caller runs each call alone to learn which failed and why. An error
	// may also mean that the acknowledgement of a commit that took place
	// was lost (the connection dropped while reading it): each call alone
	// then finds its own record, which Execute returns as a replay carrying
	// the record's decision id, and [Service.Handle] counts it as the call's
	// own commit.
	// [ErrBatchUnsupported] says the calls cannot be batched (nothing was
	// sent to the database).
	ExecuteBatch(ctx context.Context, calls []*Call) ([]BatchResult, error)
}

// BatchResult is the outcome of one call of a batch.
type BatchResult struct {
	Result *Result
	Err    error
}

// ErrBatchUnsupported is returned by [BatchExecutor.ExecuteBatch] for
// calls whose targets it cannot run in a batch.
var ErrBatchUnsupported = errors.New("these calls cannot be batched")

// batcher runs the calls of one route in shared transactions, as a group
// commit does: a call that arrives while no batch runs goes alone at
// once; calls that arrive while one runs queue and go together in the
// next, up to max. So a quiet route pays no latency for batching and a busy
// one commits once per batch.
type batcher struct {
	exec BatchExecutor
	max  int

	// onBatch, if set, learns the size of each batch that ran and whether
	// it fell back to running its calls alone.
	onBatch func(calls int, fellBack bool)

	mu      sync.Mutex
	queue   []*batchCall
	running bool // a leader is running a batch
}

// batchCall is one queued call. wake gets one value: the call finished
// (done) or its caller must now lead the next batch.
type batchCall struct {
	ctx  context.Context
	call *Call
	wake chan struct{}
	done bool
	res  *Result
	err  error
}

var _ Executor = (*batcher)(nil)

func newBatcher(exec BatchExecutor, most int) *batcher {
	return &batcher{exec: exec, max: most}
}

// Execute queues c and returns its result. The caller that finds no batch
// running leads: it runs the queue's head batch (its own call is in it),
// then hands the lead to the next queued caller, if any.
func (b *batcher) Execute(ctx context.Context, c *Call) (*Result, error) {
	me := &batchCall{ctx: ctx, call: c, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, me)
	lead := !b.running
	b.running = true
	b.mu.Unlock()
	if !lead {
		<-me.wake
		if me.done {
			return me.res, me.err
		}
	}
	// Leading: this call is at the head of the queue.
	b.mu.Lock()
	n := min(len(b.queue), b.max)
	batch := make([]*batchCall, n)
	copy(batch, b.queue)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:]) // no finished call stays referenced
	b.queue = b.queue[:rest]
	b.mu.Unlock()

	b.run(batch)

	b.mu.Lock()
	if len(b.queue) > 0 {
		b.queue[0].wake <- struct{}{} // lead the next batch
	} else {
		b.running = false
	}
	b.mu.Unlock()
	return me.res, me.err
}

// run executes one batch and finishes every call of it. A batch of one,
// and every call of a batch that failed, run alone with their own context.
func (b *batcher) run(batch []*batchCall) {
	finish := func(bc *batchCall) {
		if bc != batch[0] { // the leader returns its own result
			bc.done = true
			bc.wake <- struct{}{}
		}
	}
	alone := func(bc *batchCall) {
		defer recoverAs(&bc.err)
		bc.res, bc.err = b.exec.Execute(bc.ctx, bc.call)
	}
	if len(batch) == 1 {
		alone(batch[0])
		b.report(1, false)
		return
	}
	ctx, cancel := batchContext(batch)
	calls := make([]*Call, len(batch))
	for i, bc := range batch {
		calls[i] = bc.call
	}
	results, err := func() (_ []BatchResult, err error) {
		defer recoverAs(&err)
		return b.exec.ExecuteBatch(ctx, calls)
	}()
	cancel()
	if err == nil && len(results) != len(batch) {
		err = fmt.Errorf("batch of %d calls returned %d results", len(batch), len(results))
	}
	b.report(len(batch), err != nil)
	if err == nil {
		for i, bc := range batch {
			bc.res, bc.err = results[i].Result, results[i].Err
			if bc.res == nil && bc.err == nil {
				bc.err = errors.New("batch returned no result for a call")
			}
			finish(bc)
		}
		return
	}
	// Nothing of the batch took effect, or its commit's acknowledgement was
	// lost: each call alone says what it does (a call whose record the
	// batch committed replays it, with its own decision id).
	var wg sync.WaitGroup
	for _, bc := range batch {
		wg.Go(func() {
			alone(bc)
			finish(bc)
		})
	}
	wg.Wait()
}

func (b *batcher) report(calls int, fellBack bool) {
	if b.onBatch != nil {
		b.onBatch(calls, fellBack)
	}
}

// recoverAs turns a panic of an executor into an error, so that a batch
// always finishes every call it holds (the others wait on it) and no panic
// escapes a goroutine of the batch.
func recoverAs(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("executor panic: %v", p)
	}
}

// batchContext is the context a batch runs under: not cancelled by any one
// caller (the others still want their calls), but bounded by the earliest
// deadline among them, so no call runs past its own timeout.
func batchContext(batch []*batchCall) (context.Context, context.CancelFunc) {
	var deadline time.Time
	for _, bc := range batch {
		if d, ok := bc.ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
	}
	ctx := context.WithoutCancel(batch[0].ctx)
	if deadline.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, deadline)
}

// Lookup implements [Executor].
func (b *batcher) Lookup(ctx context.Context, key string) (*Result, bool, error) {
	return b.exec.Lookup(ctx, key)
}

// Describe implements [Executor].
func (b *batcher) Describe() DatabaseInfo { return b.exec.Describe() }
