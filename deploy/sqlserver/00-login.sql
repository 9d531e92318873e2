-- sqlgate: the broker's SQL login (SQL Server / Azure SQL Managed Instance,
-- SQL authentication). Run in master as a member of securityadmin, with the
-- password in the environment (sqlcmd reads environment variables as
-- scripting variables) rather than on the command line, where -v would
-- show it in the process list and the shell history:
--
--   read -rs SQLGATE_PASSWORD && export SQLGATE_PASSWORD
--   sqlcmd -S host -d master -v SQLGATE_LOGIN=sqlgate_broker -i 00-login.sql
--   unset SQLGATE_PASSWORD
--
-- Skip this script with Entra authentication (managed identity or service
-- principal): 02-broker-user.sql then creates a user FROM EXTERNAL PROVIDER.
-- sqlcmd splices $(SQLGATE_PASSWORD) into the text of the batch below
-- before sending it, so the password is part of the SQL text the server
-- receives (as an N'...' literal: it must not contain a single quote), and
-- a trace or Extended Events session capturing batch text records it; run
-- the script while none does. The batch then builds CREATE LOGIN with
-- QUOTENAME. The password must satisfy the Windows password policy
-- (CHECK_POLICY = ON).
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
