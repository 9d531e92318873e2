package sqlserver

import (
	"strings"

	"github.com/sqlgate/sqlgate/broker/route"
)

// IdempotencyDDL creates the idempotency table and the index on
// committed_at that [PruneBatch] seeks on. deploy/sqlserver/01-idempotency.sql
// runs the same statements, one per sqlcmd batch (a test keeps the two
// equal); the broker's login needs no permission to run them.
const IdempotencyDDL = `IF SCHEMA_ID(N'sqlgate') IS NULL EXEC (N'CREATE SCHEMA sqlgate AUTHORIZATION dbo');
IF OBJECT_ID(N'sqlgate.idempotency', N'U') IS NULL
CREATE TABLE sqlgate.idempotency (
    idempotency_key nvarchar(256) NOT NULL CONSTRAINT pk_sqlgate_idempotency PRIMARY KEY,
    request_hash    char(64)      NOT NULL,
    correlation_id  nvarchar(256) NOT NULL,
    principal       nvarchar(512) NOT NULL,
    decision_id     nvarchar(128) NOT NULL,
    transaction_id  bigint        NOT NULL,
    result          nvarchar(max) NULL,
    rows            bigint        NOT NULL CONSTRAINT df_sqlgate_idempotency_rows DEFAULT 0,
    rows_affected   bigint        NOT NULL CONSTRAINT df_sqlgate_idempotency_rows_affected DEFAULT 0,
    created_at      datetime2(7)  NOT NULL CONSTRAINT df_sqlgate_idempotency_created_at DEFAULT SYSUTCDATETIME(),
    committed_at    datetime2(7)  NULL
);
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_sqlgate_idempotency_committed_at' AND object_id = OBJECT_ID(N'sqlgate.idempotency'))
CREATE INDEX ix_sqlgate_idempotency_committed_at ON sqlgate.idempotency (committed_at);`

// BeginBatch starts the call's transaction. It has no parameters, so the
// driver sends it as a plain SQL batch: SET and BEGIN TRANSACTION here
// belong to the session (inside sp_executesql, SET options would revert at
// the end of the batch and a transaction begun there would raise error 266).
const BeginBatch = `SET XACT_ABORT ON;
BEGIN TRANSACTION;`

// callPrologue is the first part of every call batch (sent through
// sp_executesql): the read-only session context, then the idempotency
// record, then one status row. An existing key returns its record and ends
// the batch, so the call below never runs. Its locals share the batch's
// namespace with the route's parameters, so they carry the sqlgate_ prefix
// the catalog reserves (in any case: names compare case-insensitively
// under the usual collations).
//
// The key is sent as nvarchar(max), like every string of the batch (one
// plan-cache entry whatever its length), and copied into @sqlgate_k, an
// nvarchar(256) like the key column: compared as nvarchar(max), the key
// would be a residual predicate over an index scan rather than a seek,
// and the scan's locks would make calls with different keys wait for one
// another (and deadlock). The copy would cut a longer key silently, so the
// batch refuses one first (the adapter refuses it before sending, in
// UTF-16 code units, as DATALENGTH counts bytes).
//
// The record is a plain INSERT, and the primary key decides, under the
// table's collation, whether the key is taken. Inserting a key locks that
// key only (an exclusive key lock until the transaction ends; key-range
// locks are taken only under SERIALIZABLE or HOLDLOCK), so a call does
// not wait for calls with other keys (short of lock escalation, which
// row-at-a-time inserts do not reach, or the rare collision of two keys'
// lock hashes). A call whose key another
// transaction has inserted waits on that key lock until the transaction
// ends: rolled back, the INSERT goes ahead; committed, it fails with 2627
// (violation of PRIMARY KEY constraint), which the CATCH block turns into
// the stored record, with its decision id (a call whose own commit was
// not acknowledged, run again, finds its own decision there and the broker
// counts it as that call's commit). (An earlier version checked for the key with
// UPDLOCK, HOLDLOCK first: the range lock that took on the next key, or
// the end of the index, made calls with new keys wait for each other.)
//
// The INSERT runs with XACT_ABORT OFF: under XACT_ABORT ON an error in a
// TRY block dooms the transaction, and the batch would end with error
// 3998 after the status row. With it OFF, 2627 ends the statement only.
// SET inside sp_executesql lasts until the end of that batch; the
// prologue sets XACT_ABORT ON again before the call runs. Every other
// error (a deadlock, 1205, included) is raised again unchanged by THROW.
// Under READ_COMMITTED_SNAPSHOT too, the key check locks, and the record
// read after 2627 is the committed one. (Should PruneBatch delete that
// record between the two statements — it must then have been committed
// before the retention cutoff — the batch returns no status row and the
// call fails as unavailable; a retry inserts the key.)
const callPrologue = `SET NOCOUNT ON;
IF DATALENGTH(@sqlgate_idempotency_key) > 512 THROW 50002, N'sqlgate: idempotency key longer than 256 UTF-16 code units', 1;
DECLARE @sqlgate_c nvarchar(256) = @sqlgate_correlation_id, @sqlgate_p nvarchar(512) = @sqlgate_principal, @sqlgate_d nvarchar(128) = @sqlgate_decision_id,
        @sqlgate_k nvarchar(256) = @sqlgate_idempotency_key;
EXEC sys.sp_set_session_context @key = N'sqlgate.correlation_id', @value = @sqlgate_c, @read_only = 1;
EXEC sys.sp_set_session_context @key = N'sqlgate.principal', @value = @sqlgate_p, @read_only = 1;
EXEC sys.sp_set_session_context @key = N'sqlgate.decision_id', @value = @sqlgate_d, @read_only = 1;
SET XACT_ABORT OFF;
BEGIN TRY
    INSERT INTO sqlgate.idempotency (idempotency_key, request_hash, correlation_id, principal, decision_id, transaction_id)
    VALUES (@sqlgate_k, @sqlgate_request_hash, @sqlgate_c, @sqlgate_p, @sqlgate_d, CURRENT_TRANSACTION_ID());
END TRY
BEGIN CATCH
    IF ERROR_NUMBER() NOT IN (2601, 2627) THROW;
    SET XACT_ABORT ON;
    SELECT CAST(0 AS bit) AS inserted, transaction_id, request_hash, result, rows, rows_affected, committed_at, decision_id
    FROM sqlgate.idempotency WHERE idempotency_key = @sqlgate_k;
    RETURN;
END CATCH;
SET XACT_ABORT ON;
SELECT CAST(1 AS bit) AS inserted, CURRENT_TRANSACTION_ID() AS transaction_id,
       CAST(NULL AS char(64)) AS request_hash, CAST(NULL AS nvarchar(max)) AS result,
       CAST(NULL AS bigint) AS rows, CAST(NULL AS bigint) AS rows_affected,
       CAST(NULL AS datetime2(7)) AS committed_at, CAST(NULL AS nvarchar(128)) AS decision_id;
SET NOCOUNT OFF;
`

// keyMatch finds a record by @idempotency_key (nvarchar(max), see
// callPrologue) with an index seek: the parameter is cast to the column's
// nvarchar(256), and a longer key, which the cast would cut to another
// key, matches nothing.
const keyMatch = `idempotency_key = CAST(@idempotency_key AS nvarchar(256)) AND DATALENGTH(@idempotency_key) <= 512`

// StoreBatch stores the call's result in its idempotency record.
const StoreBatch = `UPDATE sqlgate.idempotency
SET result = @result, rows = @rows, rows_affected = @rows_affected, committed_at = @committed_at
WHERE ` + keyMatch + `;
IF @@ROWCOUNT <> 1 THROW 50001, N'sqlgate: idempotency record missing before commit', 1;`

// CommitBatch commits the call's transaction (a plain SQL batch).
const CommitBatch = `COMMIT TRANSACTION;`

// RollbackBatch ends a replayed or failed call's transaction, if the server
// has not already rolled it back (XACT_ABORT, deadlock victim).
const RollbackBatch = `IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;`

// LookupBatch reads a committed idempotency record (crash recovery, and a
// call whose commit was not confirmed). READCOMMITTEDLOCK makes the read
// wait for a transaction that holds the key (a call still running, which a
// lost connection may leave on the server): under READ_COMMITTED_SNAPSHOT
// a plain read would return the last committed version (none) at once.
// Every record it returns is therefore committed; one without
// committed_at was committed by a routed procedure, without a result
// (see [CommittedBatch]).
const LookupBatch = `SELECT transaction_id, request_hash, result, rows, rows_affected, committed_at, decision_id
FROM sqlgate.idempotency WITH (READCOMMITTEDLOCK)
WHERE ` + keyMatch + `;`

// CommittedBatch runs after a call batch failed and [RollbackBatch] ended
// what was left of its transaction: is the call's idempotency record,
// inserted by this transaction (@transaction_id), still there? Then the
// routed procedure committed the transaction itself (COMMIT inside the
// module: error 266 when the EXEC returns, or an error raised after the
// COMMIT), and its work and the record are committed although the call
// failed. Any other failure rolled the record back with the rest.
// READCOMMITTEDLOCK waits, like LookupBatch, for a call that holds the
// key meanwhile (only possible when this call's record is gone).
const CommittedBatch = `SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM sqlgate.idempotency WITH (READCOMMITTEDLOCK)
    WHERE ` + keyMatch + ` AND transaction_id = @transaction_id) THEN 1 ELSE 0 END AS bit) AS committed;`

// PruneBatch deletes the @batch oldest idempotency records committed before
// @before; the ORDER BY makes it a seek on ix_sqlgate_idempotency_committed_at
// that stops after @batch rows. [Executor.Prune] repeats it; @batch stays
// under the 5,000 locks at which SQL Server would escalate to a table lock and
// stall the calls inserting records.
const PruneBatch = `WITH sqlgate_old AS (
    SELECT TOP (@batch) idempotency_key FROM sqlgate.idempotency
    WHERE committed_at < @before ORDER BY committed_at
)
DELETE FROM sqlgate_old;`

// CheckBatch reports whether a procedure exists and the broker's login may
// execute it; the name is a parameter, never SQL text.
const CheckBatch = `SELECT CAST(CASE WHEN OBJECT_ID(@name, N'P') IS NULL AND OBJECT_ID(@name, N'PC') IS NULL THEN 0 ELSE 1 END AS bit) AS found,
       CAST(ISNULL(HAS_PERMS_BY_NAME(@name, N'OBJECT', N'EXECUTE'), 0) AS bit) AS can_execute;`

// quoteName bracket-quotes each part of a dotted catalog name, doubling
// closing brackets, like QUOTENAME. The catalog already admits only plain
// identifiers; quoting keeps the RPC name a name whatever it contains.
func quoteName(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = "[" + strings.ReplaceAll(p, "]", "]]") + "]"
	}
	return strings.Join(parts, ".")
}

// procCall is the call part of a procedure route's batch: EXEC with the
// return status into @sqlgate_return_value, each present parameter passed
// by name, OUTPUT parameters passed through. The OUTPUT parameters are set
// to NULL first: the driver sends string ones as empty strings (see
// stringOut), and a procedure sees NULL in every OUTPUT parameter it has
// not set. The target is bracket-quoted; parameter names are catalog
// identifiers (plain).
func procCall(target string, params, outputs []string) string {
	var b strings.Builder
	for _, o := range outputs {
		b.WriteString("SET @" + o + " = NULL;\n")
	}
	b.WriteString("EXEC @sqlgate_return_value = ")
	b.WriteString(quoteName(target))
	n := 0
	for _, p := range params {
		if n > 0 {
			b.WriteString(",")
		}
		n++
		b.WriteString(" @" + p + " = @" + p)
	}
	for _, o := range outputs {
		if n > 0 {
			b.WriteString(",")
		}
		n++
		b.WriteString(" @" + o + " = @" + o + " OUTPUT")
	}
	b.WriteString(";")
	return b.String()
}

// renderStatement renders a statement route for sp_executesql: each
// placeholder becomes @name, wrapped in CAST(@name AS type) when the route
// declares a SQL type.
func renderStatement(r *route.Route) (string, []string) {
	var names []string
	seen := map[string]bool{}
	text := r.Statement.Render(func(_ int, name string) string {
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		if p, ok := r.Param(name); ok && p.SQLType != "" {
			if t := tsqlType(p.SQLType); t != "" {
				return "CAST(@" + name + " AS " + t + ")"
			}
		}
		return "@" + name
	})
	return text, names
}

// tsqlType spells a catalog SQL type in T-SQL (mapping PostgreSQL names).
// The catalog validated the type against a fixed grammar.
func tsqlType(sqlType string) string {
	t := strings.ToLower(strings.Join(strings.Fields(sqlType), " "))
	base, arg, hasArg := strings.Cut(t, "(")
	arg = strings.ReplaceAll(strings.TrimSuffix(arg, ")"), " ", "")
	switch base {
	case "int", "bigint", "smallint", "tinyint", "bit", "real", "date", "time", "datetime2", "datetimeoffset", "uniqueidentifier", "float":
		return base
	case "boolean":
		return "bit"
	case "double precision":
		return "float"
	case "text":
		return "nvarchar(max)"
	case "timestamp":
		return "datetime2"
	case "timestamptz":
		return "datetimeoffset"
	case "uuid":
		return "uniqueidentifier"
	case "decimal", "numeric", "nvarchar", "varchar", "nchar", "char", "varbinary", "binary":
		if hasArg {
			return base + "(" + arg + ")"
		}
		return base
	}
	return ""
}
