-- sqlgate, OPTIONAL: permissions for issuing short-lived SQL logins (the
-- `sqlgate creds sql` feature). Not needed to run calls; grant only when
-- credential issuance is enabled for this server. SQLGATE_CONTAINED is the
-- mode of sqlserverLogins (`contained`) and is required:
--
-- Server logins (SQLGATE_CONTAINED=0; SQL Server, Azure SQL Managed Instance):
--   sqlcmd -S host -d master -v SQLGATE_LOGIN=sqlgate_broker SQLGATE_CONTAINED=0 -i 04-credential-issuance.sql
--   then, in each database where issued logins get users:
--   sqlcmd -S host -d orders -v SQLGATE_LOGIN=sqlgate_broker SQLGATE_CONTAINED=0 -i 04-credential-issuance.sql
--
-- Contained users (SQLGATE_CONTAINED=1; Azure SQL Database, contained
-- databases), in each database where users are issued:
--   sqlcmd -S host -d orders -v SQLGATE_LOGIN=sqlgate_broker SQLGATE_CONTAINED=1 -i 04-credential-issuance.sql
--   On Azure SQL Database that is all (there is nothing to grant in master:
--   the script refuses to run there). A contained database on SQL Server or
--   Managed Instance also needs, once, in master:
--   sqlcmd -S host -d master -v SQLGATE_LOGIN=sqlgate_broker SQLGATE_CONTAINED=1 -i 04-credential-issuance.sql
--
-- Server level (master): create/disable/drop logins (ALTER ANY LOGIN, server
-- logins only); end an issued login's or user's sessions on revocation
-- (KILL needs ALTER ANY CONNECTION, and listing them needs VIEW SERVER
-- STATE: without it sys.dm_exec_sessions shows only the broker's own
-- session and revocation would silently leave sessions open).
-- Azure SQL Database, contained users: the same in the database, as VIEW
-- DATABASE STATE (sys.dm_exec_sessions shows the database's sessions) and
-- KILL DATABASE CONNECTION (Azure SQL Database only); without them every
-- revocation fails with error 50103.
-- Database level: create/drop users and add them to the roles policy
-- allows (ALTER ANY USER; ALTER ANY ROLE to manage role membership), and
-- VIEW DEFINITION on the database, so that sqlgate can check a role before
-- granting it: without it sys.database_role_members shows only this
-- login's own memberships and sys.database_permissions only its own
-- grants, a role nested in db_owner would look harmless, and so sqlgate
-- refuses to issue logins (error 50104) until it is granted (a contained
-- user whose lease ended is then locked and its sessions ended, but not
-- dropped). VIEW SECURITY
-- DEFINITION (SQL Server 2022+, Azure SQL) is not enough: Microsoft
-- documents VIEW DEFINITION on the database (or db_securityadmin) for
-- seeing other principals' role memberships, and IS_ROLEMEMBER needs
-- VIEW DEFINITION on the role; sqlgate checks for VIEW DEFINITION.
-- VIEW DEFINITION shows metadata (role memberships, permissions, object
-- definitions), never data.
-- ALTER ANY ROLE covers user-defined roles only: adding a member to a fixed
-- database role (db_datareader, db_datawriter, ...) needs db_owner, which
-- this login must not have, so sqlgate refuses to grant fixed roles. Create
-- a role per access level and nest the fixed roles in it, e.g.
--   CREATE ROLE reader; ALTER ROLE db_datareader ADD MEMBER reader;
-- and list reader in sqlserverLogins.allowedRoles. ALTER ANY ROLE also lets
-- this login add members to any user-defined role, sqlgate_executor
-- included, so sqlgate checks every role against an allowlist and refuses
-- (fails closed) a role that is or belongs to db_owner, db_securityadmin,
-- db_accessadmin, db_ddladmin, db_backupoperator or a role of this login's
-- own user (sqlgate_executor); that holds, itself, through its chain or
-- through public, any permission other than SELECT, INSERT, UPDATE, DELETE,
-- EXECUTE, REFERENCES, VIEW DEFINITION, VIEW CHANGE TRACKING, SHOWPLAN,
-- UNMASK and CONNECT (and the VIEW ANY COLUMN ... KEY DEFINITION public
-- holds by default), or any permission WITH GRANT OPTION; or that owns
-- (through any role in its chain) a schema, an object, a role, an assembly,
-- a certificate or an asymmetric key. allowedRoles narrows it further.
:on error exit
DECLARE @name sysname = N'$(SQLGATE_LOGIN)', @contained nvarchar(10) = N'$(SQLGATE_CONTAINED)', @sql nvarchar(max);
DECLARE @azure_sql_database bit = CASE WHEN CAST(SERVERPROPERTY('EngineEdition') AS int) = 5 THEN 1 ELSE 0 END;
IF @contained IS NULL OR @contained NOT IN (N'0', N'1')
    THROW 50000, N'SQLGATE_CONTAINED must be 0 (server logins: SQL Server, Managed Instance) or 1 (contained users: Azure SQL Database, contained databases)', 1;
IF DB_NAME() = N'master' AND @azure_sql_database = 1
    THROW 50000, N'Azure SQL Database: run this script in the user database with SQLGATE_CONTAINED=1, not in master (server logins are not issued on Azure SQL Database)', 1;
IF DB_NAME() = N'master'
BEGIN
    IF @contained = N'0'
        SET @sql = N'GRANT ALTER ANY LOGIN, ALTER ANY CONNECTION, VIEW SERVER STATE TO ' + QUOTENAME(@name) + N';';
    ELSE
        SET @sql = N'GRANT ALTER ANY CONNECTION, VIEW SERVER STATE TO ' + QUOTENAME(@name) + N';';
    EXEC sys.sp_executesql @sql;
END
ELSE
BEGIN
    SET @sql = N'GRANT ALTER ANY USER, ALTER ANY ROLE, VIEW DEFINITION TO ' + QUOTENAME(@name) + N';';
    EXEC sys.sp_executesql @sql;
    IF @contained = N'1' AND @azure_sql_database = 1
    BEGIN
        SET @sql = N'GRANT VIEW DATABASE STATE, KILL DATABASE CONNECTION TO ' + QUOTENAME(@name) + N';';
        EXEC sys.sp_executesql @sql;
    END
    ELSE IF @contained = N'1'
        PRINT N'sqlgate: contained users on SQL Server or Managed Instance: also run this script in master with SQLGATE_CONTAINED=1 (ALTER ANY CONNECTION, VIEW SERVER STATE, to end the users'' sessions)';
END;
GO
