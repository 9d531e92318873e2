-- sqlgate example: an orders schema whose routines match the demo routes
-- (orders.v1.create, orders.v1.get, orders.v1.cancel; see routes.yaml).
-- The routines are SECURITY DEFINER, owned by the schema owner, so the
-- broker's role needs EXECUTE on them and nothing on the tables.
-- Who and why come from the session context sqlgate sets per call
-- (set_config(..., true): transaction-local).
--
-- Any session may set sqlgate.* itself (SET sqlgate.principal = 'carol'
-- needs no privilege): the values are trusted only in sessions of the
-- broker's role, those whose session_user is sqlgate_broker or a member of
-- it (so a superuser too), and the session's own login is used otherwise.
-- sqlgate never grants sqlgate_broker to a login it issues (the role check
-- refuses login roles and the broker's own roles: docs/credentials.md).
-- to_regrole: before 03 creates the role, no session is trusted.
CREATE SCHEMA IF NOT EXISTS sales;

CREATE TABLE IF NOT EXISTS sales.orders (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer       text          NOT NULL CHECK (length(customer) BETWEEN 1 AND 100),
  amount         numeric(12,2) NOT NULL CHECK (amount > 0),
  note           text,
  status         text          NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cancelled')),
  created_by     text          NOT NULL,  -- defaults below
  correlation_id text          NOT NULL,
  created_at     timestamptz   NOT NULL DEFAULT now()
);
-- Also on a table an earlier version of this script created (its defaults
-- trusted any session's sqlgate.principal).
ALTER TABLE sales.orders
  ALTER COLUMN created_by SET DEFAULT coalesce(CASE WHEN pg_has_role(session_user, to_regrole('sqlgate_broker'), 'MEMBER')
                                                    THEN current_setting('sqlgate.principal', true) END, session_user),
  ALTER COLUMN correlation_id SET DEFAULT coalesce(CASE WHEN pg_has_role(session_user, to_regrole('sqlgate_broker'), 'MEMBER')
                                                        THEN current_setting('sqlgate.correlation_id', true) END, '');

-- Every change is stamped with the caller sqlgate authorized, by a trigger
-- that reads the session context in the broker's sessions (the same values
-- reach any other trigger, audit extension or log line through
-- current_setting), and with the session's own login in any other session.
CREATE TABLE IF NOT EXISTS sales.order_history (
  order_id       bigint      NOT NULL,
  operation      text        NOT NULL,
  old_status     text,
  new_status     text,
  changed_by     text        NOT NULL,
  correlation_id text        NOT NULL,
  decision_id    text        NOT NULL,
  txid           bigint      NOT NULL DEFAULT txid_current(),
  changed_at     timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION sales.stamp_order_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = sales, pg_temp AS $$
DECLARE
  -- session_user: SECURITY DEFINER changes current_user, not the session's login.
  trusted boolean := coalesce(pg_has_role(session_user, to_regrole('sqlgate_broker'), 'MEMBER'), false);
BEGIN
  INSERT INTO sales.order_history (order_id, operation, old_status, new_status, changed_by, correlation_id, decision_id)
  VALUES (coalesce(NEW.id, OLD.id), TG_OP,
          CASE WHEN TG_OP <> 'INSERT' THEN OLD.status END, CASE WHEN TG_OP <> 'DELETE' THEN NEW.status END,
          coalesce(CASE WHEN trusted THEN current_setting('sqlgate.principal', true) END, session_user),
          coalesce(CASE WHEN trusted THEN current_setting('sqlgate.correlation_id', true) END, ''),
          coalesce(CASE WHEN trusted THEN current_setting('sqlgate.decision_id', true) END, ''));
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS orders_history ON sales.orders;
CREATE TRIGGER orders_history AFTER INSERT OR UPDATE OR DELETE ON sales.orders
  FOR EACH ROW EXECUTE FUNCTION sales.stamp_order_history();

-- orders.v1.create: returns one row with the new order's id.
CREATE OR REPLACE FUNCTION sales.create_order(customer text, amount numeric, note text DEFAULT NULL)
RETURNS TABLE (id bigint)
LANGUAGE sql SECURITY DEFINER SET search_path = sales, pg_temp AS $$
  INSERT INTO sales.orders (customer, amount, note)
  VALUES (create_order.customer, create_order.amount, create_order.note)
  RETURNING orders.id
$$;

-- orders.v1.get: the order row, every stored field.
CREATE OR REPLACE FUNCTION sales.get_order(id bigint)
RETURNS SETOF sales.orders
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = sales, pg_temp AS $$
  SELECT * FROM sales.orders o WHERE o.id = get_order.id
$$;

-- orders.v1.cancel: a procedure; the previous status comes back as an OUT
-- parameter (the route's `output:`).
CREATE OR REPLACE PROCEDURE sales.cancel_order(id bigint, OUT previous_status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = sales, pg_temp AS $$
#variable_conflict use_column
BEGIN
  SELECT o.status INTO previous_status FROM sales.orders o WHERE o.id = cancel_order.id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'order not found' USING ERRCODE = 'P0002';
  END IF;
  UPDATE sales.orders o SET status = 'cancelled' WHERE o.id = cancel_order.id;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA sales FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA sales FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA sales FROM PUBLIC;

-- Routines created later get no EXECUTE for PUBLIC either: PostgreSQL gives
-- PUBLIC EXECUTE on every new function and procedure, and a role with USAGE
-- on the schema (the grantable roles of 04) could then call a SECURITY
-- DEFINER routine added later, outside sqlgate's policy and audit. Grant
-- EXECUTE on each new routine explicitly (GRANT EXECUTE ON FUNCTION ... TO
-- sqlgate_broker). Default privileges cannot be revoked per schema (IN
-- SCHEMA only adds to them), so this applies to every function and
-- procedure the role running this script (the routines' owner) creates in
-- this database. Run it as (or FOR ROLE) every other role that creates
-- routines in sales.
ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
