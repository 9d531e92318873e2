package control

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// Dialects supported by the control database.
const (
	SQLite    = "sqlite"
	Postgres  = "postgres"
	SQLServer = "sqlserver"
)

// DB is the control database handle shared by the stores in this package.
type DB struct {
	db      *sql.DB
	dialect string
}

// Open checks the dialect and creates the control tables that are missing.
func Open(ctx context.Context, db *sql.DB, dialect string) (*DB, error) {
	switch dialect {
	case SQLite, Postgres, SQLServer:
	default:
		return nil, fmt.Errorf("control database: unknown dialect %q (want sqlite, postgres or sqlserver)", dialect)
	}
	c := &DB{db: db, dialect: dialect}
	for _, stmt := range c.schema() {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("control database: create schema: %w", err)
		}
	}
	return c, nil
}

// SQL returns the underlying handle.
func (c *DB) SQL() *sql.DB { return c.db }

// Dialect returns the dialect name.
func (c *DB) Dialect() string { return c.dialect }

// q rewrites `?` placeholders into the dialect's bind markers. Queries in
// this package are constants; no value is ever formatted into them.
func (c *DB) q(query string) string {
	switch c.dialect {
	case Postgres, SQLServer:
		var b strings.Builder
		n := 0
		for i := 0; i < len(query); i++ {
			if query[i] == '?' {
				n++
				if c.dialect == Postgres {
					b.WriteByte('$')
				} else {
					b.WriteString("@p")
				}
				b.WriteString(strconv.Itoa(n))
				continue
			}
			b.WriteByte(query[i])
		}
		return b.String()
	default:
		return query
	}
}

func (c *DB) schema() []string {
	text, bigint := "TEXT", "BIGINT"
	key := "VARCHAR(64)"
	if c.dialect == SQLServer {
		text = "NVARCHAR(MAX)"
	}
	ifNotExists := func(table, body string) string {
		if c.dialect == SQLServer {
			return fmt.Sprintf("IF OBJECT_ID(N'%s', N'U') IS NULL CREATE TABLE %s (%s)", table, table, body)
		}
		return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (%s)", table, body)
	}
	index := func(name, table, cols string) string {
		if c.dialect == SQLServer {
			return fmt.Sprintf("IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'%s') CREATE INDEX %s ON %s (%s)", name, name, table, cols)
		}
		return fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", name, table, cols)
	}
	pid := "VARCHAR(512)"
	if c.dialect == SQLServer {
		pid = "NVARCHAR(450)"
	}
	stmts := []string{
		ifNotExists("sqlgate_issuance", fmt.Sprintf(`
			user_key %s NOT NULL PRIMARY KEY,
			principal_id %s NOT NULL,
			principal %s NOT NULL,
			signing_key %s NOT NULL,
			account %s NOT NULL,
			via VARCHAR(16) NOT NULL,
			issued_at %s NOT NULL,
			expires_at %s NOT NULL,
			revoked_at %s,
			decision_id VARCHAR(64) NOT NULL,
			pub %s NOT NULL`, key, pid, text, key, key, bigint, bigint, bigint, text)),
		index("sqlgate_issuance_principal", "sqlgate_issuance", "principal_id"),
		index("sqlgate_issuance_expires", "sqlgate_issuance", "expires_at"),
	}
	// The callout token table is created here too, so that a control
	// database that refuses DDL later is found at start, not at the first
	// auth callout.
	stmts = append(stmts, IssuanceListSchema(c.dialect)...)
	return append(stmts, CalloutTokenSchema(c.dialect)...)
}
