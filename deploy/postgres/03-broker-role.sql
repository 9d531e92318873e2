-- sqlgate: the broker's own role, least privilege (run as a superuser or
-- the database owner, in the target database, after 01 and 02).
-- It may: connect, call the routed routines (EXECUTE on the schema's
-- functions and procedures), and keep its idempotency records. It may not
-- read or change any table directly, create objects (temporary tables
-- aside: PUBLIC holds TEMPORARY on the database unless revoked), or manage
-- roles.
-- Set its password out of band (psql: \password sqlgate_broker), or use
-- certificate or other authentication in pg_hba.conf.
--
-- CREATE on the schema public is revoked from PUBLIC, as 00-control.sql
-- does: PostgreSQL 14 and earlier give it to PUBLIC, and a database created
-- or upgraded (pg_upgrade, dump and restore) from one keeps it, so revoking
-- it from sqlgate_broker alone changes nothing. Roles of this database that
-- create objects in public then need their own GRANT CREATE ON SCHEMA public.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'sqlgate_broker') THEN
    CREATE ROLE sqlgate_broker LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION CONNECTION LIMIT 64;
  END IF;
END
$$;

DO $$
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO sqlgate_broker', current_database());
END
$$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM sqlgate_broker;

-- Routed schema: call routines, nothing else.
GRANT USAGE ON SCHEMA sales TO sqlgate_broker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA sales TO sqlgate_broker;
GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA sales TO sqlgate_broker;
-- The trigger function is not a route.
REVOKE EXECUTE ON FUNCTION sales.stamp_order_history() FROM sqlgate_broker;

-- Idempotency records: insert, read, store the result, prune.
GRANT SELECT, INSERT, UPDATE, DELETE ON public.sqlgate_idempotency TO sqlgate_broker;

-- Statement routes (admin-defined SQL) run with the broker's own rights:
-- grant exactly the table privileges those statements need, for example
--   GRANT SELECT (id, status) ON sales.orders TO sqlgate_broker;
