package sqlserver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/golang-sql/civil"
	"github.com/golang-sql/sqlexp"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/microsoft/go-mssqldb/azuread"
	"github.com/microsoft/go-mssqldb/msdsn"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
)

// Executor runs routed calls against one SQL Server database. Safe for
// concurrent use.
type Executor struct {
	cfg      Config
	db       *sql.DB // nil for the onBehalfOf base executor
	server   string
	database string
	closed   atomic.Bool
}

var errOBO = errors.New("on-behalf-of authentication: calls need a user's token, use OnBehalfOf")

// Open builds the connection pool, pings the server and checks that the
// idempotency table exists. With AzureAD mode onBehalfOf it only validates
// the configuration: calls run through the per-user executors of
// [Executor.OnBehalfOf].
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
		return e, nil
	}
	return open(ctx, cfg, "", cfg.MaxConns)
}

func open(ctx context.Context, cfg Config, userAssertion string, maxConns int) (*Executor, error) {
	dsn, fed, err := cfg.connString(userAssertion)
	if err != nil {
		return nil, fmt.Errorf("sqlserver database %s: %w", cfg.Name, err)
	}
	var connector driver.Connector
	if fed {
		connector, err = azuread.NewConnector(dsn)
	} else {
		connector, err = mssql.NewConnector(dsn)
	}
	if err != nil {
		// Messages from the connection string parsers may quote it.
		return nil, fmt.Errorf("sqlserver database %s: the connection settings are not valid", cfg.Name)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	db.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	e := &Executor{cfg: cfg, db: db}
	e.describe(dsn)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, e.classify(ctx, err, nil)
	}
	if _, err := db.ExecContext(ctx, `SELECT TOP (0) 1 FROM sqlgate.idempotency;`); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("sqlserver database %s: table sqlgate.idempotency (see deploy/sqlserver): %w", cfg.Name, e.classify(ctx, err, nil))
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

// Check reports whether a procedure route can run: the procedure exists and
// the broker's login may execute it. Statement routes are checked when they
// first run.
func (e *Executor) Check(ctx context.Context, r *route.Route) error {
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

// callShape is what a call sends: the RPC procedure name or statement text,
// its arguments (sql.Named values) and the OUTPUT destinations.
type callShape struct {
	query string
	proc  bool
	args  []any
	outs  []*outParam
}

func buildCall(c *broker.Call) (*callShape, error) {
	r := c.Route
	s := &callShape{}
	if r.Kind == route.StatementKind {
		text, names := renderStatement(r)
		s.query = text
		for _, n := range names {
			var v any
			switch n {
			case route.SessionCorrelationID:
				v = mssql.NVarCharMax(c.CorrelationID)
			case route.SessionPrincipal:
				v = mssql.NVarCharMax(c.Principal)
			case route.SessionDecisionID:
				v = mssql.NVarCharMax(c.DecisionID)
			default:
				p, _ := r.Param(n)
				bv, err := bindValue(p, n, c.Params[n], true)
				if err != nil {
					return nil, err
				}
				v = bv
			}
			s.args = append(s.args, sql.Named(n, v))
		}
		return s, nil
	}
	s.query, s.proc = quoteName(r.Target), true
	for i := range r.Params {
		p := &r.Params[i]
		v, ok := c.Params[p.Name]
		if !ok {
			continue // absent optional parameter: the procedure's default applies
		}
		bv, err := bindValue(p, p.Name, v, false)
		if err != nil {
			return nil, err
		}
		s.args = append(s.args, sql.Named(p.Name, bv))
	}
	for _, o := range r.Outputs {
		op := newOut(o)
		s.outs = append(s.outs, op)
		s.args = append(s.args, sql.Named(o.Name, sql.Out{Dest: op.dest}))
	}
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
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	open := true
	defer func() {
		if err != nil && open {
			rollback(conn)
		}
	}()

	// Round trip 1: transaction, session context, idempotency record.
	var (
		inserted  bool
		txid      int64
		hash, out sql.NullString
		nrows     sql.NullInt64
		naffected sql.NullInt64
		committed sql.NullTime
	)
	rows, err := conn.QueryContext(ctx, BeginBatch,
		sql.Named("correlation_id", mssql.NVarCharMax(c.CorrelationID)),
		sql.Named("principal", mssql.NVarCharMax(c.Principal)),
		sql.Named("decision_id", mssql.NVarCharMax(c.DecisionID)),
		sql.Named("idempotency_key", mssql.NVarCharMax(c.IdempotencyKey)),
		sql.Named("request_hash", mssql.NVarCharMax(c.RequestHash)))
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	if rows.Next() {
		err = rows.Scan(&inserted, &txid, &hash, &out, &nrows, &naffected, &committed)
	} else if err = rows.Err(); err == nil {
		err = errors.New("begin batch returned no row")
	}
	// Closing reads the rest of the batch (the replay's ROLLBACK).
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return nil, err
	}
	if !inserted {
		open = false // the batch rolled back
		if hash.String != c.RequestHash {
			return nil, broker.ErrConflict
		}
		return &broker.Result{
			JSON: json.RawMessage(out.String), Rows: nrows.Int64, RowsAffected: naffected.Int64,
			TransactionID: strconv.FormatInt(txid, 10), Replayed: true, CommittedAt: committed.Time.UTC(),
		}, nil
	}

	// Round trip 2: the call.
	w := newResultWriter(maxRows(c))
	affected, status, err := run(ctx, conn, shape, w)
	if err != nil {
		return nil, err
	}
	var outputs []outputParam
	for i, o := range shape.outs {
		outputs = append(outputs, outputParam{Name: o.name, Value: o.value(c.Route.Outputs[i].SQLType)})
	}
	res := &broker.Result{TransactionID: strconv.FormatInt(txid, 10), Rows: w.total, RowsAffected: affected}
	if res.JSON, err = w.finish(outputs, len(shape.outs) > 0, status, affected); err != nil {
		return nil, err
	}

	// Round trip 3: store the result and commit.
	res.CommittedAt = time.Now().UTC().Truncate(100 * time.Nanosecond)
	if _, err := conn.ExecContext(ctx, CommitBatch,
		sql.Named("result", mssql.NVarCharMax(res.JSON)),
		sql.Named("rows", res.Rows),
		sql.Named("rows_affected", res.RowsAffected),
		sql.Named("committed_at", civil.DateTimeOf(res.CommittedAt)),
		sql.Named("idempotency_key", mssql.NVarCharMax(c.IdempotencyKey))); err != nil {
		return nil, err
	}
	open = false
	return res, nil
}

// rollback ends a failed transaction; if the server cannot be told, the
// connection is discarded (the server rolls back when the session ends).
func rollback(conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(ctx, RollbackBatch); err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}

// run sends the procedure RPC or the statement and writes every result
// set; it returns the rows affected (the sum of the DONE row counts, as
// SSMS prints them) and the procedure's return status.
func run(ctx context.Context, conn *sql.Conn, shape *callShape, w *resultWriter) (int64, *int64, error) {
	msgs := &sqlexp.ReturnMessage{}
	var status mssql.ReturnStatus
	args := append(shape.args[:len(shape.args):len(shape.args)], msgs)
	if shape.proc {
		args = append(args, &status)
	}
	rows, err := conn.QueryContext(ctx, shape.query, args...)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = rows.Close() }()
	var affected int64
	for active := true; active; {
		switch m := msgs.Message(ctx).(type) {
		case sqlexp.MsgNext:
			cts, err := rows.ColumnTypes()
			if err != nil {
				return 0, nil, err
			}
			names := make([]string, len(cts))
			kinds := make([]string, len(cts))
			for i, ct := range cts {
				names[i], kinds[i] = ct.Name(), ct.DatabaseTypeName()
			}
			w.beginSet(names)
			vals := make([]any, len(cts))
			ptrs := make([]any, len(cts))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			for rows.Next() {
				if err := rows.Scan(ptrs...); err != nil {
					return 0, nil, err
				}
				for i := range vals {
					vals[i] = columnValue(kinds[i], vals[i])
				}
				if err := w.row(vals); err != nil {
					return 0, nil, err
				}
			}
			if err := rows.Err(); err != nil {
				return 0, nil, err
			}
			w.endSet()
		case sqlexp.MsgNextResultSet:
			active = rows.NextResultSet()
		case sqlexp.MsgRowsAffected:
			// Every "(n rows affected)" the server reports: DML, INSERT ...
			// OUTPUT and result-set SELECTs alike (DONE tokens do not say
			// which statement they close), none under SET NOCOUNT ON.
			affected += m.Count
		case sqlexp.MsgError:
			return 0, nil, m.Error
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	if err := rows.Close(); err != nil {
		return 0, nil, err
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if !shape.proc {
		return affected, nil, nil
	}
	rv := int64(status)
	return affected, &rv, nil
}

// Lookup implements [broker.Executor].
func (e *Executor) Lookup(ctx context.Context, key string) (*broker.Result, bool, error) {
	if e.db == nil {
		return nil, false, errOBO
	}
	if e.closed.Load() {
		return nil, false, e.unavailable(errClosed)
	}
	var (
		txid      int64
		hash, out sql.NullString
		res       broker.Result
		committed time.Time
	)
	err := e.db.QueryRowContext(ctx, LookupBatch, sql.Named("idempotency_key", mssql.NVarCharMax(key))).
		Scan(&txid, &hash, &out, &res.Rows, &res.RowsAffected, &committed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, e.classify(ctx, err, nil)
	}
	res.JSON = json.RawMessage(out.String)
	res.TransactionID = strconv.FormatInt(txid, 10)
	res.CommittedAt = committed.UTC()
	res.Replayed = true
	return &res, true, nil
}

// Prune deletes idempotency records committed before t and returns how many.
func (e *Executor) Prune(ctx context.Context, before time.Time) (int64, error) {
	if e.db == nil {
		return 0, errOBO
	}
	r, err := e.db.ExecContext(ctx, PruneBatch, sql.Named("before", civil.DateTimeOf(before.UTC())))
	if err != nil {
		return 0, e.classify(ctx, err, nil)
	}
	return r.RowsAffected()
}

func maxRows(c *broker.Call) int {
	switch {
	case c.MaxRows > 0:
		return c.MaxRows
	case c.Route.MaxRows > 0:
		return c.Route.MaxRows
	default:
		return route.DefaultMaxRows
	}
}

var _ broker.Executor = (*Executor)(nil)
