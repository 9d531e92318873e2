package control

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	mssql "github.com/microsoft/go-mssqldb"
)

// recorder is a database/sql driver that runs nothing: it records what a
// store sends (statements, their parameters as the store passed them, and
// transaction boundaries), so the SQL Server dialect, which cannot run
// here, can be checked statement by statement.
type recorder struct {
	mu   sync.Mutex
	sent []sentStmt
	// fail, when set, makes a statement fail with its error (nil: run).
	fail func(query string) error
	// rows, when set, answers a query (nil: no rows).
	rows func(query string) ([]string, [][]driver.Value)
	// affected answers an Exec's RowsAffected (nil: 1).
	affected func(query string) int64
}

// sentStmt is one thing the driver received. Transaction boundaries have
// tx set and no query.
type sentStmt struct {
	tx    string // "begin", "commit" or "rollback"
	query string
	args  []driver.NamedValue
}

const (
	txBegin    = "begin"
	txCommit   = "commit"
	txRollback = "rollback"
)

// take returns what was sent since the last take.
func (r *recorder) take() []sentStmt {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sent
	r.sent = nil
	return out
}

func (r *recorder) add(s sentStmt) {
	r.mu.Lock()
	r.sent = append(r.sent, s)
	r.mu.Unlock()
}

func (r *recorder) openDB() *sql.DB { return sql.OpenDB(recConnector{r}) }

// render writes s as a golden line: the statement and the SQL type
// go-mssqldb declares for each parameter (string: nvarchar, mssql.VarChar:
// varchar, integers: bigint).
func (s sentStmt) render() string {
	if s.tx != "" {
		return "-- (" + s.tx + " transaction)\n"
	}
	var b strings.Builder
	b.WriteString(strings.TrimSpace(s.query) + ";\n")
	if len(s.args) > 0 {
		types := make([]string, len(s.args))
		for i, a := range s.args {
			types[i] = fmt.Sprintf("@p%d %s", a.Ordinal, sqlServerType(a.Value))
		}
		b.WriteString("-- parameters: " + strings.Join(types, ", ") + "\n")
	}
	return b.String()
}

func sqlServerType(v any) string {
	switch v.(type) {
	case mssql.VarChar:
		return "varchar"
	case string:
		return "nvarchar"
	case int, int64, sql.NullInt64:
		return "bigint"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

type recConnector struct{ r *recorder }

func (c recConnector) Connect(context.Context) (driver.Conn, error) { return &recConn{r: c.r}, nil }
func (c recConnector) Driver() driver.Driver                        { return recDriver{} }

type recDriver struct{}

func (recDriver) Open(string) (driver.Conn, error) { return nil, errors.New("use recConnector") }

type recConn struct{ r *recorder }

var (
	_ driver.ExecerContext     = (*recConn)(nil)
	_ driver.QueryerContext    = (*recConn)(nil)
	_ driver.ConnBeginTx       = (*recConn)(nil)
	_ driver.NamedValueChecker = (*recConn)(nil)
)

func (c *recConn) Prepare(string) (driver.Stmt, error) {
	return nil, errors.New("recorder: no prepared statements")
}
func (c *recConn) Close() error { return nil }
func (c *recConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *recConn) BeginTx(context.Context, driver.TxOptions) (driver.Tx, error) {
	c.r.add(sentStmt{tx: txBegin})
	return recTx{c.r}, nil
}

// CheckNamedValue keeps every parameter as the store passed it (as
// go-mssqldb does for its own types), so the record shows mssql.VarChar.
func (c *recConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (c *recConn) ExecContext(_ context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	c.r.add(sentStmt{query: query, args: args})
	if c.r.fail != nil {
		if err := c.r.fail(query); err != nil {
			return nil, err
		}
	}
	n := int64(1)
	if c.r.affected != nil {
		n = c.r.affected(query)
	}
	return driver.RowsAffected(n), nil
}

func (c *recConn) QueryContext(_ context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	c.r.add(sentStmt{query: query, args: args})
	if c.r.fail != nil {
		if err := c.r.fail(query); err != nil {
			return nil, err
		}
	}
	rows := &recRows{}
	if c.r.rows != nil {
		rows.cols, rows.vals = c.r.rows(query)
	}
	return rows, nil
}

type recTx struct{ r *recorder }

func (t recTx) Commit() error   { t.r.add(sentStmt{tx: txCommit}); return nil }
func (t recTx) Rollback() error { t.r.add(sentStmt{tx: txRollback}); return nil }

type recRows struct {
	cols []string
	vals [][]driver.Value
}

func (r *recRows) Columns() []string {
	if r.cols == nil {
		return []string{"x"}
	}
	return r.cols
}
func (r *recRows) Close() error { return nil }

func (r *recRows) Next(dest []driver.Value) error {
	if len(r.vals) == 0 {
		return io.EOF
	}
	copy(dest, r.vals[0])
	r.vals = r.vals[1:]
	return nil
}
