package postgres

import "github.com/jackc/pgx/v5/pgconn"

// SetDialHook makes Open dial through fn (nil restores the default).
func SetDialHook(fn pgconn.DialFunc) { dialHook = fn }
