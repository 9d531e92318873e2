package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/internal/resultjson"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/internal/fifo"
	"github.com/sqlgate/sqlgate/internal/sqliteuri"
)

// IdempotencyDDL creates the idempotency table. [Open] runs it.
const IdempotencyDDL = `CREATE TABLE IF NOT EXISTS sqlgate_idempotency (
  idempotency_key TEXT    NOT NULL PRIMARY KEY,
  request_hash    TEXT    NOT NULL,
  correlation_id  TEXT    NOT NULL,
  principal       TEXT    NOT NULL,
  decision_id     TEXT    NOT NULL,
  transaction_id  TEXT    NOT NULL,
  result          TEXT,
  rows            INTEGER NOT NULL DEFAULT 0,
  rows_affected   INTEGER NOT NULL DEFAULT 0,
  created_at      TEXT    NOT NULL,
  committed_at    TEXT
) WITHOUT ROWID`

// The statements the adapter runs besides the routed statements.
const (
	// sqlSelectRecord reads a committed record: a replay inside the call's
	// transaction and Lookup. Its decision id tells a call whose own commit
	// was not acknowledged from a retry of an earlier call.
	sqlSelectRecord = `SELECT request_hash, result, transaction_id, rows, rows_affected, committed_at, decision_id FROM sqlgate_idempotency WHERE idempotency_key = ?1 AND committed_at IS NOT NULL`
	sqlInsertRecord = `INSERT INTO sqlgate_idempotency (idempotency_key, request_hash, correlation_id, principal, decision_id, transaction_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)`
	sqlChanges      = `SELECT total_changes()`
	sqlStoreResult  = `UPDATE sqlgate_idempotency SET result = ?2, rows = ?3, rows_affected = ?4, committed_at = ?5 WHERE idempotency_key = ?1`
	sqlPrune        = `DELETE FROM sqlgate_idempotency WHERE idempotency_key IN (SELECT idempotency_key FROM sqlgate_idempotency WHERE committed_at IS NOT NULL AND committed_at < ?1 LIMIT ?2)`
)

// Executor runs routed statements against one SQLite database. It is safe
// for concurrent use; calls are serialized on the single writer connection.
type Executor struct {
	cfg    Config
	writer *sql.DB
	reader *sql.DB
	closed atomic.Bool

	// writing admits one writer at a time, in the order they asked. The
	// writer pool alone would not be fair: database/sql hands a freed
	// connection to a random waiter, and at 64 concurrent calls some were
	// overtaken hundreds of times (p99 six times the median).
	writing *fifo.Gate

	mu    sync.Mutex
	stmts map[string]*sql.Stmt // prepared on the writer connection, by SQL text

	pruneBatch int64 // records one prune statement deletes
}

// Open opens (creating if needed) the database file, applies WAL mode,
// synchronous=FULL and the busy timeout, and creates the idempotency table.
func Open(ctx context.Context, cfg Config) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sqlite config: %w", err)
	}
	cfg.defaults()
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	writer, err := sql.Open("sqlite", sqliteuri.File(cfg.Path, q.Encode()))
	if err != nil {
		return nil, fmt.Errorf("open sqlite database %s: %w", cfg.Name, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	if _, err := writer.ExecContext(ctx, IdempotencyDDL); err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("open sqlite database %s: create idempotency table: %w", cfg.Name, err)
	}
	rq := url.Values{}
	rq.Add("_pragma", "busy_timeout("+strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)+")")
	rq.Add("_pragma", "query_only(1)")
	reader, err := sql.Open("sqlite", sqliteuri.File(cfg.Path, rq.Encode()))
	if err != nil {
		_ = writer.Close()
		return nil, fmt.Errorf("open sqlite database %s: %w", cfg.Name, err)
	}
	reader.SetMaxOpenConns(cfg.ReadConns)
	e := &Executor{cfg: cfg, writer: writer, reader: reader, writing: fifo.NewGate(1), stmts: map[string]*sql.Stmt{}, pruneBatch: broker.PruneBatch}
	// The adapter's own statements are prepared here, once: SQLite compiles
	// an unprepared statement on every call, and inside a call the single
	// writer connection is taken by the transaction.
	for _, text := range ownStatements {
		if _, err := e.stmt(ctx, text); err != nil { //nolint:sqlclosecheck // cached statement, closed by Close
			_ = e.Close()
			return nil, fmt.Errorf("open sqlite database %s: prepare: %w", cfg.Name, err)
		}
	}
	return e, nil
}

// ownStatements are the adapter's statements that every call runs.
var ownStatements = []string{sqlSelectRecord, sqlInsertRecord, sqlChanges, sqlStoreResult}

// own returns one of ownStatements, prepared at Open, for use in tx.
func (e *Executor) own(ctx context.Context, tx *sql.Tx, text string) (*sql.Stmt, error) {
	e.mu.Lock()
	st := e.stmts[text]
	e.mu.Unlock()
	if st == nil {
		return nil, errClosed
	}
	return tx.StmtContext(ctx, st), nil
}

// DB returns the writer handle, for the daemon's schema set-up and tests.
// Writes through it are serialized with the calls.
func (e *Executor) DB() *sql.DB { return e.writer }

// Close closes both pools. Calls after Close fail with broker.ErrUnavailable.
func (e *Executor) Close() error {
	if e.closed.Swap(true) {
		return nil
	}
	e.mu.Lock()
	for _, s := range e.stmts {
		_ = s.Close()
	}
	e.stmts = nil
	e.mu.Unlock()
	return errors.Join(e.writer.Close(), e.reader.Close())
}

// Describe implements [broker.Executor].
func (e *Executor) Describe() broker.DatabaseInfo {
	return broker.DatabaseInfo{Dialect: "sqlite", Server: "file", Database: e.cfg.Name}
}

// Check reports whether the route can run here: SQLite runs statements only,
// and the statement must compile against the current schema.
func (e *Executor) Check(ctx context.Context, r *route.Route) error {
	if r.Kind != route.StatementKind || r.Statement == nil {
		return fmt.Errorf("route %s: sqlite database %s runs statements only, not procedure %q", r.Subject, e.cfg.Name, r.Target)
	}
	text, _ := render(r.Statement)
	if _, err := e.stmt(ctx, text); err != nil { //nolint:sqlclosecheck // cached statement, closed by Close
		return fmt.Errorf("route %s: statement %s: %w", r.Subject, r.Target, e.classify(ctx, err, nil))
	}
	return nil
}

// stmt returns the statement prepared on the writer connection for text,
// preparing it on first use. The prepare runs without e.mu held: it waits
// for the writer connection, and the call holding that connection needs
// e.mu (own) to finish its transaction. Two first calls racing may both
// prepare; the first stored wins and the other is closed.
func (e *Executor) stmt(ctx context.Context, text string) (*sql.Stmt, error) {
	e.mu.Lock()
	s, ok := e.stmts[text]
	closed := e.stmts == nil
	e.mu.Unlock()
	switch {
	case ok:
		return s, nil
	case closed:
		return nil, errClosed
	}
	s, err := e.writer.PrepareContext(ctx, text)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stmts == nil {
		_ = s.Close() //nolint:sqlclosecheck // not deferred: kept in the cache below unless closed here
		return nil, errClosed
	}
	if prev, ok := e.stmts[text]; ok {
		_ = s.Close() // a racing first call stored its own
		return prev, nil
	}
	e.stmts[text] = s
	return s, nil
}

// render returns the statement with numbered placeholders (?1, ?2, ...; a
// name used twice reuses its number) and the names in number order.
func render(st *route.Statement) (string, []string) {
	var names []string
	idx := map[string]int{}
	text := st.Render(func(_ int, name string) string {
		n, ok := idx[name]
		if !ok {
			names = append(names, name)
			n = len(names)
			idx[name] = n
		}
		return "?" + strconv.Itoa(n)
	})
	return text, names
}

var errClosed = errors.New("executor closed")

// tsFormat stores times as fixed-width UTC text, so that text order is time
// order (Prune compares them as text).
const tsFormat = "2006-01-02T15:04:05.000000Z"

// Execute implements [broker.Executor].
func (e *Executor) Execute(ctx context.Context, c *broker.Call) (*broker.Result, error) {
	if e.closed.Load() {
		return nil, e.unavailable(errClosed)
	}
	if c.Route.Kind != route.StatementKind || c.Route.Statement == nil {
		return nil, fmt.Errorf("route %s: sqlite database %s runs statements only", c.Route.Subject, e.cfg.Name)
	}
	text, args, err := bindCall(c)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; ; attempt++ {
		res, err := e.execOnce(ctx, c, text, args)
		if err == nil || !retryable(err) || attempt >= e.cfg.MaxRetries {
			if err != nil {
				return nil, e.classify(ctx, err, c)
			}
			return res, nil
		}
		lastErr = err
		e.cfg.Logger.DebugContext(ctx, "sqlite busy, retrying", "database", e.cfg.Name, "attempt", attempt+1)
		select {
		case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
		case <-ctx.Done():
			return nil, e.classify(ctx, lastErr, c)
		}
	}
}

func (e *Executor) execOnce(ctx context.Context, c *broker.Call, text string, args []any) (*broker.Result, error) {
	st, err := e.stmt(ctx, text)
	if err != nil {
		return nil, err
	}
	var res *broker.Result
	err = e.writeTx(ctx, func(tx *sql.Tx) (err error) {
		res, err = e.inTx(ctx, tx, c, st, args, uuid.Must(uuid.NewV7()).String())
		return err
	})
	return res, err
}

// bindCall renders a statement route's SQL for SQLite and binds the call's
// values to its placeholders, in order.
func bindCall(c *broker.Call) (string, []any, error) {
	text, names := render(c.Route.Statement)
	args := make([]any, len(names))
	for i, n := range names {
		v, err := bindParam(c, n)
		if err != nil {
			return "", nil, err
		}
		args[i] = v
	}
	return text, args, nil
}

// writeTx runs fn in a write transaction (BEGIN IMMEDIATE on the single
// writer connection) and commits, or rolls back when fn fails. A
// transaction in which fn wrote nothing (a replay) commits nothing.
func (e *Executor) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := e.writing.Enter(ctx); err != nil {
		return err
	}
	defer e.writing.Leave()
	tx, err := e.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback() // the error that matters is fn's
		return err
	}
	return tx.Commit()
}

// inTx runs one call inside tx: the idempotency check, the record, the
// statement and its stored result. A committed record with the call's
// request hash is returned as a replay (nothing written); another hash is
// [broker.ErrConflict]. txID is the transaction's id for the record.
func (e *Executor) inTx(ctx context.Context, tx *sql.Tx, c *broker.Call, st *sql.Stmt, args []any, txID string) (*broker.Result, error) {
	sel, err := e.own(ctx, tx, sqlSelectRecord) //nolint:sqlclosecheck // a transaction's statements close with it
	if err != nil {
		return nil, err
	}
	switch rec, err := scanRecord(sel.QueryRowContext(ctx, c.IdempotencyKey)); {
	case err == nil:
		if rec.RequestHash != c.RequestHash {
			return nil, broker.ErrConflict
		}
		return rec, nil
	case !errors.Is(err, sql.ErrNoRows):
		return nil, err
	}
	res := &broker.Result{TransactionID: txID}
	now := time.Now().UTC().Truncate(time.Microsecond)
	ins, err := e.own(ctx, tx, sqlInsertRecord) //nolint:sqlclosecheck // a transaction's statements close with it
	if err != nil {
		return nil, err
	}
	if _, err := ins.ExecContext(ctx, c.IdempotencyKey, c.RequestHash, c.CorrelationID, c.Principal, c.DecisionID, res.TransactionID, now.Format(tsFormat)); err != nil {
		return nil, err
	}
	changes, err := e.own(ctx, tx, sqlChanges) //nolint:sqlclosecheck // a transaction's statements close with it
	if err != nil {
		return nil, err
	}
	var before, after int64
	if err := changes.QueryRowContext(ctx).Scan(&before); err != nil {
		return nil, err
	}
	w := resultjson.NewWriter(c.RowLimit())
	if err := runStatement(ctx, tx.StmtContext(ctx, st), args, w); err != nil {
		return nil, err
	}
	if err := changes.QueryRowContext(ctx).Scan(&after); err != nil {
		return nil, err
	}
	res.RowsAffected = after - before
	res.Rows = w.Rows()
	if res.JSON, err = w.Finish(nil, false, nil, res.RowsAffected); err != nil {
		return nil, err
	}
	res.CommittedAt = time.Now().UTC().Truncate(time.Microsecond)
	store, err := e.own(ctx, tx, sqlStoreResult) //nolint:sqlclosecheck // a transaction's statements close with it
	if err != nil {
		return nil, err
	}
	if _, err := store.ExecContext(ctx, c.IdempotencyKey, string(res.JSON), res.Rows, res.RowsAffected, res.CommittedAt.Format(tsFormat)); err != nil {
		return nil, err
	}
	return res, nil
}

// ExecuteBatch implements [broker.BatchExecutor]: one BEGIN IMMEDIATE, the
// calls in order as Execute runs them, one commit (one fsync). The calls
// share the transaction id. A conflict is that call's outcome; any other
// error rolls the whole batch back, and the broker then runs each call
// alone (with Execute's retries when the file is busy).
func (e *Executor) ExecuteBatch(ctx context.Context, calls []*broker.Call) ([]broker.BatchResult, error) {
	if e.closed.Load() {
		return nil, e.unavailable(errClosed)
	}
	type prepared struct {
		st   *sql.Stmt
		args []any
	}
	prep := make([]prepared, len(calls))
	for i, c := range calls {
		if c.Route.Kind != route.StatementKind || c.Route.Statement == nil {
			return nil, broker.ErrBatchUnsupported
		}
		text, args, err := bindCall(c)
		if err != nil {
			return nil, err
		}
		st, err := e.stmt(ctx, text)
		if err != nil {
			return nil, err
		}
		prep[i] = prepared{st, args}
	}
	txID := uuid.Must(uuid.NewV7()).String()
	out := make([]broker.BatchResult, len(calls))
	err := e.writeTx(ctx, func(tx *sql.Tx) error {
		for i, c := range calls {
			res, err := e.inTx(ctx, tx, c, prep[i].st, prep[i].args, txID)
			switch {
			case errors.Is(err, broker.ErrConflict):
				out[i].Err = err // it wrote nothing: the others go on
			case err != nil:
				return err
			default:
				out[i].Result = res
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func runStatement(ctx context.Context, st *sql.Stmt, args []any, w *resultjson.Writer) error {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer func() { _ = rows.Close() }()
	cols, err := rows.ColumnTypes()
	if err != nil {
		return err
	}
	names := make([]string, len(cols))
	boolean := make([]bool, len(cols))
	for i, ct := range cols {
		names[i] = ct.Name()
		boolean[i] = strings.Contains(strings.ToUpper(ct.DatabaseTypeName()), "BOOL")
	}
	if len(cols) > 0 {
		w.BeginSet(names)
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, v := range vals {
			if n, ok := v.(int64); ok && boolean[i] && (n == 0 || n == 1) {
				vals[i] = n == 1
			}
		}
		if err := w.Row(vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(cols) > 0 {
		w.EndSet()
	}
	return nil
}

// scanRecord reads a committed record (sqlSelectRecord) as a replay
// returns it, with its request hash and decision id.
func scanRecord(row *sql.Row) (*broker.Result, error) {
	var (
		hash, result, txID, committed, decision sql.NullString
		nrows, affected                         int64
	)
	if err := row.Scan(&hash, &result, &txID, &nrows, &affected, &committed, &decision); err != nil {
		return nil, err
	}
	at, err := time.Parse(time.RFC3339Nano, committed.String)
	if err != nil {
		return nil, fmt.Errorf("idempotency record: committed_at: %w", err)
	}
	return &broker.Result{
		JSON: json.RawMessage(result.String), Rows: nrows, RowsAffected: affected, TransactionID: txID.String,
		Replayed: true, CommittedAt: at, RequestHash: hash.String, DecisionID: decision.String,
	}, nil
}

// Lookup implements [broker.Executor].
func (e *Executor) Lookup(ctx context.Context, key string) (*broker.Result, bool, error) {
	if e.closed.Load() {
		return nil, false, e.unavailable(errClosed)
	}
	res, err := scanRecord(e.reader.QueryRowContext(ctx, sqlSelectRecord, key))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, e.classify(ctx, err, nil)
	}
	return res, true, nil
}

// Prune deletes idempotency records committed before t and returns how many,
// in statements of at most [broker.PruneBatch] records each, so calls wait
// for the single writer connection no longer than one batch.
func (e *Executor) Prune(ctx context.Context, before time.Time) (int64, error) {
	if e.closed.Load() {
		return 0, e.unavailable(errClosed)
	}
	cut := before.UTC().Format(tsFormat)
	n, err := broker.PruneInBatches(ctx, e.pruneBatch, func(ctx context.Context) (int64, error) {
		if err := e.writing.Enter(ctx); err != nil {
			return 0, err
		}
		defer e.writing.Leave()
		r, err := e.writer.ExecContext(ctx, sqlPrune, cut, e.pruneBatch)
		if err != nil {
			return 0, err
		}
		return r.RowsAffected()
	})
	if err != nil {
		return n, e.classify(ctx, err, nil)
	}
	return n, nil
}

// bindParam returns the value bound for placeholder name: a session value
// from the call, or the typed parameter.
func bindParam(c *broker.Call, name string) (any, error) {
	switch name {
	case route.SessionCorrelationID:
		return c.CorrelationID, nil
	case route.SessionPrincipal:
		return c.Principal, nil
	case route.SessionDecisionID:
		return c.DecisionID, nil
	}
	v := c.Params[name]
	p, ok := c.Route.Param(name)
	if !ok || v == nil {
		return v, nil
	}
	t := strings.ToLower(p.SQLType)
	switch x := v.(type) {
	case json.Number:
		if strings.HasPrefix(t, "float") || t == "real" || t == "double precision" {
			f, err := strconv.ParseFloat(string(x), 64)
			if err != nil {
				return nil, &route.InvalidError{Field: name, Message: "must be a number representable as a float"}
			}
			return f, nil
		}
		return string(x), nil
	case string:
		if strings.HasPrefix(t, "varbinary") || strings.HasPrefix(t, "binary") {
			b, err := base64.StdEncoding.DecodeString(x)
			if err != nil {
				return nil, &route.InvalidError{Field: name, Message: "must be base64"}
			}
			return b, nil
		}
		return x, nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	default:
		return v, nil
	}
}

var (
	_ broker.Executor = (*Executor)(nil)
	_ broker.Pruner   = (*Executor)(nil)
)
