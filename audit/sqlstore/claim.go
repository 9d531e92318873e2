package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sqlgate/sqlgate/internal/filelock"
)

// ErrOriginInUse is returned by [Store.Claim] when another process (or
// another claim of this one) writes the origin. A claim that lost its
// session to another holder reports it too ([Claim.Err]).
var ErrOriginInUse = errors.New("audit origin is in use by another process")

// ErrClaimLost is wrapped by [Claim.Err], and by the store's writes of the
// claimed origin, while this process does not hold a claim it took: its
// session ended and the claim is not taken again (yet).
var ErrClaimLost = errors.New("audit origin claim lost")

// DefaultClaimInterval is how often a claim checks that it still holds the
// origin when [ClaimOptions.Interval] is 0.
const DefaultClaimInterval = 5 * time.Second

// The statements of a claim. PostgreSQL and SQL Server hold a session lock
// on a connection kept for the claim's life: the server frees it when the
// session ends, so a process that dies frees its origins (and so does a
// session the server ends for idleness, a restart, a failover or an
// administrator: [Claim] watches for that). The lock's name covers the
// schema the store's tables live in, so logs in different schemas of one
// database do not exclude each other. SQLite locks a file beside the
// database (internal/filelock).
const (
	claimPostgres   = "SELECT pg_try_advisory_lock(hashtextextended('sqlgate-audit:' || current_schema() || ':' || $1, 0))"
	releasePostgres = "SELECT pg_advisory_unlock(hashtextextended('sqlgate-audit:' || current_schema() || ':' || $1, 0))"
	// holderPostgres names the session holding an origin's claim (for the
	// error that reports it): the advisory lock's pid and, when this role
	// may see them, its client address and application name.
	holderPostgres = `SELECT l.pid, COALESCE(host(a.client_addr), ''), COALESCE(a.application_name, '')
FROM (SELECT hashtextextended('sqlgate-audit:' || current_schema() || ':' || $1, 0) AS k) h
JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
 AND l.classid = ((h.k >> 32) & 4294967295)::oid AND l.objid = (h.k & 4294967295)::oid
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
LIMIT 1`
	// sp_getapplock answers 0 or 1 when granted, -1 when another session
	// holds the lock (no wait: @LockTimeout = 0), less on an error.
	claimSQLServer = `DECLARE @res nvarchar(255) = N'sqlgate-audit:' + CONVERT(nvarchar(64), HASHBYTES('SHA2_256', CONCAT(SCHEMA_NAME(), N':', @p1)), 2);
DECLARE @r int;
EXEC @r = sys.sp_getapplock @Resource = @res, @LockMode = N'Exclusive', @LockOwner = N'Session', @LockTimeout = 0;
SELECT @r`
	releaseSQLServer = `DECLARE @res nvarchar(255) = N'sqlgate-audit:' + CONVERT(nvarchar(64), HASHBYTES('SHA2_256', CONCAT(SCHEMA_NAME(), N':', @p1)), 2);
EXEC sys.sp_releaseapplock @Resource = @res, @LockOwner = N'Session'`
	claimSQLite = "SELECT file FROM pragma_database_list WHERE name = 'main'"
)

// ClaimOptions tune [Store.Claim].
type ClaimOptions struct {
	// Logger receives the loss of the claim, its re-taking, and another
	// holder taking it; nil discards.
	Logger *slog.Logger
	// Interval is how often the claim checks its session (a ping on the
	// claim's connection) or its lock file; 0 means
	// [DefaultClaimInterval], a negative one never (then only
	// [Claim.Check] does).
	Interval time.Duration
}

// Claim is this process's claim of an origin ([Store.Claim]).
//
// A session lock lasts as long as its database session, and the database
// may end a session while the process runs: an idle_session_timeout (which
// managed PostgreSQL services often set), a restart, a failover,
// pg_terminate_backend or KILL. A claim therefore checks its session every
// [ClaimOptions.Interval]. When the session has ended it takes the lock
// again on a new one at once. Until it holds the lock again, and for good
// while another session holds it (a second process with the same origin
// started meanwhile), [Claim.Err] reports it and the store refuses to load
// and write the origin, so the log refuses appends instead of racing the
// other writer. A SQLite claim's file lock lasts as long as the process;
// the claim checks that its lock file is still the one at the path (a
// deleted lock file would let a second process lock a new one).
type Claim struct {
	s       *Store
	origin  string
	log     *slog.Logger
	session *sessionClaim // nil for a SQLite file claim
	path    string        // the lock file of a SQLite claim; "" in memory

	// err is what Err returns: nil while the claim is held.
	err atomic.Pointer[error]

	mu       sync.Mutex // serializes checks and the release; guards below
	conn     *sql.Conn  // the session holding the lock; nil while lost
	unlock   func() error
	lockFile os.FileInfo // the locked file, to notice it replaced
	released bool

	stop     chan struct{} // closed by Release: the checks end
	stopOnce sync.Once
	done     chan struct{} // closed when they have
}

// sessionClaim is how a dialect takes, releases and names the holder of a
// session lock.
type sessionClaim struct {
	claim, release, holder string
	granted                func(*sql.Row) (bool, error)
}

var (
	postgresClaim = &sessionClaim{
		claim: claimPostgres, release: releasePostgres, holder: holderPostgres,
		granted: func(row *sql.Row) (bool, error) {
			var ok bool
			err := row.Scan(&ok)
			return ok, err
		},
	}
	sqlServerClaim = &sessionClaim{
		claim: claimSQLServer, release: releaseSQLServer,
		granted: func(row *sql.Row) (bool, error) {
			var r int
			if err := row.Scan(&r); err != nil {
				return false, err
			}
			if r < -1 {
				return false, fmt.Errorf("sp_getapplock returned %d", r)
			}
			return r >= 0, nil
		},
	}
)

// lostError is a claim's error while it does not hold the origin.
type lostError struct {
	msg   string
	inUse bool // another session holds it
}

func (e *lostError) Error() string { return e.msg }

func (e *lostError) Is(target error) bool {
	return target == ErrClaimLost || (e.inUse && target == ErrOriginInUse)
}

// Claim makes this process the only writer of origin until the claim is
// released or the process ends. A log keeps its tree's frontier in memory,
// so two processes appending to one origin would each write indexes the
// other already wrote; the first to lose would refuse every call from then
// on. Claim turns that into one clear error at start: [ErrOriginInUse].
// While the claim lasts, it keeps holding the origin (see [Claim]); the
// caller should treat [Claim.Err] as the log being unable to write (not
// ready).
func (s *Store) Claim(ctx context.Context, origin string, opts ClaimOptions) (*Claim, error) {
	c := &Claim{s: s, origin: origin, log: opts.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	switch s.d.name {
	case SQLite:
		var file string
		if err := s.db.QueryRowContext(ctx, claimSQLite).Scan(&file); err != nil {
			return nil, fmt.Errorf("sqlstore: claim origin: %w", err)
		}
		if file == "" { // an in-memory database: no other process can open it
			c.released = true // nothing to hold, check or release
			return c, nil
		}
		sum := sha256.Sum256([]byte(origin))
		c.path = file + "-origin-" + hex.EncodeToString(sum[:8]) + ".lock"
	case Postgres:
		c.session = postgresClaim
	default:
		c.session = sqlServerClaim
	}
	if _, loaded := s.claims.LoadOrStore(origin, c); loaded {
		return nil, ErrOriginInUse // this store holds it already
	}
	notYet := error(&lostError{msg: fmt.Sprintf("audit origin %q is being claimed", origin)})
	c.err.Store(&notYet)
	granted, err := c.take(ctx)
	if err != nil || !granted {
		s.claims.CompareAndDelete(origin, c)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: claim origin: %w", err)
		}
		return nil, ErrOriginInUse
	}
	c.err.Store(nil)
	interval := opts.Interval
	if interval == 0 {
		interval = DefaultClaimInterval
	}
	if interval > 0 {
		c.stop, c.done = make(chan struct{}), make(chan struct{})
		// The checks last as long as the claim, not as ctx.
		go c.watch(context.WithoutCancel(ctx), interval)
	}
	return c, nil
}

// Err returns nil while the claim holds its origin, else why not (wrapping
// [ErrClaimLost], and [ErrOriginInUse] when another session holds it).
func (c *Claim) Err() error {
	if err := c.err.Load(); err != nil {
		return *err
	}
	return nil
}

// watch checks the claim every interval until the claim is released. A
// check under way when Release is called ends first (it is not cut short:
// a ping cut short would read as the session lost).
func (c *Claim) watch(base context.Context, interval time.Duration) {
	defer close(c.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(base, max(interval, DefaultClaimInterval))
		_ = c.Check(ctx) // Err and the log report it
		cancel()
	}
}

// Check checks once that the claim still holds its origin (its session
// answers, its lock file is still the one at the path) and takes it again
// at once when it does not. It returns [Claim.Err]. The claim calls it
// every [ClaimOptions.Interval]; callers need it only with a negative one.
func (c *Claim) Check(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released {
		return c.Err()
	}
	prev := c.Err()
	if prev == nil {
		cause := c.holds(ctx)
		if cause == nil {
			return nil
		}
		// Refuse writes from now until the lock is held again: another
		// process may take it in between.
		lost := error(&lostError{msg: fmt.Sprintf("audit origin claim lost: the claim of %q no longer holds (%v); taking it again", c.origin, cause)})
		c.err.Store(&lost)
		c.log.WarnContext(ctx, "audit origin claim lost; taking it again (audit appends are refused until then)", "origin", c.origin, "cause", cause)
	}
	_ = c.drop(ctx, false) // a lost session holds no lock
	granted, err := c.take(ctx)
	switch {
	case err != nil:
		lost := error(&lostError{msg: fmt.Sprintf("audit origin claim lost: the claim of %q no longer holds and taking it again failed: %v", c.origin, err)})
		c.err.Store(&lost)
		if prev == nil || errors.Is(prev, ErrOriginInUse) {
			c.log.ErrorContext(ctx, "audit origin claim lost and not taken again: audit appends (and so calls) are refused until it is; retrying", "origin", c.origin, "error", err)
		}
	case !granted:
		holder := c.holder(ctx)
		inUse := error(&lostError{inUse: true, msg: fmt.Sprintf("audit origin %q is in use by another %s%s: "+
			"this process's claim no longer held and another took it (another sqlgated with the same audit.origin%s); "+
			"this process refuses audit appends (and so every call) until it holds the claim again", c.origin, c.kind(), holder, c.orZombie())})
		c.err.Store(&inUse)
		if !errors.Is(prev, ErrOriginInUse) {
			c.log.ErrorContext(ctx, "audit origin claimed by another session: if another sqlgated runs with this audit.origin, stop it and give each instance its own; this one refuses audit appends (and so every call) until it holds the claim again", "origin", c.origin, "holder", holder)
		}
	default:
		c.err.Store(nil)
		c.log.InfoContext(ctx, "audit origin claim taken again", "origin", c.origin)
	}
	return c.Err()
}

// kind is what holds a claim, for messages.
func (c *Claim) kind() string {
	if c.session != nil {
		return "session"
	}
	return "process"
}

// orZombie completes the list of who may hold the claim instead: a session
// this process lost may live on in the server for a while.
func (c *Claim) orZombie() string {
	if c.session != nil {
		return ", or this process's previous session until the database ends it"
	}
	return ""
}

// holds reports why the claim no longer holds its origin, nil when it does.
// Called with c.mu held.
func (c *Claim) holds(ctx context.Context) error {
	if c.session != nil {
		if c.conn == nil {
			return errors.New("no session")
		}
		if err := c.conn.PingContext(ctx); err != nil {
			return fmt.Errorf("its control-database session ended: %w", err)
		}
		return nil
	}
	if c.lockFile == nil { // no file to check (no flock on this system)
		return nil
	}
	fi, err := os.Stat(c.path)
	if err != nil {
		return fmt.Errorf("its lock file is gone: %w", err)
	}
	if !os.SameFile(fi, c.lockFile) {
		return fmt.Errorf("its lock file %s was replaced", c.path)
	}
	return nil
}

// take takes the lock: on a new session (kept in c.conn) or on the lock
// file. Called with c.mu held (or before the claim is shared).
func (c *Claim) take(ctx context.Context) (bool, error) {
	if c.session == nil {
		unlock, err := filelock.Lock(c.path)
		if errors.Is(err, filelock.ErrLocked) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		c.unlock, c.lockFile = unlock, nil
		if fi, err := os.Stat(c.path); err == nil {
			c.lockFile = fi
		}
		return true, nil
	}
	conn, err := c.s.db.Conn(ctx)
	if err != nil {
		return false, err
	}
	ok, err := c.session.granted(conn.QueryRowContext(ctx, c.session.claim, c.origin))
	if err != nil || !ok {
		_ = conn.Close()
		return false, err
	}
	c.conn = conn
	return true, nil
}

// drop lets go of the claim's session or lock file; with unlock it
// releases the lock first (a lost session holds none). Called with c.mu
// held.
func (c *Claim) drop(ctx context.Context, unlock bool) error {
	var err error
	if c.conn != nil {
		if unlock {
			_, err = c.conn.ExecContext(ctx, c.session.release, c.origin)
		}
		if cerr := c.conn.Close(); err == nil && unlock {
			err = cerr
		}
		c.conn = nil
	}
	if c.unlock != nil {
		err = c.unlock()
		c.unlock, c.lockFile = nil, nil
	}
	return err
}

// holder describes the session holding the origin's lock, for the error
// that reports it: " (PostgreSQL backend pid 123, client 10.0.0.5,
// application sqlgated)", or "" when that cannot be told.
func (c *Claim) holder(ctx context.Context) string {
	if c.session == nil || c.session.holder == "" {
		return ""
	}
	var pid int64
	var addr, app string
	if err := c.s.db.QueryRowContext(ctx, c.session.holder, c.origin).Scan(&pid, &addr, &app); err != nil {
		return ""
	}
	out := fmt.Sprintf(" (PostgreSQL backend pid %d", pid)
	if addr != "" {
		out += ", client " + addr
	}
	if app != "" {
		out += fmt.Sprintf(", application %q", app)
	}
	return out + ")"
}

// Release gives the origin up: it stops the checks and releases the lock.
func (c *Claim) Release() error {
	if c.stop != nil {
		c.stopOnce.Do(func() { close(c.stop) })
		<-c.done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released {
		return nil
	}
	c.released = true
	c.s.claims.CompareAndDelete(c.origin, c)
	if err := c.drop(context.Background(), true); err != nil {
		return fmt.Errorf("sqlstore: release origin: %w", err)
	}
	return nil
}

// claimError is the error of this store's claim of origin while it does not
// hold it, else nil (also when the origin is not claimed here).
func (s *Store) claimError(origin string) error {
	c, ok := s.claims.Load(origin)
	if !ok {
		return nil
	}
	return c.(*Claim).Err()
}
