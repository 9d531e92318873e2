package brokertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
)

// Subjects of the conformance suite's routes (see the package documentation).
const (
	SubjectCreate     = "test.orders.create"
	SubjectGet        = "test.orders.get"
	SubjectCancel     = "test.orders.cancel"
	SubjectCancelAll  = "test.orders.cancel_all"
	SubjectCount      = "test.orders.count"
	SubjectSession    = "test.orders.session"
	SubjectSlowCreate = "test.orders.slow_create"
)

// Target is how one dialect runs one test route: exactly one of Procedure or
// Statement (with `:name` placeholders), plus the catalog's optional explicit
// SQL types and OUTPUT parameters.
type Target struct {
	Procedure string
	Statement string
	SQLTypes  map[string]string
	Output    map[string]string
}

// Harness is what an adapter hands the suite for one test: an executor over
// a database that holds the test schema and nothing else of interest (the
// orders table empty), and the targets of the test routes.
type Harness struct {
	Executor broker.Executor
	// Targets maps every Subject* constant to its target in this dialect.
	Targets map[string]Target
	// Down makes the database unreachable for Executor (closing it, or its
	// connections), so that later calls fail with broker.ErrUnavailable.
	Down func()
	// SessionOutside, when set, reads the sqlgate.correlation_id session
	// value on a pooled connection outside any call, as another user of the
	// pool would see it ("" or NULL means nothing leaked). Dialects without
	// session state leave it nil.
	SessionOutside func(ctx context.Context) (value string, set bool, err error)
}

// params are the parameter schemas of the test routes, the same for every
// dialect.
var params = map[string]string{
	SubjectCreate: `{"type":"object","required":["customer","amount","quantity","express"],"properties":{
		"customer":{"type":"string","maxLength":4000},"amount":{"type":"number"},
		"quantity":{"type":"integer"},"express":{"type":"boolean"},"note":{"type":["string","null"]}}}`,
	SubjectGet:        `{"type":"object","required":["id"],"properties":{"id":{"type":"integer"}}}`,
	SubjectCancel:     `{"type":"object","required":["id"],"properties":{"id":{"type":"integer"}}}`,
	SubjectCancelAll:  `{"type":"object"}`,
	SubjectCount:      `{"type":"object"}`,
	SubjectSession:    `{"type":"object"}`,
	SubjectSlowCreate: `{"type":"object","required":["customer","seconds"],"properties":{"customer":{"type":"string"},"seconds":{"type":"integer"}}}`,
}

// Subjects lists the suite's route subjects.
func Subjects() []string {
	return []string{SubjectCreate, SubjectGet, SubjectCancel, SubjectCancelAll, SubjectCount, SubjectSession, SubjectSlowCreate}
}

// Catalog builds the test route catalog from a dialect's targets. Every
// subject must have a target.
func Catalog(database string, targets map[string]Target) (*route.Catalog, error) {
	var cfgs []route.Spec
	for _, s := range Subjects() {
		tg, ok := targets[s]
		if !ok {
			return nil, fmt.Errorf("no target for %s", s)
		}
		var schema map[string]any
		if err := json.Unmarshal([]byte(params[s]), &schema); err != nil {
			return nil, err
		}
		rc := route.Spec{
			Subject: s, Database: database, Params: schema, SQLTypes: tg.SQLTypes, Output: tg.Output,
			Procedure: tg.Procedure, Timeout: "1m", MaxRows: 100,
		}
		if tg.Statement != "" {
			rc.Statement = &route.StatementSpec{Name: strings.ReplaceAll(strings.TrimPrefix(s, "test.orders."), ".", "_"), SQL: tg.Statement}
		}
		cfgs = append(cfgs, rc)
	}
	return route.New(cfgs)
}

// NewCall builds a call the way the broker does: payload decoded by the
// route, request hash over subject and parameters, correlation id and
// principal set. key "" uses a fresh unique key.
func NewCall(r *route.Route, payload string, key string) (*broker.Call, error) {
	p, err := r.Decode([]byte(payload))
	if err != nil {
		return nil, fmt.Errorf("decode %s payload: %w", r.Subject, err)
	}
	n := seq.Add(1)
	if key == "" {
		key = fmt.Sprintf("key-%d-%d", time.Now().UnixNano(), n)
	}
	return &broker.Call{
		Route: r, Params: p, IdempotencyKey: key, RequestHash: RequestHash(r.Subject, p),
		CorrelationID: fmt.Sprintf("corr-%d-%d", time.Now().UnixNano(), n),
		Principal:     "alice@example.com", DecisionID: fmt.Sprintf("dec-%d", n), MaxRows: r.MaxRows,
	}, nil
}

var seq atomic.Int64

// RequestHash is the hex SHA-256 of the subject and the parameters encoded
// as JSON with sorted keys.
func RequestHash(subject string, p map[string]any) string {
	b, _ := json.Marshal(p)
	h := sha256.Sum256(append([]byte(subject+"\x00"), b...))
	return hex.EncodeToString(h[:])
}

// Decoded is a parsed result object.
type Decoded struct {
	Rows         []map[string]any   `json:"rows"`
	Output       map[string]any     `json:"output"`
	ReturnValue  *json.Number       `json:"return_value"`
	RowsAffected *json.Number       `json:"rows_affected"`
	ResultSets   [][]map[string]any `json:"result_sets"`
}

// DecodeResult parses a result object strictly: only the documented keys,
// numbers as json.Number, rows and rows_affected present.
func DecodeResult(raw json.RawMessage) (*Decoded, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var d Decoded
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("result %s: %w", raw, err)
	}
	if d.Rows == nil {
		return nil, fmt.Errorf("result %s: no rows array", raw)
	}
	if d.RowsAffected == nil {
		return nil, fmt.Errorf("result %s: no rows_affected", raw)
	}
	if _, err := d.RowsAffected.Int64(); err != nil {
		return nil, fmt.Errorf("result %s: rows_affected is not an integer", raw)
	}
	return &d, nil
}

// RunExecutorTests runs the executor conformance suite. newHarness is called
// once per test and must return a fresh, empty test schema.
func RunExecutorTests(t *testing.T, newHarness func(t *testing.T) *Harness) {
	t.Helper()
	s := func(name string, fn func(t *testing.T, h *suiteEnv)) {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			cat, err := Catalog("test", h.Targets)
			if err != nil {
				t.Fatalf("Catalog: %v", err)
			}
			fn(t, &suiteEnv{Harness: h, cat: cat})
		})
	}
	s("CreateReturnsID", testCreateReturnsID)
	s("GetReturnsStoredFieldsVerbatim", testVerbatim)
	s("NULRejected", testNUL)
	s("Replay", testReplay)
	s("Conflict", testConflict)
	s("ConcurrentSameKey", testConcurrentSameKey)
	s("DBError", testDBError)
	s("TooManyRows", testTooManyRows)
	s("Timeout", testTimeout)
	s("SessionContext", testSessionContext)
	s("TransactionIDs", testTransactionIDs)
	s("Lookup", testLookup)
	s("Prune", testPrune)
	s("Describe", testDescribe)
	s("Batch", testBatch)
	s("BatchRollsBackAsOne", testBatchAtomic)
	s("DatabaseDown", testDown) // last: it breaks the harness
}

type suiteEnv struct {
	*Harness
	cat *route.Catalog
}

func (e *suiteEnv) route(t *testing.T, subject string) *route.Route {
	t.Helper()
	r, ok := e.cat.Lookup(subject)
	if !ok {
		t.Fatalf("no route %s", subject)
	}
	return r
}

func (e *suiteEnv) call(t *testing.T, subject, payload, key string) *broker.Call {
	t.Helper()
	c, err := NewCall(e.route(t, subject), payload, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exec runs a call that must succeed and returns its result and decoding.
func (e *suiteEnv) exec(t *testing.T, c *broker.Call) (*broker.Result, *Decoded) {
	t.Helper()
	res, err := e.Executor.Execute(t.Context(), c)
	if err != nil {
		t.Fatalf("Execute(%s) = %v, want success", c.Route.Subject, err)
	}
	d, err := DecodeResult(res.JSON)
	if err != nil {
		t.Fatalf("Execute(%s): %v", c.Route.Subject, err)
	}
	return res, d
}

func (e *suiteEnv) create(t *testing.T, customer string) int64 {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{"customer": customer, "amount": json.Number("10.50"), "quantity": 1, "express": false})
	_, d := e.exec(t, e.call(t, SubjectCreate, string(payload), ""))
	return rowID(t, d)
}

func rowID(t *testing.T, d *Decoded) int64 {
	t.Helper()
	if len(d.Rows) != 1 {
		t.Fatalf("rows = %v, want exactly one row", d.Rows)
	}
	n, ok := d.Rows[0]["id"].(json.Number)
	if !ok {
		t.Fatalf("row %v: id is %T, want a JSON number", d.Rows[0], d.Rows[0]["id"])
	}
	id, err := n.Int64()
	if err != nil || id <= 0 {
		t.Fatalf("id = %s, want a positive integer", n)
	}
	return id
}

func (e *suiteEnv) count(t *testing.T) int64 {
	t.Helper()
	_, d := e.exec(t, e.call(t, SubjectCount, `{}`, ""))
	if len(d.Rows) != 1 {
		t.Fatalf("count rows = %v, want one", d.Rows)
	}
	n, ok := d.Rows[0]["n"].(json.Number)
	if !ok {
		t.Fatalf("count row %v: n is %T, want a number", d.Rows[0], d.Rows[0]["n"])
	}
	v, err := n.Int64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (e *suiteEnv) get(t *testing.T, id int64) map[string]any {
	t.Helper()
	_, d := e.exec(t, e.call(t, SubjectGet, fmt.Sprintf(`{"id":%d}`, id), ""))
	if len(d.Rows) != 1 {
		t.Fatalf("get %d: rows = %v, want one", id, d.Rows)
	}
	return d.Rows[0]
}

func (e *suiteEnv) mustNotFind(t *testing.T, key string) {
	t.Helper()
	res, found, err := e.Executor.Lookup(t.Context(), key)
	if err != nil {
		t.Fatalf("Lookup(%q) error = %v", key, err)
	}
	if found {
		t.Fatalf("Lookup(%q) found %s, want no committed record", key, res.JSON)
	}
}

func testCreateReturnsID(t *testing.T, e *suiteEnv) {
	id1 := e.create(t, "first")
	id2 := e.create(t, "second")
	if id1 == id2 {
		t.Fatalf("two creates returned the same id %d", id1)
	}
	if got := e.count(t); got != 2 {
		t.Fatalf("count = %d after two creates, want 2", got)
	}
}

// Injection and encoding attempts: each must be stored and returned as data.
var verbatimCases = []struct{ name, value string }{
	{"plain", "ACME Corp"},
	{"unicode", "Zoë Ångström 北京 😀 \u00e9\u0301 \u200b"},
	{"quotes", `O'Brien "the" ` + "`back`"},
	{"drop_table", `'; DROP TABLE orders; --`},
	{"bobby", `Robert'); DROP TABLE orders;--`},
	{"comment", `/* */ -- # `},
	{"control_chars", "tab\there\nnewline\r\x01\x07\x1b\x1f\x7f"},
	// The text of escapes, not the characters: a real NUL is refused
	// before any execution (testNUL).
	{"backslashes", `\' \\' \n \x00 \u0000`},
	{"placeholders", `$1 :customer @p1 ? %s {{name}} ${x}`},
	{"like_wildcards", `%_[]^`},
	{"tsql_batch", "GO\nEXEC xp_cmdshell 'dir'; SHUTDOWN WITH NOWAIT"},
	{"pg_copy", `\copy orders to '/tmp/x'; COPY orders TO PROGRAM 'id'`},
	{"empty", ""},
	{"long", strings.Repeat("ab'c;", 800)},
}

func testVerbatim(t *testing.T, e *suiteEnv) {
	var want int64
	for _, tc := range verbatimCases {
		t.Run(tc.name, func(t *testing.T) {
			payload, _ := json.Marshal(map[string]any{
				"customer": tc.value, "note": tc.value, "amount": json.Number("1234567890.12"),
				"quantity": int64(1) << 40, "express": true,
			})
			c := e.call(t, SubjectCreate, string(payload), "")
			// Session values are data too (kept short: SQL Server limits a
			// session context value to 8000 bytes).
			c.Principal = "p:" + clip(tc.value, 200)
			c.CorrelationID = "c:" + clip(tc.value, 200)
			_, d := e.exec(t, c)
			want++
			row := e.get(t, rowID(t, d))
			wantRow := map[string]any{
				"customer": tc.value, "note": tc.value, "amount": "1234567890.12", "quantity": "1099511627776",
				"express": true, "status": "open", "created_by": c.Principal, "correlation_id": c.CorrelationID,
			}
			for k, w := range wantRow {
				got, ok := row[k]
				if !ok {
					t.Errorf("get: row has no %q: %v", k, row)
					continue
				}
				if !sameValue(got, w) {
					t.Errorf("get: %s = %#v, want %#v", k, got, w)
				}
			}
			if got := e.count(t); got != want {
				t.Fatalf("count = %d, want %d (the value touched more than its own row)", got, want)
			}
		})
	}
	t.Run("null_note", func(t *testing.T) {
		_, d := e.exec(t, e.call(t, SubjectCreate, `{"customer":"n","amount":0.01,"quantity":-3,"express":false,"note":null}`, ""))
		row := e.get(t, rowID(t, d))
		if v, ok := row["note"]; !ok || v != nil {
			t.Errorf("note = %#v (present %v), want null", v, ok)
		}
		if !sameValue(row["quantity"], "-3") || !sameValue(row["amount"], "0.01") || row["express"] != false {
			t.Errorf("row = %v, want quantity -3, amount 0.01, express false", row)
		}
	})
}

// testNUL sends a real U+0000 in each string parameter: the payload is
// refused as invalid input (invalid_request) naming the field, so no dialect
// executes it or answers with its own error (PostgreSQL cannot store it).
func testNUL(t *testing.T, e *suiteEnv) {
	for _, tc := range []struct{ name, payload, field string }{
		{"inside_customer", `{"customer":"a\u0000b","amount":1,"quantity":1,"express":true}`, "customer"},
		{"alone_in_note", `{"customer":"n","note":"\u0000","amount":1,"quantity":1,"express":true}`, "note"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewCall(e.route(t, SubjectCreate), tc.payload, "")
			var inv *route.InvalidError
			if !errors.As(err, &inv) {
				if err == nil {
					// Decoding let it through: what the dialect does with it.
					outcome := "executed"
					if _, xerr := e.Executor.Execute(t.Context(), c); xerr != nil {
						outcome = xerr.Error()
					}
					t.Fatalf("NewCall(NUL in %s) decoded (Execute: %s), want an *route.InvalidError from decoding", tc.field, outcome)
				}
				t.Fatalf("NewCall(NUL in %s) = %v, want an *route.InvalidError", tc.field, err)
			}
			if inv.Field != tc.field || !strings.Contains(inv.Message, "NUL character (U+0000)") {
				t.Errorf("InvalidError = %q (field %q), want field %q and a message naming the NUL character", inv.Message, inv.Field, tc.field)
			}
		})
	}
	if got := e.count(t); got != 0 {
		t.Fatalf("count = %d after payloads with NUL, want 0 (nothing executed)", got)
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// sameValue compares a decoded JSON value with a want: strings and bools
// exactly, numbers (json.Number) by exact decimal value against a string.
func sameValue(got, want any) bool {
	switch w := want.(type) {
	case string:
		if n, ok := got.(json.Number); ok {
			a, ok1 := new(big.Rat).SetString(string(n))
			b, ok2 := new(big.Rat).SetString(w)
			if ok1 && ok2 {
				return a.Cmp(b) == 0
			}
		}
		s, ok := got.(string)
		return ok && s == w
	default:
		return got == want
	}
}

func testReplay(t *testing.T, e *suiteEnv) {
	c := e.call(t, SubjectCreate, `{"customer":"replay","amount":5,"quantity":2,"express":true}`, "")
	first, _ := e.exec(t, c)
	if first.Replayed {
		t.Fatal("first Execute: Replayed = true, want false")
	}
	if first.CommittedAt.IsZero() {
		t.Error("first Execute: CommittedAt is zero")
	}
	again := *c
	again.CorrelationID = "another-correlation"
	again.DecisionID = "the retry's decision"
	second, _ := e.exec(t, &again)
	if !second.Replayed {
		t.Fatal("replay: Replayed = false, want true")
	}
	// The broker tells a retry (another decision) from a call whose own
	// commit was not acknowledged (its decision) by the record's decision id.
	if second.DecisionID != c.DecisionID || second.RequestHash != c.RequestHash {
		t.Errorf("replay record = decision %q hash %q, want the original call's %q %q", second.DecisionID, second.RequestHash, c.DecisionID, c.RequestHash)
	}
	if !bytes.Equal(first.JSON, second.JSON) {
		t.Errorf("replay JSON = %s, want the stored %s", second.JSON, first.JSON)
	}
	if second.TransactionID != first.TransactionID {
		t.Errorf("replay TransactionID = %q, want the original %q", second.TransactionID, first.TransactionID)
	}
	if second.Rows != first.Rows || second.RowsAffected != first.RowsAffected {
		t.Errorf("replay Rows/RowsAffected = %d/%d, want %d/%d", second.Rows, second.RowsAffected, first.Rows, first.RowsAffected)
	}
	if !second.CommittedAt.Equal(first.CommittedAt) {
		t.Errorf("replay CommittedAt = %v, want the original %v", second.CommittedAt, first.CommittedAt)
	}
	if got := e.count(t); got != 1 {
		t.Fatalf("count = %d after a create and its replay, want 1", got)
	}
}

func testConflict(t *testing.T, e *suiteEnv) {
	c := e.call(t, SubjectCreate, `{"customer":"one","amount":5,"quantity":2,"express":true}`, "")
	e.exec(t, c)
	other := e.call(t, SubjectCreate, `{"customer":"two","amount":5,"quantity":2,"express":true}`, c.IdempotencyKey)
	res, err := e.Executor.Execute(t.Context(), other)
	if !errors.Is(err, broker.ErrConflict) {
		t.Fatalf("Execute(same key, other payload) = %v, %v; want ErrConflict", res, err)
	}
	if got := e.count(t); got != 1 {
		t.Fatalf("count = %d after a conflict, want 1", got)
	}
}

func testConcurrentSameKey(t *testing.T, e *suiteEnv) {
	const n = 6
	c := e.call(t, SubjectCreate, `{"customer":"race","amount":5,"quantity":2,"express":true}`, "")
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		res  []*broker.Result
		errs []error
	)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			cc := *c
			<-start
			r, err := e.Executor.Execute(t.Context(), &cc)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			res = append(res, r)
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent Execute with one key: errors %v", errs)
	}
	executed := 0
	for _, r := range res {
		if !r.Replayed {
			executed++
		}
		if !bytes.Equal(r.JSON, res[0].JSON) {
			t.Errorf("results differ: %s vs %s", r.JSON, res[0].JSON)
		}
	}
	if executed != 1 {
		t.Fatalf("%d of %d concurrent calls executed, want exactly 1 (the others replayed)", executed, n)
	}
	if got := e.count(t); got != 1 {
		t.Fatalf("count = %d, want 1", got)
	}
}

func testDBError(t *testing.T, e *suiteEnv) {
	e.create(t, "before")
	const secret = "value-that-must-not-leak-4711"
	c := e.call(t, SubjectCreate, `{"customer":"`+secret+`","note":"`+secret+`","amount":-1,"quantity":1,"express":false}`, "")
	res, err := e.Executor.Execute(t.Context(), c)
	var dbe *broker.DBError
	if !errors.As(err, &dbe) {
		t.Fatalf("Execute(amount -1) = %v, %v; want a *broker.DBError (CHECK amount > 0)", res, err)
	}
	if dbe.Number == 0 && dbe.State == "" {
		t.Errorf("DBError = %+v: neither a number nor a state", dbe)
	}
	if dbe.Message == "" {
		t.Error("DBError has no message")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error %q contains a parameter value", err)
	}
	if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrConflict) {
		t.Errorf("DBError also matches another sentinel: %v", err)
	}
	if got := e.count(t); got != 1 {
		t.Fatalf("count = %d after a failed create, want 1", got)
	}
	e.mustNotFind(t, c.IdempotencyKey)
	// The key was not consumed: the same key with a valid payload executes.
	ok := e.call(t, SubjectCreate, `{"customer":"after","amount":1,"quantity":1,"express":false}`, c.IdempotencyKey)
	if r, _ := e.exec(t, ok); r.Replayed {
		t.Error("after a failed call, its key replayed instead of executing")
	}
}

func testTooManyRows(t *testing.T, e *suiteEnv) {
	ids := []int64{e.create(t, "a"), e.create(t, "b"), e.create(t, "c")}
	c := e.call(t, SubjectCancelAll, `{}`, "")
	c.MaxRows = 2
	res, err := e.Executor.Execute(t.Context(), c)
	if !errors.Is(err, broker.ErrTooManyRows) {
		t.Fatalf("Execute(cancel_all, max 2 rows, 3 orders) = %v, %v; want ErrTooManyRows", res, err)
	}
	for _, id := range ids {
		if row := e.get(t, id); row["status"] != "open" {
			t.Errorf("order %d status = %v after a rolled-back cancel_all, want open", id, row["status"])
		}
	}
	e.mustNotFind(t, c.IdempotencyKey)
	c.MaxRows = 3
	r, d := e.exec(t, c)
	if r.Replayed || len(d.Rows) != 3 || r.Rows != 3 {
		t.Fatalf("cancel_all with max 3: replayed %v, rows %v (Rows %d), want 3 fresh rows", r.Replayed, d.Rows, r.Rows)
	}
	for _, id := range ids {
		if row := e.get(t, id); row["status"] != "cancelled" {
			t.Errorf("order %d status = %v, want cancelled", id, row["status"])
		}
	}
}

func testTimeout(t *testing.T, e *suiteEnv) {
	e.create(t, "before")
	c := e.call(t, SubjectSlowCreate, `{"customer":"slow","seconds":60}`, "")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	res, err := e.Executor.Execute(ctx, c)
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Execute(slow, deadline) = %v, %v; want ErrUnavailable", res, err)
	}
	if got := e.count(t); got != 1 {
		t.Fatalf("count = %d after a timed-out create, want 1", got)
	}
	e.mustNotFind(t, c.IdempotencyKey)
	// The executor is still usable.
	e.create(t, "after")
}

func testSessionContext(t *testing.T, e *suiteEnv) {
	c := e.call(t, SubjectSession, `{}`, "")
	c.Principal = "alice@example.com (O'Brien) Ω"
	c.DecisionID = "decision-1"
	_, d := e.exec(t, c)
	if len(d.Rows) != 1 {
		t.Fatalf("session rows = %v, want one", d.Rows)
	}
	want := map[string]any{"correlation_id": c.CorrelationID, "principal": c.Principal, "decision_id": c.DecisionID}
	for k, w := range want {
		if got := d.Rows[0][k]; got != w {
			t.Errorf("session %s = %#v, want %#v", k, got, w)
		}
	}
	// A second call on the (possibly same pooled) connection sees only its own
	// values: an empty decision id must not show the previous one.
	c2 := e.call(t, SubjectSession, `{}`, "")
	c2.DecisionID = ""
	_, d2 := e.exec(t, c2)
	if got := d2.Rows[0]["correlation_id"]; got != c2.CorrelationID {
		t.Errorf("second call correlation_id = %#v, want %#v", got, c2.CorrelationID)
	}
	if got := d2.Rows[0]["decision_id"]; got != nil && got != "" {
		t.Errorf("second call decision_id = %#v, want empty (the previous call's value leaked)", got)
	}
	if e.SessionOutside != nil {
		v, set, err := e.SessionOutside(t.Context())
		if err != nil {
			t.Fatalf("SessionOutside: %v", err)
		}
		if set && v != "" {
			t.Errorf("outside a call the pooled connection still has sqlgate.correlation_id = %q", v)
		}
	}
}

func testTransactionIDs(t *testing.T, e *suiteEnv) {
	seen := map[string]bool{}
	for i := range 3 {
		r, _ := e.exec(t, e.call(t, SubjectCreate, fmt.Sprintf(`{"customer":"tx%d","amount":1,"quantity":1,"express":false}`, i), ""))
		if r.TransactionID == "" {
			t.Fatal("TransactionID is empty")
		}
		if seen[r.TransactionID] {
			t.Fatalf("TransactionID %q repeated", r.TransactionID)
		}
		seen[r.TransactionID] = true
	}
}

func testLookup(t *testing.T, e *suiteEnv) {
	c := e.call(t, SubjectCreate, `{"customer":"lookup","amount":1,"quantity":1,"express":false}`, "")
	r, _ := e.exec(t, c)
	got, found, err := e.Executor.Lookup(t.Context(), c.IdempotencyKey)
	if err != nil || !found {
		t.Fatalf("Lookup(committed key) = %v, %v, %v; want found", got, found, err)
	}
	if !bytes.Equal(got.JSON, r.JSON) || got.TransactionID != r.TransactionID || !got.CommittedAt.Equal(r.CommittedAt) {
		t.Errorf("Lookup = %s %q %v, want %s %q %v", got.JSON, got.TransactionID, got.CommittedAt, r.JSON, r.TransactionID, r.CommittedAt)
	}
	// The record says whose it is: a call that was not sure it committed
	// tells its own record from an earlier call's by these.
	if got.RequestHash != c.RequestHash || got.DecisionID != c.DecisionID || c.DecisionID == "" {
		t.Errorf("Lookup record = hash %q decision %q, want the call's %q %q", got.RequestHash, got.DecisionID, c.RequestHash, c.DecisionID)
	}
	e.mustNotFind(t, "no-such-key")
}

// testPrune: records committed before the cut are deleted, later ones kept,
// and a retry with a pruned key executes again.
func testPrune(t *testing.T, e *suiteEnv) {
	p, ok := e.Executor.(broker.Pruner)
	if !ok {
		t.Skip("this executor keeps its records: it is not a broker.Pruner")
	}
	var calls []*broker.Call
	var last *broker.Result
	for i := range 3 {
		c := e.call(t, SubjectCreate, fmt.Sprintf(`{"customer":"prune %d","amount":1,"quantity":1,"express":false}`, i), "")
		last, _ = e.exec(t, c)
		calls = append(calls, c)
	}
	if n, err := p.Prune(t.Context(), last.CommittedAt.Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Prune(an hour before the calls) = %d, %v; want 0", n, err)
	}
	if n, err := p.Prune(t.Context(), last.CommittedAt.Add(time.Hour)); err != nil || n != int64(len(calls)) {
		t.Fatalf("Prune(after the calls) = %d, %v; want %d", n, err, len(calls))
	}
	e.mustNotFind(t, calls[0].IdempotencyKey)
	if r, _ := e.exec(t, calls[0]); r.Replayed {
		t.Error("a retry with a pruned key replayed; it has no record to replay")
	}
}

func testDescribe(t *testing.T, e *suiteEnv) {
	d := e.Executor.Describe()
	switch d.Dialect {
	case "sqlserver", "postgres", "sqlite", "fake":
	default:
		t.Errorf("Describe().Dialect = %q, want sqlserver, postgres, sqlite or fake", d.Dialect)
	}
	if d.Database == "" {
		t.Errorf("Describe().Database is empty: %+v", d)
	}
}

func testDown(t *testing.T, e *suiteEnv) {
	c := e.call(t, SubjectCreate, `{"customer":"down","amount":1,"quantity":1,"express":false}`, "")
	e.Down()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if res, err := e.Executor.Execute(ctx, c); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Execute(database down) = %v, %v; want ErrUnavailable", res, err)
	}
	if _, _, err := e.Executor.Lookup(ctx, c.IdempotencyKey); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Lookup(database down) error = %v, want ErrUnavailable", err)
	}
}

// batchExecutor returns the harness's executor as a BatchExecutor, or skips
// the test for an adapter that runs every call alone.
func (e *suiteEnv) batchExecutor(t *testing.T) broker.BatchExecutor {
	t.Helper()
	be, ok := e.Executor.(broker.BatchExecutor)
	if !ok {
		t.Skip("this executor runs every call in its own transaction: it is not a broker.BatchExecutor")
	}
	return be
}

// testBatch: several calls in one transaction, each with its own outcome:
// new calls execute and share the transaction id, each sees its own
// session context, a committed key replays, a key used with another payload
// conflicts without stopping the others, and a key repeated inside the
// batch executes once.
func testBatch(t *testing.T, e *suiteEnv) {
	be := e.batchExecutor(t)
	done := e.call(t, SubjectCreate, `{"customer":"earlier","amount":5,"quantity":2,"express":true}`, "")
	earlier, _ := e.exec(t, done)

	create := func(customer, key string) *broker.Call {
		return e.call(t, SubjectCreate, `{"customer":"`+customer+`","amount":5,"quantity":2,"express":true}`, key)
	}
	session := func(corr string) *broker.Call {
		c := e.call(t, SubjectSession, `{}`, "")
		c.CorrelationID, c.Principal, c.DecisionID = corr, "principal of "+corr, "decision of "+corr
		return c
	}
	replay := *done
	replay.CorrelationID, replay.DecisionID = "the retry", "the retry's decision"
	first, second := create("batch one", ""), create("batch two", "")
	twice := create("batch three", "")
	again := *twice
	again.CorrelationID, again.DecisionID = "the same key again", "another decision"
	calls := []*broker.Call{
		first, session("corr-a"), &replay, create("someone else", done.IdempotencyKey), second, twice, &again, session("corr-b"),
	}
	out, err := be.ExecuteBatch(t.Context(), calls)
	if err != nil {
		t.Fatalf("ExecuteBatch = %v", err)
	}
	if len(out) != len(calls) {
		t.Fatalf("ExecuteBatch returned %d outcomes for %d calls", len(out), len(calls))
	}
	for i, o := range out {
		if i != 3 && (o.Err != nil || o.Result == nil) {
			t.Fatalf("call %d (%s): outcome %+v, want a result", i, calls[i].Route.Subject, o)
		}
	}
	tx := out[0].Result.TransactionID
	for _, i := range []int{0, 1, 4, 5, 7} {
		if r := out[i].Result; r.Replayed || r.TransactionID != tx || tx == "" {
			t.Errorf("call %d: replayed %v, transaction %q; want executed in the batch's transaction %q", i, r.Replayed, r.TransactionID, tx)
		}
	}
	if r := out[2].Result; !r.Replayed || r.TransactionID != earlier.TransactionID || !bytes.Equal(r.JSON, earlier.JSON) {
		t.Errorf("committed key: %+v, want the stored result of %q replayed", r, earlier.TransactionID)
	}
	if !errors.Is(out[3].Err, broker.ErrConflict) {
		t.Errorf("key with another payload: %+v, want ErrConflict", out[3])
	}
	if r := out[6].Result; !r.Replayed || !bytes.Equal(r.JSON, out[5].Result.JSON) {
		t.Errorf("key repeated in the batch: %+v, want the first's result replayed (%s)", r, out[5].Result.JSON)
	}
	for i, orig := range map[int]*broker.Call{2: done, 6: twice} {
		if r := out[i].Result; r != nil && r.DecisionID != orig.DecisionID {
			t.Errorf("call %d replayed the record of decision %q, want the original call's %q", i, r.DecisionID, orig.DecisionID)
		}
	}
	for _, i := range []int{1, 7} {
		d, err := DecodeResult(out[i].Result.JSON)
		if err != nil || len(d.Rows) != 1 {
			t.Fatalf("session call %d: %v %v", i, d, err)
		}
		c := calls[i]
		want := map[string]any{"correlation_id": c.CorrelationID, "principal": c.Principal, "decision_id": c.DecisionID}
		for k, w := range want {
			if got := d.Rows[0][k]; got != w {
				t.Errorf("session call %d: %s = %#v, want %#v (its own context, not another call's)", i, k, got, w)
			}
		}
	}
	ids := map[int64]bool{}
	for _, i := range []int{0, 4, 5} {
		d, err := DecodeResult(out[i].Result.JSON)
		if err != nil {
			t.Fatal(err)
		}
		ids[rowID(t, d)] = true
	}
	if len(ids) != 3 {
		t.Errorf("three creates returned ids %v, want three different", ids)
	}
	if got := e.count(t); got != 4 {
		t.Errorf("count = %d, want 4 (the earlier create and three in the batch)", got)
	}
	for _, c := range []*broker.Call{first, second, twice} {
		if r, found, err := e.Executor.Lookup(t.Context(), c.IdempotencyKey); err != nil || !found || r.TransactionID != tx {
			t.Errorf("Lookup(%s) = %+v, %v, %v; want committed in %q", c.IdempotencyKey, r, found, err, tx)
		}
	}
}

// testBatchAtomic: one call that fails fails the whole batch, and nothing of
// it took effect, not even the calls before it.
func testBatchAtomic(t *testing.T, e *suiteEnv) {
	be := e.batchExecutor(t)
	good := e.call(t, SubjectCreate, `{"customer":"good","amount":5,"quantity":2,"express":true}`, "")
	bad := e.call(t, SubjectCreate, `{"customer":"bad","amount":-1,"quantity":1,"express":false}`, "")
	after := e.call(t, SubjectCreate, `{"customer":"after","amount":5,"quantity":2,"express":true}`, "")
	out, err := be.ExecuteBatch(t.Context(), []*broker.Call{good, bad, after})
	if err == nil {
		t.Fatalf("ExecuteBatch with a failing call = %+v, want an error", out)
	}
	if got := e.count(t); got != 0 {
		t.Errorf("count = %d after a failed batch, want 0", got)
	}
	for _, c := range []*broker.Call{good, bad, after} {
		e.mustNotFind(t, c.IdempotencyKey)
	}
	// Alone, the good calls execute and the bad one fails.
	e.exec(t, good)
	if _, err := e.Executor.Execute(t.Context(), bad); err == nil {
		t.Error("the failing call succeeded alone")
	}
}
