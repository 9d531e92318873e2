-- The conformance suite's test schema (see broker/brokertest) for SQL Server.
-- Batches are separated by GO lines.
CREATE TABLE dbo.orders (
    id             bigint IDENTITY(1,1) NOT NULL CONSTRAINT pk_orders PRIMARY KEY,
    customer       nvarchar(4000) NOT NULL,
    amount         decimal(12,2)  NOT NULL CONSTRAINT orders_amount_check CHECK (amount > 0),
    quantity       bigint         NOT NULL,
    express        bit            NOT NULL,
    note           nvarchar(max)  NULL,
    status         nvarchar(20)   NOT NULL CONSTRAINT df_orders_status DEFAULT N'open',
    created_by     nvarchar(512)  NOT NULL,
    correlation_id nvarchar(256)  NOT NULL,
    created_at     datetime2(7)   NOT NULL CONSTRAINT df_orders_created_at DEFAULT SYSUTCDATETIME()
);
GO
CREATE OR ALTER PROCEDURE dbo.orders_create
    @customer nvarchar(4000), @amount decimal(12,2), @quantity bigint, @express bit, @note nvarchar(max) = NULL
AS
BEGIN
    INSERT INTO dbo.orders (customer, amount, quantity, express, note, created_by, correlation_id)
    OUTPUT inserted.id
    VALUES (@customer, @amount, @quantity, @express, @note,
            ISNULL(CAST(SESSION_CONTEXT(N'sqlgate.principal') AS nvarchar(512)), SUSER_SNAME()),
            ISNULL(CAST(SESSION_CONTEXT(N'sqlgate.correlation_id') AS nvarchar(256)), N''));
END;
GO
CREATE OR ALTER PROCEDURE dbo.orders_cancel @id bigint, @previous_status nvarchar(20) OUTPUT
AS
BEGIN
    SELECT @previous_status = status FROM dbo.orders WITH (UPDLOCK) WHERE id = @id;
    UPDATE dbo.orders SET status = N'cancelled' WHERE id = @id;
    RETURN CASE WHEN @previous_status IS NULL THEN 1 ELSE 0 END;
END;
GO
CREATE OR ALTER PROCEDURE dbo.orders_slow_create @customer nvarchar(4000), @seconds int
AS
BEGIN
    INSERT INTO dbo.orders (customer, amount, quantity, express, created_by, correlation_id)
    OUTPUT inserted.id
    VALUES (@customer, 1, 1, 0, ISNULL(CAST(SESSION_CONTEXT(N'sqlgate.principal') AS nvarchar(512)), N''),
            ISNULL(CAST(SESSION_CONTEXT(N'sqlgate.correlation_id') AS nvarchar(256)), N''));
    DECLARE @d datetime = DATEADD(second, @seconds, 0);
    WAITFOR DELAY @d;
END;
GO
-- Misbehaving procedures: they commit the caller's transaction.
CREATE OR ALTER PROCEDURE dbo.orders_commit @customer nvarchar(4000)
AS
BEGIN
    INSERT INTO dbo.orders (customer, amount, quantity, express, created_by, correlation_id)
    VALUES (@customer, 1, 1, 0, N'', N'');
    COMMIT TRANSACTION;
END;
GO
CREATE OR ALTER PROCEDURE dbo.orders_commit_throw @customer nvarchar(4000)
AS
BEGIN
    INSERT INTO dbo.orders (customer, amount, quantity, express, created_by, correlation_id)
    VALUES (@customer, 1, 1, 0, N'', N'');
    COMMIT TRANSACTION;
    THROW 50409, N'after the commit', 1;
END;
