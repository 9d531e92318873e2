-- The conformance suite's test schema (see broker/brokertest).
CREATE TABLE orders (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  customer       TEXT    NOT NULL,
  amount         DECIMAL(12,2) NOT NULL CHECK (amount > 0),
  quantity       BIGINT  NOT NULL,
  express        BOOLEAN NOT NULL,
  note           TEXT,
  status         TEXT    NOT NULL DEFAULT 'open',
  created_by     TEXT    NOT NULL,
  correlation_id TEXT    NOT NULL,
  created_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
