package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqlgate/sqlgate/broker/route"
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

// RouteBatcher is an optional interface of a [BatchExecutor] that can tell,
// without asking the database, that it cannot batch a route's calls. [New]
// gives such a route no batcher and logs so at start. A route it may batch
// learns at its first batch whether it can: on [ErrBatchUnsupported] its
// calls run alone from then on, and that is logged once.
type RouteBatcher interface {
	// BatchesRoute reports false when ExecuteBatch would refuse calls of r
	// with ErrBatchUnsupported whatever the database holds.
	BatchesRoute(r *route.Route) bool
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
//
// A call's timeout bounds each attempt to run its SQL, and its wait in the
// queue separately: the wait (behind the transaction ahead), the batch it
// goes in, and, if that batch fails, its run alone each get the whole
// timeout. A batch is sqlgate's optimisation: a call batched with a slow or
// failing one still gets its own full run.
type batcher struct {
	exec BatchExecutor
	max  int

	// onBatch, if set, learns the size of each batch that ran and whether
	// it fell back to running its calls alone.
	onBatch func(calls int, fellBack bool)
	// onUnbatched, if set, is called once, when the executor says that it
	// cannot batch this route's calls ([ErrBatchUnsupported]).
	onUnbatched func()
	// unbatched is set from then on: each call runs alone at once, as on a
	// route without batch, and none waits in the queue.
	unbatched atomic.Bool

	mu      sync.Mutex
	queue   []*batchCall
	running bool // a leader is running a batch
}

// batchCall is one queued call. wake gets one value: the call finished
// (done) or its caller must now lead the next batch (lead).
type batchCall struct {
	ctx     context.Context
	call    *Call
	timeout time.Duration
	wake    chan struct{}
	// lead (handed the lead) and taken (in a batch) are guarded by the
	// batcher's mu: either means the call can no longer leave the queue.
	lead, taken bool
	done        bool
	res         *Result
	err         error
}

func newBatcher(exec BatchExecutor, most int) *batcher {
	return &batcher{exec: exec, max: most}
}

// queueError is the error of a call that left the batch queue without
// running: nothing of it reached the database. Its message is the reply's.
type queueError struct{ msg string }

func (e *queueError) Error() string { return e.msg }
func (e *queueError) Unwrap() error { return ErrUnavailable }

// execute runs c, each attempt within timeout, and returns its result. The
// caller that finds no batch running leads: it runs the queue's head batch
// (its own call is in it) and hands the lead to the next queued caller, if
// any. A queued caller waits for the lead or its result at most timeout,
// and not after ctx ends: then it leaves the queue with a [queueError].
func (b *batcher) execute(ctx context.Context, c *Call, timeout time.Duration) (*Result, error) {
	if b.unbatched.Load() {
		return execute(ctx, b.exec, c, timeout)
	}
	me := &batchCall{ctx: ctx, call: c, timeout: timeout, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, me)
	lead := !b.running
	me.lead = lead
	b.running = true
	b.mu.Unlock()
	if !lead {
		if err := b.wait(me); err != nil {
			return nil, err
		}
		if me.done {
			return me.res, me.err
		}
	}
	// Leading: this call is at the head of the queue.
	b.mu.Lock()
	n := min(len(b.queue), b.max)
	batch := make([]*batchCall, n)
	copy(batch, b.queue)
	for _, bc := range batch {
		bc.taken = true
	}
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:]) // no finished call stays referenced
	b.queue = b.queue[:rest]
	b.mu.Unlock()

	if n == 1 {
		// Alone, and the calls that arrive meanwhile queue for the next.
		b.alone(me)
		b.report(1, false)
		b.handOff()
		return me.res, me.err
	}
	again := b.run(batch)
	// The calls of a failed batch run alone, each in a transaction of its
	// own: the next batch need not wait for them.
	b.handOff()
	var wg sync.WaitGroup
	for _, bc := range again {
		wg.Go(func() {
			b.alone(bc)
			if bc != me {
				b.finish(bc)
			}
		})
	}
	wg.Wait()
	return me.res, me.err
}

// wait waits until me finished or leads; if that takes longer than its
// timeout, or its caller goes away, me leaves the queue (unless a batch
// took it or the lead came meanwhile) and the error says why.
func (b *batcher) wait(me *batchCall) error {
	t := time.NewTimer(me.timeout)
	defer t.Stop()
	var why error
	select {
	case <-me.wake:
		return nil
	case <-t.C:
		why = &queueError{fmt.Sprintf("the call waited its whole timeout (%s) for the calls ahead of it on this route (batch); nothing was executed", me.timeout)}
	case <-me.ctx.Done():
		why = &queueError{"the request was cancelled while it waited for the calls ahead of it on this route (batch); nothing was executed"}
	}
	b.mu.Lock()
	if me.lead || me.taken {
		b.mu.Unlock()
		<-me.wake // a batch runs it (bounded by its timeout), or it leads
		return nil
	}
	if i := slices.Index(b.queue, me); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
	}
	b.mu.Unlock()
	return why
}

// handOff gives the lead to the first queued call, or ends the run.
func (b *batcher) handOff() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		b.running = false
		return
	}
	next := b.queue[0]
	next.lead = true
	next.wake <- struct{}{}
}

// alone runs bc by itself, within its own timeout from now.
func (b *batcher) alone(bc *batchCall) {
	bc.res, bc.err = execute(bc.ctx, b.exec, bc.call, bc.timeout)
}

// finish hands a queued caller its result.
func (b *batcher) finish(bc *batchCall) {
	bc.done = true
	bc.wake <- struct{}{}
}

// run executes batch (two calls or more) in one transaction, which may
// take the smallest timeout of its calls, and finishes every call but the
// leader's (batch[0]) that it answered. It returns the calls to run alone:
// none when the batch succeeded, all of them when it failed (nothing of it
// took effect, or its commit's acknowledgement was lost: each call alone
// says what it does; a call whose record the batch committed replays it,
// with its own decision id), or when the executor cannot batch them.
func (b *batcher) run(batch []*batchCall) []*batchCall {
	timeout := batch[0].timeout
	calls := make([]*Call, len(batch))
	for i, bc := range batch {
		calls[i] = bc.call
		timeout = min(timeout, bc.timeout)
	}
	// Not cancelled by any one caller: the others still want their calls.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), timeout)
	results, err := func() (_ []BatchResult, err error) {
		defer recoverAs(&err)
		return b.exec.ExecuteBatch(ctx, calls)
	}()
	cancel()
	if errors.Is(err, ErrBatchUnsupported) {
		// Not a batch that failed: nothing was sent. The executor cannot
		// batch this route's calls (a PostgreSQL procedure, say): they run
		// alone from now on, without waiting for each other.
		if !b.unbatched.Swap(true) && b.onUnbatched != nil {
			b.onUnbatched()
		}
		for range batch {
			b.report(1, false)
		}
		return batch
	}
	if err == nil && len(results) != len(batch) {
		err = fmt.Errorf("batch of %d calls returned %d results", len(batch), len(results))
	}
	b.report(len(batch), err != nil)
	if err != nil {
		return batch
	}
	for i, bc := range batch {
		bc.res, bc.err = results[i].Result, results[i].Err
		if bc.res == nil && bc.err == nil {
			bc.err = errors.New("batch returned no result for a call")
		}
		if i > 0 { // the leader returns its own result
			b.finish(bc)
		}
	}
	return nil
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
