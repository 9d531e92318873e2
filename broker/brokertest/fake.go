package brokertest

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/internal/resultjson"
)

// FakeProc is a procedure of the [Fake] executor: it reads and writes the
// transaction's tables and returns what the call produced. An error of type
// *broker.DBError rolls the transaction back and reaches the caller as is;
// procedures that block must return when ctx ends.
type FakeProc func(ctx context.Context, tx *FakeTx, c *broker.Call) (*FakeResult, error)

// FakeResult is what a [FakeProc] returns. Output keys are written in sorted
// order; ReturnValue nil means none.
type FakeResult struct {
	// Sets are the result sets; the first is the result's "rows".
	Sets         []FakeSet
	Output       map[string]any
	ReturnValue  *int64
	RowsAffected int64
}

// FakeSet is one result set.
type FakeSet struct {
	Columns []string
	Rows    [][]any
}

// FakeTable is a table in a [FakeTx]: rows keyed by column name and the next
// id to assign.
type FakeTable struct {
	NextID int64
	Rows   []map[string]any
}

// FakeTx is one transaction of the [Fake]: a private copy of the tables,
// published on commit. Session holds the call's session context
// (sqlgate.correlation_id, sqlgate.principal, sqlgate.decision_id).
type FakeTx struct {
	tables  map[string]*FakeTable
	Session map[string]string
}

// Table returns the named table, creating it empty.
func (tx *FakeTx) Table(name string) *FakeTable {
	t, ok := tx.tables[name]
	if !ok {
		t = &FakeTable{NextID: 1}
		tx.tables[name] = t
	}
	return t
}

// Fake is an in-memory [broker.Executor] with the same transaction and
// idempotency semantics as the SQL adapters: calls run one at a time (one
// writer, like SQLite), each against a copy of the tables that is published
// only on success together with its idempotency record. It passes
// [RunExecutorTests], and broker tests use it instead of a database.
type Fake struct {
	procs map[string]FakeProc
	name  string
	sem   chan struct{}
	down  atomic.Bool
	now   func() time.Time

	mu     sync.Mutex // guards tables and idem (held only while copying/publishing)
	tables map[string]*FakeTable
	idem   map[string]fakeRecord
	txSeq  int64
}

type fakeRecord struct {
	hash     string
	decision string
	res      broker.Result
}

// NewFake returns a fake executor for the database called name whose
// procedures (and statements) are looked up by route target.
func NewFake(name string, procs map[string]FakeProc) *Fake {
	return &Fake{
		procs: maps.Clone(procs), name: name, sem: make(chan struct{}, 1), now: time.Now,
		tables: map[string]*FakeTable{}, idem: map[string]fakeRecord{},
	}
}

// SetDown makes the fake unreachable (every call fails with
// broker.ErrUnavailable) or reachable again.
func (f *Fake) SetDown(down bool) { f.down.Store(down) }

// Execute implements [broker.Executor].
func (f *Fake) Execute(ctx context.Context, c *broker.Call) (*broker.Result, error) {
	if f.down.Load() {
		return nil, fmt.Errorf("%w: fake database %s is down", broker.ErrUnavailable, f.name)
	}
	proc, ok := f.procs[c.Route.Target]
	if !ok {
		return nil, fmt.Errorf("fake database %s: no procedure %q", f.name, c.Route.Target)
	}
	select { // the one writer: a call with the same key waits here for the first
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, unavailable(ctx.Err())
	}
	defer func() { <-f.sem }()

	f.mu.Lock()
	rec, exists := f.idem[c.IdempotencyKey]
	tx := &FakeTx{tables: make(map[string]*FakeTable, len(f.tables)), Session: map[string]string{
		"sqlgate.correlation_id": c.CorrelationID, "sqlgate.principal": c.Principal, "sqlgate.decision_id": c.DecisionID,
	}}
	for name, t := range f.tables {
		tx.tables[name] = copyTable(t)
	}
	f.txSeq++
	txID := "fake-" + strconv.FormatInt(f.txSeq, 10)
	f.mu.Unlock()

	if exists {
		if rec.hash != c.RequestHash {
			return nil, broker.ErrConflict
		}
		res := rec.res
		res.Replayed = true
		res.RequestHash, res.DecisionID = rec.hash, rec.decision
		return &res, nil
	}
	out, err := proc(ctx, tx, c)
	if ctx.Err() != nil {
		return nil, unavailable(ctx.Err())
	}
	if err != nil {
		return nil, err
	}
	res := &broker.Result{TransactionID: txID, RowsAffected: out.RowsAffected}
	res.JSON, res.Rows, err = encodeFake(out, c)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down.Load() {
		return nil, fmt.Errorf("%w: fake database %s went down before commit", broker.ErrUnavailable, f.name)
	}
	res.CommittedAt = f.now().UTC()
	f.tables = tx.tables
	f.idem[c.IdempotencyKey] = fakeRecord{hash: c.RequestHash, decision: c.DecisionID, res: *res}
	return res, nil
}

func unavailable(err error) error {
	return fmt.Errorf("%w: %w", broker.ErrUnavailable, err)
}

func copyTable(t *FakeTable) *FakeTable {
	c := &FakeTable{NextID: t.NextID, Rows: make([]map[string]any, len(t.Rows))}
	for i, r := range t.Rows {
		c.Rows[i] = maps.Clone(r)
	}
	return c
}

func encodeFake(out *FakeResult, c *broker.Call) ([]byte, int64, error) {
	w := resultjson.NewWriter(c.RowLimit())
	for _, s := range out.Sets {
		w.BeginSet(s.Columns)
		for _, r := range s.Rows {
			if err := w.Row(r); err != nil {
				return nil, 0, err
			}
		}
		w.EndSet()
	}
	var outputs []resultjson.Output
	for _, p := range c.Route.Outputs {
		outputs = append(outputs, resultjson.Output{Name: p.Name, Value: out.Output[p.Name]})
	}
	b, err := w.Finish(outputs, len(c.Route.Outputs) > 0, out.ReturnValue, out.RowsAffected)
	return b, w.Rows(), err
}

// Lookup implements [broker.Executor].
func (f *Fake) Lookup(_ context.Context, key string) (*broker.Result, bool, error) {
	if f.down.Load() {
		return nil, false, fmt.Errorf("%w: fake database %s is down", broker.ErrUnavailable, f.name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.idem[key]
	if !ok {
		return nil, false, nil
	}
	res := rec.res
	res.Replayed = true
	res.RequestHash, res.DecisionID = rec.hash, rec.decision
	return &res, true, nil
}

// Prune implements [broker.Pruner].
func (f *Fake) Prune(_ context.Context, before time.Time) (int64, error) {
	if f.down.Load() {
		return 0, fmt.Errorf("%w: fake database %s is down", broker.ErrUnavailable, f.name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for key, rec := range f.idem {
		if rec.res.CommittedAt.Before(before) {
			delete(f.idem, key)
			n++
		}
	}
	return n, nil
}

// Describe implements [broker.Executor].
func (f *Fake) Describe() broker.DatabaseInfo {
	return broker.DatabaseInfo{Dialect: "fake", Server: "memory", Database: f.name}
}

var (
	_ broker.Executor = (*Fake)(nil)
	_ broker.Pruner   = (*Fake)(nil)
)

// errCheckAmount is the CHECK (amount > 0) violation of the fake orders
// table, numbered like SQL Server's 547.
var errCheckAmount = &broker.DBError{Number: 547, State: "23000", Message: `CHECK constraint "orders_amount_check" violated`}

// OrdersProcs are fake procedures implementing the suite's test schema,
// keyed by the targets in [OrdersTargets].
func OrdersProcs() map[string]FakeProc {
	return map[string]FakeProc{
		"orders_create": func(_ context.Context, tx *FakeTx, c *broker.Call) (*FakeResult, error) {
			return fakeCreate(tx, c, c.Params["customer"])
		},
		"orders_get": func(_ context.Context, tx *FakeTx, c *broker.Call) (*FakeResult, error) {
			cols := []string{"id", "customer", "amount", "quantity", "express", "note", "status", "created_by", "correlation_id"}
			set := FakeSet{Columns: cols}
			for _, r := range tx.Table("orders").Rows {
				if r["id"] == c.Params["id"] {
					row := make([]any, len(cols))
					for i, col := range cols {
						row[i] = r[col]
					}
					set.Rows = append(set.Rows, row)
				}
			}
			return &FakeResult{Sets: []FakeSet{set}}, nil
		},
		"orders_cancel": func(_ context.Context, tx *FakeTx, c *broker.Call) (*FakeResult, error) {
			res := &FakeResult{Sets: []FakeSet{{Columns: []string{"id"}}}}
			for _, r := range tx.Table("orders").Rows {
				if r["id"] == c.Params["id"] {
					r["status"] = "cancelled"
					res.RowsAffected++
				}
			}
			return res, nil
		},
		"orders_cancel_all": func(_ context.Context, tx *FakeTx, _ *broker.Call) (*FakeResult, error) {
			set := FakeSet{Columns: []string{"id"}}
			for _, r := range tx.Table("orders").Rows {
				if r["status"] == "open" {
					r["status"] = "cancelled"
					set.Rows = append(set.Rows, []any{r["id"]})
				}
			}
			return &FakeResult{Sets: []FakeSet{set}, RowsAffected: int64(len(set.Rows))}, nil
		},
		"orders_count": func(_ context.Context, tx *FakeTx, _ *broker.Call) (*FakeResult, error) {
			n := int64(len(tx.Table("orders").Rows))
			return &FakeResult{Sets: []FakeSet{{Columns: []string{"n"}, Rows: [][]any{{n}}}}}, nil
		},
		"orders_session": func(_ context.Context, tx *FakeTx, _ *broker.Call) (*FakeResult, error) {
			return &FakeResult{Sets: []FakeSet{{
				Columns: []string{"correlation_id", "principal", "decision_id"},
				Rows:    [][]any{{tx.Session["sqlgate.correlation_id"], tx.Session["sqlgate.principal"], tx.Session["sqlgate.decision_id"]}},
			}}}, nil
		},
		"orders_slow_create": func(ctx context.Context, tx *FakeTx, c *broker.Call) (*FakeResult, error) {
			res, err := fakeCreate(tx, c, c.Params["customer"])
			if err != nil {
				return nil, err
			}
			secs, _ := c.Params["seconds"].(int64)
			select {
			case <-time.After(time.Duration(secs) * time.Second):
				return res, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	}
}

func fakeCreate(tx *FakeTx, c *broker.Call, customer any) (*FakeResult, error) {
	amount := c.Params["amount"]
	if amount == nil {
		amount = "1"
	}
	if n, err := strconv.ParseFloat(fmt.Sprint(amount), 64); err != nil || n <= 0 {
		return nil, errCheckAmount
	}
	t := tx.Table("orders")
	id := t.NextID
	t.NextID++
	quantity, ok := c.Params["quantity"]
	if !ok {
		quantity = int64(1)
	}
	express, ok := c.Params["express"]
	if !ok {
		express = false
	}
	t.Rows = append(t.Rows, map[string]any{
		"id": id, "customer": customer, "amount": amount, "quantity": quantity, "express": express,
		"note": c.Params["note"], "status": "open",
		"created_by": tx.Session["sqlgate.principal"], "correlation_id": tx.Session["sqlgate.correlation_id"],
	})
	return &FakeResult{Sets: []FakeSet{{Columns: []string{"id"}, Rows: [][]any{{id}}}}, RowsAffected: 1}, nil
}

// OrdersTargets maps the suite's subjects to the [OrdersProcs] procedures.
func OrdersTargets() map[string]Target {
	return map[string]Target{
		SubjectCreate: {Procedure: "orders_create"}, SubjectGet: {Procedure: "orders_get"},
		SubjectCancel: {Procedure: "orders_cancel"}, SubjectCancelAll: {Procedure: "orders_cancel_all"},
		SubjectCount: {Procedure: "orders_count"}, SubjectSession: {Procedure: "orders_session"},
		SubjectSlowCreate: {Procedure: "orders_slow_create"},
	}
}
