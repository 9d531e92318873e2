package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker/route"
)

// gatedExecutor records how calls reach it. Execute and ExecuteBatch wait
// on gate (when set) so the test can pile calls up behind a running one;
// failBatch makes every batch fail as a whole, panicBatch panic.
type gatedExecutor struct {
	mu         sync.Mutex
	gate       chan struct{}
	started    chan struct{}
	batches    [][]string // correlation ids per ExecuteBatch call
	alone      []string   // correlation ids run by Execute
	deadlines  []time.Time
	failBatch  bool
	panicBatch bool
	// unsupported makes every batch ErrBatchUnsupported.
	unsupported bool
	// opened is when pile opened the gate; batchEnd when the last batch
	// returned; aloneDeadlines the deadline of each call run alone.
	opened, batchEnd time.Time
	aloneDeadlines   map[string]time.Time
}

func (g *gatedExecutor) wait() {
	if g.started != nil {
		g.started <- struct{}{}
	}
	if g.gate != nil {
		<-g.gate
	}
}

func (g *gatedExecutor) Execute(ctx context.Context, c *Call) (*Result, error) {
	g.wait()
	g.mu.Lock()
	g.alone = append(g.alone, c.CorrelationID)
	if d, ok := ctx.Deadline(); ok {
		if g.aloneDeadlines == nil {
			g.aloneDeadlines = map[string]time.Time{}
		}
		g.aloneDeadlines[c.CorrelationID] = d
	}
	g.mu.Unlock()
	if c.CorrelationID == "bad" {
		return nil, &DBError{Number: 547, Message: "constraint"}
	}
	return &Result{TransactionID: "alone-" + c.CorrelationID}, nil
}

func (g *gatedExecutor) ExecuteBatch(ctx context.Context, calls []*Call) ([]BatchResult, error) {
	g.wait()
	ids := make([]string, len(calls))
	for i, c := range calls {
		ids[i] = c.CorrelationID
	}
	d, _ := ctx.Deadline()
	g.mu.Lock()
	g.batches = append(g.batches, ids)
	g.deadlines = append(g.deadlines, d)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.batchEnd = time.Now()
		g.mu.Unlock()
	}()
	if g.panicBatch {
		panic("boom")
	}
	if g.unsupported {
		return nil, ErrBatchUnsupported
	}
	if g.failBatch || slices.Contains(ids, "bad") {
		return nil, errors.New("batch rolled back")
	}
	out := make([]BatchResult, len(calls))
	for i, c := range calls {
		if c.CorrelationID == "taken" {
			out[i].Err = ErrConflict
			continue
		}
		out[i].Result = &Result{TransactionID: fmt.Sprintf("batch-%d", len(g.batches))}
	}
	return out, nil
}

func (g *gatedExecutor) Lookup(context.Context, string) (*Result, bool, error) {
	return nil, false, nil
}
func (g *gatedExecutor) Describe() DatabaseInfo { return DatabaseInfo{Dialect: "test"} }

type outcome struct {
	res *Result
	err error
}

// pile starts the call "first" on b and waits until it runs (held by the
// gate), then starts the others, which queue behind it. It returns each
// call's outcome once the gate opens and all finish.
// timeoutFor, if set, gives each call its timeout (else an hour).
func pile(t *testing.T, b *batcher, g *gatedExecutor, others []string, ctxFor func(string) context.Context, timeoutFor ...func(string) time.Duration) map[string]outcome {
	t.Helper()
	g.gate, g.started = make(chan struct{}), make(chan struct{}, 64)
	var (
		mu  sync.Mutex
		out = map[string]outcome{}
		wg  sync.WaitGroup
	)
	call := func(id string) {
		ctx := t.Context()
		if ctxFor != nil {
			ctx = ctxFor(id)
		}
		timeout := time.Hour
		if len(timeoutFor) > 0 {
			timeout = timeoutFor[0](id)
		}
		res, err := b.execute(ctx, &Call{CorrelationID: id}, timeout)
		mu.Lock()
		out[id] = outcome{res, err}
		mu.Unlock()
	}
	wg.Go(func() { call("first") })
	<-g.started // first is running alone
	// The others queue behind it one at a time, so their order is known.
	for i, id := range others {
		wg.Go(func() { call(id) })
		for deadline := time.Now().Add(5 * time.Second); ; {
			b.mu.Lock()
			n := len(b.queue)
			b.mu.Unlock()
			if n == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not queue: %d queued", id, n)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	g.mu.Lock()
	g.opened = time.Now()
	g.mu.Unlock()
	close(g.gate)
	wg.Wait()
	return out
}

// TestBatcherGroupsWhatQueues: a call on a quiet route runs alone at once;
// calls that arrive while one runs go together, at most max per batch,
// in arrival order, and each caller gets its own outcome.
func TestBatcherGroupsWhatQueues(t *testing.T) {
	g := &gatedExecutor{}
	b := newBatcher(g, 3)
	var (
		mu    sync.Mutex
		sizes []int
	)
	b.onBatch = func(calls int, fellBack bool) {
		mu.Lock()
		defer mu.Unlock()
		if fellBack {
			calls = -calls
		}
		sizes = append(sizes, calls)
	}
	if res, err := b.execute(t.Context(), &Call{CorrelationID: "quiet"}, time.Hour); err != nil || res.TransactionID != "alone-quiet" {
		t.Fatalf("a call on a quiet route: %+v, %v; want it run alone", res, err)
	}
	others := []string{"a", "b", "taken", "d", "e"}
	out := pile(t, b, g, others, nil)
	if want := [][]string{{"a", "b", "taken"}, {"d", "e"}}; !slices.EqualFunc(g.batches, want, slices.Equal) {
		t.Errorf("batches = %v, want %v", g.batches, want)
	}
	if !slices.Equal(g.alone, []string{"quiet", "first"}) {
		t.Errorf("alone = %v, want [quiet first]", g.alone)
	}
	for id, want := range map[string]string{"first": "alone-first", "a": "batch-1", "b": "batch-1", "d": "batch-2", "e": "batch-2"} {
		if o := out[id]; o.err != nil || o.res == nil || o.res.TransactionID != want {
			t.Errorf("%s: %+v, %v; want transaction %s", id, o.res, o.err, want)
		}
	}
	if o := out["taken"]; !errors.Is(o.err, ErrConflict) {
		t.Errorf("taken: %+v, %v; want ErrConflict for that call alone", o.res, o.err)
	}
	if b.running || len(b.queue) != 0 {
		t.Errorf("after the calls: running %v, %d queued; want idle", b.running, len(b.queue))
	}
	if want := []int{1, 1, 3, 2}; !slices.Equal(sizes, want) {
		t.Errorf("reported batch sizes %v, want %v", sizes, want)
	}
}

// TestBatcherFallsBackAlone: when a batch fails as a whole (nothing of it
// took effect), or the executor panics, each of its calls runs alone and
// gets its own outcome.
func TestBatcherFallsBackAlone(t *testing.T) {
	for _, tc := range []struct {
		name       string
		panicBatch bool
	}{{"a call fails", false}, {"the executor panics", true}} {
		t.Run(tc.name, func(t *testing.T) {
			g := &gatedExecutor{panicBatch: tc.panicBatch}
			b := newBatcher(g, 8)
			var fellBack []int
			b.onBatch = func(calls int, fell bool) {
				if fell {
					fellBack = append(fellBack, calls)
				}
			}
			out := pile(t, b, g, []string{"x", "bad", "y"}, nil)
			if len(g.batches) != 1 {
				t.Fatalf("batches = %v, want one that failed", g.batches)
			}
			if !slices.Equal(fellBack, []int{3}) {
				t.Errorf("reported fallbacks %v, want one batch of 3", fellBack)
			}
			var dbe *DBError
			if o := out["bad"]; !errors.As(o.err, &dbe) {
				t.Errorf("bad: %+v, %v; want its own DBError", o.res, o.err)
			}
			for _, id := range []string{"x", "y"} {
				if o := out[id]; o.err != nil || o.res.TransactionID != "alone-"+id {
					t.Errorf("%s: %+v, %v; want run alone after the batch failed", id, o.res, o.err)
				}
			}
		})
	}
}

// TestBatcherTimeouts: a call's timeout bounds each attempt to run it, not
// its wait in the queue. A batch runs within the smallest timeout of its
// calls counted from when it starts, not from when they queued; after a
// failed batch each call runs alone with its whole timeout again; and a
// caller that goes away does not cancel the others' calls.
func TestBatcherTimeouts(t *testing.T) {
	g := &gatedExecutor{}
	b := newBatcher(g, 8)
	gone, cancel := context.WithCancel(t.Context())
	out := pile(t, b, g, []string{"late", "soon", "gone"}, func(id string) context.Context {
		if id == "gone" {
			return gone
		}
		return t.Context()
	}, func(id string) time.Duration {
		if id == "soon" {
			return time.Minute
		}
		return time.Hour
	})
	cancel()
	if len(g.deadlines) != 1 || g.deadlines[0].Before(g.opened.Add(time.Minute)) || g.deadlines[0].After(g.batchEnd.Add(time.Minute)) {
		t.Errorf("batch deadlines = %v, want one, the smallest timeout (1m) after the batch started (%v)", g.deadlines, g.opened)
	}
	for id, o := range out {
		if o.err != nil {
			t.Errorf("%s: %v", id, o.err)
		}
	}

	// A batch that fails: each call runs alone with its whole timeout,
	// counted from after the batch.
	g = &gatedExecutor{}
	b = newBatcher(g, 8)
	out = pile(t, b, g, []string{"x", "bad", "y"}, nil, func(id string) time.Duration {
		if id == "y" {
			return time.Minute
		}
		return time.Hour
	})
	for id, timeout := range map[string]time.Duration{"x": time.Hour, "bad": time.Hour, "y": time.Minute} {
		if d := g.aloneDeadlines[id]; d.Before(g.batchEnd.Add(timeout)) {
			t.Errorf("%s ran alone until %v, want its whole timeout (%s) after the failed batch (ended %v)", id, d, timeout, g.batchEnd)
		}
	}
	if o := out["x"]; o.err != nil || o.res.TransactionID != "alone-x" {
		t.Errorf("x: %+v, %v; want run alone", o.res, o.err)
	}

	// A caller cancelled once its batch took it: the batch still runs.
	g2 := &gatedExecutor{}
	b2 := newBatcher(g2, 8)
	ctx, cancel2 := context.WithCancel(t.Context())
	out = pile(t, b2, g2, []string{"cancelled", "other"}, func(id string) context.Context {
		if id == "cancelled" {
			return ctx
		}
		return t.Context()
	})
	cancel2()
	if o := out["other"]; o.err != nil || o.res.TransactionID != "batch-1" {
		t.Errorf("other: %+v, %v", o.res, o.err)
	}
}

// TestBatcherQueueWait: a call that waits in the queue longer than its
// timeout, or whose caller goes away meanwhile, leaves the queue unexecuted
// with an unavailable error that says so; the calls around it are not
// affected, and the route keeps batching.
func TestBatcherQueueWait(t *testing.T) {
	g := &gatedExecutor{gate: make(chan struct{}), started: make(chan struct{}, 64)}
	b := newBatcher(g, 8)
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out = map[string]outcome{}
	)
	call := func(ctx context.Context, id string, timeout time.Duration) {
		res, err := b.execute(ctx, &Call{CorrelationID: id}, timeout)
		mu.Lock()
		out[id] = outcome{res, err}
		mu.Unlock()
	}
	queued := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Microsecond) {
			b.mu.Lock()
			got := len(b.queue)
			b.mu.Unlock()
			if got == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d queued, want %d", got, n)
			}
		}
	}
	wg.Go(func() { call(t.Context(), "first", time.Hour) })
	<-g.started // first runs alone, held
	wg.Go(func() { call(t.Context(), "before", time.Hour) })
	queued(1)
	// Its timeout passes while it waits: it leaves the queue.
	call(t.Context(), "impatient", time.Millisecond)
	cancelled, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		call(cancelled, "gone", time.Hour)
	}()
	queued(2)
	cancel()
	<-done
	wg.Go(func() { call(t.Context(), "after", time.Hour) })
	queued(2)
	close(g.gate)
	wg.Wait()

	for id, want := range map[string]string{"impatient": "waited its whole timeout (1ms)", "gone": "cancelled"} {
		var qe *queueError
		o := out[id]
		if !errors.As(o.err, &qe) || !errors.Is(o.err, ErrUnavailable) || !strings.Contains(o.err.Error(), want) {
			t.Errorf("%s: %+v, %v; want unavailable, %q, nothing executed", id, o.res, o.err, want)
		}
		if code, msg, _ := execError(o.err, 0); code != CodeUnavailable || !strings.Contains(msg, "nothing was executed") {
			t.Errorf("%s answers %s %q, want unavailable, nothing executed", id, code, msg)
		}
	}
	if slices.Contains(g.alone, "impatient") || slices.Contains(g.alone, "gone") || !slices.EqualFunc(g.batches, [][]string{{"before", "after"}}, slices.Equal) {
		t.Errorf("alone %v, batches %v; want only first alone and [before after] batched", g.alone, g.batches)
	}
	for _, id := range []string{"first", "before", "after"} {
		if o := out[id]; o.err != nil {
			t.Errorf("%s: %v", id, o.err)
		}
	}
	if b.running || len(b.queue) != 0 {
		t.Errorf("after the calls: running %v, %d queued; want idle", b.running, len(b.queue))
	}
}

// TestBatcherUnsupported: when the executor cannot batch the route's calls
// (ErrBatchUnsupported, nothing sent), the calls of that batch run alone,
// which is no fallback: each reports a transaction of one call. From then
// on the route's calls run alone at once, without waiting for each other,
// and that is said once.
func TestBatcherUnsupported(t *testing.T) {
	g := &gatedExecutor{unsupported: true}
	b := newBatcher(g, 8)
	var (
		mu      sync.Mutex
		sizes   []int
		unbatch int
	)
	b.onBatch = func(calls int, fellBack bool) {
		mu.Lock()
		defer mu.Unlock()
		if fellBack {
			calls = -calls
		}
		sizes = append(sizes, calls)
	}
	b.onUnbatched = func() { unbatch++ }
	out := pile(t, b, g, []string{"a", "b", "c"}, nil)
	for id, o := range out {
		if o.err != nil || o.res.TransactionID != "alone-"+id {
			t.Errorf("%s: %+v, %v; want run alone", id, o.res, o.err)
		}
	}
	if want := []int{1, 1, 1, 1}; !slices.Equal(sizes, want) || len(g.batches) != 1 || unbatch != 1 {
		t.Errorf("sizes %v (want %v), %d batches tried (want 1), said %d times (want once)", sizes, want, len(g.batches), unbatch)
	}

	// Now two calls run at once: the second does not queue behind the
	// first, which is held.
	g.gate, g.started = make(chan struct{}), make(chan struct{}, 2)
	var wg sync.WaitGroup
	for _, id := range []string{"held", "free"} {
		wg.Go(func() {
			if _, err := b.execute(t.Context(), &Call{CorrelationID: id}, time.Hour); err != nil {
				t.Errorf("%s: %v", id, err)
			}
		})
	}
	for range 2 {
		select {
		case <-g.started:
		case <-time.After(10 * time.Second):
			t.Error("a call waits for the other: it queued")
		}
	}
	close(g.gate)
	wg.Wait()
	if len(g.batches) != 1 || unbatch != 1 {
		t.Errorf("%d batches tried, said %d times; want 1 and once", len(g.batches), unbatch)
	}
}

// plainExecutor runs every call alone: it has no ExecuteBatch.
type plainExecutor struct{ gatedExecutor }

func (p *plainExecutor) ExecuteBatch() {} // not the BatchExecutor method

// pickyExecutor batches procedures only, and says so (RouteBatcher).
type pickyExecutor struct{ gatedExecutor }

func (p *pickyExecutor) BatchesRoute(r *route.Route) bool { return r.Kind == route.Procedure }

// TestServiceBatchesOnlyWhereAllowed: New gives a route with batch > 1,
// sync or async, a batcher when the executor can batch it; every other route
// calls the executor itself, and a route with batch that gets no batcher
// is logged at start.
func TestServiceBatchesOnlyWhereAllowed(t *testing.T) {
	cat, err := route.Parse([]byte(`routes:
  - {subject: jobs.import, procedure: p, database: batching, mode: async, batch: 16}
  - {subject: jobs.create, procedure: p, database: batching, batch: 8}
  - {subject: jobs.single, procedure: p, database: batching, mode: async}
  - {subject: jobs.sync, procedure: p, database: batching}
  - {subject: jobs.plain, procedure: p, database: plain, mode: async, batch: 16}
  - {subject: jobs.pickyproc, procedure: p, database: picky, batch: 8}
  - {subject: jobs.pickystmt, statement: {name: s, sql: "SELECT 1"}, database: picky, batch: 8}
`))
	if err != nil {
		t.Fatal(err)
	}
	batching, plain, picky := &gatedExecutor{}, &plainExecutor{}, &pickyExecutor{}
	var logged strings.Builder
	s, err := New(Config{
		Catalog: cat, Databases: map[string]Executor{"batching": batching, "plain": plain, "picky": picky},
		Authorizer: struct{ Authorizer }{}, Recorder: struct{ Recorder }{},
		Logger: slog.New(slog.NewTextHandler(&logged, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if b := s.routes["jobs.import"].batch; b == nil || b.max != 16 || b.exec != batching {
		t.Errorf("jobs.import batcher = %+v, want one of 16 over the database's executor", b)
	}
	if b := s.routes["jobs.create"].batch; b == nil || b.max != 8 || b.exec != batching {
		t.Errorf("jobs.create (sync) batcher = %+v, want one of 8 over the database's executor", b)
	}
	if b := s.routes["jobs.pickyproc"].batch; b == nil || b.exec != picky {
		t.Errorf("jobs.pickyproc batcher = %+v, want one over the database's executor", b)
	}
	for subject, want := range map[string]Executor{"jobs.import": batching, "jobs.create": batching, "jobs.single": batching, "jobs.sync": batching, "jobs.plain": plain, "jobs.pickyproc": picky, "jobs.pickystmt": picky} {
		if got := s.routes[subject].exec; got != want {
			t.Errorf("%s executor = %T, want the database's own", subject, got)
		}
		if subject != "jobs.import" && subject != "jobs.create" && subject != "jobs.pickyproc" && s.routes[subject].batch != nil {
			t.Errorf("%s has a batcher", subject)
		}
	}
	for _, subject := range []string{"jobs.plain", "jobs.pickystmt"} {
		if !strings.Contains(logged.String(), "route batch ignored") || !strings.Contains(logged.String(), "route="+subject) {
			t.Errorf("the start logged %q; want the batch of %s ignored", logged.String(), subject)
		}
	}
	if strings.Count(logged.String(), "route batch ignored") != 2 {
		t.Errorf("the start logged %q; want two routes' batch ignored", logged.String())
	}
}
