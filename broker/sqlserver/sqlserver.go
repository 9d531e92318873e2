package sqlserver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-sql/civil"
	"github.com/golang-sql/sqlexp"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/microsoft/go-mssqldb/azuread"
	"github.com/microsoft/go-mssqldb/msdsn"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/internal/resultjson"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/internal/fifo"
)

// Executor runs routed calls against one SQL Server database. Safe for
// concurrent use.
type Executor struct {
	cfg Config
	db  *sql.DB // nil for the onBehalfOf base executor
	// calls admits as many calls as the pool has connections, in the
	// order they arrive: database/sql alone hands a freed connection to a
	// random waiter, so under load an unlucky call waited many turns.
	calls    *fifo.Gate
	server   string
	database string
	closed   atomic.Bool
}

var errOBO = errors.New("on-behalf-of authentication: calls need a user's token, use OnBehalfOf")

// Open builds the connection pool, pings the server and checks that the
// idempotency table exists. With AzureAD mode onBehalfOf it only validates
// the configuration: calls run through the per-user executors of
// [Executor.OnBehalfOf].
//
// An error wraps [broker.ErrUnavailable] only when the server could not be
// reached or cannot take a session now (network failures, the login and
// availability errors classify lists): trying again later may succeed. Any
// other error is a configuration error: the connection settings, TLS (the
// server's certificate not accepted, the handshake refused), the
// idempotency table missing or not readable.
func Open(ctx context.Context, cfg Config) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sqlserver config: %w", err)
	}
	cfg.defaults()
	if cfg.AzureAD != nil && cfg.AzureAD.Mode == ModeOnBehalfOf {
		dsn, _, err := cfg.connString("validation-only")
		if err != nil {
			return nil, fmt.Errorf("sqlserver database %s: %w", cfg.Name, err)
		}
		e := &Executor{cfg: cfg}
		e.describe(dsn)
		e.warnInsecure(ctx, dsn)
		return e, nil
	}
	return open(ctx, cfg, "", cfg.MaxConns)
}

func open(ctx context.Context, cfg Config, userAssertion string, maxConns int) (*Executor, error) {
	dsn, fed, err := cfg.connString(userAssertion)
	if err != nil {
		return nil, fmt.Errorf("sqlserver database %s: %w", cfg.Name, err)
	}
	var connector *mssql.Connector
	if fed {
		connector, err = azuread.NewConnector(dsn)
	} else {
		connector, err = mssql.NewConnector(dsn)
	}
	if err != nil {
		// Messages from the connection string parsers may quote it.
		return nil, fmt.Errorf("sqlserver database %s: the connection settings are not valid", cfg.Name)
	}
	// Watched sockets: a call notices at once that its connection is lost
	// (see transport.go).
	db := sql.OpenDB(watched(connector, dsn))
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	e := &Executor{cfg: cfg, db: db, calls: fifo.NewGate(maxConns)}
	e.describe(dsn)
	if userAssertion == "" {
		e.warnInsecure(ctx, dsn)
	}
	// At Open a TLS failure is a configuration error; for a user's
	// on-behalf-of executor, opened for a call, the call is unavailable.
	failed := func(err error) error {
		if userAssertion == "" {
			return e.openError(ctx, err)
		}
		return e.classify(ctx, err, nil)
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, failed(err)
	}
	if _, err := db.ExecContext(ctx, `SELECT TOP (0) 1 FROM sqlgate.idempotency;`); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlserver database %s: table sqlgate.idempotency (see deploy/sqlserver): %w", cfg.Name, failed(err))
	}
	return e, nil
}

func (e *Executor) describe(dsn string) {
	if p, err := msdsn.Parse(dsn); err == nil {
		e.server, e.database = p.Host, p.Database
		if p.Instance != "" {
			e.server += `\` + p.Instance
		}
	}
}

// warnInsecure logs, once per Open, that the connection string does not
// protect the login and the session and AllowInsecureTransport let it.
func (e *Executor) warnInsecure(ctx context.Context, dsn string) {
	if !e.cfg.AllowInsecureTransport {
		return
	}
	if err := CheckTransport(dsn, false); err != nil {
		e.cfg.Logger.WarnContext(ctx, "sqlserver: insecure transport accepted (allowInsecureTransport)", "database", e.cfg.Name, "problem", err.Error())
	}
}

// OnBehalfOf returns an executor whose connections log in as the user whose
// access token is userAssertion (Entra on-behalf-of flow), so SQL Server
// authorizes and audits the call as that user. It needs AzureAD mode
// onBehalfOf. Each returned executor has its own small pool; the caller
// caches it per user for the token's lifetime and closes it.
func (e *Executor) OnBehalfOf(ctx context.Context, userAssertion string) (*Executor, error) {
	if e.cfg.AzureAD == nil || e.cfg.AzureAD.Mode != ModeOnBehalfOf {
		return nil, fmt.Errorf("sqlserver database %s: on-behalf-of needs azureAD mode onBehalfOf", e.cfg.Name)
	}
	if userAssertion == "" {
		return nil, fmt.Errorf("sqlserver database %s: on-behalf-of needs the user's access token", e.cfg.Name)
	}
	return open(ctx, e.cfg, userAssertion, e.cfg.OnBehalfOfMaxConns)
}

// DB returns the connection pool (nil for the onBehalfOf base executor).
func (e *Executor) DB() *sql.DB { return e.db }

// Close closes the pool; later calls fail with broker.ErrUnavailable.
func (e *Executor) Close() error {
	if e.closed.Swap(true) || e.db == nil {
		return nil
	}
	return e.db.Close()
}

// Describe implements [broker.Executor].
func (e *Executor) Describe() broker.DatabaseInfo {
	db := e.database
	if db == "" {
		db = e.cfg.Name
	}
	return broker.DatabaseInfo{Dialect: "sqlserver", Server: e.server, Database: db}
}

// Check reports whether a route can run: its SQL types are within SQL
// Server's bounds ([CheckSQLType]; every refused type is reported), and a
// procedure route's procedure exists and the broker's login may execute
// it. Statement routes are otherwise checked when they first run.
func (e *Executor) Check(ctx context.Context, r *route.Route) error {
	if err := checkRouteTypes(r); err != nil {
		return err
	}
	if e.db == nil {
		return errOBO
	}
	if r.Kind != route.Procedure {
		return nil
	}
	var found, canExec bool
	if err := e.db.QueryRowContext(ctx, CheckBatch, sql.Named("name", quoteName(r.Target))).Scan(&found, &canExec); err != nil {
		return e.classify(ctx, err, nil)
	}
	switch {
	case !found:
		return fmt.Errorf("route %s: procedure %s does not exist in sqlserver database %s (or the broker's login cannot see it)", r.Subject, r.Target, e.cfg.Name)
	case !canExec:
		return fmt.Errorf("route %s: the broker's login lacks EXECUTE on %s", r.Subject, r.Target)
	}
	return nil
}

// callShape is the call batch (sent through sp_executesql): the prologue
// with session context and idempotency record, then the EXEC or statement;
// its arguments (sql.Named values), OUTPUT destinations and the return
// status destination (procedures).
type callShape struct {
	query string
	args  []any
	outs  []*outParam
	ret   *sql.NullInt32
}

func buildCall(c *broker.Call) (*callShape, error) {
	r := c.Route
	s := &callShape{args: []any{
		sql.Named("sqlgate_correlation_id", mssql.NVarCharMax(c.CorrelationID)),
		sql.Named("sqlgate_principal", mssql.NVarCharMax(c.Principal)),
		sql.Named("sqlgate_decision_id", mssql.NVarCharMax(c.DecisionID)),
		sql.Named("sqlgate_idempotency_key", mssql.NVarCharMax(c.IdempotencyKey)),
		sql.Named("sqlgate_request_hash", mssql.NVarCharMax(c.RequestHash)),
	}}
	if r.Kind == route.StatementKind {
		text, names := renderStatement(r)
		s.query = callPrologue + text + ";"
		for _, n := range names {
			if strings.HasPrefix(n, route.SessionPrefix) {
				continue // bound above: the session placeholders are the prologue's parameters
			}
			p, _ := r.Param(n)
			v, err := bindValue(p, n, c.Params[n])
			if err != nil {
				return nil, err
			}
			s.args = append(s.args, sql.Named(n, v))
		}
		return s, nil
	}
	var present, outputs []string
	for i := range r.Params {
		p := &r.Params[i]
		v, ok := c.Params[p.Name]
		if !ok {
			continue // absent optional parameter: the procedure's default applies
		}
		bv, err := bindValue(p, p.Name, v)
		if err != nil {
			return nil, err
		}
		present = append(present, p.Name)
		s.args = append(s.args, sql.Named(p.Name, bv))
	}
	for _, o := range r.Outputs {
		op := newOut(o)
		s.outs = append(s.outs, op)
		outputs = append(outputs, o.Name)
		s.args = append(s.args, sql.Named(o.Name, sql.Out{Dest: op.dest}))
	}
	s.ret = &sql.NullInt32{}
	s.args = append(s.args, sql.Named("sqlgate_return_value", sql.Out{Dest: s.ret}))
	s.query = callPrologue + procCall(r.Target, present, outputs)
	return s, nil
}

// Execute implements [broker.Executor].
func (e *Executor) Execute(ctx context.Context, c *broker.Call) (*broker.Result, error) {
	if e.db == nil {
		return nil, errOBO
	}
	if e.closed.Load() {
		return nil, e.unavailable(errClosed)
	}
	if err := checkSessionLimits(c); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		// Rebuilt per attempt: OUTPUT destinations are written by the driver.
		shape, err := buildCall(c)
		if err != nil {
			return nil, err
		}
		res, err := e.execOnce(ctx, c, shape)
		if err == nil {
			return res, nil
		}
		if !retryable(err) || attempt >= e.cfg.MaxRetries || ctx.Err() != nil {
			return nil, e.classify(ctx, err, c)
		}
		e.cfg.Logger.DebugContext(ctx, "sqlserver deadlock, retrying", "database", e.cfg.Name, "route", c.Route.Subject, "attempt", attempt+1)
		select {
		case <-time.After(time.Duration((attempt+1)*(attempt+1)) * 20 * time.Millisecond):
		case <-ctx.Done():
			return nil, e.classify(ctx, err, c)
		}
	}
}

var errClosed = errors.New("executor closed")

func (e *Executor) execOnce(ctx context.Context, c *broker.Call, shape *callShape) (_ *broker.Result, err error) {
	if err := e.calls.Enter(ctx); err != nil {
		return nil, err
	}
	defer e.calls.Leave()
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	open := false
	defer func() {
		switch {
		case err == nil || !open:
		case errors.Is(err, errConnLost):
			discard(conn) // the server rolls back when the session ends
		default:
			rollback(conn)
		}
	}()

	// Round trip 1: the transaction.
	if _, err := conn.ExecContext(ctx, BeginBatch); err != nil {
		return nil, err
	}
	open = true

	// Round trip 2: session context, idempotency record, the call.
	w := resultjson.NewWriter(c.RowLimit())
	st, affected, err := runCall(ctx, conn, shape, w)
	if err != nil {
		// Once the record is inserted, any failure may follow a COMMIT
		// inside the routed procedure (a server error, a result over
		// max_rows, a value the result cannot hold): endFailedCall finds
		// out. A lost connection or an expired context leave that to the
		// broker's lookup of the key.
		if st != nil && st.inserted && !errors.Is(err, errConnLost) && ctx.Err() == nil {
			open = false
			return nil, e.endFailedCall(conn, st.txid, c.IdempotencyKey, err)
		}
		return nil, err
	}
	if !st.inserted {
		open = false
		rollback(conn)
		return e.replay(st, c)
	}
	var outputs []resultjson.Output
	for i, o := range shape.outs {
		outputs = append(outputs, resultjson.Output{Name: o.name, Value: o.value(c.Route.Outputs[i].SQLType)})
	}
	var status *int64
	if shape.ret != nil {
		rv := int64(shape.ret.Int32)
		status = &rv
	}
	res := &broker.Result{TransactionID: strconv.FormatInt(st.txid, 10), Rows: w.Rows(), RowsAffected: affected}
	if res.JSON, err = w.Finish(outputs, len(shape.outs) > 0, status, affected); err != nil {
		return nil, err
	}

	// Round trips 3 and 4: store the result, commit.
	res.CommittedAt = time.Now().UTC().Truncate(100 * time.Nanosecond)
	if _, err := conn.ExecContext(ctx, StoreBatch,
		sql.Named("result", mssql.NVarCharMax(res.JSON)),
		sql.Named("rows", res.Rows),
		sql.Named("rows_affected", res.RowsAffected),
		sql.Named("committed_at", civil.DateTimeOf(res.CommittedAt)),
		sql.Named("idempotency_key", mssql.NVarCharMax(c.IdempotencyKey))); err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, CommitBatch); err != nil {
		return nil, err
	}
	open = false
	return res, nil
}

// replay returns the stored result of a key the call found taken:
// ErrConflict when it was stored for another request. A record without
// committed_at was committed without a result: the call's INSERT fails on
// the key only once the transaction that inserted it has committed, so
// that transaction was committed by the routed procedure itself (see
// [ErrCommittedWithoutResult]). Its replay has no result (JSON null, zero
// CommittedAt), as [Executor.Lookup] reports it; the call is not run again,
// which could repeat what the procedure committed.
func (e *Executor) replay(st *status, c *broker.Call) (*broker.Result, error) {
	if st.hash.String != c.RequestHash {
		return nil, broker.ErrConflict
	}
	res := &broker.Result{
		Rows: st.rows.Int64, RowsAffected: st.affected.Int64,
		TransactionID: strconv.FormatInt(st.txid, 10), Replayed: true,
		RequestHash: st.hash.String, DecisionID: st.decision.String,
	}
	if st.committed.Valid {
		res.JSON, res.CommittedAt = json.RawMessage(st.result.String), st.committed.Time.UTC()
	} else {
		res.WithoutResult = true
	}
	return res, nil
}

// ErrCommittedWithoutResult is wrapped (with broker.ErrUnavailable) by the
// error of a call whose routed procedure committed the call's transaction
// itself: a COMMIT inside the procedure ends the transaction sqlgate
// opened, so the procedure's work and the call's idempotency record are
// committed, and the call then fails (error 266, "Transaction count after
// EXECUTE indicates a mismatching number of BEGIN and COMMIT statements",
// or an error the procedure raised after its COMMIT) before its result is
// stored. The broker then looks the key up: [Executor.Lookup] finds the
// record, committed, without a result. Routed procedures must not commit
// or roll back the caller's transaction.
var ErrCommittedWithoutResult = errors.New("the routed procedure committed the call's transaction itself: its work and the idempotency record are committed, the result was not stored")

// endFailedCall ends a call that failed after inserting its idempotency
// record in transaction txid: it rolls back what is left of the
// transaction and asks whether the record is still there
// ([CommittedBatch]). If so the routed procedure committed the call
// (ErrCommittedWithoutResult); if not, the transaction rolled back and the
// call's own error stands. When the question cannot be answered (the
// rollback or the question fails, or no answer comes) the outcome is
// unknown here: the error wraps broker.ErrUnavailable, so the broker looks
// the key up itself (and records the outcome unknown if that fails too)
// instead of recording a rollback. The call's error is wrapped in neither
// of these cases: it says nothing about the outcome, and a deadlock number
// or ErrTooManyRows in it must not make the call run again or be recorded
// as a rollback.
func (e *Executor) endFailedCall(conn *sql.Conn, txid int64, key string, callErr error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(ctx, RollbackBatch); err != nil {
		discard(conn)
		return e.outcomeUnknown(txid, callErr)
	}
	var committed bool
	err := conn.QueryRowContext(ctx, CommittedBatch,
		sql.Named("idempotency_key", mssql.NVarCharMax(key)), sql.Named("transaction_id", txid)).Scan(&committed)
	switch {
	case err != nil:
		discard(conn) // whatever state the question left it in
		return e.outcomeUnknown(txid, callErr)
	case !committed:
		return callErr
	}
	e.cfg.Logger.Warn("sqlserver: a routed procedure committed the call's transaction itself", "database", e.cfg.Name, "transaction_id", txid, "failure", failure(callErr))
	return fmt.Errorf("%w: sqlserver database %s: %w (%s)", broker.ErrUnavailable, e.cfg.Name, ErrCommittedWithoutResult, failure(callErr))
}

// outcomeUnknown is the error of a call that failed after inserting its
// idempotency record when the server could not be asked whether the
// routed procedure committed (see [Executor.endFailedCall]).
func (e *Executor) outcomeUnknown(txid int64, callErr error) error {
	e.cfg.Logger.Warn("sqlserver: a failed call's outcome could not be read", "database", e.cfg.Name, "transaction_id", txid, "failure", failure(callErr))
	return fmt.Errorf("%w: sqlserver database %s: the call failed (%s) and whether its transaction committed could not be read", broker.ErrUnavailable, e.cfg.Name, failure(callErr))
}

// failure names what failed a call without quoting the driver's or the
// server's text (which may quote data or name the server).
func failure(err error) string {
	var me mssql.Error
	switch {
	case serverError(err, &me):
		return fmt.Sprintf("server error %d", cause(me).Number)
	case errors.Is(err, broker.ErrTooManyRows):
		return broker.ErrTooManyRows.Error()
	case errors.Is(err, resultjson.ErrUnsupported):
		return "a result value of an unsupported type"
	}
	return "driver error"
}

// rollback ends a failed transaction; if the server cannot be told, the
// connection is discarded (the server rolls back when the session ends).
func rollback(conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(ctx, RollbackBatch); err != nil {
		discard(conn)
	}
}

// discard closes conn's driver connection instead of returning it to the
// pool (database/sql closes a connection whose Raw function returns
// driver.ErrBadConn).
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

// status is the call batch's first row: whether the idempotency record was
// inserted, and the committed record (with its decision id) when it was not.
type status struct {
	inserted  bool
	txid      int64
	hash      sql.NullString
	result    sql.NullString
	rows      sql.NullInt64
	affected  sql.NullInt64
	committed sql.NullTime
	decision  sql.NullString
}

// runCall sends the call batch, reads its status row, then writes every
// result set of the call; it returns the status (also with an error once
// the status row was read) and the rows affected (the sum of the row
// counts the server reports, as SSMS prints them). It waits for the
// driver's messages and for the loss of the connection, which the driver
// does not always report there (see transport.go): a lost connection
// returns errConnLost at once.
func runCall(ctx context.Context, conn *sql.Conn, shape *callShape, w *resultjson.Writer) (*status, int64, error) {
	lost, err := lostSignal(conn)
	if err != nil {
		return nil, 0, err
	}
	wait, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		select {
		case <-lost:
			stop(errConnLost)
		case <-wait.Done():
		}
	}()
	msgs := &sqlexp.ReturnMessage{}
	args := append(shape.args[:len(shape.args):len(shape.args)], msgs)
	rows, err := conn.QueryContext(ctx, shape.query, args...)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = rows.Close() }()
	var (
		st       *status
		affected int64
	)
	for active := true; active; {
		m := msgs.Message(wait)
		if errors.Is(context.Cause(wait), errConnLost) {
			// The reply cannot complete: a read fails only while it is
			// awaited. Whatever is still queued belongs to it.
			return st, 0, errConnLost
		}
		switch m := m.(type) {
		case sqlexp.MsgNext:
			if st == nil { // the prologue's status row
				st = &status{}
				if !rows.Next() {
					if err := rows.Err(); err != nil {
						return nil, 0, err
					}
					return nil, 0, errors.New("call batch returned no status row")
				}
				if err := rows.Scan(&st.inserted, &st.txid, &st.hash, &st.result, &st.rows, &st.affected, &st.committed, &st.decision); err != nil {
					return nil, 0, err
				}
				for rows.Next() {
				}
				if err := rows.Err(); err != nil {
					return nil, 0, err
				}
				if !st.inserted {
					return st, 0, nil // the batch returned; nothing else ran
				}
				continue
			}
			if err := readSet(rows, w); err != nil {
				return st, 0, err
			}
		case sqlexp.MsgNextResultSet:
			active = rows.NextResultSet()
		case sqlexp.MsgRowsAffected:
			// Every "(n rows affected)" the call reports: DML, INSERT ...
			// OUTPUT and result-set SELECTs alike (DONE tokens do not say
			// which statement they close), none under SET NOCOUNT ON.
			affected += m.Count
		case sqlexp.MsgError:
			return st, 0, m.Error
		}
	}
	if err := rows.Err(); err != nil {
		return st, 0, err
	}
	if err := rows.Close(); err != nil {
		return st, 0, err
	}
	if err := ctx.Err(); err != nil {
		return st, 0, err
	}
	if st == nil {
		return nil, 0, errors.New("call batch returned no status row")
	}
	return st, affected, nil
}

func readSet(rows *sql.Rows, w *resultjson.Writer) error {
	cts, err := rows.ColumnTypes()
	if err != nil {
		return err
	}
	names := make([]string, len(cts))
	kinds := make([]string, len(cts))
	for i, ct := range cts {
		names[i], kinds[i] = ct.Name(), ct.DatabaseTypeName()
	}
	w.BeginSet(names)
	vals := make([]any, len(cts))
	ptrs := make([]any, len(cts))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i := range vals {
			vals[i] = columnValue(kinds[i], vals[i])
		}
		if err := w.Row(vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	w.EndSet()
	return nil
}

// Lookup implements [broker.Executor].
func (e *Executor) Lookup(ctx context.Context, key string) (*broker.Result, bool, error) {
	if e.db == nil {
		return nil, false, errOBO
	}
	if e.closed.Load() {
		return nil, false, e.unavailable(errClosed)
	}
	if utf16Len(key) > keyMax {
		return nil, false, nil // longer than any key a call can store
	}
	var (
		txid                int64
		hash, out, decision sql.NullString
		res                 broker.Result
		committed           sql.NullTime
	)
	err := e.db.QueryRowContext(ctx, LookupBatch, sql.Named("idempotency_key", mssql.NVarCharMax(key))).
		Scan(&txid, &hash, &out, &res.Rows, &res.RowsAffected, &committed, &decision)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, e.classify(ctx, err, nil)
	}
	if committed.Valid {
		// Otherwise committed by a routed procedure, without a result
		// (ErrCommittedWithoutResult): JSON null, CommittedAt zero.
		res.JSON = json.RawMessage(out.String)
		res.CommittedAt = committed.Time.UTC()
	} else {
		res.WithoutResult = true
	}
	res.TransactionID = strconv.FormatInt(txid, 10)
	res.Replayed = true
	res.RequestHash, res.DecisionID = hash.String, decision.String
	return &res, true, nil
}

// Prune deletes idempotency records committed before t and returns how many,
// [broker.PruneBatch] records per statement (see [PruneBatch]).
func (e *Executor) Prune(ctx context.Context, before time.Time) (int64, error) {
	if e.db == nil {
		return 0, errOBO
	}
	cut := civil.DateTimeOf(before.UTC())
	n, err := broker.PruneInBatches(ctx, broker.PruneBatch, func(ctx context.Context) (int64, error) {
		r, err := e.db.ExecContext(ctx, PruneBatch, sql.Named("batch", int64(broker.PruneBatch)), sql.Named("before", cut))
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

var (
	_ broker.Executor = (*Executor)(nil)
	_ broker.Pruner   = (*Executor)(nil)
)
