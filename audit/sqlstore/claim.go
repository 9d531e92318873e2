package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/sqlgate/sqlgate/internal/filelock"
)

// ErrOriginInUse is returned by [Store.Claim] when another process (or
// another claim of this one) writes the origin.
var ErrOriginInUse = errors.New("audit origin is in use by another process")

// The statements of a claim. PostgreSQL and SQL Server hold a session lock
// on a connection kept for the claim's life: the server frees it when the
// session ends, so a process that dies frees its origins. The lock's name
// covers the schema the store's tables live in, so logs in different
// schemas of one database do not exclude each other. SQLite locks a file
// beside the database (internal/filelock).
const (
	claimPostgres   = "SELECT pg_try_advisory_lock(hashtextextended('sqlgate-audit:' || current_schema() || ':' || $1, 0))"
	releasePostgres = "SELECT pg_advisory_unlock(hashtextextended('sqlgate-audit:' || current_schema() || ':' || $1, 0))"
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

// Claim makes this process the only writer of origin until release is
// called or the process ends. A log keeps its tree's frontier in memory, so
// two processes appending to one origin would each write indexes the other
// already wrote; the first to lose would refuse every call from then on.
// Claim turns that into one clear error at start: [ErrOriginInUse].
func (s *Store) Claim(ctx context.Context, origin string) (release func() error, err error) {
	switch s.d.name {
	case SQLite:
		var file string
		if err := s.db.QueryRowContext(ctx, claimSQLite).Scan(&file); err != nil {
			return nil, fmt.Errorf("sqlstore: claim origin: %w", err)
		}
		if file == "" { // an in-memory database: no other process can open it
			return func() error { return nil }, nil
		}
		sum := sha256.Sum256([]byte(origin))
		release, err := filelock.Lock(file + "-origin-" + hex.EncodeToString(sum[:8]) + ".lock")
		if errors.Is(err, filelock.ErrLocked) {
			return nil, ErrOriginInUse
		}
		if err != nil {
			return nil, fmt.Errorf("sqlstore: claim origin: %w", err)
		}
		return release, nil
	case Postgres:
		return s.claimSession(ctx, origin, claimPostgres, releasePostgres, func(row *sql.Row) (bool, error) {
			var ok bool
			err := row.Scan(&ok)
			return ok, err
		})
	default:
		return s.claimSession(ctx, origin, claimSQLServer, releaseSQLServer, func(row *sql.Row) (bool, error) {
			var r int
			if err := row.Scan(&r); err != nil {
				return false, err
			}
			if r < -1 {
				return false, fmt.Errorf("sp_getapplock returned %d", r)
			}
			return r >= 0, nil
		})
	}
}

// claimSession takes a session lock with claim on a connection of its own
// and keeps the connection until release.
func (s *Store) claimSession(ctx context.Context, origin, claim, release string, granted func(*sql.Row) (bool, error)) (func() error, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim origin: %w", err)
	}
	ok, err := granted(conn.QueryRowContext(ctx, claim, origin))
	if err != nil || !ok {
		_ = conn.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlstore: claim origin: %w", err)
		}
		return nil, ErrOriginInUse
	}
	return func() error {
		_, err := conn.ExecContext(context.Background(), release, origin)
		if cerr := conn.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sqlstore: release origin: %w", err)
		}
		return nil
	}, nil
}
