package broker_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/broker/sqlite"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
)

// allowEvery allows every call, each decision with its own id.
type allowEvery struct{ n atomic.Int64 }

func (a *allowEvery) Decide(context.Context, policy.Entry, *policy.Input) (policy.Decision, error) {
	return policy.Decision{ID: "dec-" + strconv.FormatInt(a.n.Add(1), 10), Allow: true}, nil
}

// batchService is a broker over the given catalog and databases, with a
// real audit log (in memory) and a policy that allows every call.
func batchService(t *testing.T, catalog string, dbs map[string]broker.Executor, tune ...func(*broker.Config)) *broker.Service {
	t.Helper()
	cat, err := route.Parse([]byte(catalog))
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := audit.GenerateKey(rand.Reader, "test/batch")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(t.Context(), audittest.NewStore(), audit.Config{
		Origin: "test/batch", Instance: "test", Signer: signer,
		ParamKey: audit.ParamKey{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close(context.Background()) })
	cfg := broker.Config{Catalog: cat, Databases: dbs, Authorizer: &allowEvery{}, Recorder: log}
	for _, fn := range tune {
		fn(&cfg)
	}
	s, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Drain(context.Background()) })
	return s
}

// batchCall calls subject as p with payload {"name": name}.
func batchCall(ctx context.Context, s *broker.Service, subject string, p identity.Principal, name string) *broker.Reply {
	return s.Handle(ctx, &broker.Request{
		Subject: subject, Payload: []byte(`{"name":"` + name + `"}`), CorrelationID: name,
		Caller: broker.Caller{Transport: "http", Attested: true, Principal: &p},
	})
}

// queueBehind runs first on s and, once it runs (started returns), each of
// the others in turn, waiting until each waits in the route's batch queue.
// Then it calls release and returns every reply once all are answered. The
// calls are alice's, or who's of their name.
func queueBehind(t *testing.T, s *broker.Service, subject string, who map[string]identity.Principal, started, release func(), first string, others ...string) map[string]*broker.Reply {
	t.Helper()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		replies = map[string]*broker.Reply{}
	)
	call := func(name string) {
		p, ok := who[name]
		if !ok {
			p = alice
		}
		rep := batchCall(context.Background(), s, subject, p, name)
		mu.Lock()
		replies[name] = rep
		mu.Unlock()
	}
	wg.Go(func() { call(first) })
	started()
	for i, name := range others {
		wg.Go(func() { call(name) })
		for deadline := time.Now().Add(10 * time.Second); broker.BatchQueued(s, subject) != i+1; time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				release()
				t.Fatalf("%s did not queue: %d queued", name, broker.BatchQueued(s, subject))
			}
		}
	}
	release()
	wg.Wait()
	return replies
}

// slowSQLite runs calls on a real SQLite executor, except that the call
// named "holder" waits for release before it runs, and a batch or a call
// holding the call named "slow" runs until its context ends, as a statement
// that takes longer than the route's timeout does (without holding SQLite's
// single writer meanwhile; on PostgreSQL, TestBatchSlowCallPostgres, the slow
// statement is real).
type slowSQLite struct {
	*sqlite.Executor
	started chan struct{}
	release chan struct{}
}

func isNamed(c *broker.Call, name string) bool { return c.Params["name"] == name }

func (x *slowSQLite) Execute(ctx context.Context, c *broker.Call) (*broker.Result, error) {
	switch {
	case isNamed(c, "holder"):
		x.started <- struct{}{}
		<-x.release
	case isNamed(c, "slow"):
		<-ctx.Done()
		return nil, fmt.Errorf("%w: statement interrupted: %w", broker.ErrUnavailable, ctx.Err())
	}
	return x.Executor.Execute(ctx, c)
}

func (x *slowSQLite) ExecuteBatch(ctx context.Context, calls []*broker.Call) ([]broker.BatchResult, error) {
	if slices.ContainsFunc(calls, func(c *broker.Call) bool { return isNamed(c, "slow") }) {
		<-ctx.Done()
		return nil, fmt.Errorf("%w: statement interrupted: %w", broker.ErrUnavailable, ctx.Err())
	}
	return x.Executor.ExecuteBatch(ctx, calls)
}

// TestBatchSlowCallFailsAlone: a call batched with one that runs past the
// route's timeout still commits. The calls g1, slow, g2 and g3 queue behind
// a call that runs alone; they go in one batch, which runs into the
// timeout; then each runs alone with its whole timeout: g1, g2 and g3
// commit, and only slow answers that it timed out. (Before, the batch and
// the runs alone shared the timeout that started when each call queued:
// all four answered unavailable and nothing of them was kept.)
func TestBatchSlowCallFailsAlone(t *testing.T) {
	e, err := sqlite.Open(t.Context(), sqlite.Config{Name: "jobs", Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if _, err := e.DB().ExecContext(t.Context(), `CREATE TABLE jobs (name TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	x := &slowSQLite{Executor: e, started: make(chan struct{}, 1), release: make(chan struct{})}
	var (
		mu      sync.Mutex
		batches []int
	)
	s := batchService(t, `routes:
  - subject: jobs.add
    statement: {name: add, sql: "INSERT INTO jobs (name) VALUES (:name)"}
    database: jobs
    batch: 16
    timeout: 1s
    params: {type: object, properties: {name: {type: string}}, required: [name]}
`, map[string]broker.Executor{"jobs": x}, func(c *broker.Config) {
		c.OnBatch = func(_ string, calls int, fellBack bool) {
			mu.Lock()
			defer mu.Unlock()
			if fellBack {
				calls = -calls
			}
			batches = append(batches, calls)
		}
	})

	replies := queueBehind(t, s, "jobs.add", nil, func() { <-x.started }, func() { close(x.release) }, "holder", "g1", "slow", "g2", "g3")
	for _, name := range []string{"holder", "g1", "g2", "g3"} {
		if rep := replies[name]; !rep.OK || rep.Replayed {
			t.Errorf("%s: ok %v replayed %v error %+v; want committed", name, rep.OK, rep.Replayed, rep.Error)
		}
	}
	if rep := replies["slow"]; rep.OK || rep.Error.Code != broker.CodeUnavailable || !rep.TimedOut {
		t.Errorf("slow: ok %v error %+v timed out %v; want unavailable, timed out", rep.OK, rep.Error, rep.TimedOut)
	}
	var got []string
	rows, err := e.DB().QueryContext(t.Context(), `SELECT name FROM jobs ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"g1", "g2", "g3", "holder"}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{1, -4}; !slices.Equal(batches, want) {
		t.Errorf("batches %v, want %v (holder alone, then the four in one batch that fell back)", batches, want)
	}
}
