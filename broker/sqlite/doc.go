// Package sqlite is sqlgate's embedded database adapter: a [broker.Executor]
// over a SQLite file (modernc.org/sqlite, pure Go, driver name "sqlite") that
// runs admin-defined statements — SQLite has no stored procedures — in one
// transaction together with the call's idempotency record.
//
// # Transactions and concurrency
//
// The database runs in WAL mode with synchronous=FULL. All calls share one
// writer connection, so calls are serialized in the process (SQLite allows
// one writer at a time anyway), in the order they arrive (a queue of the
// adapter's own: database/sql alone would hand the connection to a random
// waiter); transactions start with BEGIN IMMEDIATE and
// wait up to the busy timeout for other processes. A call whose idempotency
// key is in flight waits for the writer and then sees the committed record.
// [Executor.Lookup] reads through a separate read-only pool.
//
// # Session context
//
// SQLite has no session state. The idempotency row stores the correlation
// id, principal and decision id of the call, and statements read them
// through the session placeholders :sqlgate_correlation_id,
// :sqlgate_principal and :sqlgate_decision_id, which the adapter binds from
// the broker's call (never from the message). The transaction id is the
// adapter's own: a UUIDv7 generated per call and stored in the idempotency
// row.
//
// # Values
//
// Parameters are bound, never formatted into SQL: strings as TEXT, integers
// as INTEGER, booleans as 0/1, JSON numbers as their exact decimal text (a
// column with NUMERIC affinity stores it as a number, keeping 15 significant
// digits; a TEXT column keeps it exactly), unless the route declares an
// explicit SQL type (float/real -> REAL, varbinary/binary -> BLOB decoded
// from base64). Results: INTEGER and REAL as JSON numbers, columns declared
// BOOLEAN as true/false, TEXT verbatim, BLOB as base64, DATE/DATETIME/
// TIMESTAMP columns as RFC 3339 UTC, NULL as null.
package sqlite
