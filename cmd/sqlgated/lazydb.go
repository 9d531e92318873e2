package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/internal/ctxsleep"
)

// A target database that cannot be reached when sqlgated starts does not
// stop the start: its calls would answer unavailable anyway once it is
// running, and with several databases a restart during one database's
// outage would otherwise take down every route, the credential API and the
// auth callout. Such a database is pending: a lazyDB stands in for its
// executor and answers [broker.ErrUnavailable] while a background loop
// opens it, with backoff. Once it opens, the calls a crash left without an
// outcome on it are recovered, its routes are checked, and only then does
// one atomic store let calls through. Configuration errors (a connection
// string that cannot be read or parsed, TLS refused, a missing idempotency
// table once connected, a permission denied) still fail the start.

// openBackoffFirst and openBackoffLast bound the wait between two attempts to
// open a pending database; it doubles after each failed attempt.
const (
	openBackoffFirst = time.Second
	openBackoffLast  = 30 * time.Second
)

// openAttemptTimeout bounds one attempt to open a target database, at start
// and in the background: a server that drops packets must not hold the
// start (or the retry loop) for the operating system's connect timeout.
const openAttemptTimeout = 30 * time.Second

// openedDB is a target database's executor once open, with the optional
// interfaces the daemon uses found once.
type openedDB struct {
	ex     broker.Executor
	batch  broker.BatchExecutor // nil: runs no batches
	pruner broker.Pruner        // nil: keeps its records
	iss    broker.SQLLoginIssuer
}

func newOpenedDB(ex broker.Executor, iss broker.SQLLoginIssuer) *openedDB {
	o := &openedDB{ex: ex, iss: iss}
	o.batch, _ = ex.(broker.BatchExecutor)
	o.pruner, _ = ex.(broker.Pruner)
	return o
}

// close closes the executor (the adapters' Close differ in their results).
func (o *openedDB) close() {
	switch c := o.ex.(type) {
	case interface{ Close() error }:
		_ = c.Close()
	case interface{ Close() }:
		c.Close()
	}
}

// lazyDB is the executor of a pending database (see above). It implements
// [broker.Executor] and [broker.Pruner]; lazyBatchDB adds
// [broker.BatchExecutor] for the dialects that batch. It has no Check:
// the start's route checks skip it, and its own routes are checked when it
// opens.
type lazyDB struct {
	name string
	info broker.DatabaseInfo
	// open opens the database (executor and login issuer) in one attempt.
	open func(context.Context) (*openedDB, error)
	// cur is nil while pending; set once, after recovery. The request path
	// reads nothing else.
	cur atomic.Pointer[openedDB]
	// refused is what calls get while pending.
	refused error
	// startErr is why the database could not be opened at start.
	startErr error
	// routeBatcher, when the dialect's executor is a [broker.RouteBatcher],
	// tells without the database which routes it can never batch.
	routeBatcher broker.RouteBatcher

	mu     sync.Mutex
	closed bool
	stop   context.CancelFunc // ends run
	// notCreated holds the logins whose creation was refused while
	// pending: nothing of them reached the database, so their undo has
	// nothing to remove (see lazyIssuer).
	notCreated map[string]bool
}

// lazyExecutor finds the lazyDB behind an executor.
type lazyExecutor interface{ lazy() *lazyDB }

func (l *lazyDB) lazy() *lazyDB { return l }

// lazyOf returns the lazyDB behind ex, nil for any other executor.
func lazyOf(ex broker.Executor) *lazyDB {
	if le, ok := ex.(lazyExecutor); ok {
		return le.lazy()
	}
	return nil
}

// lazyBatchDB is a lazyDB of a dialect whose executor runs batches.
type lazyBatchDB struct{ *lazyDB }

// BatchesRoute implements [broker.RouteBatcher] with the dialect's rule,
// which needs no database: a route its executor can never batch gets no
// batcher at start, as when the database opened at once.
func (l lazyBatchDB) BatchesRoute(r *route.Route) bool {
	return l.routeBatcher == nil || l.routeBatcher.BatchesRoute(r)
}

func newLazyDB(name string, info broker.DatabaseInfo, open func(context.Context) (*openedDB, error), startErr error) *lazyDB {
	return &lazyDB{
		name: name, info: info, open: open, startErr: startErr,
		refused: fmt.Errorf("%w: %s database %s has not been reachable since sqlgated started", broker.ErrUnavailable, info.Dialect, name),
	}
}

// executor returns l as the broker should see it: with ExecuteBatch when
// batches is set.
func (l *lazyDB) executor(batches bool) broker.Executor {
	if batches {
		return lazyBatchDB{l}
	}
	return l
}

// Execute implements [broker.Executor].
func (l *lazyDB) Execute(ctx context.Context, c *broker.Call) (*broker.Result, error) {
	if o := l.cur.Load(); o != nil {
		return o.ex.Execute(ctx, c)
	}
	return nil, l.refused
}

// Lookup implements [broker.Executor].
func (l *lazyDB) Lookup(ctx context.Context, key string) (*broker.Result, bool, error) {
	if o := l.cur.Load(); o != nil {
		return o.ex.Lookup(ctx, key)
	}
	return nil, false, l.refused
}

// Describe implements [broker.Executor]: what the adapter describes, read
// from the configuration at start (audit records and crash recovery match
// on it before the database opens).
func (l *lazyDB) Describe() broker.DatabaseInfo { return l.info }

// Prune implements [broker.Pruner]. While pending nothing is pruned, and
// the skipped prune is an error.
func (l *lazyDB) Prune(ctx context.Context, before time.Time) (int64, error) {
	o := l.cur.Load()
	switch {
	case o == nil:
		return 0, l.refused
	case o.pruner == nil:
		return 0, nil
	}
	return o.pruner.Prune(ctx, before)
}

// ExecuteBatch implements [broker.BatchExecutor].
func (l lazyBatchDB) ExecuteBatch(ctx context.Context, calls []*broker.Call) ([]broker.BatchResult, error) {
	o := l.cur.Load()
	switch {
	case o == nil:
		return nil, l.refused
	case o.batch == nil:
		return nil, broker.ErrBatchUnsupported
	}
	return o.batch.ExecuteBatch(ctx, calls)
}

// Close closes the database if it opened; an attempt still running closes
// what it opens.
func (l *lazyDB) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.stop != nil {
		l.stop()
	}
	if o := l.cur.Load(); o != nil {
		o.close()
	}
	return nil
}

// pending reports whether the database has not opened (yet).
func (l *lazyDB) pending() bool { return l.cur.Load() == nil }

// lazyEnv is what opening a pending database needs from the running
// instance.
type lazyEnv struct {
	audit     *audit.Log
	executors map[string]broker.Executor
	catalog   *route.Catalog
	// boundary is the audit log's size when the instance started taking
	// calls: the intents below it are from earlier runs, the ones at or
	// after it are this run's (answered by the calls themselves).
	boundary int64
	log      *slog.Logger
	// wait waits d or until ctx ends (tests drive it).
	wait func(ctx context.Context, d time.Duration) error
}

// run opens l, retrying with backoff until it opens, ctx ends or l is
// closed. Each failure is logged when it differs from the one before (an
// unreachable server as a warning, anything else as an error), then only
// at debug.
func (l *lazyDB) run(ctx context.Context, env lazyEnv) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.stop = cancel
	l.mu.Unlock()
	last := ""
	if l.startErr != nil {
		last = l.startErr.Error()
	}
	delay := openBackoffFirst
	for {
		if err := env.wait(ctx, delay); err != nil {
			return
		}
		err := l.attempt(ctx, env)
		switch {
		case err == nil, ctx.Err() != nil:
			return
		case err.Error() == last:
			env.log.DebugContext(ctx, "database still cannot be opened", "database", l.name, "err", err)
		case errors.Is(err, broker.ErrUnavailable):
			env.log.WarnContext(ctx, "database still unreachable: its routes and SQL logins answer unavailable", "database", l.name, "err", err)
		default:
			env.log.ErrorContext(ctx, "database cannot be opened: its routes and SQL logins answer unavailable until this is fixed", "database", l.name, "err", err)
		}
		last = err.Error()
		delay = min(2*delay, openBackoffLast)
	}
}

// attempt opens l once. It recovers the outcomes earlier runs left missing
// on the database before any call may run there (fail closed: a recovery
// that fails leaves the database pending and is tried again with the next
// attempt), then checks its routes (logged, as at start) and lets calls
// through.
func (l *lazyDB) attempt(ctx context.Context, env lazyEnv) error {
	o, err := l.open(ctx)
	if err != nil {
		return err
	}
	if got := o.ex.Describe(); got != l.info {
		o.close()
		// Intents recorded under one server would be looked up on another.
		return fmt.Errorf("the connection string now names %s database %q on %q, not %q on %q as at start: restart sqlgated",
			got.Dialect, got.Database, got.Server, l.info.Database, l.info.Server)
	}
	if err := recoverIntentsWhere(ctx, env.audit, env.executors, env.log, func(in *audit.Record, ex broker.Executor) (broker.Executor, bool) {
		return o.ex, lazyOf(ex) == l && in.Index < env.boundary
	}); err != nil {
		o.close()
		return fmt.Errorf("recover missing audit outcomes: %w", err)
	}
	checkRoutes(ctx, env.catalog, map[string]broker.Executor{l.name: o.ex}, env.log)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		o.close()
		return errors.New("closed")
	}
	l.cur.Store(o)
	env.log.InfoContext(ctx, "database open: its routes and SQL logins are served", "database", l.name)
	return nil
}

// deferPending is the start's recovery choice: an intent on a pending
// database is left for the database's own recovery once it opens.
func deferPending(_ *audit.Record, ex broker.Executor) (broker.Executor, bool) {
	if l := lazyOf(ex); l != nil && l.pending() {
		return nil, false
	}
	return ex, true
}

// openPending starts opening the pending databases in the background and
// exports sqlgate_database_open. Call it after the start's recovery and
// before the instance takes calls.
func (a *app) openPending(ctx context.Context) {
	a.metrics.MustRegister(databaseCollector{a.cfg.Executors})
	env := lazyEnv{
		audit: a.audit, executors: a.cfg.Executors, catalog: a.cfg.Catalog,
		boundary: a.audit.Size(), log: a.log.With("component", "databases"), wait: ctxsleep.Sleep,
	}
	for name, ex := range a.cfg.Executors {
		l := lazyOf(ex)
		if l == nil {
			continue
		}
		a.log.WarnContext(ctx, "database unreachable at start: its routes and SQL logins answer unavailable until it opens (retried in the background)",
			"database", name, "err", l.startErr)
		a.group.Go(func() error {
			l.run(a.groupCtx, env)
			return nil
		})
	}
}

// databaseCollector exports whether each target database is open.
type databaseCollector struct{ executors map[string]broker.Executor }

var databaseOpenDesc = prometheus.NewDesc("sqlgate_database_open",
	"1 once the target database opened (at start, or later when it was unreachable at start), 0 while sqlgated still tries to open it "+
		"(its calls and SQL logins answer unavailable). An outage after it opened does not change it: see sqlgate_calls_total{code=\"unavailable\"}.",
	[]string{"database"}, nil)

func (databaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- databaseOpenDesc }

func (c databaseCollector) Collect(ch chan<- prometheus.Metric) {
	for name, ex := range c.executors {
		v := 1.0
		if l := lazyOf(ex); l != nil && l.pending() {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(databaseOpenDesc, prometheus.GaugeValue, v, name)
	}
}

// lazyIssuer is the SQL login issuer of a pending database: it answers
// [broker.ErrUnavailable] until the database opens, then the adapter's
// issuer does.
type lazyIssuer struct{ db *lazyDB }

// CreateLogin implements [broker.SQLLoginIssuer]. A refused creation sent
// nothing to the database: the lease's undo (RevokeLogin of the same name)
// then has nothing to remove.
func (i lazyIssuer) CreateLogin(ctx context.Context, spec broker.LoginSpec) error {
	if o := i.db.cur.Load(); o != nil {
		return o.iss.CreateLogin(ctx, spec)
	}
	i.db.mu.Lock()
	if i.db.notCreated == nil {
		i.db.notCreated = map[string]bool{}
	}
	i.db.notCreated[spec.Username] = true
	i.db.mu.Unlock()
	return i.db.refused
}

// RenewLogin implements [broker.SQLLoginIssuer].
func (i lazyIssuer) RenewLogin(ctx context.Context, spec broker.LoginSpec) error {
	if o := i.db.cur.Load(); o != nil {
		return o.iss.RenewLogin(ctx, spec)
	}
	return i.db.refused
}

// RevokeLogin implements [broker.SQLLoginIssuer].
func (i lazyIssuer) RevokeLogin(ctx context.Context, spec broker.LoginSpec) error {
	i.db.mu.Lock()
	never := i.db.notCreated[spec.Username]
	delete(i.db.notCreated, spec.Username)
	i.db.mu.Unlock()
	if never {
		return nil
	}
	if o := i.db.cur.Load(); o != nil {
		return o.iss.RevokeLogin(ctx, spec)
	}
	return i.db.refused
}

// ClientDSN implements [broker.SQLLoginIssuer]; it is asked only after a
// login was created, so once the database is open.
func (i lazyIssuer) ClientDSN(username string) string {
	if o := i.db.cur.Load(); o != nil {
		return o.iss.ClientDSN(username)
	}
	return ""
}
