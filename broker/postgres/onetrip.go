package postgres

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/internal/resultjson"
	"github.com/sqlgate/sqlgate/broker/route"
)

// A function call in one round trip.
//
// The merged form (execMerged) needs two round trips because the result is
// rendered in Go and must then be written into the idempotency record. The
// one-round-trip form renders each column as text in SQL, so the record can be
// inserted with its result, after the call, in the same transaction. It sends
// two statements in one pipeline, which PostgreSQL runs as one implicit
// transaction committed at the pipeline's Sync:
//
//  1. take a transaction-scoped advisory lock on the key's hash (class
//     advisoryClass), set the session context, and read the function's
//     result type (resultTypeSQL) into sqlgate.result_type;
//  2. in one statement: check that the key has no record and that the
//     result type is still the one the form was built for, call the
//     function only then, and insert the record with the rows aggregated
//     into a JSON array of text values; the record's NOT NULL rows column
//     gets NULL when the count exceeds the call's row limit, which fails the
//     transaction.
//
// The result type check catches what statement 2's plan does not: a
// column added to the table a RETURNS SETOF function returns, or a function
// created again under the name with more columns, would otherwise be left
// out of every reply, because statement 2 names the columns it was built
// for. On a mismatch statement 2 executes nothing, and the call describes
// the function again and runs once more. (A column dropped, renamed or
// retyped fails statement 2's plan instead; the call then does the same.)
//
// The lock serializes calls with the same key, and statement 2 takes its
// snapshot after the lock is granted, so under READ COMMITTED (the default) a
// second call with a key sees the first call's committed record and executes
// nothing. The primary key stays the backstop: under a stricter default
// isolation a racing duplicate fails on it, is rolled back and replays.
//
// The reply and every later replay are rendered from the same stored text by
// the same code (renderRows), so a replay is byte-identical to the first
// reply. Only columns whose text rendering does not depend on session
// settings use this form (integers, numeric, boolean, text types, uuid,
// json, jsonb, timestamps and dates through to_char, bytea through hex);
// a function returning anything else keeps the two-round-trip form.

// advisoryClass is the first key of sqlgate's advisory locks ("sqlg"), so
// they do not meet an application's two-key advisory locks of another class.
const advisoryClass = 0x73716c67

// keyLockSQL takes the transaction-scoped advisory lock of the idempotency
// key $1, as a FROM item. Every form of a call takes it in its first
// statement (the one-round-trip form's statement 1, the idempotency insert
// of the others), and Lookup takes it to wait for a call still running.
var keyLockSQL = "pg_advisory_xact_lock(" + strconv.Itoa(advisoryClass) + ", hashtext($1))"

// oneTripPlan is a function call shape's one-round-trip form.
type oneTripPlan struct {
	usable bool
	s1, s2 string
	head   string // the stored result up to its rows
	cols   []rowColumn
	// proc is the function's quoted name; relid the table or composite type
	// it returns rows of (0: none); resultType its result type
	// (resultTypeSQL) when it was described.
	proc       string
	relid      uint32
	resultType string
	// lockTail is the end of s1's arguments: proc, and relid when not 0
	// (set with them; boxed once instead of at every call).
	lockTail []any
}

// lockArgs returns the arguments of s1: the call's key, correlation id,
// principal and decision id, then lockTail. args are the call's arguments
// as plan returns them for a function, the five idempotency values first
// (key, request hash, correlation id, principal, decision id); their boxed
// values are reused.
func (one *oneTripPlan) lockArgs(args []any) []any {
	out := make([]any, 0, 4+len(one.lockTail))
	out = append(out, args[0], args[2], args[3], args[4])
	return append(out, one.lockTail...)
}

// oneTripLock is s1: it locks the key, sets the session context and reads
// the result type of the function ($5, its quoted name; $6 the table or
// composite type it returns rows of, when it does) into sqlgate.result_type,
// which s2 checks.
func oneTripLock(relid uint32) string {
	return "SELECT " + keyLockSQL + ", " +
		"set_config('sqlgate.correlation_id', $2, true), set_config('sqlgate.principal', $3, true), set_config('sqlgate.decision_id', $4, true), " +
		"set_config('sqlgate.result_type', " + resultTypeSQL("$5", relid, "$6::oid") + ", true)"
}

// resultTypeSQL returns an expression for the result type of the function
// named by the SQL expression name: the oid that name resolves to now ("" for
// none) and, when relid is not 0, a digest of the columns (number, name,
// type) of the table or composite type whose oid the SQL expression rel
// gives. Nothing else can change the columns of a function that keeps its
// oid (CREATE OR REPLACE cannot change its result type). Without a table
// this costs PostgreSQL about a microsecond per call; reading the columns
// about ten.
func resultTypeSQL(name string, relid uint32, rel string) string {
	expr := "coalesce(to_regproc(" + name + ")::oid::text, '')"
	if relid == 0 {
		return expr
	}
	return expr + " || ':' || coalesce((SELECT md5(string_agg(a.attnum::text || ' ' || a.attname || ' ' || a.atttypid::text, ',' ORDER BY a.attnum)) " +
		"FROM pg_catalog.pg_attribute a WHERE a.attrelid = " + rel + " AND a.attnum > 0 AND NOT a.attisdropped), '')"
}

// sqlDescribeResult reads the table or composite type a function ($1, its
// quoted name) returns rows of (0: none) and its result type.
var sqlDescribeResult = "SELECT f.relid, CASE WHEN f.relid = 0 THEN " + resultTypeSQL("$1", 0, "") + " ELSE " + resultTypeSQL("$1", 1, "f.relid") + " END " +
	"FROM (SELECT coalesce((SELECT t.typrelid FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_type t ON t.oid = p.prorettype WHERE p.oid = to_regproc($1)), 0) AS relid) AS f"

// errResultTypeChanged says a one-round-trip call executed nothing because
// the function's result type is no longer the one it was described with.
var errResultTypeChanged = fmt.Errorf("%w: the function's result type changed during the call", broker.ErrUnavailable)

// rowColumn is one result column of a function: its name and how its text
// is rendered into the reply.
type rowColumn struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
}

// Column kinds of the one-round-trip form.
const (
	kindNumber  = "number"  // integers: the text is the JSON number
	kindNumeric = "numeric" // exact decimal; NaN and infinities as strings
	kindBool    = "bool"
	kindString  = "string"
	kindJSON    = "json"
	kindTime    = "time"  // UTC, YYYY-MM-DDTHH:MI:SS.US
	kindDate    = "date"  // YYYY-MM-DD
	kindBytes   = "bytes" // hex
)

// storedRowsPrefix starts a result stored by the one-round-trip form (the
// other forms store the rendered result object, which starts with {"rows":).
const storedRowsPrefix = `{"pg_rows":1,`

// columnKind returns the kind of a result column type and the SQL that
// renders a column reference of it as text ("" for a type this form does
// not take).
func columnKind(oid uint32, ref string) (kind, expr string) {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		return kindNumber, ref + "::text"
	case pgtype.NumericOID:
		return kindNumeric, ref + "::text"
	case pgtype.BoolOID:
		return kindBool, ref + "::text"
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.NameOID, pgtype.UUIDOID:
		return kindString, ref + "::text"
	case pgtype.BPCharOID:
		// concat keeps the padding a cast to text drops.
		return kindString, "CASE WHEN " + ref + " IS NOT NULL THEN concat(" + ref + ") END"
	case pgtype.JSONOID, pgtype.JSONBOID:
		return kindJSON, ref + "::text"
	case pgtype.TimestamptzOID:
		return kindTime, "CASE WHEN isfinite(" + ref + ") AND " + ref + " >= '0001-01-01 00:00:00+00' AND " + ref + " < '10000-01-01 00:00:00+00' " +
			"THEN to_char(" + ref + " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') ELSE " + ref + "::text END"
	case pgtype.TimestampOID:
		return kindTime, "CASE WHEN isfinite(" + ref + ") AND " + ref + " >= '0001-01-01 00:00:00' AND " + ref + " < '10000-01-01 00:00:00' " +
			"THEN to_char(" + ref + ", 'YYYY-MM-DD\"T\"HH24:MI:SS.US') ELSE " + ref + "::text END"
	case pgtype.DateOID:
		return kindDate, "CASE WHEN isfinite(" + ref + ") AND " + ref + " >= '0001-01-01'::date AND " + ref + " < '10000-01-01'::date " +
			"THEN to_char(" + ref + ", 'YYYY-MM-DD') ELSE " + ref + "::text END"
	case pgtype.ByteaOID:
		return kindBytes, "encode(" + ref + ", 'hex')"
	}
	return "", ""
}

// maxOneTripColumns keeps json_build_array under PostgreSQL's limit of 100
// function arguments.
const maxOneTripColumns = 100

// describeFunction prepares (never executes) the function's SELECT to learn
// its result columns and builds the one-round-trip form, or marks it unusable.
// The result type is read first: a change after it makes the next call
// describe the function again.
func (e *Executor) describeFunction(ctx context.Context, plan *callPlan) (*oneTripPlan, error) {
	return onConn(ctx, e, nil, func(conn *pgxpool.Conn) (*oneTripPlan, error) {
		return e.describeFunctionOn(ctx, conn, plan)
	})
}

func (e *Executor) describeFunctionOn(ctx context.Context, conn *pgxpool.Conn, plan *callPlan) (*oneTripPlan, error) {
	var (
		relid      uint32
		resultType string
	)
	if err := conn.QueryRow(ctx, sqlDescribeResult, plan.proc).Scan(&relid, &resultType); err != nil {
		return nil, err
	}
	sd, err := conn.Conn().Prepare(ctx, "", plan.describe)
	if err != nil {
		return nil, err
	}
	one := e.oneTripFor(plan.oneTrip, plan.nargs, sd.Fields)
	one.s1 = oneTripLock(relid)
	one.proc, one.relid, one.resultType = plan.proc, relid, resultType
	one.lockTail = []any{one.proc}
	if relid != 0 {
		one.lockTail = append(one.lockTail, relid)
	}
	return one, nil
}

// oneTripFor builds the one-round-trip form of a function call (call, whose
// nargs arguments follow the five idempotency values: $6, $7, ...) returning
// fields.
func (e *Executor) oneTripFor(call string, nargs int, fields []pgconn.FieldDescription) *oneTripPlan {
	if len(fields) == 0 || len(fields) > maxOneTripColumns {
		return &oneTripPlan{}
	}
	seen := map[string]bool{}
	cols := make([]rowColumn, len(fields))
	exprs := make([]string, len(fields))
	for i, f := range fields {
		if seen[f.Name] {
			return &oneTripPlan{} // a duplicate name cannot be referenced
		}
		seen[f.Name] = true
		kind, expr := columnKind(f.DataTypeOID, "sqlgate_call."+pgx.Identifier{f.Name}.Sanitize())
		if kind == "" {
			return &oneTripPlan{}
		}
		cols[i] = rowColumn{Name: f.Name, Kind: kind}
		exprs[i] = expr
	}
	head, err := json.Marshal(cols)
	if err != nil {
		return &oneTripPlan{}
	}
	// The NOT EXISTS and result type conditions refer to nothing in FROM:
	// PostgreSQL evaluates them once, as a gate above the aggregation, and
	// runs the function only when they hold (TestDuplicateKeyExecutesNothing,
	// TestOneTripResultTypeChanged). The
	// aggregation keeps the subquery from being flattened. This form costs
	// PostgreSQL less than the same steps as materialized CTEs.
	t := quoteName(e.cfg.IdempotencyTable)
	next := func(k int) string { return "$" + strconv.Itoa(5+nargs+k) }
	return &oneTripPlan{
		usable: true,
		cols:   cols,
		head:   storedRowsPrefix + `"columns":` + string(head) + `,"rows":`,
		s2: "INSERT INTO " + t + " (idempotency_key, request_hash, correlation_id, principal, decision_id, transaction_id, result, rows, rows_affected, committed_at) " +
			"SELECT $1, $2, $3, $4, $5, txid_current(), " + next(1) + "::text || sqlgate_agg.rows || '}', " +
			"CASE WHEN sqlgate_agg.n <= " + next(2) + "::bigint THEN sqlgate_agg.n END, sqlgate_agg.n, " + next(3) + "::timestamptz " +
			"FROM (SELECT coalesce(json_agg(json_build_array(" + strings.Join(exprs, ", ") + "))::text, '[]') AS rows, count(*) AS n " +
			"FROM (SELECT * FROM " + call + ") AS sqlgate_call) AS sqlgate_agg " +
			"WHERE NOT EXISTS (SELECT 1 FROM " + t + " WHERE idempotency_key = $1) AND current_setting('sqlgate.result_type') = " + next(4) + " " +
			"RETURNING transaction_id, result",
	}
}

// execOneTrip runs a function call in one round trip (a replay takes a
// second to read the record). errResultTypeChanged: it executed nothing.
func (e *Executor) execOneTrip(ctx context.Context, c *broker.Call, one *oneTripPlan, args []any) (*broker.Result, error) {
	return onConn(ctx, e, []string{one.s2}, func(conn *pgxpool.Conn) (*broker.Result, error) {
		return e.execOneTripOn(ctx, conn, c, one, args)
	})
}

func (e *Executor) execOneTripOn(ctx context.Context, conn *pgxpool.Conn, c *broker.Call, one *oneTripPlan, args []any) (_ *broker.Result, err error) {
	defer func() {
		if err != nil && conn.Conn().PgConn().TxStatus() != 'I' {
			rollback(conn)
		}
	}()
	sd, err := conn.Conn().Prepare(ctx, one.s2, one.s2)
	if err != nil {
		return nil, err
	}
	committedAt := time.Now().UTC().Truncate(time.Microsecond)
	b := &pgx.Batch{}
	b.Queue(one.s1, one.lockArgs(args)...)
	args = oneTripArgs(c, one, args, committedAt)
	bindTextual(sd, args)
	b.Queue(one.s2, args...)
	br := conn.SendBatch(ctx, b)
	var (
		txid               int64
		stored, resultType string
	)
	found := true
	err = br.QueryRow().Scan(nil, nil, nil, nil, &resultType)
	if err == nil {
		err = br.QueryRow().Scan(&txid, &stored)
		if errors.Is(err, pgx.ErrNoRows) {
			found, err = false, nil
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	switch {
	case e.overRowLimit(err):
		return nil, broker.ErrTooManyRows
	case e.keyTaken(err):
		found, err = false, nil // a racing duplicate under a stricter isolation: rolled back
	}
	if err != nil {
		return nil, err
	}
	if resultType != one.resultType {
		return nil, errResultTypeChanged // statement 2 executed nothing
	}
	if !found {
		return e.replayCommitted(ctx, conn, c)
	}
	rows, head := strings.CutPrefix(stored, one.head)
	rows, tail := strings.CutSuffix(rows, "}")
	if !head || !tail {
		// Never quote the stored text: it holds the function's rows.
		return nil, errors.New("function rows: the stored result does not have the planned form")
	}
	res := &broker.Result{TransactionID: strconv.FormatInt(txid, 10), CommittedAt: committedAt}
	if res.JSON, res.Rows, err = renderRows(one.cols, rows); err != nil {
		return nil, err
	}
	res.RowsAffected = res.Rows
	return res, nil
}

// oneTripArgs returns the arguments of statement 2: the call's (the
// idempotency values and the function's arguments), then the stored
// result's head, the row limit, the commit time and the result type checked.
// args is not modified.
func oneTripArgs(c *broker.Call, one *oneTripPlan, args []any, committedAt time.Time) []any {
	limit := int64(c.RowLimit())
	if limit <= 0 {
		limit = math.MaxInt64
	}
	out := make([]any, 0, len(args)+4)
	out = append(out, args...)
	return append(out, one.head, limit, committedAt, one.resultType)
}

// keyTaken reports a unique violation on the idempotency table.
func (e *Executor) keyTaken(err error) bool {
	if err == nil {
		return false // before pe, which escapes: no allocation on success
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.TableName == e.idemTable
}

// overRowLimit reports the NOT NULL violation the one-round-trip insert
// raises when a call returned more rows than its limit.
func (e *Executor) overRowLimit(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23502" && pe.ColumnName == "rows" && pe.TableName == e.idemTable
}

// replayCommitted returns the committed record of a key the call's insert
// found taken (no transaction is open), or ErrConflict.
func (e *Executor) replayCommitted(ctx context.Context, conn *pgxpool.Conn, c *broker.Call) (*broker.Result, error) {
	res, err := scanRecord(conn.QueryRow(ctx, e.sqlSelect, c.IdempotencyKey))
	return replayed(res, err, c)
}

// storedRows is a result stored by the one-round-trip form.
type storedRows struct {
	Columns []rowColumn `json:"columns"`
	Rows    json.RawMessage
}

// storedResult returns the result object of a stored record: as stored, or
// rendered from the rows the one-round-trip form stored.
func storedResult(stored string) (json.RawMessage, error) {
	if !strings.HasPrefix(stored, storedRowsPrefix) {
		return json.RawMessage(stored), nil
	}
	var s storedRows
	if err := json.Unmarshal([]byte(stored), &s); err != nil {
		return nil, fmt.Errorf("stored result: %w", err)
	}
	out, _, err := renderRows(s.Columns, string(s.Rows))
	return out, err
}

// renderRows renders rows of text values (a JSON array of arrays) as the
// result object, returning it and the row count.
func renderRows(cols []rowColumn, rows string) (json.RawMessage, int64, error) {
	texts, ok := scanTextRows(rows)
	if !ok {
		if err := json.Unmarshal([]byte(rows), &texts); err != nil {
			return nil, 0, fmt.Errorf("function rows: %w", err)
		}
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	w := resultjson.NewWriter(0)
	w.BeginSet(names)
	vals := make([]any, len(cols))
	for _, row := range texts {
		if len(row) != len(cols) {
			return nil, 0, fmt.Errorf("function rows: %d values for %d columns", len(row), len(cols))
		}
		for i, t := range row {
			vals[i] = textValue(cols[i].Kind, t)
		}
		if err := w.Row(vals); err != nil {
			return nil, 0, err
		}
	}
	w.EndSet()
	n := int64(len(texts))
	out, err := w.Finish(nil, false, nil, n)
	return out, n, err
}

// scanTextRows decodes rows as json.Unmarshal decodes them into
// [][]*string, without its reflection, when they have the form PostgreSQL
// writes (json_agg of json_build_array of text): arrays of strings and nulls,
// the strings without escapes, valid UTF-8 and without control characters,
// so that each is its text verbatim (a substring of rows). ok is false for
// anything else, which json.Unmarshal then decodes (or refuses).
func scanTextRows(rows string) (texts [][]*string, ok bool) {
	i := 0
	ws := func() {
		for i < len(rows) && (rows[i] == ' ' || rows[i] == '\n' || rows[i] == '\t' || rows[i] == '\r') {
			i++
		}
	}
	// next consumes c after optional whitespace.
	next := func(c byte) bool {
		ws()
		if i < len(rows) && rows[i] == c {
			i++
			return true
		}
		return false
	}
	if !next('[') {
		return nil, false
	}
	texts = [][]*string{}
	if next(']') {
		ws()
		return texts, i == len(rows)
	}
	var vals []string // one backing array for the values of all rows
	width := 4        // values in the row before
	for {
		if !next('[') {
			return nil, false
		}
		row := make([]*string, 0, width)
		if !next(']') {
			for {
				ws()
				switch {
				case strings.HasPrefix(rows[i:], "null"):
					i += len("null")
					row = append(row, nil)
				case i < len(rows) && rows[i] == '"':
					end := i + 1
					for end < len(rows) && rows[end] != '"' {
						if c := rows[end]; c == '\\' || c < 0x20 {
							return nil, false
						}
						end++
					}
					if end == len(rows) || !utf8.ValidString(rows[i+1:end]) {
						return nil, false
					}
					if len(vals) == cap(vals) {
						// A new backing array; the values before stay in theirs.
						vals = make([]string, 0, max(8, 2*cap(vals)))
					}
					vals = append(vals, rows[i+1:end])
					row = append(row, &vals[len(vals)-1])
					i = end + 1
				default:
					return nil, false
				}
				if next(']') {
					break
				}
				if !next(',') {
					return nil, false
				}
			}
		}
		width = max(1, len(row))
		texts = append(texts, row)
		if next(']') {
			ws()
			return texts, i == len(rows)
		}
		if !next(',') {
			return nil, false
		}
	}
}

// timeLayout is the to_char format of kindTime.
const timeLayout = "2006-01-02T15:04:05.000000"

// textValue converts a column's text to the value the result writer
// encodes, the same value the two-round-trip form reads through pgx. It
// never fails: text it cannot parse (a value outside the years 1-9999, say)
// is returned as a string.
func textValue(kind string, t *string) any {
	if t == nil {
		return nil
	}
	s := *t
	switch kind {
	case kindNumber:
		return json.Number(s)
	case kindNumeric:
		if s == "NaN" || s == "Infinity" || s == "-Infinity" {
			return s
		}
		return json.Number(s)
	case kindBool:
		return s == "true"
	case kindJSON:
		if !json.Valid([]byte(s)) {
			return s
		}
		return json.RawMessage(bytes.Clone([]byte(s)))
	case kindTime:
		if ts, err := time.ParseInLocation(timeLayout, s, time.UTC); err == nil {
			return ts
		}
		return s
	case kindBytes:
		if b, err := hex.DecodeString(s); err == nil {
			return b
		}
		return s
	}
	return s // string, date
}

// ExecuteBatch implements [broker.BatchExecutor] for function calls that
// have the one-round-trip form: the lock-and-context statement and the
// call-and-record statement of every call go in one pipeline, which
// PostgreSQL runs as one implicit transaction committed at its Sync. So a
// batch costs one round trip and one commit, and any error rolls all of it
// back. Calls are sent in the order given; the advisory locks serialize
// calls with the same key across batches and single calls. A key found
// taken is read back after the commit: a replay, or [broker.ErrConflict]
// for that call alone. A call whose function's result type changed since it
// was described executed nothing in the batch; it runs alone afterwards, as
// Execute runs it (in a transaction of its own). Other targets return
// [broker.ErrBatchUnsupported].
func (e *Executor) ExecuteBatch(ctx context.Context, calls []*broker.Call) ([]broker.BatchResult, error) {
	if e.closed.Load() {
		return nil, e.unavailable(errClosed)
	}
	items := make([]batchItem, len(calls))
	names := make([]string, len(calls))
	for i, c := range calls {
		plan, args, merged, err := e.plan(ctx, c)
		if err != nil {
			return nil, err
		}
		if !merged {
			return nil, broker.ErrBatchUnsupported
		}
		one := plan.one.Load()
		if one == nil {
			if one, err = e.describeFunction(ctx, plan); err != nil {
				return nil, err
			}
			plan.one.Store(one)
		}
		if !one.usable {
			return nil, broker.ErrBatchUnsupported
		}
		items[i] = batchItem{c, plan, one, args}
		names[i] = one.s2
	}
	out, err := onConn(ctx, e, names, func(conn *pgxpool.Conn) ([]broker.BatchResult, error) {
		return e.executeBatchOn(ctx, conn, items)
	})
	if err != nil {
		return nil, e.classify(ctx, err, calls[0])
	}
	for i, it := range items {
		if errors.Is(out[i].Err, errResultTypeChanged) {
			it.plan.one.CompareAndSwap(it.one, nil)
			out[i].Result, out[i].Err = e.Execute(ctx, it.c)
		}
	}
	return out, nil
}

// BatchesRoute implements [broker.RouteBatcher]: a statement never batches
// here. A procedure target batches when it is a function with the
// one-round-trip form, which ExecuteBatch learns at the route's first batch.
func (e *Executor) BatchesRoute(r *route.Route) bool {
	return r.Kind == route.Procedure
}

var _ broker.RouteBatcher = (*Executor)(nil)

// batchItem is one call of a batch and its one-round-trip form.
type batchItem struct {
	c    *broker.Call
	plan *callPlan
	one  *oneTripPlan
	args []any
}

// executeBatchOn runs a batch on conn. A call whose function's result type
// changed gets errResultTypeChanged: it executed nothing.
func (e *Executor) executeBatchOn(ctx context.Context, conn *pgxpool.Conn, items []batchItem) (_ []broker.BatchResult, err error) {
	defer func() {
		if err != nil && conn.Conn().PgConn().TxStatus() != 'I' {
			rollback(conn)
		}
	}()
	committedAt := time.Now().UTC().Truncate(time.Microsecond)
	b := &pgx.Batch{}
	for _, it := range items {
		sd, err := conn.Conn().Prepare(ctx, it.one.s2, it.one.s2)
		if err != nil {
			return nil, err
		}
		args := oneTripArgs(it.c, it.one, it.args, committedAt)
		bindTextual(sd, args)
		b.Queue(it.one.s1, it.one.lockArgs(it.args)...)
		b.Queue(it.one.s2, args...)
	}
	type sent struct {
		txid               int64
		stored, resultType string
		found              bool
	}
	got := make([]sent, len(items))
	br := conn.SendBatch(ctx, b)
	for i := range items {
		if err = br.QueryRow().Scan(nil, nil, nil, nil, &got[i].resultType); err != nil {
			break
		}
		got[i].found = true
		err = br.QueryRow().Scan(&got[i].txid, &got[i].stored)
		if errors.Is(err, pgx.ErrNoRows) {
			got[i].found, err = false, nil
		}
		if err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if shapeChanged(err) {
			for _, it := range items {
				it.plan.one.CompareAndSwap(it.one, nil) // the calls that follow alone describe it again
			}
		}
		return nil, err
	}
	out := make([]broker.BatchResult, len(items))
	for i, it := range items {
		switch {
		case got[i].resultType != it.one.resultType:
			out[i].Err = errResultTypeChanged // its statement 2 executed nothing
			continue
		case !got[i].found:
			out[i].Result, out[i].Err = e.replayCommitted(ctx, conn, it.c)
			continue
		}
		rows, head := strings.CutPrefix(got[i].stored, it.one.head)
		rows, tail := strings.CutSuffix(rows, "}")
		if !head || !tail {
			out[i].Err = errors.New("function rows: the stored result does not have the planned form")
			continue
		}
		res := &broker.Result{TransactionID: strconv.FormatInt(got[i].txid, 10), CommittedAt: committedAt}
		if res.JSON, res.Rows, out[i].Err = renderRows(it.one.cols, rows); out[i].Err == nil {
			res.RowsAffected = res.Rows
			out[i].Result = res
		}
	}
	return out, nil
}
