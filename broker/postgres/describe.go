package postgres

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sqlgate/sqlgate/broker"
)

// Describe returns what the executor [Open] returns for cfg reports from
// [Executor.Describe], without connecting: the server named by the
// connection string and the configured name. The daemon needs it for a
// database it could not reach at start (audit records and crash recovery
// match on it before the database opens). An error is a configuration
// error; it never quotes the connection string.
func Describe(cfg Config) (broker.DatabaseInfo, error) {
	if err := cfg.Validate(); err != nil {
		return broker.DatabaseInfo{}, fmt.Errorf("postgres config: %w", err)
	}
	dsn, _, err := cfg.secrets()
	if err != nil {
		return broker.DatabaseInfo{}, fmt.Errorf("postgres database %s: %w", cfg.Name, err)
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parser's message may quote the connection string.
		return broker.DatabaseInfo{}, fmt.Errorf("postgres database %s: the connection string is not valid", cfg.Name)
	}
	e := &Executor{cfg: cfg, server: pc.ConnConfig.Host}
	return e.Describe(), nil
}
