-- sqlgate, OPTIONAL: permissions for issuing short-lived SQL logins (the
-- `sqlgate creds sql` feature, databases[].postgresLogins). Not needed to run
-- calls; grant only where credential issuance is enabled for this server.
-- Run as a superuser, in the target database, after 01-03 (idempotent).
--
-- sqlgate_broker may then create, renew, disable and drop the issued login
-- roles (CREATEROLE) and end their sessions on revocation
-- (pg_signal_backend: sqlgate_broker is NOINHERIT, so revocation switches to
-- that role for the termination only, SET LOCAL ROLE; on PostgreSQL 16 and
-- later keep the grant's SET option, the default).
--
-- On PostgreSQL 15 and earlier this makes sqlgate_broker a superuser of the
-- whole cluster in effect: CREATEROLE there reaches every role that is not a
-- superuser, so the broker's role can GRANT itself pg_execute_server_program
-- (shell commands as the server's OS user) or pg_read_server_files, and
-- ALTER ROLE any other role's password, the control role's included. Run it
-- there only if that is acceptable, keep the control database on another
-- cluster, and prefer PostgreSQL 16 or later (docs/credentials.md); the
-- login issuer logs a warning on such a server. From PostgreSQL 16
-- CREATEROLE reaches only the roles the broker created or holds ADMIN OPTION
-- on: it needs that on each role it grants, given below without INHERIT and
-- SET, so the broker cannot use the role's privileges itself.
ALTER ROLE sqlgate_broker CREATEROLE;
GRANT pg_signal_backend TO sqlgate_broker;

-- An example grantable role for the orders example: read the orders and
-- their history. Policy (data.sqlgate.sql_credentials) decides who may get
-- it; repeat the last statement for every role issued logins may receive.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'sales_reader') THEN
    CREATE ROLE sales_reader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
  END IF;
END
$$;
-- USAGE on the schema only lets the role look names up there: safe because
-- 02 leaves PUBLIC nothing in it, EXECUTE on routines created later
-- included (ALTER DEFAULT PRIVILEGES). Run 02's REVOKE ... FROM PUBLIC
-- statements on any other schema you give a grantable role USAGE on.
GRANT USAGE ON SCHEMA sales TO sales_reader;
GRANT SELECT ON sales.orders, sales.order_history TO sales_reader;

DO $$
BEGIN
  IF current_setting('server_version_num')::int >= 160000 THEN
    EXECUTE 'GRANT sales_reader TO sqlgate_broker WITH ADMIN OPTION, INHERIT FALSE, SET FALSE';
  END IF;
END
$$;
