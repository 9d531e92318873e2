// Package sqlserver is sqlgate's SQL Server adapter: a [broker.Executor] on
// github.com/microsoft/go-mssqldb that runs an allowlisted stored procedure
// (EXEC with typed named parameters, OUTPUT parameters and the return
// status) or an admin-defined statement, in one transaction together with
// the call's idempotency record, with the caller's identity in
// SESSION_CONTEXT.
//
// # What a call sends (four round trips on one pooled connection)
//
//  1. [BeginBatch], a plain SQL batch: SET XACT_ABORT ON; BEGIN
//     TRANSACTION. (In sp_executesql, SET options would revert when the
//     batch ends and a transaction begun there raises error 266, so the
//     transaction is opened and closed by parameterless batches.)
//  2. The call batch, through sp_executesql with named parameters: the
//     read-only session context (sys.sp_set_session_context @read_only = 1
//     for sqlgate.correlation_id, sqlgate.principal, sqlgate.decision_id),
//     the idempotency insert, whose primary key decides whether the key is
//     taken (a concurrent call with the same key waits on that key's lock
//     until the first transaction ends, and only such a call waits; a
//     duplicate key, 2627, is caught and turns into the stored record),
//     one status row with CURRENT_TRANSACTION_ID(),
//     then the call itself: `SET @out = NULL; EXEC @sqlgate_return_value =
//     [schema].[proc] @a = @a, @out = @out OUTPUT` for a procedure route,
//     or the route's statement. The batch's own names all start with
//     sqlgate_, which the catalog reserves. When the key is already
//     committed the batch returns the stored record instead and RETURNs
//     before the call; the adapter rolls back and replies with the stored
//     result (none when a routed procedure committed the record's
//     transaction itself, see [ErrCommittedWithoutResult]), or
//     broker.ErrConflict for another request.
//  3. [StoreBatch]: UPDATE the idempotency record with the result JSON.
//  4. [CommitBatch]: COMMIT TRANSACTION.
//
// The idempotency key travels as nvarchar(max) and is compared as the
// key column's nvarchar(256) (copied or cast), so that finding a record is
// an index seek.
//
// Every result set of the call is read, then its OUTPUT values and return
// status; the row counts the server reports (DONE tokens: DML, INSERT ...
// OUTPUT and SELECT alike; none under SET NOCOUNT ON) add up to
// rows_affected. On any error the adapter sends [RollbackBatch] and, if that
// fails, discards the connection; after a server error that came once the
// call's record was inserted, it then asks whether the record survived
// ([CommittedBatch]): a routed procedure committed the call
// ([ErrCommittedWithoutResult]). A connection lost while the call batch
// runs ends the call at once with broker.ErrUnavailable (the adapter
// watches its sockets: go-mssqldb does not report every such loss to a
// caller reading its message queue) and is discarded. The session context is set on the
// connection that runs the call, inside its transaction; when database/sql
// reuses the connection, go-mssqldb sends the TDS RESETCONNECTION flag with
// the next request, which clears SESSION_CONTEXT and SET options before the
// next caller's batch sets its own read-only values.
//
// Every T-SQL text the adapter sends is a constant or is built from
// catalog identifiers that were validated (the procedure name also
// bracket-quoted); values are always parameters, checked against a
// declared length before sending. The golden files in testdata show each
// batch and the parameter types it declares.
//
// The connection string must require TLS with a checked server
// certificate ([CheckTransport]) unless Config.AllowInsecureTransport is
// set.
//
// Errors: SQL errors become *broker.DBError with the error number and state
// and the server's message stripped of the data it quotes (truncated
// values, duplicate keys, conversion failures) and of the call's values;
// deadlocks (1205) are retried with backoff; connection failures, login
// and availability errors and an expired context become
// broker.ErrUnavailable.
package sqlserver
