package broker

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
)

// lostAckExecutor commits every batch (its records are stored) and then
// fails it, as a connection lost while reading the commit's acknowledgement
// does. Execute replays a stored record as the adapters do: Replayed, with
// the record's decision id. The first Execute waits on gate.
type lostAckExecutor struct {
	gate    chan struct{}
	started chan struct{}
	hold    atomic.Bool

	mu      sync.Mutex
	records map[string]Result
	batches int
}

func (x *lostAckExecutor) Execute(_ context.Context, c *Call) (*Result, error) {
	if x.hold.CompareAndSwap(true, false) {
		x.started <- struct{}{}
		<-x.gate
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if rec, ok := x.records[c.IdempotencyKey]; ok {
		rec.Replayed = true
		return &rec, nil
	}
	rec := Result{JSON: []byte(`{"rows":[]}`), TransactionID: "alone-" + c.CorrelationID, RequestHash: c.RequestHash, DecisionID: c.DecisionID}
	x.records[c.IdempotencyKey] = rec
	return &rec, nil
}

func (x *lostAckExecutor) ExecuteBatch(_ context.Context, calls []*Call) ([]BatchResult, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.batches++
	tx := "batch-" + strconv.Itoa(x.batches)
	for _, c := range calls {
		x.records[c.IdempotencyKey] = Result{JSON: []byte(`{"rows":[]}`), TransactionID: tx, RequestHash: c.RequestHash, DecisionID: c.DecisionID}
	}
	return nil, fmt.Errorf("%w: connection reset reading the reply to COMMIT", ErrUnavailable)
}

func (x *lostAckExecutor) Lookup(context.Context, string) (*Result, bool, error) {
	return nil, false, nil
}

func (x *lostAckExecutor) Describe() DatabaseInfo { return DatabaseInfo{Dialect: "test"} }

// allowAll allows every call, each decision with its own id.
type allowAll struct{ n atomic.Int64 }

func (a *allowAll) Decide(context.Context, policy.Entry, *policy.Input) (policy.Decision, error) {
	return policy.Decision{ID: "dec-" + strconv.FormatInt(a.n.Add(1), 10), Allow: true}, nil
}

// outcomeRecorder keeps the outcome records by intent index.
type outcomeRecorder struct {
	mu       sync.Mutex
	n        int64
	outcomes map[int64]*audit.Record
}

func (r *outcomeRecorder) Append(context.Context, *audit.Record) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	return r.n, nil
}

func (r *outcomeRecorder) AppendWithInput(ctx context.Context, rec *audit.Record, _ []byte) (int64, error) {
	return r.Append(ctx, rec)
}

func (r *outcomeRecorder) Enqueue(_ context.Context, rec *audit.Record, then func(int64, error)) error {
	r.mu.Lock()
	r.outcomes[rec.IntentIndex] = rec
	r.mu.Unlock()
	then(0, nil)
	return nil
}

func (r *outcomeRecorder) HashParams(map[string]any, []string) map[string]string { return nil }
func (r *outcomeRecorder) SealIdempotencyKey(k string) string                    { return k }

// TestBatchLostAckIsOwnCommit: a batch that committed but whose
// acknowledgement was lost falls back to running each call alone, and each
// finds the record its own decision wrote. Each call executed once: its
// reply is not a replay, it emits its event, and its audit outcome is the
// commit of the batch's transaction. A later retry under one of the keys is
// a replay (another decision): no event, outcome none.
func TestBatchLostAckIsOwnCommit(t *testing.T) {
	cat, err := route.Parse([]byte(`routes:
  - {subject: jobs.create, procedure: p, database: db, batch: 8, emit: jobs.created}
`))
	if err != nil {
		t.Fatal(err)
	}
	x := &lostAckExecutor{gate: make(chan struct{}), started: make(chan struct{}, 1), records: map[string]Result{}}
	x.hold.Store(true)
	rec := &outcomeRecorder{outcomes: map[int64]*audit.Record{}}
	s, err := New(Config{Catalog: cat, Databases: map[string]Executor{"db": x}, Authorizer: &allowAll{}, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	b := s.routes["jobs.create"].batch
	alice := identity.Principal{Issuer: "https://idp.test", Subject: "alice"}
	req := func(key string) *Request {
		return &Request{
			Subject: "jobs.create", Payload: []byte(`{}`), IdempotencyKey: key,
			Caller: Caller{Transport: "http", Attested: true, Principal: &alice},
		}
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		replies = map[string]*Reply{}
	)
	call := func(key string) {
		rep := s.Handle(t.Context(), req(key))
		mu.Lock()
		replies[key] = rep
		mu.Unlock()
	}
	wg.Go(func() { call("first") })
	<-x.started // first runs alone, held
	keys := []string{"a", "b", "c"}
	for i, key := range keys {
		wg.Go(func() { call(key) })
		for deadline := time.Now().Add(5 * time.Second); ; { // it queues behind first
			b.mu.Lock()
			n := len(b.queue)
			b.mu.Unlock()
			if n == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not queue: %d queued", key, n)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	close(x.gate)
	wg.Wait()
	if x.batches != 1 {
		t.Fatalf("batches = %d, want 1 (a, b and c together)", x.batches)
	}
	for _, key := range append([]string{"first"}, keys...) {
		rep := replies[key]
		if !rep.OK || rep.Replayed || rep.Emit == nil || rep.Emit.Subject != "jobs.created" {
			t.Errorf("%s: ok %v replayed %v emit %v; want its own commit: not replayed, event emitted", key, rep.OK, rep.Replayed, rep.Emit)
		}
		o := rec.outcomes[rep.AuditIndex]
		if o == nil || o.SQL.Outcome != "commit" || o.Result.Replayed {
			t.Errorf("%s: audit outcome %+v, want commit (not replayed)", key, o)
			continue
		}
		if key != "first" && o.SQL.TransactionID != "batch-1" {
			t.Errorf("%s: outcome transaction %q, want the batch's", key, o.SQL.TransactionID)
		}
	}

	// A retry under a committed key is a replay: another decision.
	again := s.Handle(t.Context(), req("a"))
	if !again.OK || !again.Replayed || again.Emit != nil {
		t.Errorf("retry: ok %v replayed %v emit %v; want a replay without an event", again.OK, again.Replayed, again.Emit)
	}
	if o := rec.outcomes[again.AuditIndex]; o == nil || o.SQL.Outcome != "none" || !o.Result.Replayed {
		t.Errorf("retry: audit outcome %+v, want none (replayed)", o)
	}
}
