// Package sqlstore keeps sqlgate's audit log in the control database through
// database/sql: records, tree hashes, signed checkpoints, the signing key
// history, decision-input sidecars and open intents, in tables prefixed
// sqlgate_audit_. It implements audit.Store (for audit.Log) and audit.Source
// (for audit.Verify) for SQLite (modernc.org/sqlite, WAL with
// synchronous=FULL), PostgreSQL (pgx stdlib) and SQL Server (go-mssqldb).
// Several sqlgated instances may share one database; each writes its own
// origin. The package imports no driver: callers open the *sql.DB.
package sqlstore
