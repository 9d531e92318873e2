-- sqlgate example: an orders schema whose procedures match the demo routes
-- (orders.v1.create, orders.v1.get, orders.v1.cancel; see routes.yaml).
-- Run as dbo in the target database, then 02-broker-user.sql with
-- SQLGATE_SCHEMA=sales.
--
-- sqlgate sets, per call and read-only, SESSION_CONTEXT keys
-- sqlgate.correlation_id, sqlgate.principal and sqlgate.decision_id: the
-- procedures stamp new rows with them, and a trigger stamps every change in
-- sales.order_history, so the database itself records who sqlgate
-- authorized, under which decision, although the connection's login is the
-- broker's.
--
-- Any session may set these keys for itself (sp_set_session_context needs
-- no permission), so a login sqlgate does not use, one that
-- `sqlgate creds sql` issued included, could claim to be anyone. The keys
-- are therefore read only in the broker's own sessions: when the caller is
-- a member of sqlgate_executor (02-broker-user.sql, which sqlgate never
-- grants to an issued login); any other session is stamped with its own
-- login, ORIGINAL_LOGIN(). Keep EXECUTE AS off these procedures and the
-- trigger: under it IS_MEMBER would test the impersonated user.
:on error exit
IF SCHEMA_ID(N'sales') IS NULL EXEC (N'CREATE SCHEMA sales AUTHORIZATION dbo');
GO
IF OBJECT_ID(N'sales.orders', N'U') IS NULL
CREATE TABLE sales.orders (
    id             bigint IDENTITY(1,1) NOT NULL CONSTRAINT pk_sales_orders PRIMARY KEY,
    customer       nvarchar(100) NOT NULL,
    amount         decimal(12,2) NOT NULL CONSTRAINT ck_sales_orders_amount CHECK (amount > 0),
    note           nvarchar(500) NULL,
    status         nvarchar(20)  NOT NULL CONSTRAINT df_sales_orders_status DEFAULT N'open'
                   CONSTRAINT ck_sales_orders_status CHECK (status IN (N'open', N'cancelled')),
    created_by     nvarchar(512) NOT NULL,
    correlation_id nvarchar(256) NOT NULL,
    created_at     datetime2(7)  NOT NULL CONSTRAINT df_sales_orders_created_at DEFAULT SYSUTCDATETIME()
);
GO
IF OBJECT_ID(N'sales.order_history', N'U') IS NULL
CREATE TABLE sales.order_history (
    order_id       bigint        NOT NULL,
    operation      nvarchar(10)  NOT NULL,
    old_status     nvarchar(20)  NULL,
    new_status     nvarchar(20)  NULL,
    changed_by     nvarchar(512) NOT NULL,
    correlation_id nvarchar(256) NOT NULL,
    decision_id    nvarchar(128) NOT NULL,
    transaction_id bigint        NOT NULL,
    changed_at     datetime2(7)  NOT NULL CONSTRAINT df_sales_order_history_changed_at DEFAULT SYSUTCDATETIME()
);
GO
-- Every update and delete is stamped from SESSION_CONTEXT in the broker's
-- sessions, and with the session's login otherwise (changes made outside
-- sqlgate, and any session that set the keys itself).
CREATE OR ALTER TRIGGER sales.orders_history ON sales.orders AFTER UPDATE, DELETE
AS
BEGIN
    SET NOCOUNT ON;
    DECLARE @sqlgate bit = CASE WHEN IS_MEMBER(N'sqlgate_executor') = 1 THEN 1 ELSE 0 END;
    INSERT INTO sales.order_history (order_id, operation, old_status, new_status, changed_by, correlation_id, decision_id, transaction_id)
    SELECT d.id, CASE WHEN i.id IS NULL THEN N'DELETE' ELSE N'UPDATE' END, d.status, i.status,
           ISNULL(CASE WHEN @sqlgate = 1 THEN CAST(SESSION_CONTEXT(N'sqlgate.principal') AS nvarchar(512)) END, ORIGINAL_LOGIN()),
           ISNULL(CASE WHEN @sqlgate = 1 THEN CAST(SESSION_CONTEXT(N'sqlgate.correlation_id') AS nvarchar(256)) END, N''),
           ISNULL(CASE WHEN @sqlgate = 1 THEN CAST(SESSION_CONTEXT(N'sqlgate.decision_id') AS nvarchar(128)) END, N''),
           CURRENT_TRANSACTION_ID()
    FROM deleted AS d LEFT JOIN inserted AS i ON i.id = d.id;
END;
GO
-- orders.v1.create: one row with the new order's id.
CREATE OR ALTER PROCEDURE sales.create_order
    @customer nvarchar(100), @amount decimal(12,2), @note nvarchar(500) = NULL
AS
BEGIN
    DECLARE @ids TABLE (id bigint NOT NULL);
    DECLARE @sqlgate bit = CASE WHEN IS_MEMBER(N'sqlgate_executor') = 1 THEN 1 ELSE 0 END;
    INSERT INTO sales.orders (customer, amount, note, created_by, correlation_id)
    OUTPUT inserted.id INTO @ids
    VALUES (@customer, @amount, @note,
            ISNULL(CASE WHEN @sqlgate = 1 THEN CAST(SESSION_CONTEXT(N'sqlgate.principal') AS nvarchar(512)) END, ORIGINAL_LOGIN()),
            ISNULL(CASE WHEN @sqlgate = 1 THEN CAST(SESSION_CONTEXT(N'sqlgate.correlation_id') AS nvarchar(256)) END, N''));
    SELECT id FROM @ids;
END;
GO
-- orders.v1.get: the order row, every stored field.
CREATE OR ALTER PROCEDURE sales.get_order @id bigint
AS
BEGIN
    SELECT id, customer, amount, note, status, created_by, correlation_id, created_at
    FROM sales.orders WHERE id = @id;
END;
GO
-- orders.v1.cancel: the previous status as an OUTPUT parameter; error 50404
-- when there is no such order (the call is rolled back, the broker replies
-- db_error with that number).
CREATE OR ALTER PROCEDURE sales.cancel_order @id bigint, @previous_status nvarchar(20) OUTPUT
AS
BEGIN
    SELECT @previous_status = status FROM sales.orders WITH (UPDLOCK, ROWLOCK) WHERE id = @id;
    IF @previous_status IS NULL THROW 50404, N'order not found', 1;
    UPDATE sales.orders SET status = N'cancelled' WHERE id = @id;
    RETURN 0;
END;
GO
