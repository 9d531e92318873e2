package sqlite_test

import (
	"context"
	"database/sql/driver"
	"fmt"
	"sync"
	"testing"
	"time"

	msqlite "modernc.org/sqlite"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/route"
)

// pauses holds, by key, what sqlgate_test_pause(key) reports and waits for.
var pauses sync.Map // string -> *pause

type pause struct {
	entered chan struct{} // closed when the statement runs
	release chan struct{} // closed to let it finish
}

func init() {
	// sqlgate_test_pause(key) returns 1 once the test releases key, so a
	// call's statement can be held inside its transaction.
	msqlite.MustRegisterScalarFunction("sqlgate_test_pause", 1, func(_ *msqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		key, _ := args[0].(string)
		v, ok := pauses.Load(key)
		if !ok {
			return nil, fmt.Errorf("no pause %q", key)
		}
		p := v.(*pause)
		close(p.entered)
		<-p.release
		return int64(1), nil
	})
}

func statementRoute(t *testing.T, subject, sql string, params map[string]any) *route.Route {
	t.Helper()
	cat, err := route.New([]route.Spec{{
		Subject: subject, Database: "test", Params: params,
		Statement: &route.StatementSpec{Name: "s", SQL: sql}, Timeout: "1m", MaxRows: 100,
	}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := cat.Lookup(subject)
	return r
}

// TestFirstCallWhileWriterBusy runs a route's first call (which prepares its
// statement on the single writer connection) while another call holds that
// connection inside its transaction. Both must succeed: the first call waits
// for the writer and then runs. The prepare used to hold the executor's
// statement lock while it waited, and the busy call needs that lock to
// finish its transaction, so both stalled until the newcomer's deadline,
// which it then failed with.
func TestFirstCallWhileWriterBusy(t *testing.T) {
	t.Parallel()
	e := openTest(t)
	p := &pause{entered: make(chan struct{}), release: make(chan struct{})}
	pauses.Store(t.Name(), p)
	release := sync.OnceFunc(func() { close(p.release) })
	t.Cleanup(func() { release(); pauses.Delete(t.Name()) }) // before Close: a failed test still lets the busy call end
	busy := statementRoute(t, "r.busy", `SELECT sqlgate_test_pause(:k) AS p`,
		map[string]any{"type": "object", "properties": map[string]any{"k": map[string]any{"type": "string"}}})
	fresh := statementRoute(t, "r.fresh", `SELECT 42 AS n`, map[string]any{"type": "object"})

	a, err := brokertest.NewCall(busy, fmt.Sprintf(`{"k":%q}`, t.Name()), "")
	if err != nil {
		t.Fatal(err)
	}
	aErr := make(chan error, 1)
	go func() {
		_, err := e.Execute(t.Context(), a)
		aErr <- err
	}()
	// Safety net only: how long the test waits before it gives up.
	safety := time.After(time.Minute)
	select {
	case <-p.entered: // the busy call holds the writer, inside its transaction
	case <-safety:
		t.Fatal("the busy call's statement never started")
	}

	b, err := brokertest.NewCall(fresh, `{}`, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second) // the route's deadline
	defer cancel()
	waits := e.DB().Stats().WaitCount
	bDone := make(chan struct{})
	var (
		bRes *broker.Result
		bErr error
	)
	go func() {
		defer close(bDone)
		bRes, bErr = e.Execute(ctx, b)
	}()
	// Release the busy call only once the fresh call waits for the writer
	// connection (to prepare its statement).
	for e.DB().Stats().WaitCount == waits {
		select {
		case <-bDone:
			t.Fatalf("the fresh call finished while the writer was busy: %v", bErr)
		case <-safety:
			t.Fatal("the fresh call never waited for the writer connection")
		case <-time.After(time.Millisecond):
		}
	}
	release()

	<-bDone
	if err := <-aErr; err != nil {
		t.Errorf("busy call: Execute = %v, want success", err)
	}
	if bErr != nil {
		t.Fatalf("first call of a route while the writer was busy: Execute = %v, want success", bErr)
	}
	d, err := brokertest.DecodeResult(bRes.JSON)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Rows) != 1 || fmt.Sprint(d.Rows[0]["n"]) != "42" {
		t.Errorf("first call rows = %v, want [{n: 42}]", d.Rows)
	}
}
