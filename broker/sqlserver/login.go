package sqlserver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/internal/scrub"
)

// The T-SQL batches of short-lived logins. Every batch is sent through
// sp_executesql with named parameters: @login (the generated login name),
// @password (creation only), @role, @expires_at (datetimeoffset), @lease_id
// and @principal (a readable label), plus @lock_password (a fresh random
// password nobody knows) in the disable step. DDL cannot take parameters,
// so each batch builds its statement with QUOTENAME from the parameters
// and runs it with sys.sp_executesql: no name or password is ever part of
// the text sqlgated sends. QUOTENAME returns NULL for input over 128
// characters, which would silently run nothing; the batches check lengths
// first.
const (
	// LoginCreateBatch creates a server login, its user in this database
	// and the role membership (default creation, server mode; one
	// transaction). The login's default database is this one; extended
	// properties record whom and which lease it belongs to.
	LoginCreateBatch = `SET XACT_ABORT ON;
IF @login IS NULL OR DATALENGTH(@login) > 256 OR @role IS NULL OR DATALENGTH(@role) > 256 OR @password IS NULL OR DATALENGTH(@password) > 256
    THROW 50100, N'sqlgate: login, role or password missing or longer than 128 characters', 1;
DECLARE @sql nvarchar(max);
SET @sql = N'CREATE LOGIN ' + QUOTENAME(@login) + N' WITH PASSWORD = ' + QUOTENAME(@password, N'''')
    + N', CHECK_POLICY = ON, CHECK_EXPIRATION = OFF, DEFAULT_DATABASE = ' + QUOTENAME(DB_NAME()) + N';';
EXEC sys.sp_executesql @sql;
SET @sql = N'CREATE USER ' + QUOTENAME(@login) + N' FOR LOGIN ' + QUOTENAME(@login) + N';';
EXEC sys.sp_executesql @sql;
SET @sql = N'ALTER ROLE ' + QUOTENAME(@role) + N' ADD MEMBER ' + QUOTENAME(@login) + N';';
EXEC sys.sp_executesql @sql;
EXEC sys.sp_addextendedproperty @name = N'sqlgate.principal', @value = @principal, @level0type = N'USER', @level0name = @login;
EXEC sys.sp_addextendedproperty @name = N'sqlgate.lease_id', @value = @lease_id, @level0type = N'USER', @level0name = @login;`

	// ContainedCreateBatch creates a contained database user with a
	// password (Azure SQL Database, contained databases) and its role
	// membership (default creation, contained mode; one transaction).
	ContainedCreateBatch = `SET XACT_ABORT ON;
IF @login IS NULL OR DATALENGTH(@login) > 256 OR @role IS NULL OR DATALENGTH(@role) > 256 OR @password IS NULL OR DATALENGTH(@password) > 256
    THROW 50100, N'sqlgate: login, role or password missing or longer than 128 characters', 1;
DECLARE @sql nvarchar(max);
SET @sql = N'CREATE USER ' + QUOTENAME(@login) + N' WITH PASSWORD = ' + QUOTENAME(@password, N'''') + N';';
EXEC sys.sp_executesql @sql;
SET @sql = N'ALTER ROLE ' + QUOTENAME(@role) + N' ADD MEMBER ' + QUOTENAME(@login) + N';';
EXEC sys.sp_executesql @sql;
EXEC sys.sp_addextendedproperty @name = N'sqlgate.principal', @value = @principal, @level0type = N'USER', @level0name = @login;
EXEC sys.sp_addextendedproperty @name = N'sqlgate.lease_id', @value = @lease_id, @level0type = N'USER', @level0name = @login;`

	// RoleCheckBatch runs first in the creation transaction. It fails
	// (50104, [ErrViewDefinition]) unless the broker may see the whole
	// database's security metadata (VIEW DEFINITION on the database):
	// without it sys.database_role_members shows only the broker's own
	// memberships and sys.database_permissions only its own grants, so a
	// role nested in db_owner would look harmless. Then: does the role
	// exist in this database; is it a fixed database role (db_datareader,
	// ...; public), whose members only db_owner may add; and is it
	// privileged. The rule fails closed: the role, or a role it belongs to
	// at any depth, is privileged when
	//   - it is db_owner, db_securityadmin, db_accessadmin, db_ddladmin or
	//     db_backupoperator;
	//   - it is a user-defined role the broker's own user belongs to
	//     (IS_ROLEMEMBER, at any depth), or sqlgate_executor by name: an
	//     issued user in the broker's executor role would pass every check
	//     that trusts the broker's sessions (SESSION_CONTEXT, see
	//     docs/sqlserver.md) and could rewrite stored idempotency results;
	//   - it holds (granted, directly or through public) any permission
	//     that is not on [DataAccessPermissions] (SELECT, INSERT, UPDATE,
	//     DELETE, EXECUTE, ...), on any securable, or any permission WITH
	//     GRANT OPTION (what the user grants outlives the lease). So
	//     CONTROL, ALTER on anything, IMPERSONATE, TAKE OWNERSHIP, every
	//     ALTER ANY ... (ALTER ANY DATABASE DDL TRIGGER: a DDL trigger the
	//     user creates runs as the broker on its next CREATE USER), every
	//     CREATE ... ([OwnershipPermissions]: DROP USER fails with 15138 for
	//     an owner and the lease stays revoking), BACKUP DATABASE, BACKUP
	//     LOG, and permissions SQL Server adds in later versions all count.
	//     DENY rows (state D) are not grants and do not count;
	//   - it owns something ([OwnedSecurables]: a schema, an object, a role
	//     or application role, an assembly, a certificate or an asymmetric
	//     key), which gives its members CONTROL of it with no row in
	//     sys.database_permissions.
	RoleCheckBatch = `SET NOCOUNT ON;
IF ISNULL(HAS_PERMS_BY_NAME(DB_NAME(), N'DATABASE', N'VIEW DEFINITION'), 0) = 0
    THROW 50104, N'sqlgate: VIEW DEFINITION on the database is required to see role memberships, permissions and owners', 1;
DECLARE @found bit = 0, @fixed bit = 0, @privileged bit = 0;
SELECT @found = 1, @fixed = CASE WHEN is_fixed_role = 1 OR principal_id = 0 THEN 1 ELSE 0 END
FROM sys.database_principals WHERE name = @role AND type = N'R';
WITH up AS (
    SELECT principal_id FROM sys.database_principals WHERE name = @role AND type = N'R'
    UNION ALL
    SELECT m.role_principal_id FROM sys.database_role_members AS m JOIN up ON m.member_principal_id = up.principal_id
)
SELECT @privileged = 1 FROM up JOIN sys.database_principals AS r ON r.principal_id = up.principal_id
WHERE r.name IN (N'db_owner', N'db_securityadmin', N'db_accessadmin', N'db_ddladmin', N'db_backupoperator')
   OR (r.is_fixed_role = 0 AND r.principal_id <> 0 AND (r.name = N'sqlgate_executor' OR IS_ROLEMEMBER(r.name) = 1))
   OR EXISTS (SELECT 1 FROM sys.database_permissions AS p
              WHERE p.grantee_principal_id IN (up.principal_id, 0) AND p.state IN ('G', 'W')
                AND (p.state = 'W' OR p.permission_name NOT IN (N'SELECT', N'INSERT', N'UPDATE', N'DELETE', N'EXECUTE', N'REFERENCES',
                     N'VIEW DEFINITION', N'VIEW CHANGE TRACKING', N'SHOWPLAN', N'UNMASK', N'CONNECT',
                     N'VIEW ANY COLUMN ENCRYPTION KEY DEFINITION', N'VIEW ANY COLUMN MASTER KEY DEFINITION')))
   OR EXISTS (SELECT 1 FROM sys.schemas AS o WHERE o.principal_id = up.principal_id AND NOT (r.is_fixed_role = 1 AND o.name = r.name))
   OR EXISTS (SELECT 1 FROM sys.objects AS o WHERE o.principal_id = up.principal_id)
   OR EXISTS (SELECT 1 FROM sys.database_principals AS o WHERE o.owning_principal_id = up.principal_id)
   OR EXISTS (SELECT 1 FROM sys.assemblies AS o WHERE o.principal_id = up.principal_id)
   OR EXISTS (SELECT 1 FROM sys.certificates AS o WHERE o.principal_id = up.principal_id)
   OR EXISTS (SELECT 1 FROM sys.asymmetric_keys AS o WHERE o.principal_id = up.principal_id);
SELECT @found AS found, @fixed AS fixed, @privileged AS privileged;`

	// LoginRenewBatch checks that the server login still exists and is
	// enabled. SQL Server has no login expiry: the lease's expiry is
	// enforced by sqlgated's reaper (see docs/credentials.md for an
	// optional logon trigger).
	LoginRenewBatch = `IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = @login AND type = N'S' AND is_disabled = 0)
    THROW 50102, N'sqlgate: the login does not exist or is disabled', 1;`

	// ContainedRenewBatch checks that the contained user still exists.
	ContainedRenewBatch = `IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = @login AND type = N'S' AND authentication_type = 2)
    THROW 50102, N'sqlgate: the contained user does not exist', 1;`

	// LoginGuardBatch refuses to revoke a login sqlgate would never create
	// (a sysadmin, or one whose user owns the database), whatever its name.
	// IS_SRVROLEMEMBER returns NULL for a login that does not exist and
	// when the caller may not see the membership: for an existing login,
	// NULL counts as privileged (fail closed); a login that does not
	// exist has nothing to revoke, and the later batches skip it.
	LoginGuardBatch = `SELECT CAST(CASE WHEN NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = @login) THEN 0
    WHEN ISNULL(IS_SRVROLEMEMBER(N'sysadmin', @login), 1) = 1
    OR EXISTS (SELECT 1 FROM sys.database_principals AS u JOIN sys.server_principals AS l ON l.sid = u.sid
               WHERE l.name = @login AND u.name = N'dbo') THEN 1 ELSE 0 END AS bit) AS privileged;`

	// ContainedGuardBatch refuses to revoke a contained user that is a
	// member of db_owner. IS_ROLEMEMBER returns NULL for a user that does
	// not exist and when the caller may not see the membership (it needs
	// VIEW DEFINITION on the role): for an existing user, NULL counts as
	// privileged (fail closed). Without VIEW DEFINITION on the database the
	// batch fails first (50104, [ErrViewDefinition]), so that the missing
	// grant is named instead of every revocation being refused as
	// privileged.
	ContainedGuardBatch = `IF ISNULL(HAS_PERMS_BY_NAME(DB_NAME(), N'DATABASE', N'VIEW DEFINITION'), 0) = 0
    THROW 50104, N'sqlgate: VIEW DEFINITION on the database is required to see role memberships, permissions and owners', 1;
SELECT CAST(CASE WHEN NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = @login) THEN 0
    WHEN ISNULL(IS_ROLEMEMBER(N'db_owner', @login), 1) = 1 THEN 1 ELSE 0 END AS bit) AS privileged;`

	// LoginDisableBatch stops new sessions of a server login (revocation,
	// step 1).
	LoginDisableBatch = `IF EXISTS (SELECT 1 FROM sys.server_principals WHERE name = @login AND type = N'S')
BEGIN
    DECLARE @sql nvarchar(max) = N'ALTER LOGIN ' + QUOTENAME(@login) + N' DISABLE;';
    EXEC sys.sp_executesql @sql;
END;`

	// ContainedDisableBatch stops new sessions of a contained user by
	// setting a password nobody knows (revocation, step 1; contained users
	// cannot be disabled).
	ContainedDisableBatch = `IF EXISTS (SELECT 1 FROM sys.database_principals WHERE name = @login AND type = N'S')
BEGIN
    DECLARE @sql nvarchar(max) = N'ALTER USER ' + QUOTENAME(@login) + N' WITH PASSWORD = ' + QUOTENAME(@lock_password, N'''') + N';';
    EXEC sys.sp_executesql @sql;
END;`

	// ContainedLockLeaseBatch is the contained-mode revocation's step 1
	// when [ContainedGuardBatch] stopped with 50104 (no VIEW DEFINITION:
	// the guard cannot tell whether the user is a db_owner member). It sets
	// a password nobody knows only on the contained user that sqlgate
	// created for this very lease: the user of that name whose extended
	// property sqlgate.lease_id, written in the creation's transaction, is
	// @lease_id. It reads only sys.database_principals and
	// sys.extended_properties, which show users to a holder of ALTER ANY
	// USER without VIEW DEFINITION, and returns whether it locked one
	// (0: no such user visible, nothing changed). RevokeLogin then ends the
	// user's sessions and stops before DROP USER, which waits for the grant.
	ContainedLockLeaseBatch = `SET NOCOUNT ON;
IF @login IS NULL OR DATALENGTH(@login) > 256 OR @lock_password IS NULL OR DATALENGTH(@lock_password) > 256
    THROW 50100, N'sqlgate: login or lock password missing or longer than 128 characters', 1;
DECLARE @locked bit = 0, @sql nvarchar(max);
IF @lease_id IS NOT NULL AND EXISTS (SELECT 1 FROM sys.database_principals AS u
               JOIN sys.extended_properties AS x ON x.class = 4 AND x.major_id = u.principal_id
               WHERE u.name = @login AND u.type = N'S' AND u.authentication_type = 2
                 AND x.name = N'sqlgate.lease_id' AND CAST(x.value AS nvarchar(256)) = @lease_id)
BEGIN
    SET @sql = N'ALTER USER ' + QUOTENAME(@login) + N' WITH PASSWORD = ' + QUOTENAME(@lock_password, N'''') + N';';
    EXEC sys.sp_executesql @sql;
    SET @locked = 1;
END;
SELECT @locked AS locked;`

	// KillSessionsBatch ends the login's sessions (revocation, step 2). It
	// runs outside any transaction (KILL cannot run in one), fails loudly
	// without VIEW SERVER STATE (without it sys.dm_exec_sessions shows only
	// the caller's own session and nothing would be killed), tolerates
	// sessions that ended meanwhile (6106) and returns how many remain. A
	// session is the login's when it logged in as the login
	// (original_login_name) or currently runs as it (login_name): after
	// EXECUTE AS LOGIN, login_name shows the impersonated login and only
	// original_login_name the one that opened the session. KILL returns
	// before the session is gone (it still shows, KILLED/ROLLBACK, while
	// it ends), so the batch waits up to 2 seconds for the sessions it
	// killed before counting: a session that takes longer (a long
	// rollback) counts as remaining, and the attempt is retried.
	KillSessionsBatch = `SET NOCOUNT ON;
IF HAS_PERMS_BY_NAME(NULL, NULL, N'VIEW SERVER STATE') = 0
    THROW 50103, N'sqlgate: VIEW SERVER STATE is required to see and end the login''s sessions', 1;
DECLARE @id int, @kill nvarchar(40), @waits int = 0;
DECLARE @killed TABLE (session_id int PRIMARY KEY);
DECLARE sessions CURSOR LOCAL FAST_FORWARD FOR
    SELECT session_id FROM sys.dm_exec_sessions WHERE (login_name = @login OR original_login_name = @login) AND session_id <> @@SPID;
OPEN sessions;
FETCH NEXT FROM sessions INTO @id;
WHILE @@FETCH_STATUS = 0
BEGIN
    SET @kill = N'KILL ' + CAST(@id AS nvarchar(11)) + N';';
    BEGIN TRY
        EXEC sys.sp_executesql @kill;
        INSERT INTO @killed (session_id) VALUES (@id);
    END TRY
    BEGIN CATCH
        IF ERROR_NUMBER() <> 6106 THROW;
    END CATCH;
    FETCH NEXT FROM sessions INTO @id;
END;
CLOSE sessions;
DEALLOCATE sessions;
WHILE @waits < 20 AND EXISTS (SELECT 1 FROM sys.dm_exec_sessions AS s JOIN @killed AS k ON k.session_id = s.session_id
                              WHERE s.login_name = @login OR s.original_login_name = @login)
BEGIN
    WAITFOR DELAY '00:00:00.100';
    SET @waits += 1;
END;
SELECT COUNT(*) AS remaining FROM sys.dm_exec_sessions WHERE (login_name = @login OR original_login_name = @login) AND session_id <> @@SPID;`

	// ContainedKillSessionsBatch is KillSessionsBatch for contained users,
	// with the same filter on login_name and original_login_name and the
	// same wait, for the sessions this database authenticated
	// (authenticating_database_id: a contained user that moved to another
	// database with USE, tempdb say, is still this database's) or that are
	// in it (database_id). Sessions on other replicas (readable
	// secondaries, geo-replicas, read scale-out) are not in this server's
	// sys.dm_exec_sessions and are not ended. On Azure SQL Database
	// (SERVERPROPERTY('EngineEdition') 5) VIEW DATABASE STATE shows the
	// database's sessions and KILL needs KILL DATABASE CONNECTION; there
	// the batch checks VIEW DATABASE STATE only (the server form of
	// HAS_PERMS_BY_NAME is not available there). On
	// SQL Server and Managed Instance sys.dm_exec_sessions shows other
	// sessions only with VIEW SERVER STATE (VIEW DATABASE STATE is not
	// enough) and KILL needs ALTER ANY CONNECTION: there the batch checks
	// VIEW SERVER STATE. A NULL from HAS_PERMS_BY_NAME counts as missing.
	ContainedKillSessionsBatch = `SET NOCOUNT ON;
IF CASE WHEN CAST(SERVERPROPERTY('EngineEdition') AS int) = 5
        THEN ISNULL(HAS_PERMS_BY_NAME(DB_NAME(), N'DATABASE', N'VIEW DATABASE STATE'), 0)
        ELSE ISNULL(HAS_PERMS_BY_NAME(NULL, NULL, N'VIEW SERVER STATE'), 0) END = 0
    THROW 50103, N'sqlgate: VIEW DATABASE STATE (Azure SQL Database) or VIEW SERVER STATE (SQL Server, Managed Instance) is required to see and end the user''s sessions', 1;
DECLARE @id int, @kill nvarchar(40), @waits int = 0;
DECLARE @killed TABLE (session_id int PRIMARY KEY);
DECLARE sessions CURSOR LOCAL FAST_FORWARD FOR
    SELECT session_id FROM sys.dm_exec_sessions WHERE (login_name = @login OR original_login_name = @login)
        AND (authenticating_database_id = DB_ID() OR database_id = DB_ID()) AND session_id <> @@SPID;
OPEN sessions;
FETCH NEXT FROM sessions INTO @id;
WHILE @@FETCH_STATUS = 0
BEGIN
    SET @kill = N'KILL ' + CAST(@id AS nvarchar(11)) + N';';
    BEGIN TRY
        EXEC sys.sp_executesql @kill;
        INSERT INTO @killed (session_id) VALUES (@id);
    END TRY
    BEGIN CATCH
        IF ERROR_NUMBER() <> 6106 THROW;
    END CATCH;
    FETCH NEXT FROM sessions INTO @id;
END;
CLOSE sessions;
DEALLOCATE sessions;
WHILE @waits < 20 AND EXISTS (SELECT 1 FROM sys.dm_exec_sessions AS s JOIN @killed AS k ON k.session_id = s.session_id
                              WHERE s.login_name = @login OR s.original_login_name = @login)
BEGIN
    WAITFOR DELAY '00:00:00.100';
    SET @waits += 1;
END;
SELECT COUNT(*) AS remaining FROM sys.dm_exec_sessions WHERE (login_name = @login OR original_login_name = @login)
    AND (authenticating_database_id = DB_ID() OR database_id = DB_ID()) AND session_id <> @@SPID;`

	// DropUsersBatch drops every user of this database mapped to the login,
	// and a user of its name (revocation, step 3a).
	DropUsersBatch = `DECLARE @sql nvarchar(max), @user sysname;
DECLARE users CURSOR LOCAL FAST_FORWARD FOR
    SELECT name FROM sys.database_principals
    WHERE type = N'S' AND name <> N'dbo' AND (sid = SUSER_SID(@login) OR name = @login);
OPEN users;
FETCH NEXT FROM users INTO @user;
WHILE @@FETCH_STATUS = 0
BEGIN
    SET @sql = N'DROP USER ' + QUOTENAME(@user) + N';';
    EXEC sys.sp_executesql @sql;
    FETCH NEXT FROM users INTO @user;
END;
CLOSE users;
DEALLOCATE users;`

	// DropLoginBatch drops the server login (revocation, step 3b). It fails
	// (15434) while a session remains, and is retried.
	DropLoginBatch = `IF EXISTS (SELECT 1 FROM sys.server_principals WHERE name = @login AND type = N'S')
BEGIN
    DECLARE @sql nvarchar(max) = N'DROP LOGIN ' + QUOTENAME(@login) + N';';
    EXEC sys.sp_executesql @sql;
END;`

	// ContainedDropBatch drops the contained user (revocation, step 3).
	ContainedDropBatch = `IF EXISTS (SELECT 1 FROM sys.database_principals WHERE name = @login AND type = N'S')
BEGIN
    DECLARE @sql nvarchar(max) = N'DROP USER ' + QUOTENAME(@login) + N';';
    EXEC sys.sp_executesql @sql;
END;`
)

// LoginConfig configures short-lived logins on one SQL Server database.
// Templates are T-SQL batches that use the parameters named above
// ([LoginCreateBatch]); they replace the defaults of the mode. There is no
// text substitution: a {{placeholder}} is an error.
type LoginConfig struct {
	// Name is the database name users ask for (`--database`), normally the
	// name of the database's executor.
	Name string `json:"name" yaml:"name"`
	// Contained issues contained database users with passwords instead of
	// server logins: Azure SQL Database, or a contained database.
	Contained bool `json:"contained,omitempty" yaml:"contained,omitempty"`
	// Creation (one transaction), Renewal, Disable and Drop replace the
	// mode's default batches. Revocation runs the guard, Disable, the
	// built-in session kill ([KillSessionsBatch]), then Drop, each batch
	// on its own and outside a transaction.
	Creation []string `json:"creation,omitempty" yaml:"creation,omitempty"`
	Renewal  []string `json:"renewal,omitempty" yaml:"renewal,omitempty"`
	Disable  []string `json:"disable,omitempty" yaml:"disable,omitempty"`
	Drop     []string `json:"drop,omitempty" yaml:"drop,omitempty"`
	// LoginPrefix is the prefix of the login names the broker generates
	// (default broker.DefaultLoginPrefix); names without it are refused.
	LoginPrefix string `json:"loginPrefix,omitempty" yaml:"loginPrefix,omitempty"`
	// AllowedRoles, when set, lists the only roles this database grants:
	// user-defined roles. A fixed database role (db_datareader,
	// db_datawriter, ...) is refused: adding a member to one needs db_owner,
	// which the broker's login must not have. Create a role, make the fixed
	// role's permissions its own (ALTER ROLE db_datareader ADD MEMBER
	// reader), and list that.
	AllowedRoles []string `json:"allowedRoles,omitempty" yaml:"allowedRoles,omitempty"`
	// AllowPrivilegedRoles lets policy grant a role that [RoleCheckBatch]
	// counts as privileged: db_owner, db_securityadmin, db_accessadmin,
	// db_ddladmin or db_backupoperator, a role that belongs to one of them
	// or to a role of the broker's own user, a role holding any permission
	// outside [DataAccessPermissions] (or one WITH GRANT OPTION), or one
	// that owns one of [OwnedSecurables].
	// Fixed database roles are never granted: nest them in a user-defined
	// role.
	AllowPrivilegedRoles bool `json:"allowPrivilegedRoles,omitempty" yaml:"allowPrivilegedRoles,omitempty"`
	// ClientHost, ClientPort, ClientDatabase and ClientParams make up the
	// connection string shown to users (sqlserver://user@host:port?database=db).
	// ClientHost is required: the broker's own connection may go through a
	// name clients cannot use. ClientParams are URL query parameters; the
	// string carries encrypt=true unless they set encrypt, and they must
	// not weaken TLS (encrypt=false or disable, TrustServerCertificate=true)
	// unless AllowInsecureTransport is set.
	ClientHost     string `json:"clientHost" yaml:"clientHost"`
	ClientPort     int    `json:"clientPort,omitempty" yaml:"clientPort,omitempty"`
	ClientDatabase string `json:"clientDatabase,omitempty" yaml:"clientDatabase,omitempty"`
	ClientParams   string `json:"clientParams,omitempty" yaml:"clientParams,omitempty"`
	// AllowInsecureTransport lets ClientParams tell clients to log in
	// without TLS or without checking the server's certificate: the issued
	// password could then be read on the way. For a local test server only.
	AllowInsecureTransport bool `json:"allowInsecureTransport,omitempty" yaml:"allowInsecureTransport,omitempty"`
}

// OwnedSecurables are the catalog views whose principal_id (for
// sys.database_principals, owning_principal_id) [RoleCheckBatch] reads for
// securables a role owns: its members hold CONTROL of them, which no row
// of sys.database_permissions shows. (sys.objects.principal_id is set only
// for an object given its own owner with ALTER AUTHORIZATION: the others
// belong to their schema's owner. Each fixed database role owns the empty
// schema of its name, db_datareader's db_datareader: that one does not
// count, so a role nested in db_datareader, as docs/credentials.md
// suggests, stays grantable.)
var OwnedSecurables = []string{
	"sys.schemas", "sys.objects", "sys.database_principals", "sys.assemblies", "sys.certificates", "sys.asymmetric_keys",
}

// DataAccessPermissions are the only permissions a role (or a role it
// belongs to, or public) may hold, on any securable, and still be granted
// without allowPrivilegedRoles: [RoleCheckBatch] counts any other
// permission as privileged, and any permission held WITH GRANT OPTION.
// They read or change data through what an administrator granted, or show
// metadata, and none leads further: no ALTER, CONTROL, IMPERSONATE, TAKE
// OWNERSHIP, CREATE, ALTER ANY ..., BACKUP, KILL DATABASE CONNECTION,
// VIEW DATABASE STATE, ... The last two are granted to public in every
// database by default (SQL Server 2016 and later): metadata of Always
// Encrypted keys, never key material.
var DataAccessPermissions = []string{
	"SELECT", "INSERT", "UPDATE", "DELETE", "EXECUTE", "REFERENCES",
	"VIEW DEFINITION", "VIEW CHANGE TRACKING", "SHOWPLAN", "UNMASK", "CONNECT",
	"VIEW ANY COLUMN ENCRYPTION KEY DEFINITION", "VIEW ANY COLUMN MASTER KEY DEFINITION",
}

// OwnershipPermissions are the database permissions that create a
// securable owned by its creator unless told otherwise (CREATE SCHEMA,
// CREATE ROLE, ... without AUTHORIZATION): the issued user would own it,
// and DROP USER refuses to drop an owner (15138), so revocation could not
// finish and what the user created (a schema that grants the role's access
// on, a role it administers) would outlive the lease. None is among
// [DataAccessPermissions], so [RoleCheckBatch] counts a role holding one as
// privileged (as it does every other permission outside that list).
var OwnershipPermissions = []string{
	"CREATE SCHEMA", "CREATE ROLE", "CREATE ASSEMBLY", "CREATE ASYMMETRIC KEY", "CREATE SYMMETRIC KEY",
	"CREATE CERTIFICATE", "CREATE FULLTEXT CATALOG", "CREATE CONTRACT", "CREATE MESSAGE TYPE",
	"CREATE REMOTE SERVICE BINDING", "CREATE ROUTE", "CREATE SERVICE",
}

var (
	placeholderRE = regexp.MustCompile(`\{\{`)
	passwordRE    = regexp.MustCompile(`(?i)@password\b`)
	lockRE        = regexp.MustCompile(`(?i)@lock_password\b`)
)

// Validate reports every problem with the configuration at once.
func (c *LoginConfig) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	for _, t := range []struct {
		name           string
		batches        []string
		password, lock bool
	}{{"creation", c.Creation, true, false}, {"renewal", c.Renewal, false, false}, {"disable", c.Disable, false, true}, {"drop", c.Drop, false, false}} {
		for i, b := range t.batches {
			switch {
			case strings.TrimSpace(b) == "":
				errs = append(errs, fmt.Errorf("%s[%d]: empty batch", t.name, i))
			case placeholderRE.MatchString(b):
				errs = append(errs, fmt.Errorf("%s[%d]: use the parameters @login, @role, @password, ... with QUOTENAME, not {{placeholders}}", t.name, i))
			case !t.password && passwordRE.MatchString(b):
				errs = append(errs, fmt.Errorf("%s[%d]: @password is only available in creation batches", t.name, i))
			case !t.lock && lockRE.MatchString(b):
				errs = append(errs, fmt.Errorf("%s[%d]: @lock_password is only available in disable batches", t.name, i))
			}
		}
	}
	for _, r := range c.AllowedRoles {
		switch {
		case !validSysname(r):
			errs = append(errs, fmt.Errorf("allowedRoles: %q is not a valid role name", r))
		case fixedRoles[strings.ToLower(r)]:
			errs = append(errs, fmt.Errorf("allowedRoles: %q %s", r, fixedRoleHelp))
		}
	}
	if c.ClientHost == "" || strings.ContainsAny(c.ClientHost, "/?#@ \x00") {
		errs = append(errs, errors.New("clientHost is required (the server name clients connect to), without / ? # @ or spaces"))
	}
	if c.ClientPort < 0 || c.ClientPort > 65535 {
		errs = append(errs, errors.New("clientPort must be a port number"))
	}
	if q, err := c.clientQuery(); err != nil {
		errs = append(errs, errors.New("clientParams must be URL query parameters (encrypt=strict)"))
	} else {
		// Certificate files are the clients' own: not read here.
		for k := range q {
			if lk := strings.ToLower(k); lk == "certificate" || lk == "servercertificate" {
				q.Del(k)
			}
		}
		u := url.URL{Scheme: "sqlserver", Host: "client.invalid", RawQuery: q.Encode()}
		if err := CheckTransport(u.String(), c.AllowInsecureTransport); err != nil {
			errs = append(errs, fmt.Errorf("clientParams: %w", err))
		}
	}
	return errors.Join(errs...)
}

// clientQuery is ClientParams with encrypt=true added when they do not set
// encrypt (in any case: go-mssqldb reads keys case-insensitively).
func (c *LoginConfig) clientQuery() (url.Values, error) {
	q, err := url.ParseQuery(c.ClientParams)
	if err != nil {
		return nil, err
	}
	for k := range q {
		if strings.EqualFold(k, "encrypt") {
			return q, nil
		}
	}
	q.Set("encrypt", "true")
	return q, nil
}

// LoginIssuer implements [broker.SQLLoginIssuer] for SQL Server: server
// logins with a user in this database (SQL Server, Managed Instance) or
// contained users with passwords (Azure SQL Database). Names and passwords
// travel only as parameters and are quoted by QUOTENAME on the server.
// Revocation disables the login, ends its sessions (outside any
// transaction), drops its user(s) and the login, each step idempotent.
type LoginIssuer struct {
	db                           *sql.DB
	cfg                          LoginConfig
	create, renew, disable, drop []string
	guard, kill                  string
	allowed                      map[string]bool
}

// NewLoginIssuer returns the issuer for the database behind db (e.g.
// [Executor.DB]); its login needs the grants of
// deploy/sqlserver/04-credential-issuance.sql.
func NewLoginIssuer(db *sql.DB, cfg LoginConfig) (*LoginIssuer, error) {
	if db == nil {
		return nil, errors.New("sqlserver logins: a database handle is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sqlserver logins: %w", err)
	}
	if cfg.LoginPrefix == "" {
		cfg.LoginPrefix = broker.DefaultLoginPrefix
	}
	li := &LoginIssuer{db: db, cfg: cfg}
	li.create, li.renew, li.disable, li.drop = defaultBatches(cfg.Contained)
	li.guard, li.kill = LoginGuardBatch, KillSessionsBatch
	if cfg.Contained {
		li.guard, li.kill = ContainedGuardBatch, ContainedKillSessionsBatch
	}
	for _, o := range []struct {
		dst *[]string
		src []string
	}{{&li.create, cfg.Creation}, {&li.renew, cfg.Renewal}, {&li.disable, cfg.Disable}, {&li.drop, cfg.Drop}} {
		if len(o.src) > 0 {
			*o.dst = o.src
		}
	}
	if len(cfg.AllowedRoles) > 0 {
		li.allowed = map[string]bool{}
		for _, r := range cfg.AllowedRoles {
			li.allowed[strings.ToLower(r)] = true
		}
	}
	return li, nil
}

func defaultBatches(contained bool) (create, renew, disable, drop []string) {
	if contained {
		return []string{ContainedCreateBatch}, []string{ContainedRenewBatch}, []string{ContainedDisableBatch}, []string{ContainedDropBatch}
	}
	return []string{LoginCreateBatch}, []string{LoginRenewBatch}, []string{LoginDisableBatch}, []string{DropUsersBatch, DropLoginBatch}
}

// privilegedRoles may not be granted unless AllowPrivilegedRoles is set
// (checked here by name, and on the server with memberships).
var privilegedRoles = map[string]bool{"db_owner": true, "db_securityadmin": true, "db_accessadmin": true, "db_ddladmin": true}

// fixedRoles are SQL Server's fixed database roles (and public, which
// every user belongs to): ALTER ROLE ... ADD MEMBER on one needs db_owner,
// which ALTER ANY ROLE (04-credential-issuance.sql) does not give, so the
// broker never grants them (checked here by name, and on the server with
// is_fixed_role).
var fixedRoles = map[string]bool{
	"db_owner": true, "db_securityadmin": true, "db_accessadmin": true, "db_backupoperator": true, "db_ddladmin": true,
	"db_datawriter": true, "db_datareader": true, "db_denydatawriter": true, "db_denydatareader": true, "public": true,
}

const fixedRoleHelp = "is a fixed database role: sqlgate grants user-defined roles only (adding a member to a fixed role needs db_owner); create a role, add it to the fixed role (ALTER ROLE db_datareader ADD MEMBER reader) and grant that"

// errRoleMembership is SQL Server's 15151 ("Cannot %S_MSG the %S_MSG
// '%.*ls', because it does not exist or you do not have permission"). From
// ALTER ROLE ... ADD MEMBER in a creation ("Cannot alter the role ...")
// it means that the role was found, so the broker's login may not add
// members to it; other statements raise it for logins and users too.
const errRoleMembership = 15151

// errViewDefinition is the number [RoleCheckBatch] and
// [ContainedGuardBatch] THROW when the broker's login lacks VIEW
// DEFINITION on the database.
const errViewDefinition = 50104

// ErrViewDefinition is wrapped (with the server's [broker.DBError] 50104)
// by a creation or revocation that stopped because the broker's login may
// not see the database's role memberships, permissions and owners: grant
// it VIEW DEFINITION on the database
// (deploy/sqlserver/04-credential-issuance.sql). A contained-mode
// revocation that stopped so still locked the lease's user and ended its
// sessions when it also wraps [broker.ErrLoginDisabled] (see
// [ContainedLockLeaseBatch]).
var ErrViewDefinition = errors.New("sqlserver logins: the broker's login lacks VIEW DEFINITION on the database")

// loginArgs are the parameters of a batch.
func loginArgs(spec *broker.LoginSpec, extra ...sql.NamedArg) []any {
	args := []any{
		sql.Named("login", spec.Username), sql.Named("role", spec.Role), sql.Named("expires_at", spec.ExpiresAt.UTC()),
		sql.Named("lease_id", spec.LeaseID), sql.Named("principal", spec.Principal),
	}
	for _, e := range extra {
		args = append(args, e)
	}
	return args
}

// CreateLogin implements [broker.SQLLoginIssuer].
func (li *LoginIssuer) CreateLogin(ctx context.Context, spec broker.LoginSpec) (err error) {
	if err := li.check(&spec, true); err != nil {
		return err
	}
	tx, err := li.db.BeginTx(ctx, nil)
	if err != nil {
		return li.classify(ctx, err, &spec)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var found, fixed, privileged bool
	if err := tx.QueryRowContext(ctx, RoleCheckBatch, sql.Named("role", spec.Role)).Scan(&found, &fixed, &privileged); err != nil {
		return li.classify(ctx, err, &spec)
	}
	switch {
	case !found:
		return fmt.Errorf("%w: role %q does not exist in database %s", broker.ErrInvalid, spec.Role, li.cfg.Name)
	case fixed:
		return fmt.Errorf("%w: role %q %s", broker.ErrInvalid, spec.Role, fixedRoleHelp)
	case privileged && !li.cfg.AllowPrivilegedRoles:
		return fmt.Errorf("%w: role %q is privileged: it is or belongs to db_owner, db_securityadmin, db_accessadmin, db_ddladmin, db_backupoperator or a role of the broker's own user (sqlgate_executor), holds a permission other than %s or one WITH GRANT OPTION, or owns a schema, an object, a role, an assembly, a certificate or a key; sqlgate does not grant it (allowPrivilegedRoles)", broker.ErrInvalid, spec.Role, strings.Join(DataAccessPermissions, ", "))
	}
	args := loginArgs(&spec, sql.Named("password", spec.Password))
	for _, b := range li.create {
		if _, err := tx.ExecContext(ctx, b, args...); err != nil {
			return li.classifyStep(ctx, err, &spec, true)
		}
	}
	if err := tx.Commit(); err != nil {
		return li.classify(ctx, err, &spec)
	}
	return nil
}

// RenewLogin implements [broker.SQLLoginIssuer].
func (li *LoginIssuer) RenewLogin(ctx context.Context, spec broker.LoginSpec) error {
	if err := li.check(&spec, false); err != nil {
		return err
	}
	for _, b := range li.renew {
		if _, err := li.db.ExecContext(ctx, b, loginArgs(&spec)...); err != nil {
			return li.classify(ctx, err, &spec)
		}
	}
	return nil
}

// RevokeLogin implements [broker.SQLLoginIssuer]: guard, Disable, end the
// sessions, Drop; each batch on its own connection round trip and outside
// a transaction, stopping at the first failure so that the login is never
// reported gone while a session may remain. In contained mode without VIEW
// DEFINITION the guard stops with 50104, and the lease's own user is still
// locked and its sessions ended (see lockLease); only DROP USER waits.
func (li *LoginIssuer) RevokeLogin(ctx context.Context, spec broker.LoginSpec) error {
	if err := li.check(&spec, false); err != nil {
		return err
	}
	var privileged bool
	if err := li.db.QueryRowContext(ctx, li.guard, sql.Named("login", spec.Username)).Scan(&privileged); err != nil {
		err = li.classify(ctx, err, &spec)
		if li.cfg.Contained && errors.Is(err, ErrViewDefinition) {
			return li.lockLease(ctx, &spec, err)
		}
		return err
	}
	if privileged {
		return fmt.Errorf("%w: refusing to revoke %s: it is a privileged login sqlgate would not have created", broker.ErrInvalid, spec.Username)
	}
	lock, err := broker.GeneratePassword()
	if err != nil {
		return err
	}
	for _, b := range li.disable {
		if _, err := li.db.ExecContext(ctx, b, loginArgs(&spec, sql.Named("lock_password", lock))...); err != nil {
			return li.classify(ctx, err, &spec, lock)
		}
	}
	var remaining int64
	if err := li.db.QueryRowContext(ctx, li.kill, sql.Named("login", spec.Username)).Scan(&remaining); err != nil {
		return li.classify(ctx, err, &spec)
	}
	if remaining > 0 {
		return fmt.Errorf("%w: sqlserver database %s: %d session(s) of the login did not end", broker.ErrUnavailable, li.cfg.Name, remaining)
	}
	// The login can no longer sign in and has no session: a failure from
	// here on leaves a login that only an operator's cleanup may need.
	for _, b := range li.drop {
		if _, err := li.db.ExecContext(ctx, b, loginArgs(&spec)...); err != nil {
			return fmt.Errorf("%w: %w", broker.ErrLoginDisabled, li.classify(ctx, err, &spec))
		}
	}
	return nil
}

// lockLease ends access of a contained user whose lease ended while the
// broker's login lacks VIEW DEFINITION (guardErr, [ErrViewDefinition]): the
// guard cannot rule out a db_owner member, so only the user sqlgate created
// for this lease ([ContainedLockLeaseBatch]: its name and its
// sqlgate.lease_id) gets a password nobody knows, then its sessions end.
// DROP USER waits for the grant: the result wraps [broker.ErrLoginDisabled]
// and guardErr once access has ended, guardErr alone when no such user was
// found, and the lease stays revoking either way.
func (li *LoginIssuer) lockLease(ctx context.Context, spec *broker.LoginSpec, guardErr error) error {
	lock, err := broker.GeneratePassword()
	if err != nil {
		return fmt.Errorf("%w; %w", guardErr, err)
	}
	var locked bool
	if err := li.db.QueryRowContext(ctx, ContainedLockLeaseBatch, loginArgs(spec, sql.Named("lock_password", lock))...).Scan(&locked); err != nil {
		return fmt.Errorf("%w; locking the user without it failed too: %w", guardErr, li.classify(ctx, err, spec, lock))
	}
	if !locked {
		return guardErr
	}
	var remaining int64
	if err := li.db.QueryRowContext(ctx, li.kill, sql.Named("login", spec.Username)).Scan(&remaining); err != nil {
		return fmt.Errorf("%w; the user is locked, ending its sessions failed: %w", guardErr, li.classify(ctx, err, spec))
	}
	if remaining > 0 {
		return fmt.Errorf("%w; the user is locked, %w: %d session(s) of the user did not end", guardErr, broker.ErrUnavailable, remaining)
	}
	return fmt.Errorf("%w: %w", broker.ErrLoginDisabled, guardErr)
}

// ClientDSN implements [broker.SQLLoginIssuer].
func (li *LoginIssuer) ClientDSN(username string) string {
	host := li.cfg.ClientHost
	if li.cfg.ClientPort != 0 {
		host = net.JoinHostPort(host, strconv.Itoa(li.cfg.ClientPort))
	}
	q, err := li.cfg.clientQuery()
	if err != nil { // refused by Validate
		q = url.Values{"encrypt": {"true"}}
	}
	if li.cfg.ClientDatabase != "" {
		q.Set("database", li.cfg.ClientDatabase)
	}
	u := url.URL{Scheme: "sqlserver", User: url.User(username), Host: host, RawQuery: q.Encode()}
	return u.String()
}

// check refuses a spec before anything reaches the server.
//
// Revocation accepts a name of the generated shape with any prefix (see
// [broker.ValidIssuedLoginName]): leases issued before loginPrefix changed
// must still be revoked. The privileged-login guard of RevokeLogin applies
// all the same.
func (li *LoginIssuer) check(spec *broker.LoginSpec, create bool) error {
	if !create && broker.ValidIssuedLoginName(spec.Username) {
		return nil
	}
	if !broker.ValidLoginName(li.cfg.LoginPrefix, spec.Username) {
		return fmt.Errorf("%w: login name is not one sqlgate generates (prefix %s)", broker.ErrInvalid, li.cfg.LoginPrefix)
	}
	if !create {
		return nil
	}
	if !validSysname(spec.Role) {
		return fmt.Errorf("%w: role name must be 1 to 128 characters without control characters", broker.ErrInvalid)
	}
	role := strings.ToLower(spec.Role)
	if fixedRoles[role] {
		return fmt.Errorf("%w: role %q %s", broker.ErrInvalid, spec.Role, fixedRoleHelp)
	}
	if li.allowed != nil && !li.allowed[role] {
		return fmt.Errorf("%w: role %q is not among the roles database %s grants", broker.ErrInvalid, spec.Role, li.cfg.Name)
	}
	if privilegedRoles[role] && !li.cfg.AllowPrivilegedRoles {
		return fmt.Errorf("%w: role %q is privileged; sqlgate does not grant it (allowPrivilegedRoles)", broker.ErrInvalid, spec.Role)
	}
	if spec.Password == "" || len(spec.Password) > 128 {
		return fmt.Errorf("%w: a password of 1 to 128 characters is required", broker.ErrInvalid)
	}
	return nil
}

// validSysname accepts what fits a sysname and QUOTENAME: 1 to 128
// characters, valid UTF-8, no control characters.
func validSysname(s string) bool {
	if s == "" || strings.ToValidUTF8(s, "") != s || len([]rune(s)) > 128 {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// classify maps a provisioning error like the executor does, with the
// password (and lock password) scrubbed from server messages.
func (li *LoginIssuer) classify(ctx context.Context, err error, spec *broker.LoginSpec, secrets ...string) error {
	return li.classifyStep(ctx, err, spec, false, secrets...)
}

// classifyStep is classify for a step that adds the login to its role
// (addsMember): there a 15151 about the role means the broker's login may
// not add members to it, and the message says what to grant. Elsewhere
// (ALTER LOGIN ... DISABLE, DROP USER, DROP LOGIN in a revocation) 15151
// means something else and keeps the server's message.
func (li *LoginIssuer) classifyStep(ctx context.Context, err error, spec *broker.LoginSpec, addsMember bool, secrets ...string) error {
	var (
		me  mssql.Error
		mep *mssql.Error
	)
	switch {
	case errors.Is(err, broker.ErrInvalid), errors.Is(err, broker.ErrUnavailable):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("%w: sqlserver database %s: %w", broker.ErrUnavailable, li.cfg.Name, ctx.Err())
	case errors.As(err, &mep):
		me = *mep
		fallthrough
	case errors.As(err, &me):
		me = cause(me)
		if unavailableNumbers[me.Number] {
			return fmt.Errorf("%w: sqlserver database %s: server error %d", broker.ErrUnavailable, li.cfg.Name, me.Number)
		}
		if me.Number == errViewDefinition {
			return fmt.Errorf("%w: %w", ErrViewDefinition, &broker.DBError{
				Number: int(me.Number), State: strconv.Itoa(int(me.State)),
				Message: fmt.Sprintf("the broker's login may not see role memberships, permissions and owners in database %s: grant it VIEW DEFINITION on the database (deploy/sqlserver/04-credential-issuance.sql); until then sqlgate issues no login there, and drops no contained user (one whose lease ended is locked and its sessions ended)", li.cfg.Name),
			})
		}
		msg := scrub.Redact(me.Message, append(secrets, spec.Password)...)
		if addsMember && me.Number == errRoleMembership && spec.Role != "" && strings.HasPrefix(me.Message, "Cannot alter the role") {
			msg = fmt.Sprintf("the broker's login may not add members to role %q: grant it ALTER ANY ROLE in this database (deploy/sqlserver/04-credential-issuance.sql), or ALTER on the role; sqlgate grants user-defined roles only", spec.Role)
		}
		return &broker.DBError{Number: int(me.Number), State: strconv.Itoa(int(me.State)), Message: scrub.Message(msg, nil)}
	case errors.Is(err, driver.ErrBadConn), isNetError(err), errors.Is(err, sql.ErrConnDone):
		return fmt.Errorf("%w: sqlserver database %s: connection failed", broker.ErrUnavailable, li.cfg.Name)
	default:
		return fmt.Errorf("%w: sqlserver database %s: driver error", broker.ErrUnavailable, li.cfg.Name)
	}
}

var _ broker.SQLLoginIssuer = (*LoginIssuer)(nil)
