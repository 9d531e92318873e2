// Package schemalock holds the statements that start the transaction in
// which sqlgate creates its tables, on the servers where several instances
// may start together on one empty database: the control database and the
// audit store (broker/control, audit/sqlstore) and the idempotency table
// (broker/postgres). Each takes the same lock, so each table is created
// once; they are here, once, so that the three cannot drift apart.
package schemalock

// Postgres takes the transaction-scoped advisory lock (1936813171, 0):
// class 0x73716c73, "sqls", which no other sqlgate lock uses (a call's
// idempotency key takes class 0x73716c67, "sqlg", in broker/postgres; an
// audit origin's claim is a one-key lock). `CREATE TABLE IF NOT EXISTS` is
// not safe against a concurrent creator: without the lock, two instances
// starting together on an empty database both find a table missing, and
// PostgreSQL fails the second with a unique violation on pg_type or
// pg_class (23505). It waits as long as the context allows.
const Postgres = "SELECT pg_advisory_xact_lock(1936813171, 0)"

// SQLServer takes an exclusive application lock on sqlgate-schema, held
// until the transaction ends. `IF OBJECT_ID(...) IS NULL CREATE TABLE`
// checks, then creates; without the lock two instances starting together
// would both create, and one would fail (error 2714, or 1913 for an index).
// sp_getapplock answers 0 or 1 when granted, less when not (-1: 60 s
// passed), which it turns into an error.
const SQLServer = `DECLARE @r int;
EXEC @r = sys.sp_getapplock @Resource = N'sqlgate-schema', @LockMode = N'Exclusive', @LockOwner = N'Transaction', @LockTimeout = 60000;
IF @r < 0
BEGIN
    DECLARE @m nvarchar(200) = CONCAT(N'sqlgate: the schema lock sqlgate-schema was not granted (sp_getapplock returned ', @r, N')');
    THROW 51000, @m, 1;
END`
