-- The conformance suite's test schema (see broker/brokertest) for PostgreSQL:
-- functions, a procedure with an OUT parameter, and statements in the routes.
CREATE TABLE orders (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer       text          NOT NULL,
  amount         numeric(12,2) NOT NULL CONSTRAINT orders_amount_check CHECK (amount > 0),
  quantity       bigint        NOT NULL,
  express        boolean       NOT NULL,
  note           text,
  status         text          NOT NULL DEFAULT 'open',
  -- stamped from the session context sqlgate sets per call
  created_by     text          NOT NULL DEFAULT coalesce(current_setting('sqlgate.principal', true), ''),
  correlation_id text          NOT NULL DEFAULT coalesce(current_setting('sqlgate.correlation_id', true), ''),
  created_at     timestamptz   NOT NULL DEFAULT now()
);

CREATE FUNCTION orders_create(customer text, amount numeric, quantity bigint, express boolean, note text DEFAULT NULL)
RETURNS TABLE (id bigint) LANGUAGE sql AS $$
  INSERT INTO orders (customer, amount, quantity, express, note)
  VALUES (orders_create.customer, orders_create.amount, orders_create.quantity, orders_create.express, orders_create.note)
  RETURNING orders.id
$$;

CREATE PROCEDURE orders_cancel(id bigint, OUT previous_status text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  SELECT o.status INTO previous_status FROM orders o WHERE o.id = orders_cancel.id FOR UPDATE;
  UPDATE orders o SET status = 'cancelled' WHERE o.id = orders_cancel.id;
END
$$;

CREATE FUNCTION orders_count() RETURNS TABLE (n bigint) LANGUAGE sql STABLE AS $$
  SELECT count(*) FROM orders
$$;

CREATE FUNCTION orders_session() RETURNS TABLE (correlation_id text, principal text, decision_id text) LANGUAGE sql STABLE AS $$
  SELECT current_setting('sqlgate.correlation_id', true), current_setting('sqlgate.principal', true),
         current_setting('sqlgate.decision_id', true)
$$;

CREATE FUNCTION orders_slow_create(customer text, seconds integer) RETURNS TABLE (id bigint) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY INSERT INTO orders (customer, amount, quantity, express)
    VALUES (orders_slow_create.customer, 1, 1, false) RETURNING orders.id;
  PERFORM pg_sleep(seconds);
END
$$;
