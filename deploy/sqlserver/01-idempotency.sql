-- sqlgate: the idempotency table, in each target database (run as dbo).
-- One row per call, inserted first in the call's own transaction; the
-- result is stored before commit so that a retried key returns it. The
-- index on committed_at is what retention (PruneBatch) seeks on.
-- The statements are sqlserver.IdempotencyDDL, one per batch (a test in
-- broker/sqlserver keeps them equal).
--   sqlcmd -S host -d orders -i 01-idempotency.sql
:on error exit
IF SCHEMA_ID(N'sqlgate') IS NULL EXEC (N'CREATE SCHEMA sqlgate AUTHORIZATION dbo');
GO
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
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_sqlgate_idempotency_committed_at' AND object_id = OBJECT_ID(N'sqlgate.idempotency'))
CREATE INDEX ix_sqlgate_idempotency_committed_at ON sqlgate.idempotency (committed_at);
GO
