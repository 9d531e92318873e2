package postgres

import (
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// SetDialHook makes Open dial through fn (nil restores the default).
func SetDialHook(fn pgconn.DialFunc) { dialHook = fn }

// SetPruneBatch sets how many records one prune statement deletes.
func SetPruneBatch(e *Executor, n int64) { e.pruneBatch = n }

// SetDefaultConnectTimeout sets the connection timeout Open uses when the
// connection string sets none, and returns the previous one.
func SetDefaultConnectTimeout(d time.Duration) time.Duration {
	old := defaultConnectTimeout
	defaultConnectTimeout = d
	return old
}
