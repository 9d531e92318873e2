package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sqlgate/sqlgate/internal/schemalock"
)

// TestTablesFromDDL checks that Tables, which the SQL Server conformance
// test drops before each run, names every table of every dialect's schema.
func TestTablesFromDDL(t *testing.T) {
	want := Tables(SQLite)
	for _, name := range []string{SQLite, Postgres, SQLServer} {
		d, err := newDialect(name)
		if err != nil {
			t.Fatal(err)
		}
		got := Tables(name)
		if len(got) != len(d.schema) {
			t.Errorf("%s: Tables = %v, from %d schema statements", name, got, len(d.schema))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: Tables = %v, sqlite has %v", name, got, want)
		}
		for _, table := range []string{tOrigins, tRecords, tInputs, tHashes, tCheckpoints, tKeys, tOpenIntents, tHeads} {
			if !slices.Contains(got, table) {
				t.Errorf("%s: Tables misses %s", name, table)
			}
		}
	}
}

// TestSchemaUnderLock checks that Open creates the SQL Server and
// PostgreSQL tables in one transaction whose first statement takes the
// schema lock, and creates nothing when the lock is not granted.
func TestSchemaUnderLock(t *testing.T) {
	for name, lock := range map[string]string{SQLServer: schemalock.SQLServer, Postgres: schemalock.Postgres} {
		t.Run(name, func(t *testing.T) {
			rec := &ddlRecorder{}
			if _, err := Open(t.Context(), sql.OpenDB(rec), name); err != nil {
				t.Fatal(err)
			}
			d, _ := newDialect(name)
			want := append([]string{"begin", lock}, d.schema...)
			if got := rec.take(); !slices.Equal(got, append(want, "commit")) {
				t.Errorf("Open sent:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(append(want, "commit"), "\n"))
			}

			rec.refuse = lock
			if _, err := Open(t.Context(), sql.OpenDB(rec), name); err == nil {
				t.Fatal("Open without the schema lock succeeded")
			}
			if got := rec.take(); !slices.Equal(got, []string{"begin", lock, "rollback"}) {
				t.Errorf("Open refused the lock sent:\n%s", strings.Join(got, "\n"))
			}
		})
	}
}

// ddlRecorder is a database/sql driver that runs nothing and records the
// statements and transaction boundaries it receives; refuse, when set, is
// a statement it fails (the schema lock).
type ddlRecorder struct {
	mu     sync.Mutex
	sent   []string
	refuse string
}

func (r *ddlRecorder) add(s string) {
	r.mu.Lock()
	r.sent = append(r.sent, s)
	r.mu.Unlock()
}

func (r *ddlRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.sent
	r.sent = nil
	return out
}

func (r *ddlRecorder) Connect(context.Context) (driver.Conn, error) { return ddlConn{r}, nil }
func (r *ddlRecorder) Driver() driver.Driver                        { return nil }

type ddlConn struct{ r *ddlRecorder }

func (c ddlConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not supported") }
func (c ddlConn) Close() error                        { return nil }
func (c ddlConn) Begin() (driver.Tx, error)           { c.r.add("begin"); return ddlTx(c), nil }

func (c ddlConn) ExecContext(_ context.Context, q string, _ []driver.NamedValue) (driver.Result, error) {
	c.r.add(q)
	if c.r.refuse != "" && q == c.r.refuse {
		return nil, errors.New("the schema lock was not granted")
	}
	return driver.RowsAffected(0), nil
}

type ddlTx struct{ r *ddlRecorder }

func (t ddlTx) Commit() error   { t.r.add("commit"); return nil }
func (t ddlTx) Rollback() error { t.r.add("rollback"); return nil }
