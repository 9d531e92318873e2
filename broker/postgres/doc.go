// Package postgres is sqlgate's PostgreSQL adapter: a [broker.Executor] on
// pgx (native protocol, pgxpool) that runs a routed function, procedure or
// admin-defined statement in one transaction together with the call's
// idempotency record.
//
// # What a call sends
//
// A function (procedure: naming a function) takes one round trip: one
// pipeline of two statements that PostgreSQL runs as one implicit
// transaction. The first takes a transaction-scoped advisory lock on the
// key's hash, sets the session context with
// set_config('sqlgate.correlation_id' | 'sqlgate.principal' |
// 'sqlgate.decision_id', value, true) (transaction-local) and reads the
// function's result type. The second checks that the key has no record and
// that the result type is the one it was built for, calls `schema.function(name => $n, ...)` only
// then, and inserts the record with the transaction id (txid_current()) and
// the rows, each column rendered as text in SQL; the reply is rendered from
// that text, as is every replay. See onetrip.go. A function returning a type
// whose text depends on session settings (float, array, interval, composite)
// takes two round trips instead: BEGIN plus one statement that inserts the
// record (ON CONFLICT DO NOTHING) and calls the function only if it did, then
// UPDATE of the record with the result rendered in Go plus COMMIT.
//
// A procedure or a statement takes three round trips:
//
//  1. One pipelined batch: BEGIN, then a single INSERT into the idempotency
//     table whose values set the session context and read txid_current(),
//     ON CONFLICT DO NOTHING RETURNING the transaction id. A concurrent call
//     with the same key blocks on the unique key until the first transaction
//     ends; no row back means the key is already committed, and one more
//     batch (SELECT the record; ROLLBACK) returns the stored result or
//     broker.ErrConflict.
//  2. The call: `CALL schema.procedure(name => $1, ..., out => NULL)`
//     (INOUT/OUT values become the result's "output"), or the route's
//     statement rendered with $n placeholders. Whether the target is a
//     function or a procedure is read from pg_proc at first use and cached.
//  3. One pipelined batch: UPDATE the idempotency record with the result
//     JSON, then COMMIT.
//
// Statements are prepared once per connection and cached by pgx. A call
// that fails because a schema change made one of them stale (0A000 "cached
// plan must not change result type", not any other 0A000; 26000, gone) kept
// nothing, so it runs once more on the same connection, preparing again. Values are
// always bound: strings as text, integers as int8, JSON numbers as their
// exact decimal text (PostgreSQL parses them into numeric, or whatever the
// parameter's type is; never through float64), booleans as bool. A route's
// explicit SQL type becomes a cast on the placeholder (`$1::numeric(12,2)`;
// SQL Server spellings are mapped: nvarchar -> varchar, datetime2 ->
// timestamp, uniqueidentifier -> uuid, bit -> boolean, varbinary -> bytea).
// Identifiers (target names, named-argument names, the idempotency table)
// come only from the catalog and configuration and are quoted as written,
// so they are case-sensitive.
//
// rows_affected is the command tag's count: rows inserted, updated or
// deleted by a statement, rows returned by a function, 0 for CALL.
//
// Errors: SQL errors become *broker.DBError with the SQLSTATE (and its
// numeric value where it is all digits), the server's message scrubbed of
// the call's values; serialization failures and deadlocks (40001, 40P01)
// are retried with backoff; connection failures, cancelled queries (the
// context's deadline sends a cancel request) and an expired context become
// broker.ErrUnavailable.
package postgres
