-- sqlgate: the control database (control.dialect: postgres) and the role
-- sqlgated uses there. It holds the audit log with the decision inputs
-- (parameter values, emails), the issuance registry, dashboard sessions
-- and SQL leases: keep it away from the target databases' roles.
--
-- Run with psql as a superuser (or a role with CREATEROLE and CREATEDB that
-- is a member of the new role), connected to any database of the server;
-- idempotent. Other names than sqlgate_control with -v:
--
--   psql -h HOST -U postgres -d postgres -f 00-control.sql
--   psql -h HOST -U postgres -d postgres -v control_db=audit -v control_role=sqlgated -f 00-control.sql
--
-- Then set the role's password out of band (psql: \password sqlgate_control),
-- or use certificate authentication in pg_hba.conf, and point
-- control.dsnFile at a DSN with sslmode=verify-full when the server is not
-- this machine (sqlgated refuses anything weaker; docs/postgres.md), in a
-- file of mode 0600 owned by sqlgated's user (chmod 0600 FILE: sqlgated
-- refuses one other users may read, such as 0644).
--
-- The role owns the database, and sqlgated creates its tables at start:
-- CREATE on the schema public (which PostgreSQL 15 and later no longer gives
-- PUBLIC; granted below on every version), and ownership of the tables it
-- created, which `CREATE INDEX IF NOT EXISTS` needs when an index is
-- missing. So start sqlgated with this role from the first start on; tables
-- created by another role must be given to it (ALTER TABLE ... OWNER TO).
-- It needs no other attribute: no SUPERUSER, CREATEDB, CREATEROLE.
\set ON_ERROR_STOP on
\if :{?control_db}
\else
  \set control_db sqlgate_control
\endif
\if :{?control_role}
\else
  \set control_role sqlgate_control
\endif

SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION', :'control_role')
WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'control_role')
\gexec

SELECT format('CREATE DATABASE %I OWNER %I ENCODING ''UTF8'' TEMPLATE template0', :'control_db', :'control_role')
WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = :'control_db')
\gexec

-- Only the role (the owner) connects: PUBLIC, every other role of the
-- server included (issued short-lived logins too), may connect to a new
-- database by default.
REVOKE ALL ON DATABASE :"control_db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"control_db" TO :"control_role";

\connect :control_db
-- Tables go to public (sqlgated's names are unqualified). PostgreSQL 14 and
-- earlier let PUBLIC create there: not in this database.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO :"control_role";
