-- sqlgate: the idempotency table in the target database (run once, as the
-- schema owner). The broker inserts one row per call in the call's own
-- transaction; the result column is text so replays return the stored bytes.
-- sqlgate's postgres adapter can create it itself (createIdempotencyTable),
-- but then its role needs CREATE on the schema; this script avoids that.
CREATE TABLE IF NOT EXISTS public.sqlgate_idempotency (
  idempotency_key text        NOT NULL PRIMARY KEY,
  request_hash    text        NOT NULL,
  correlation_id  text        NOT NULL,
  principal       text        NOT NULL,
  decision_id     text        NOT NULL,
  transaction_id  bigint      NOT NULL,
  result          text,
  rows            bigint      NOT NULL DEFAULT 0,
  rows_affected   bigint      NOT NULL DEFAULT 0,
  created_at      timestamptz NOT NULL DEFAULT now(),
  committed_at    timestamptz
) WITH (fillfactor = 80);  -- room for the result update to stay a heap-only tuple update
CREATE INDEX IF NOT EXISTS sqlgate_idempotency_committed_at ON public.sqlgate_idempotency (committed_at);
