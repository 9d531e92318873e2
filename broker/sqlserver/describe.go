package sqlserver

import (
	"fmt"

	"github.com/sqlgate/sqlgate/broker"
)

// Describe returns what the executor [Open] returns for cfg reports from
// [Executor.Describe], without connecting: the server and database named by
// the connection string. The daemon needs it for a database it could not
// reach at start (audit records and crash recovery match on it before the
// database opens). An error is a configuration error; it never quotes the
// connection string.
func Describe(cfg Config) (broker.DatabaseInfo, error) {
	if err := cfg.Validate(); err != nil {
		return broker.DatabaseInfo{}, fmt.Errorf("sqlserver config: %w", err)
	}
	cfg.defaults()
	assertion := ""
	if cfg.AzureAD != nil && cfg.AzureAD.Mode == ModeOnBehalfOf {
		assertion = "validation-only"
	}
	dsn, _, err := cfg.connString(assertion)
	if err != nil {
		return broker.DatabaseInfo{}, fmt.Errorf("sqlserver database %s: %w", cfg.Name, err)
	}
	e := &Executor{cfg: cfg}
	e.describe(dsn)
	return e.Describe(), nil
}
