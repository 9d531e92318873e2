package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	if g.panicBatch {
		panic("boom")
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
func pile(t *testing.T, b *batcher, g *gatedExecutor, others []string, ctxFor func(string) context.Context) map[string]outcome {
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
		res, err := b.Execute(ctx, &Call{CorrelationID: id})
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
	if res, err := b.Execute(t.Context(), &Call{CorrelationID: "quiet"}); err != nil || res.TransactionID != "alone-quiet" {
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

// TestBatcherDeadline: a batch runs until the earliest deadline of its
// calls, and a caller that goes away does not cancel the others' calls.
func TestBatcherDeadline(t *testing.T) {
	g := &gatedExecutor{}
	b := newBatcher(g, 8)
	soon := time.Now().Add(time.Minute)
	gone, cancel := context.WithCancel(t.Context())
	out := pile(t, b, g, []string{"late", "soon", "gone"}, func(id string) context.Context {
		switch id {
		case "soon":
			ctx, stop := context.WithDeadline(t.Context(), soon)
			t.Cleanup(stop)
			return ctx
		case "gone":
			return gone
		}
		ctx, stop := context.WithTimeout(t.Context(), time.Hour)
		t.Cleanup(stop)
		return ctx
	})
	cancel()
	if len(g.deadlines) != 1 || !g.deadlines[0].Equal(soon) {
		t.Errorf("batch deadlines = %v, want the earliest, %v", g.deadlines, soon)
	}
	for id, o := range out {
		if o.err != nil {
			t.Errorf("%s: %v", id, o.err)
		}
	}
	// A caller cancelled while queued: the batch it is in still runs.
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

// plainExecutor runs every call alone: it has no ExecuteBatch.
type plainExecutor struct{ gatedExecutor }

func (p *plainExecutor) ExecuteBatch() {} // not the BatchExecutor method

// TestServiceBatchesOnlyWhereAllowed: New gives a route with batch > 1,
// sync or async, a batcher when the executor can batch; every other route
// calls the executor itself.
func TestServiceBatchesOnlyWhereAllowed(t *testing.T) {
	cat, err := route.Parse([]byte(`routes:
  - {subject: jobs.import, procedure: p, database: batching, mode: async, batch: 16}
  - {subject: jobs.create, procedure: p, database: batching, batch: 8}
  - {subject: jobs.single, procedure: p, database: batching, mode: async}
  - {subject: jobs.sync, procedure: p, database: batching}
  - {subject: jobs.plain, procedure: p, database: plain, mode: async, batch: 16}
`))
	if err != nil {
		t.Fatal(err)
	}
	batching, plain := &gatedExecutor{}, &plainExecutor{}
	s, err := New(Config{
		Catalog: cat, Databases: map[string]Executor{"batching": batching, "plain": plain},
		Authorizer: struct{ Authorizer }{}, Recorder: struct{ Recorder }{},
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
	for subject, want := range map[string]Executor{"jobs.import": batching, "jobs.create": batching, "jobs.single": batching, "jobs.sync": batching, "jobs.plain": plain} {
		if got := s.routes[subject].exec; got != want {
			t.Errorf("%s executor = %T, want the database's own", subject, got)
		}
		if subject != "jobs.import" && subject != "jobs.create" && s.routes[subject].batch != nil {
			t.Errorf("%s has a batcher", subject)
		}
	}
}
