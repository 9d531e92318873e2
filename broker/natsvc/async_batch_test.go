package natsvc_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
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

// countIntents is the audit log, counting the durable intents.
type countIntents struct {
	*audit.Log
	n atomic.Int64
}

func (c *countIntents) AppendWithInput(ctx context.Context, r *audit.Record, in []byte) (int64, error) {
	i, err := c.Log.AppendWithInput(ctx, r, in)
	if err == nil && r.Kind == audit.KindIntent {
		c.n.Add(1)
	}
	return i, err
}

// slowSQLite runs calls on a real SQLite executor, except that the call
// named "holder" waits for release before it runs, and a batch or a call
// holding the call named "slow" runs until its context ends, as a statement
// that takes longer than the route's timeout does (without holding SQLite's
// single writer meanwhile).
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

// jobsCatalog is the async route of the tests over a real broker: it
// inserts a job by name into a SQLite table.
const jobsCatalog = `routes:
  - subject: orders.v1.import
    statement: {name: add, sql: "INSERT INTO jobs (name) VALUES (:name)"}
    database: jobs
    mode: async
    batch: 16
    timeout: 1s
    params: {type: object, properties: {name: {type: string}}, required: [name]}
`

// openJobs opens a SQLite database with the table jobs.
func openJobs(t *testing.T) *sqlite.Executor {
	t.Helper()
	e, err := sqlite.Open(t.Context(), sqlite.Config{Name: "jobs", Path: filepath.Join(t.TempDir(), "jobs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	if _, err := e.DB().ExecContext(t.Context(), `CREATE TABLE jobs (name TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return e
}

// jobNames returns the names in the table jobs, sorted.
func jobNames(t *testing.T, e *sqlite.Executor) []string {
	t.Helper()
	rows, err := e.DB().QueryContext(t.Context(), `SELECT name FROM jobs ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	return got
}

// jobsBroker is a real broker over jobsCatalog and exec, with an audit log
// in memory and a policy that allows every call, as the handler of the
// async consumer. The consumer attests the publisher's user key; the
// principal behind it is alice (the issuance registry is not what these
// tests are about).
func jobsBroker(t *testing.T, exec broker.Executor) (natsvc.Handler, *countIntents) {
	t.Helper()
	cat, err := route.Parse([]byte(jobsCatalog))
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := audit.GenerateKey(rand.Reader, "test/async")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(t.Context(), audittest.NewStore(), audit.Config{
		Origin: "test/async", Instance: "test", Signer: signer,
		ParamKey: audit.ParamKey{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close(context.Background()) })
	rec := &countIntents{Log: log}
	svc, err := broker.New(broker.Config{Catalog: cat, Databases: map[string]broker.Executor{"jobs": exec}, Authorizer: &allowEvery{}, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Drain(context.Background()) })
	alice := identity.Principal{Issuer: "https://idp.test", Subject: "alice"}
	return natsvc.HandlerFunc(func(ctx context.Context, req *broker.Request) *broker.Reply {
		req.Caller.Principal = &alice
		return svc.Handle(ctx, req)
	}), rec
}

// TestAsyncBatchSlowRequestGivesUpAlone: on an async route with batch,
// requests queued with one that runs past the route's timeout commit on
// their first delivery; only the slow one is retried and gives up after
// MaxDeliver. (Before, the batch's timeout left the requests queued with it
// no time to run alone: each failed as timed out, was delivered again with
// the slow one, after the same back-off, to fail with it again, and gave
// up unexecuted.)
func TestAsyncBatchSlowRequestGivesUpAlone(t *testing.T) {
	e := openJobs(t)
	x := &slowSQLite{Executor: e, started: make(chan struct{}, 1), release: make(chan struct{})}
	h, rec := jobsBroker(t, x)

	f := newAsyncFixture(t)
	f.start(t.Context(), t, h, func(c *natsvc.AsyncConfig) {
		c.Workers, c.MaxDeliver = 8, 2
		natsvc.SetAsyncClock(c, time.Now, func(uint64) time.Duration { return 10 * time.Millisecond })
	})
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	f.publish(t, subject, `{"name":"holder"}`, nil)
	<-x.started // the holder runs alone, held
	var last uint64
	for _, name := range []string{"g1", "slow", "g2", "g3"} {
		last = f.publish(t, subject, `{"name":"`+name+`"}`, nil).Sequence
	}
	// All five are past their durable intent: the four wait behind the
	// holder, to run in one batch.
	for deadline := time.Now().Add(10 * time.Second); rec.n.Load() < 5; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			close(x.release)
			t.Fatalf("%d intents, want 5", rec.n.Load())
		}
	}
	close(x.release)
	f.done(t, last)

	want := map[string]int{natsvc.SettledOK: 4, natsvc.SettledRetry: 1, natsvc.SettledGaveUp: 1}
	if got := f.settledCounts(); !maps.Equal(got, want) {
		t.Errorf("settled %v, want %v (holder, g1, g2, g3 ok at once; slow retried once, then given up)", got, want)
	}
	if got, want := jobNames(t, e), []string{"g1", "g2", "g3", "holder"}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
}
