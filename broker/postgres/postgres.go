package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/internal/resultjson"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/internal/schemalock"
)

// IdempotencyDDL returns the DDL of the idempotency table (quoted name as
// configured) and its committed_at index, which pruning reads, as
// deploy/postgres/01-idempotency.sql creates them. The result column is text,
// not jsonb, so a replay returns the stored bytes exactly; free space in each
// page (fillfactor 80) lets the result update stay a heap-only tuple update.
func IdempotencyDDL(table string) string {
	q := quoteName(table)
	parts := strings.Split(table, ".")
	index := pgx.Identifier{parts[len(parts)-1] + "_committed_at"}.Sanitize()
	return `CREATE TABLE IF NOT EXISTS ` + q + ` (
  idempotency_key text        NOT NULL PRIMARY KEY,
  request_hash    text        NOT NULL,
  correlation_id  text        NOT NULL,
  principal       text        NOT NULL,
  decision_id     text        NOT NULL,
  transaction_id  bigint      NOT NULL,
  result          text,
  rows            bigint      NOT NULL DEFAULT 0,
  rows_affected   bigint      NOT NULL DEFAULT 0,
  created_at      timestamptz NOT NULL DEFAULT now(),
  committed_at    timestamptz
) WITH (fillfactor = 80);
CREATE INDEX IF NOT EXISTS ` + index + ` ON ` + q + ` (committed_at)`
}

// createIdempotencyTable runs [IdempotencyDDL] in one transaction that
// takes the schema lock first. It waits for the lock as long as ctx allows.
func createIdempotencyTable(ctx context.Context, pool *pgxpool.Pool, table string) error {
	// Once the table and its index exist, nothing is sent: `CREATE INDEX
	// IF NOT EXISTS` takes a SHARE lock on the table even when the index
	// exists, so every start would wait for the calls in flight and hold
	// up new ones meanwhile.
	parts := strings.Split(table, ".")
	index := append(parts[:len(parts)-1:len(parts)-1], parts[len(parts)-1]+"_committed_at")
	var exists bool
	err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
		quoteName(table), pgx.Identifier(index).Sanitize()).Scan(&exists)
	if err != nil || exists {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, schemalock.Postgres); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, IdempotencyDDL(table))
		return err
	})
}

// Executor runs routed calls against one PostgreSQL database. Safe for
// concurrent use.
type Executor struct {
	cfg    Config
	pool   *pgxpool.Pool
	server string
	closed atomic.Bool

	sqlInsert, sqlSelect, sqlStore, sqlPrune string

	procs sync.Map // target -> *procInfo
	plans sync.Map // planKey -> *callPlan
	// idemTable is the idempotency table's own name (without schema), as
	// PostgreSQL reports it in a constraint violation.
	idemTable string
	// pruneBatch is how many records one prune statement deletes.
	pruneBatch int64
}

// callPlan is the SQL of one call shape (a route and which optional
// parameters are present). A function's plan also holds its one-round-trip
// form once its result columns are known (see oneTrip).
type callPlan struct {
	text string // statement, CALL, or the merged function call (two round trips)
	// describe selects the function's rows with the same arguments; it is
	// prepared (never executed) to learn the result columns.
	describe string
	oneTrip  string // the function call, for the one-round-trip form
	proc     string // the function's quoted name
	nargs    int    // the function call's arguments
	one      atomic.Pointer[oneTripPlan]
}

type procInfo struct {
	kind byte // 'f' function, 'p' procedure
	name string
}

type planKey struct {
	r    *route.Route
	mask uint64
}

// defaultConnectTimeout bounds each connection attempt when the
// connection string sets no connect_timeout.
var defaultConnectTimeout = 10 * time.Second

// Open connects, checks the idempotency table (creating it when
// configured) and returns the executor. An error wraps
// [broker.ErrUnavailable] only when the server could not be reached or
// cannot take a session now (refused, timed out, name not resolved, the
// connection lost, server states 08, 53, 57P0x, the database or the login
// not there yet: 3D000, 28xxx): trying again later may succeed. Any other
// error is a configuration error: the connection string, TLS (declined by
// the server, or its certificate not accepted), the idempotency table
// missing or not readable.
func Open(ctx context.Context, cfg Config) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("postgres config: %w", err)
	}
	cfg.defaults()
	dsn, password, err := cfg.secrets()
	if err != nil {
		return nil, fmt.Errorf("postgres database %s: %w", cfg.Name, err)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parser's message may quote the connection string.
		return nil, fmt.Errorf("postgres database %s: the connection string is not valid", cfg.Name)
	}
	// The connection string as resolved (a file or variable, the PG*
	// variables): the login and every call must not cross the network in
	// clear or to an impostor, unless allowInsecureTransport says so.
	if err := checkTransport(&pc.ConnConfig.Config); err != nil {
		if !cfg.AllowInsecureTransport {
			return nil, fmt.Errorf("postgres database %s: %w", cfg.Name, err)
		}
		cfg.Logger.WarnContext(ctx, "postgres: insecure transport accepted (allowInsecureTransport)", "database", cfg.Name, "problem", err.Error())
	}
	if password != "" {
		pc.ConnConfig.Password = password
	}
	pc.MaxConns = int32(cfg.MaxConns)
	pc.MinConns = int32(cfg.MinConns)
	if pc.ConnConfig.ConnectTimeout == 0 {
		// A server that accepts TCP and never answers would hold every
		// connection attempt, the pool's own ones too, for a minute.
		pc.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	pc.ConnConfig.RuntimeParams["application_name"] = cfg.ApplicationName
	// A context deadline sends a cancel request, so the server stops the
	// statement and the transaction can be rolled back on a live connection.
	pc.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: 2 * time.Second}
	}
	if dialHook != nil {
		pc.ConnConfig.DialFunc = dialHook
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("%w: postgres database %s: %s", broker.ErrUnavailable, cfg.Name, connProblem(err))
	}
	e := &Executor{cfg: cfg, pool: pool, server: pc.ConnConfig.Host, pruneBatch: broker.PruneBatch}
	parts := strings.Split(cfg.IdempotencyTable, ".")
	e.idemTable = parts[len(parts)-1]
	t := quoteName(cfg.IdempotencyTable)
	// The insert takes the key's advisory lock (keyLockSQL) before it
	// inserts: every form of a call holds the lock from its first statement
	// to its end, so Lookup, which takes it too, waits for a call still
	// running under the key.
	e.sqlInsert = `INSERT INTO ` + t + ` (idempotency_key, request_hash, correlation_id, principal, decision_id, transaction_id) ` +
		`VALUES ($1, $2, set_config('sqlgate.correlation_id', $3, true), set_config('sqlgate.principal', $4, true), ` +
		`set_config('sqlgate.decision_id', $5, true), (SELECT txid_current() FROM ` + keyLockSQL + `)) ` +
		`ON CONFLICT (idempotency_key) DO NOTHING RETURNING transaction_id`
	// A replay and Lookup read the record's decision id: it tells a call
	// whose own commit was not acknowledged from a retry of an earlier call.
	e.sqlSelect = `SELECT request_hash, result, transaction_id, rows, rows_affected, committed_at, decision_id FROM ` + t +
		` WHERE idempotency_key = $1 AND committed_at IS NOT NULL`
	e.sqlStore = `UPDATE ` + t + ` SET result = $2, rows = $3, rows_affected = $4, committed_at = $5 WHERE idempotency_key = $1`
	e.sqlPrune = `DELETE FROM ` + t + ` WHERE ctid = ANY (ARRAY(SELECT ctid FROM ` + t + ` WHERE committed_at < $1 ORDER BY committed_at LIMIT $2))`
	if cfg.CreateIdempotencyTable {
		if err := createIdempotencyTable(ctx, pool, cfg.IdempotencyTable); err != nil {
			go pool.Close() // waits for the pool's own connection attempts
			return nil, fmt.Errorf("postgres database %s: create idempotency table: %w", cfg.Name, e.openError(ctx, err))
		}
	}
	if _, err := pool.Exec(ctx, `SELECT 1 FROM `+t+` WHERE false`); err != nil {
		go pool.Close() // waits for the pool's own connection attempts
		return nil, fmt.Errorf("postgres database %s: idempotency table %s (see deploy/postgres): %w", cfg.Name, cfg.IdempotencyTable, e.openError(ctx, err))
	}
	return e, nil
}

// Pool returns the connection pool (tests and the daemon's health checks).
func (e *Executor) Pool() *pgxpool.Pool { return e.pool }

// Close closes the pool; later calls fail with broker.ErrUnavailable.
func (e *Executor) Close() {
	if !e.closed.Swap(true) {
		e.pool.Close()
	}
}

// Describe implements [broker.Executor].
func (e *Executor) Describe() broker.DatabaseInfo {
	return broker.DatabaseInfo{Dialect: "postgres", Server: e.server, Database: e.cfg.Name}
}

// Check reports whether a route can run here: a procedure target must name
// exactly one function or procedure; a statement must prepare.
func (e *Executor) Check(ctx context.Context, r *route.Route) error {
	if e.closed.Load() {
		return e.unavailable(errClosed)
	}
	if r.Kind == route.Procedure {
		_, err := e.proc(ctx, r.Target)
		return err
	}
	text, _ := e.renderStatement(r)
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		return e.classify(ctx, err, nil)
	}
	defer conn.Release()
	if _, err := conn.Conn().Prepare(ctx, "", text); err != nil {
		return fmt.Errorf("route %s: statement %s: %w", r.Subject, r.Target, e.classify(ctx, err, nil))
	}
	return nil
}

var errClosed = errors.New("executor closed")

// dialHook, when set by a test, dials the server (to count round trips).
var dialHook pgconn.DialFunc

// proc reads (once) whether target is a function or a procedure.
func (e *Executor) proc(ctx context.Context, target string) (*procInfo, error) {
	if p, ok := e.procs.Load(target); ok {
		return p.(*procInfo), nil
	}
	name := quoteName(target)
	var kind string
	err := e.pool.QueryRow(ctx, `SELECT prokind::text FROM pg_catalog.pg_proc WHERE oid = to_regproc($1)`, name).Scan(&kind)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("postgres database %s: %s is not exactly one function or procedure (missing, overloaded, or not visible to the broker's role)", e.cfg.Name, target)
	case err != nil:
		return nil, e.classify(ctx, err, nil)
	case kind != "f" && kind != "p":
		return nil, fmt.Errorf("postgres database %s: %s is neither a plain function nor a procedure (prokind %s)", e.cfg.Name, target, kind)
	}
	p := &procInfo{kind: kind[0], name: name}
	e.procs.Store(target, p)
	return p, nil
}

// Execute implements [broker.Executor].
func (e *Executor) Execute(ctx context.Context, c *broker.Call) (*broker.Result, error) {
	if e.closed.Load() {
		return nil, e.unavailable(errClosed)
	}
	plan, args, merged, err := e.plan(ctx, c)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		var res *broker.Result
		if merged {
			res, err = e.execFunction(ctx, c, plan, args)
		} else {
			res, err = e.execOnce(ctx, c, plan.text, args)
		}
		if err == nil {
			return res, nil
		}
		if !retryable(err) || attempt >= e.cfg.MaxRetries || ctx.Err() != nil {
			return nil, e.classify(ctx, err, c)
		}
		e.cfg.Logger.DebugContext(ctx, "postgres serialization failure, retrying", "database", e.cfg.Name, "route", c.Route.Subject, "attempt", attempt+1)
		select {
		case <-time.After(retryBackoff(attempt + 1)):
		case <-ctx.Done():
			return nil, e.classify(ctx, err, c)
		}
	}
}

// execOnce runs a procedure or statement call in three round trips.
func (e *Executor) execOnce(ctx context.Context, c *broker.Call, text string, args []any) (*broker.Result, error) {
	return onConn(ctx, e, []string{text}, func(conn *pgxpool.Conn) (*broker.Result, error) {
		return e.execOnceOn(ctx, conn, c, text, args)
	})
}

func (e *Executor) execOnceOn(ctx context.Context, conn *pgxpool.Conn, c *broker.Call, text string, args []any) (_ *broker.Result, err error) {
	open := false
	defer func() {
		if err != nil && open {
			rollback(conn)
		}
	}()

	// Round trip 1: BEGIN + session context + txid + idempotency insert.
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(e.sqlInsert, c.IdempotencyKey, c.RequestHash, c.CorrelationID, c.Principal, c.DecisionID)
	br := conn.SendBatch(ctx, b)
	open = true
	_, err = br.Exec()
	var txid int64
	if err == nil {
		err = br.QueryRow().Scan(&txid)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return e.replay(ctx, conn, c)
	}
	if err != nil {
		return nil, err
	}

	// Round trip 2: the call.
	w := resultjson.NewWriter(c.RowLimit())
	affected, output, err := e.run(ctx, conn.Conn(), c, text, args, w)
	if err != nil {
		return nil, err
	}
	res := &broker.Result{TransactionID: strconv.FormatInt(txid, 10), Rows: w.Rows(), RowsAffected: affected}
	if res.JSON, err = w.Finish(output, len(c.Route.Outputs) > 0, nil, affected); err != nil {
		return nil, err
	}

	// Round trip 3: store the result + COMMIT.
	if err := e.storeAndCommit(ctx, conn, c, res); err != nil {
		return nil, err
	}
	open = false
	return res, nil
}

// storeAndCommit writes the result into the idempotency record and commits,
// in one pipelined round trip.
func (e *Executor) storeAndCommit(ctx context.Context, conn *pgxpool.Conn, c *broker.Call, res *broker.Result) error {
	res.CommittedAt = time.Now().UTC().Truncate(time.Microsecond)
	b := &pgx.Batch{}
	b.Queue(e.sqlStore, c.IdempotencyKey, string(res.JSON), res.Rows, res.RowsAffected, res.CommittedAt)
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	tag, err := br.Exec()
	if err == nil && tag.RowsAffected() != 1 {
		err = fmt.Errorf("idempotency record for the call vanished before commit")
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// execFunction runs a function call in one round trip when its result
// columns allow (see oneTripPlan), otherwise in two (execMerged). When the
// function's result type changed since it was described, the one-round-trip
// call failed or executed nothing, and nothing of it was kept: the function
// is described again and the call runs once more.
func (e *Executor) execFunction(ctx context.Context, c *broker.Call, plan *callPlan, args []any) (*broker.Result, error) {
	for again := false; ; again = true {
		one := plan.one.Load()
		if one == nil {
			var err error
			if one, err = e.describeFunction(ctx, plan); err != nil {
				return nil, err
			}
			plan.one.Store(one)
		}
		if !one.usable {
			return e.execMerged(ctx, c, plan.text, args)
		}
		res, err := e.execOneTrip(ctx, c, one, args)
		switch {
		case errors.Is(err, errResultTypeChanged):
			plan.one.CompareAndSwap(one, nil)
			if !again {
				continue
			}
		case shapeChanged(err):
			// Statement 2 no longer plans: columns it names were dropped
			// or renamed. Run again only when the description did change,
			// so that an error of the function's own is not run twice.
			plan.one.CompareAndSwap(one, nil)
			if again {
				break
			}
			fresh, derr := e.describeFunction(ctx, plan)
			if derr != nil {
				break
			}
			plan.one.CompareAndSwap(nil, fresh)
			if fresh.usable != one.usable || fresh.s2 != one.s2 || fresh.resultType != one.resultType {
				continue
			}
		}
		return res, err
	}
}

// shapeChanged reports errors that say a function's result columns are not
// what the one-round-trip form was built for (a change that raced with the
// call's check of the result type).
func shapeChanged(err error) bool {
	if err == nil {
		return false // before pe, which escapes: no allocation on success
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code {
	case "42703", "42804", "0A000": // undefined column, datatype mismatch, cached plan changed result type
		return true
	}
	return false
}

// staleStatement reports errors that say a statement prepared on the
// connection no longer fits the database: its result columns changed
// (0A000, "cached plan must not change result type", after ALTER TABLE
// under SELECT * or RETURNING *, or a function redefined with other
// columns), or the server no longer has it (26000, after DEALLOCATE ALL or
// DISCARD ALL on the connection). lost is true for the latter. Any other
// 0A000 (feature_not_supported, which a function may raise itself after
// effects no rollback undoes, such as nextval) is not stale: running the
// call again would repeat them.
func staleStatement(err error) (stale, lost bool) {
	if err == nil {
		return false, false
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false, false
	}
	switch pe.Code {
	case "26000":
		return true, true
	case "0A000":
		return cachedPlanChanged(pe), false
	}
	return false, false
}

// cachedPlanChanged reports whether a 0A000 is the server's own "cached
// plan must not change result type". The routine that raises it names it
// (the message may be translated); a server that sends no routine is
// matched by the message.
func cachedPlanChanged(pe *pgconn.PgError) bool {
	if pe.Routine != "" {
		return pe.Routine == "RevalidateCachedQuery"
	}
	return pe.Message == "cached plan must not change result type"
}

// onConn runs fn on a pooled connection. fn prepares the statements named
// (by their text) on it, and must leave it with no transaction open when it
// fails. When fn fails because a prepared statement went stale
// (staleStatement), its transaction failed and was rolled back: nothing of
// the call was kept, neither its idempotency record nor its advisory lock.
// So the stale statements are deallocated on that connection (those named,
// or all of them when the server lost one) and fn runs once more there,
// from the start, preparing them again.
func onConn[T any](ctx context.Context, e *Executor, names []string, fn func(conn *pgxpool.Conn) (T, error)) (T, error) {
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	defer conn.Release()
	res, err := fn(conn)
	stale, lost := staleStatement(err)
	if !stale || conn.Conn().PgConn().TxStatus() != 'I' {
		return res, err
	}
	e.cfg.Logger.DebugContext(ctx, "postgres prepared statement stale, preparing again", "database", e.cfg.Name)
	if lost {
		if derr := conn.Conn().DeallocateAll(ctx); derr != nil {
			return res, err
		}
		names = nil
	}
	for _, name := range names {
		if derr := conn.Conn().Deallocate(ctx, name); derr != nil {
			return res, err
		}
	}
	return fn(conn)
}

// execMerged runs a function call: round trip 1 is BEGIN plus one statement
// that inserts the idempotency record (setting the session context and
// reading the txid) and, only when the insert returned a row, calls the
// function; round trip 2 stores the result and commits.
func (e *Executor) execMerged(ctx context.Context, c *broker.Call, text string, args []any) (*broker.Result, error) {
	return onConn(ctx, e, []string{text}, func(conn *pgxpool.Conn) (*broker.Result, error) {
		return e.execMergedOn(ctx, conn, c, text, args)
	})
}

func (e *Executor) execMergedOn(ctx context.Context, conn *pgxpool.Conn, c *broker.Call, text string, args []any) (_ *broker.Result, err error) {
	open := false
	defer func() {
		if err != nil && open {
			rollback(conn)
		}
	}()
	sd, err := conn.Conn().Prepare(ctx, text, text)
	if err != nil {
		return nil, err
	}
	bindTextual(sd, args)
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(text, args...)
	br := conn.SendBatch(ctx, b)
	open = true
	w := resultjson.NewWriter(c.RowLimit())
	var txid int64
	found := false
	_, err = br.Exec()
	if err == nil {
		txid, found, err = mergedRows(br, w)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if !found {
		return e.replay(ctx, conn, c)
	}
	res := &broker.Result{TransactionID: strconv.FormatInt(txid, 10), Rows: w.Rows(), RowsAffected: w.Rows()}
	if res.JSON, err = w.Finish(nil, false, nil, res.RowsAffected); err != nil {
		return nil, err
	}
	if err := e.storeAndCommit(ctx, conn, c, res); err != nil {
		return nil, err
	}
	open = false
	return res, nil
}

// mergedRows reads the rows of a merged call: column 0 is the txid, column
// 1 marks a row the function returned (NULL: the function returned none),
// the rest are the function's columns. No rows: the key already existed.
func mergedRows(br pgx.BatchResults, w *resultjson.Writer) (txid int64, found bool, err error) {
	rows, err := br.Query()
	if err != nil {
		return 0, false, err
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	if len(fds) < 2 {
		return 0, false, fmt.Errorf("merged call returned %d columns", len(fds))
	}
	names := make([]string, len(fds)-2)
	for i, fd := range fds[2:] {
		names[i] = fd.Name
	}
	w.BeginSet(names)
	for rows.Next() {
		vals, err := rowValues(rows, fds)
		if err != nil {
			return 0, false, err
		}
		if !found {
			txid, _ = vals[0].(int64)
			found = true
		}
		if vals[1] == nil {
			continue // the function returned no rows
		}
		if err := w.Row(vals[2:]); err != nil {
			return 0, false, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, false, err
	}
	w.EndSet()
	return txid, found, nil
}

// bindTextual rewrites integers and booleans bound to text-typed
// parameters as their text (pgx cannot encode them into text).
func bindTextual(sd *pgconn.StatementDescription, args []any) {
	for i, oid := range sd.ParamOIDs {
		if i < len(args) && textual(oid) {
			switch v := args[i].(type) {
			case int64:
				args[i] = strconv.FormatInt(v, 10)
			case bool:
				args[i] = strconv.FormatBool(v)
			}
		}
	}
}

// replay reads the committed record of a key that already exists, ends the
// transaction and returns the stored result or ErrConflict.
func (e *Executor) replay(ctx context.Context, conn *pgxpool.Conn, c *broker.Call) (*broker.Result, error) {
	b := &pgx.Batch{}
	b.Queue(e.sqlSelect, c.IdempotencyKey)
	b.Queue("ROLLBACK")
	br := conn.SendBatch(ctx, b)
	res, err := scanRecord(br.QueryRow())
	if _, rerr := br.Exec(); err == nil {
		err = rerr
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return replayed(res, err, c)
}

// replayed returns the stored result of a key the call found taken, read
// as scanRecord returned it: ErrConflict when it was stored for another
// request, ErrUnavailable when no committed record was found.
func replayed(res *broker.Result, err error, c *broker.Call) (*broker.Result, error) {
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// The key's record is not committed yet it conflicted: only possible
		// if another transaction inserted it and is still deciding; the
		// caller may retry.
		return nil, fmt.Errorf("%w: idempotency key in flight", broker.ErrUnavailable)
	case err != nil:
		return nil, err
	case res.RequestHash != c.RequestHash:
		return nil, broker.ErrConflict
	}
	return res, nil
}

// scanRecord reads a committed record (sqlSelect) as a replay returns it,
// with its request hash and decision id.
func scanRecord(row pgx.Row) (*broker.Result, error) {
	var (
		result string
		txid   int64
		res    broker.Result
	)
	if err := row.Scan(&res.RequestHash, &result, &txid, &res.Rows, &res.RowsAffected, &res.CommittedAt, &res.DecisionID); err != nil {
		return nil, err
	}
	var err error
	if res.JSON, err = storedResult(result); err != nil {
		return nil, err
	}
	res.TransactionID = strconv.FormatInt(txid, 10)
	res.CommittedAt = res.CommittedAt.UTC()
	res.Replayed = true
	return &res, nil
}

// rollback ends a failed transaction on a connection that may be mid-batch
// or cancelled; if that fails, the pool discards the connection on release
// (its transaction status is not idle), which ends the transaction too.
func rollback(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pc := conn.Conn().PgConn()
	if pc.IsClosed() {
		return
	}
	if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
		_ = conn.Conn().Close(ctx)
	}
}

// run sends the call and writes its rows; it returns rows affected and the
// OUTPUT values of a procedure.
func (e *Executor) run(ctx context.Context, conn *pgx.Conn, c *broker.Call, text string, args []any, w *resultjson.Writer) (int64, []resultjson.Output, error) {
	// Prepared once per connection under its own text (no round trip
	// after the first): the description tells which parameters the server
	// typed as text, where integers and booleans are bound as their text.
	sd, err := conn.Prepare(ctx, text, text)
	if err != nil {
		return 0, nil, err
	}
	bindTextual(sd, args)
	rows, err := conn.Query(ctx, text, args...)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	fds := rows.FieldDescriptions()
	isCall := c.Route.Kind == route.Procedure && strings.HasPrefix(text, "CALL ")
	var output []resultjson.Output
	if isCall && len(c.Route.Outputs) > 0 {
		// A CALL returns at most one row: its OUT/INOUT parameters.
		output = make([]resultjson.Output, len(c.Route.Outputs))
		for i, o := range c.Route.Outputs {
			output[i].Name = o.Name
		}
		for rows.Next() {
			vals, err := rowValues(rows, fds)
			if err != nil {
				return 0, nil, err
			}
			for i, fd := range fds {
				for j := range output {
					if output[j].Name == fd.Name {
						output[j].Value = vals[i]
					}
				}
			}
		}
		if err := rows.Err(); err != nil {
			return 0, nil, err
		}
		return rows.CommandTag().RowsAffected(), output, nil
	}
	if len(fds) > 0 {
		names := make([]string, len(fds))
		for i, fd := range fds {
			names[i] = fd.Name
		}
		w.BeginSet(names)
	}
	for rows.Next() {
		vals, err := rowValues(rows, fds)
		if err != nil {
			return 0, nil, err
		}
		if err := w.Row(vals); err != nil {
			return 0, nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	if len(fds) > 0 {
		w.EndSet()
	}
	affected := rows.CommandTag().RowsAffected()
	if isCall {
		affected = 0
	}
	return affected, output, nil
}

// textual reports the text-like parameter types a Go integer or boolean
// cannot be encoded into directly.
func textual(oid uint32) bool {
	switch oid {
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.UnknownOID:
		return true
	}
	return false
}

// plan builds the SQL text and arguments of a call. merged is true for a
// function: its text is the idempotency insert and the call in one
// statement, and args start with the idempotency values ($1-$5).
func (e *Executor) plan(ctx context.Context, c *broker.Call) (plan *callPlan, args []any, merged bool, err error) {
	r := c.Route
	if r.Kind == route.StatementKind {
		text, names := e.renderStatement(r)
		args := make([]any, len(names))
		for i, n := range names {
			v, err := bindParam(c, n)
			if err != nil {
				return nil, nil, false, err
			}
			args[i] = v
		}
		return &callPlan{text: text}, args, false, nil
	}
	p, err := e.proc(ctx, r.Target)
	if err != nil {
		return nil, nil, false, err
	}
	merged = p.kind == 'f'
	var mask uint64
	args = make([]any, 0, len(r.Params)+5)
	first := 1
	if merged {
		args = append(args, c.IdempotencyKey, c.RequestHash, c.CorrelationID, c.Principal, c.DecisionID)
		first = 6
	}
	for i, prm := range r.Params {
		v, ok := c.Params[prm.Name]
		if !ok {
			continue // absent optional parameter: the routine's default applies
		}
		if i < 64 {
			mask |= 1 << i
		}
		bv, err := bindParam(c, prm.Name)
		if err != nil {
			return nil, nil, false, err
		}
		_ = v
		args = append(args, bv)
	}
	key := planKey{r: r, mask: mask}
	if len(r.Params) <= 64 {
		if t, ok := e.plans.Load(key); ok {
			return t.(*callPlan), args, merged, nil
		}
	}
	var sb, call strings.Builder
	if p.kind == 'p' {
		sb.WriteString("CALL ")
	} else {
		// The call runs only for the row the insert returned: the lateral
		// reference makes the insert the outer side of the join, OFFSET 0
		// keeps the planner from flattening the subquery, so a key that
		// already exists (no row) executes nothing.
		sb.WriteString("WITH sqlgate_ins AS (")
		sb.WriteString(e.sqlInsert)
		sb.WriteString(") SELECT sqlgate_ins.transaction_id AS sqlgate_txid, sqlgate_call.* FROM sqlgate_ins ")
		sb.WriteString("LEFT JOIN LATERAL (SELECT true AS sqlgate_present, * FROM ")
	}
	// call is the routine's name and arguments, numbered from first.
	present := func(name string) bool { _, ok := c.Params[name]; return ok }
	writeCall(&call, p, r, present, first)
	sb.WriteString(call.String())
	if merged {
		sb.WriteString(" WHERE sqlgate_ins.transaction_id IS NOT NULL OFFSET 0) sqlgate_call ON true")
	}
	plan = &callPlan{text: sb.String()}
	if merged {
		var d strings.Builder
		writeCall(&d, p, r, present, 1)
		plan.describe = "SELECT * FROM " + d.String()
		plan.oneTrip = call.String()
		plan.proc = p.name
		plan.nargs = len(args) - 5
	}
	if len(r.Params) <= 64 {
		e.plans.Store(key, plan)
	}
	return plan, args, merged, nil
}

// writeCall writes a routine's quoted name and named arguments (the present
// parameters as $first, $first+1, ...; a procedure's outputs as typed NULLs).
func writeCall(sb *strings.Builder, p *procInfo, r *route.Route, present func(string) bool, first int) {
	sb.WriteString(p.name)
	sb.WriteByte('(')
	n := first - 1
	for _, prm := range r.Params {
		if !present(prm.Name) {
			continue
		}
		if n >= first {
			sb.WriteString(", ")
		}
		n++
		sb.WriteString(pgx.Identifier{prm.Name}.Sanitize())
		sb.WriteString(" => $")
		sb.WriteString(strconv.Itoa(n))
		sb.WriteString(pgCast(prm.SQLType))
	}
	if p.kind == 'p' {
		for _, o := range r.Outputs {
			if n >= first {
				sb.WriteString(", ")
			}
			n++
			sb.WriteString(pgx.Identifier{o.Name}.Sanitize())
			sb.WriteString(" => NULL")
			sb.WriteString(pgCast(o.SQLType))
		}
	}
	sb.WriteByte(')')
}

// renderStatement renders a statement with $n placeholders (a name used
// twice reuses its number; a declared SQL type becomes a cast).
func (e *Executor) renderStatement(r *route.Route) (string, []string) {
	var names []string
	idx := map[string]int{}
	text := r.Statement.Render(func(_ int, name string) string {
		n, ok := idx[name]
		if !ok {
			names = append(names, name)
			n = len(names)
			idx[name] = n
		}
		ph := "$" + strconv.Itoa(n)
		if p, ok := r.Param(name); ok {
			ph += pgCast(p.SQLType)
		}
		return ph
	})
	return text, names
}

// pgCast returns the cast for an explicit catalog SQL type ("" for none),
// mapping SQL Server spellings to PostgreSQL types. The catalog validated
// the type against a fixed grammar, so the text is safe to emit.
func pgCast(sqlType string) string {
	if sqlType == "" {
		return ""
	}
	t := strings.ToLower(strings.ReplaceAll(sqlType, " ", ""))
	base, arg, _ := strings.Cut(t, "(")
	arg = strings.TrimSuffix(arg, ")")
	var out string
	switch base {
	case "int":
		out = "integer"
	case "bigint":
		out = "bigint"
	case "smallint", "tinyint":
		out = "smallint"
	case "bit", "boolean":
		out = "boolean"
	case "float", "doubleprecision":
		out = "double precision"
	case "real":
		out = "real"
	case "text":
		out = "text"
	case "date":
		out = "date"
	case "time":
		out = "time"
	case "datetime2", "timestamp":
		out = "timestamp"
	case "datetimeoffset", "timestamptz":
		out = "timestamptz"
	case "uniqueidentifier", "uuid":
		out = "uuid"
	case "decimal", "numeric":
		out = "numeric(" + arg + ")"
	case "nvarchar", "varchar":
		if arg == "max" {
			out = "text"
		} else {
			out = "varchar(" + arg + ")"
		}
	case "nchar", "char":
		if arg == "max" {
			out = "text"
		} else {
			out = "char(" + arg + ")"
		}
	case "varbinary", "binary":
		out = "bytea"
	default:
		return ""
	}
	return "::" + out
}

// bindParam returns the value bound for a placeholder or named argument: a
// session value from the call, or the typed parameter.
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
	switch x := v.(type) {
	case json.Number:
		return string(x), nil // exact: the server parses it into the parameter's type
	case string:
		if p, ok := c.Route.Param(name); ok {
			if t := strings.ToLower(p.SQLType); strings.HasPrefix(t, "varbinary") || strings.HasPrefix(t, "binary") {
				b, err := base64.StdEncoding.DecodeString(x)
				if err != nil {
					return nil, &route.InvalidError{Field: name, Message: "must be base64"}
				}
				return b, nil
			}
			if n, ok := declaredChars(p.SQLType); ok && utf8.RuneCountInString(x) > n {
				// The declared type is a cast, and a cast to varchar(n)
				// cuts a longer value without an error.
				return nil, &route.InvalidError{Field: name, Message: fmt.Sprintf("longer than the declared %s (%d characters)", p.SQLType, n)}
			}
		}
		return x, nil
	default:
		return v, nil
	}
}

// declaredChars returns n of a declared character type with a length
// (varchar(n), nvarchar(n), char(n), nchar(n)); ok is false for any other.
func declaredChars(sqlType string) (n int, ok bool) {
	t := strings.ToLower(strings.ReplaceAll(sqlType, " ", ""))
	base, arg, found := strings.Cut(t, "(")
	if !found {
		return 0, false
	}
	switch base {
	case "varchar", "nvarchar", "char", "nchar":
	default:
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(arg, ")"))
	return n, err == nil
}

// quoteName quotes a dotted name from the catalog or configuration.
func quoteName(name string) string {
	return pgx.Identifier(strings.Split(name, ".")).Sanitize()
}

// Lookup implements [broker.Executor]. It waits for a transaction still
// running under the key, which a call whose connection was lost may leave
// behind on the server: it takes the key's advisory lock, which every form
// of a call holds from its first statement until it ends, and reads the
// record after it is granted, under READ COMMITTED, so the read sees what
// that transaction committed. One round trip; ctx bounds the wait.
func (e *Executor) Lookup(ctx context.Context, key string) (*broker.Result, bool, error) {
	if e.closed.Load() {
		return nil, false, e.unavailable(errClosed)
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	b.Queue("SELECT 1 FROM "+keyLockSQL, key)
	b.Queue(e.sqlSelect, key)
	b.Queue("COMMIT")
	br := e.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	var res *broker.Result
	if err == nil {
		res, err = scanRecord(br.QueryRow())
	}
	found := err == nil
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, e.classify(ctx, err, nil)
	}
	return res, found, nil
}

// Prune deletes idempotency records committed before t and returns how many,
// in statements of at most [broker.PruneBatch] records each (through the
// committed_at index), so no single transaction grows with the backlog.
func (e *Executor) Prune(ctx context.Context, before time.Time) (int64, error) {
	if e.closed.Load() {
		return 0, e.unavailable(errClosed)
	}
	n, err := broker.PruneInBatches(ctx, e.pruneBatch, func(ctx context.Context) (int64, error) {
		tag, err := e.pool.Exec(ctx, e.sqlPrune, before, e.pruneBatch)
		return tag.RowsAffected(), err
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
