-- sqlgate: the broker's SQL login (SQL Server / Azure SQL Managed Instance,
-- SQL authentication). Run in master as a member of securityadmin:
--
--   sqlcmd -S host -d master -v SQLGATE_LOGIN=sqlgate_broker SQLGATE_PASSWORD="..." -i 00-login.sql
--
-- Skip this script with Entra authentication (managed identity or service
-- principal): 02-broker-user.sql then creates a user FROM EXTERNAL PROVIDER.
-- The password is handed to QUOTENAME, never spliced into SQL text; it must
-- satisfy the Windows password policy (CHECK_POLICY = ON).
:on error exit
SET NOCOUNT ON;
DECLARE @login sysname = N'$(SQLGATE_LOGIN)';
DECLARE @password nvarchar(128) = N'$(SQLGATE_PASSWORD)';
IF SUSER_ID(@login) IS NULL
BEGIN
    DECLARE @sql nvarchar(max) = N'CREATE LOGIN ' + QUOTENAME(@login)
        + N' WITH PASSWORD = ' + QUOTENAME(@password, N'''')
        + N', CHECK_POLICY = ON, CHECK_EXPIRATION = OFF;';
    EXEC sys.sp_executesql @sql;
END;
-- The broker needs no server-level permission to run calls.
GO
