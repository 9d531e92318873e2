// Package sqlserver is sqlgate's SQL Server adapter: a [broker.Executor] on
// github.com/microsoft/go-mssqldb that runs an allowlisted stored procedure
// (as a TDS RPC call with typed named parameters, OUTPUT parameters and the
// return status) or an admin-defined statement (sp_executesql with named
// parameters) in one transaction together with the call's idempotency
// record, with the caller's identity in SESSION_CONTEXT.
//
// # What a call sends (three round trips on one pooled connection)
//
//  1. The begin batch ([BeginBatch]): SET XACT_ABORT ON; BEGIN TRANSACTION;
//     sys.sp_set_session_context with @read_only = 1 for
//     sqlgate.correlation_id, sqlgate.principal and sqlgate.decision_id;
//     the idempotency insert guarded by NOT EXISTS under UPDLOCK, HOLDLOCK
//     (a concurrent call with the same key waits on the key lock until the
//     first transaction ends); then one row: either the new record's
//     CURRENT_TRANSACTION_ID(), or the committed record, in which case the
//     batch also rolls back and the call returns the stored result or
//     broker.ErrConflict without executing anything.
//  2. The call: an RPC to the procedure (name quoted with brackets) with
//     sql.Named parameters typed from the route (JSON type and optional
//     explicit SQL type), OUTPUT parameters and the return status; every
//     result set is read, and the row counts the server reports (DONE
//     tokens: DML, INSERT ... OUTPUT and SELECT alike; none for statements
//     under SET NOCOUNT ON) add up to rows_affected. A statement route is sent through sp_executesql with
//     @name placeholders.
//  3. The commit batch ([CommitBatch]): UPDATE the idempotency record with
//     the result JSON, then COMMIT TRANSACTION.
//
// On any error the adapter sends [RollbackBatch] and, if that fails,
// discards the connection. The session context is set on the connection
// that runs the call, inside its transaction; when database/sql reuses the
// connection, go-mssqldb sends the TDS RESETCONNECTION flag with the next
// request, which clears SESSION_CONTEXT and SET options before the next
// caller's begin batch sets its own read-only values.
//
// Every T-SQL text the adapter sends is a constant or is built from
// catalog identifiers that were validated and are bracket-quoted; values are
// always parameters. The golden files in testdata show each batch and the
// parameter types it declares.
//
// Errors: SQL errors become *broker.DBError with the error number and state
// and the server's message scrubbed of the call's values; deadlocks (1205)
// are retried with backoff; connection failures, login and availability
// errors and an expired context become broker.ErrUnavailable.
package sqlserver
