package control

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/sqlgate/sqlgate/internal/schemalock"
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
	if err := c.createSchema(ctx, c.schema()); err != nil {
		return nil, fmt.Errorf("control database: create schema: %w", err)
	}
	return c, nil
}

// createSchema runs idempotent DDL statements. On SQL Server and
// PostgreSQL they run in one transaction that takes the schema lock first
// ([schemalock.SQLServer], [schemalock.Postgres]), so instances starting
// together create each table once; SQLite, which runs one writer at a
// time, runs them one by one.
func (c *DB) createSchema(ctx context.Context, stmts []string) error {
	var lock string
	switch c.dialect {
	case SQLServer:
		lock = schemalock.SQLServer
	case Postgres:
		lock = schemalock.Postgres
	default:
		for _, stmt := range stmts {
			if _, err := c.db.ExecContext(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	}
	if c.dialect == Postgres {
		// Once the schema exists, a start touches nothing: `CREATE INDEX
		// IF NOT EXISTS` takes a SHARE lock on its table even when the
		// index exists, held here to the end of the transaction, so
		// running replicas' writes would wait for a starting one (and
		// could deadlock with it).
		missing, err := postgresMissing(ctx, c.db, stmts)
		if err != nil || len(missing) == 0 {
			return err
		}
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // rollback after commit is a no-op
	if _, err := tx.ExecContext(ctx, lock); err != nil {
		return err
	}
	if c.dialect == Postgres {
		// Under the lock: what another instance created meanwhile is
		// skipped too.
		if stmts, err = postgresMissing(ctx, tx, stmts); err != nil {
			return err
		}
	}
	for _, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// postgresDDLObject names the table or index a `CREATE … IF NOT EXISTS`
// statement creates.
var postgresDDLObject = regexp.MustCompile(`^CREATE (?:UNIQUE )?(?:TABLE|INDEX) IF NOT EXISTS ([a-z_][a-z0-9_]*)\b`)

// postgresMissing returns the statements whose table or index does not
// exist yet (to_regclass, along the search path, as the statements
// resolve); a statement that names none is kept.
func postgresMissing(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, stmts []string,
) ([]string, error) {
	var missing []string
	for _, stmt := range stmts {
		m := postgresDDLObject.FindStringSubmatch(stmt)
		if m == nil {
			missing = append(missing, stmt)
			continue
		}
		var exists bool
		if err := q.QueryRowContext(ctx, "SELECT to_regclass($1) IS NOT NULL", m[1]).Scan(&exists); err != nil {
			return nil, err
		}
		if !exists {
			missing = append(missing, stmt)
		}
	}
	return missing, nil
}

// key is a value of one of the VARCHAR key columns (user_key, token_hash,
// session_key, the lease id and claim token, decision_id: ASCII keys,
// hashes and identifiers) as a statement parameter. go-mssqldb sends a Go
// string as nvarchar, which outranks varchar: SQL Server then converts the
// column, not the parameter, and under a SQL collation
// (SQL_Latin1_General_CP1_CI_AS, the default of an English install) can
// no longer seek its index: every lookup scans, and Put's locking UPDATE
// locks every row it reads, so Puts of different keys wait for each other
// and can deadlock. On SQL Server the value goes as varchar
// (mssql.VarChar, declared varchar(length): never truncated); PostgreSQL
// and SQLite get the string.
func (c *DB) key(s string) any {
	if c.dialect == SQLServer {
		return mssql.VarChar(s)
	}
	return s
}

// sqlServerPrincipalID is the type of the principal_id columns of tables
// sqlgate creates on SQL Server. Principal ids are "<issuer> <subject>",
// and subjects are case-sensitive (Okta's, for one, are base62): a
// case-insensitive column (the default collation of an English install,
// SQL_Latin1_General_CP1_CI_AS) would let one principal's revoke-all, sign-in
// cutoff, listing and limits reach another's rows. Tables created before
// the column got its collation keep the database's: the statements compare
// exactly all the same ([principalIs]).
const sqlServerPrincipalID = "NVARCHAR(450) COLLATE Latin1_General_100_BIN2"

// principalIs returns the condition that a row's principal_id is exactly
// the principal id passed as its parameters ([principalArgs]): `?` for
// PostgreSQL and SQLite, whose principal_id columns compare exactly
// (PostgreSQL's database collations are deterministic: equal strings are
// equal bytes; SQLite's default collation is BINARY). On SQL Server the
// column of a table created before it was declared COLLATE
// Latin1_General_100_BIN2 compares under the database's collation, which
// is usually case-insensitive, and any collation ignores trailing spaces:
// `principal_id = ?` keeps the index seek, and comparing both sides as
// varbinary (an nvarchar's UTF-16LE bytes, on either side; max, so that
// nothing is cut) keeps only the exact match.
func principalIs(dialect string) string {
	if dialect == SQLServer {
		return `principal_id = ? AND CAST(principal_id AS varbinary(max)) = CAST(? AS varbinary(max))`
	}
	return `principal_id = ?`
}

// principalArgs returns the arguments of [principalIs] for id. go-mssqldb
// sends a Go string as nvarchar, as the cast to varbinary requires (a
// varchar would cast to other bytes and match nothing).
func principalArgs(dialect, id string) []any {
	if dialect == SQLServer {
		return []any{id, id}
	}
	return []any{id}
}

// deadlockVictim reports whether err is SQL Server's error 1205: the
// server chose this transaction as a deadlock victim and rolled it back,
// so the whole transaction may run again.
func (c *DB) deadlockVictim(err error) bool {
	var e mssql.Error
	return c.dialect == SQLServer && errors.As(err, &e) && e.Number == 1205
}

// uniqueViolation reports whether err is SQL Server's 2627 (a primary key
// or unique constraint) or 2601 (a unique index) refusing a duplicate.
func (c *DB) uniqueViolation(err error) bool {
	var e mssql.Error
	return c.dialect == SQLServer && errors.As(err, &e) && (e.Number == 2627 || e.Number == 2601)
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
			return sqlServerIndex(name, table, cols)
		}
		return fmt.Sprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)", name, table, cols)
	}
	pid := "VARCHAR(512)"
	if c.dialect == SQLServer {
		pid = sqlServerPrincipalID
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

// sqlServerIndex creates index name on table unless the table has it (index
// names are unique per table only: another schema's table of the same
// name may have one).
func sqlServerIndex(name, table, cols string) string {
	return fmt.Sprintf("IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'%s' AND object_id = OBJECT_ID(N'%s')) CREATE INDEX %s ON %s (%s)",
		name, table, name, table, cols)
}
