-- Demo schema of the `orders` database used by `sqlgated dev`.
CREATE TABLE IF NOT EXISTS orders (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  customer       TEXT    NOT NULL,
  amount         NUMERIC NOT NULL CHECK (amount > 0),
  note           TEXT,
  status         TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cancelled')),
  created_by     TEXT    NOT NULL,
  correlation_id TEXT    NOT NULL,
  decision_id    TEXT    NOT NULL,
  created_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  cancelled_at   TEXT,
  cancelled_by   TEXT
);
