-- sqlgate: the broker's database user and its least privilege, in each
-- target database (run as dbo, after 01 and after the routed schemas exist).
--
--   SQL login:  sqlcmd -d orders -v SQLGATE_LOGIN=sqlgate_broker SQLGATE_AUTH=sql SQLGATE_SCHEMA=sales -i 02-broker-user.sql
--   Entra:      sqlcmd -d orders -v SQLGATE_LOGIN="sqlgate-mi" SQLGATE_AUTH=entra SQLGATE_SCHEMA=sales -i 02-broker-user.sql
--               (SQLGATE_LOGIN = the managed identity's or app registration's display name)
--
-- The user may: EXECUTE the procedures of the routed schema (ownership
-- chaining gives the procedures their table access) and keep its own
-- idempotency records. It may not read or change tables directly, run
-- ad-hoc DDL, or manage logins and users (see 04-credential-issuance.sql,
-- optional). Run once per routed schema (SQLGATE_SCHEMA).
:on error exit
SET NOCOUNT ON;
DECLARE @name sysname = N'$(SQLGATE_LOGIN)', @auth nvarchar(10) = N'$(SQLGATE_AUTH)', @schema sysname = N'$(SQLGATE_SCHEMA)';
DECLARE @sql nvarchar(max);
IF DATABASE_PRINCIPAL_ID(@name) IS NULL
BEGIN
    SET @sql = CASE @auth
        WHEN N'entra' THEN N'CREATE USER ' + QUOTENAME(@name) + N' FROM EXTERNAL PROVIDER;'
        ELSE N'CREATE USER ' + QUOTENAME(@name) + N' FOR LOGIN ' + QUOTENAME(@name) + N';' END;
    EXEC sys.sp_executesql @sql;
END;
IF DATABASE_PRINCIPAL_ID(N'sqlgate_executor') IS NULL
    CREATE ROLE sqlgate_executor AUTHORIZATION dbo;
IF IS_ROLEMEMBER(N'sqlgate_executor', @name) = 0
BEGIN
    SET @sql = N'ALTER ROLE sqlgate_executor ADD MEMBER ' + QUOTENAME(@name) + N';';
    EXEC sys.sp_executesql @sql;
END;
-- Routed schema: call procedures, nothing else.
IF SCHEMA_ID(@schema) IS NULL THROW 50000, N'the routed schema does not exist (create it first, e.g. 03-orders-example.sql)', 1;
SET @sql = N'GRANT EXECUTE ON SCHEMA::' + QUOTENAME(@schema) + N' TO sqlgate_executor;';
EXEC sys.sp_executesql @sql;
-- Idempotency records: insert, read, store the result, prune.
GRANT SELECT, INSERT, UPDATE, DELETE ON OBJECT::sqlgate.idempotency TO sqlgate_executor;
-- Statement routes (admin-defined SQL) run with the user's own rights:
-- grant exactly what they touch, e.g. GRANT SELECT ON OBJECT::sales.orders (id, status) TO sqlgate_executor;
GO
