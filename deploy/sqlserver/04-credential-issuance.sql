-- sqlgate, OPTIONAL: permissions for issuing short-lived SQL logins (the
-- `sqlgate creds sql` feature). Not needed to run calls; grant only when
-- credential issuance is enabled for this server.
--
--   sqlcmd -S host -d master -v SQLGATE_LOGIN=sqlgate_broker -i 04-credential-issuance.sql
--   then, in each database where issued logins get users:
--   sqlcmd -S host -d orders -v SQLGATE_LOGIN=sqlgate_broker -i 04-credential-issuance.sql
--
-- Server level (master): create/disable/drop logins; end an issued login's
-- sessions on revocation (KILL needs ALTER ANY CONNECTION, and listing them
-- needs VIEW SERVER STATE: without it sys.dm_exec_sessions shows only the
-- broker's own session and revocation would silently leave sessions open).
-- Database level: create/drop users and add them to the roles policy
-- allows (ALTER ANY USER; ALTER ANY ROLE to manage role membership), and
-- VIEW DEFINITION on the database, so that sqlgate can check a role before
-- granting it: without it sys.database_role_members shows only this
-- login's own memberships and sys.database_permissions only its own
-- grants, a role nested in db_owner would look harmless, and so sqlgate
-- refuses to issue logins (error 50104) until it is granted. VIEW SECURITY
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
-- this login add members to any user-defined role: sqlgate refuses roles
-- that are or belong to db_owner, db_securityadmin, db_accessadmin or
-- db_ddladmin, hold CONTROL or ALTER on anything, IMPERSONATE, TAKE
-- OWNERSHIP or ALTER ANY USER/ROLE/APPLICATION ROLE/SCHEMA, or own (through
-- any role in their chain) a schema, an object, a role, an assembly, a
-- certificate or an asymmetric key, and allowedRoles narrows it further.
:on error exit
DECLARE @name sysname = N'$(SQLGATE_LOGIN)', @sql nvarchar(max);
IF DB_NAME() = N'master'
BEGIN
    SET @sql = N'GRANT ALTER ANY LOGIN, ALTER ANY CONNECTION, VIEW SERVER STATE TO ' + QUOTENAME(@name) + N';';
    EXEC sys.sp_executesql @sql;
END
ELSE
BEGIN
    SET @sql = N'GRANT ALTER ANY USER, ALTER ANY ROLE, VIEW DEFINITION TO ' + QUOTENAME(@name) + N';';
    EXEC sys.sp_executesql @sql;
END;
GO
