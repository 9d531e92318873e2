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
-- Every update and delete is stamped from SESSION_CONTEXT (falls back to the
-- login for changes made outside sqlgate).
CREATE OR ALTER TRIGGER sales.orders_history ON sales.orders AFTER UPDATE, DELETE
AS
BEGIN
    SET NOCOUNT ON;
    INSERT INTO sales.order_history (order_id, operation, old_status, new_status, changed_by, correlation_id, decision_id, transaction_id)
    SELECT d.id, CASE WHEN i.id IS NULL THEN N'DELETE' ELSE N'UPDATE' END, d.status, i.status,
           ISNULL(CAST(SESSION_CONTEXT(N'sqlgate.principal') AS nvarchar(512)), ORIGINAL_LOGIN()),
           ISNULL(CAST(SESSION_CONTEXT(N'sqlgate.correlation_id') AS nvarchar(256)), N''),
           ISNULL(CAST(SESSION_CONTEXT(N'sqlgate.decision_id') AS nvarchar(128)), N''),
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
    INSERT INTO sales.orders (customer, amount, note, created_by, correlation_id)
    OUTPUT inserted.id INTO @ids
    VALUES (@customer, @amount, @note,
            ISNULL(CAST(SESSION_CONTEXT(N'sqlgate.principal') AS nvarchar(512)), ORIGINAL_LOGIN()),
            ISNULL(CAST(SESSION_CONTEXT(N'sqlgate.correlation_id') AS nvarchar(256)), N''));
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
