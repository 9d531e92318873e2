package postgres

import "github.com/jackc/pgx/v5/pgconn"

// SetDialHook makes Open dial through fn (nil restores the default).
func SetDialHook(fn pgconn.DialFunc) { dialHook = fn }

// SetPruneBatch sets how many records one prune statement deletes.
func SetPruneBatch(e *Executor, n int64) { e.pruneBatch = n }
