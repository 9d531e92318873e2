package control

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// TestLeasePrincipalQueriesUseIndex: the lease limit's count (at every
// issue) and a revoke-all's list read a principal's unfinished leases
// through sqlgate_lease_principal_state, on principal_id and state, so
// their cost does not grow with the principal's revoked history. (SQL
// Server: the same index; see testdata/lease_sqlserver.golden.)
func TestLeasePrincipalQueriesUseIndex(t *testing.T) {
	ctx := t.Context()
	queries := func(dialect string) map[string]string {
		return map[string]string{"count held": countHeldQuery(dialect), "unfinished": unfinishedQuery(dialect)}
	}
	args := map[string][]any{"count held": {"p", 5, "x%"}, "unfinished": {"p"}}

	t.Run("sqlite", func(t *testing.T) {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "plan.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		c := &DB{db: db, dialect: SQLite}
		if err := c.createSchema(ctx, LeaseSchema(SQLite)); err != nil {
			t.Fatal(err)
		}
		for name, q := range queries(SQLite) {
			plan := queryLines(t, db, "EXPLAIN QUERY PLAN "+q, args[name], func(rows *sql.Rows) (string, error) {
				var id, parent, unused int
				var detail string
				err := rows.Scan(&id, &parent, &unused, &detail)
				return detail, err
			})
			got := strings.Join(plan, "; ")
			if !strings.Contains(got, "USING INDEX sqlgate_lease_principal_state (principal_id=? AND state=?)") {
				t.Errorf("%s: plan %q, want a search of sqlgate_lease_principal_state on principal_id and state", name, got)
			}
		}
	})

	t.Run("postgres", func(t *testing.T) {
		dsn := os.Getenv("SQLGATE_TEST_POSTGRES_DSN")
		if dsn == "" {
			t.Skip("set SQLGATE_TEST_POSTGRES_DSN to run the PostgreSQL tests")
		}
		admin, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { admin.Close() })
		name := fmt.Sprintf("sqlgate_control_plan_%d", time.Now().UnixNano())
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		})
		cfg, err := pgxConfigDSN(dsn, name)
		if err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("pgx", cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		c := &DB{db: db, dialect: Postgres}
		if err := c.createSchema(ctx, LeaseSchema(Postgres)); err != nil {
			t.Fatal(err)
		}
		// Many final leases of one principal, a few unfinished, and
		// statistics: the planner then picks by cost as in production.
		if _, err := db.ExecContext(ctx, `INSERT INTO sqlgate_lease
			(id, principal_id, principal, database_name, role_name, username, state, issued_at, expires_at, max_expires_at,
			 decision_id, attempts, next_attempt, updated_at)
			SELECT 'l' || i, 'p', '{}', 'orders', 'reader', 'sg_' || i, CASE WHEN i % 1000 = 0 THEN 'active' ELSE 'revoked' END,
			       i, i, i, 'd', 0, i, i
			FROM generate_series(1, 20000) AS i`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "ANALYZE sqlgate_lease"); err != nil {
			t.Fatal(err)
		}
		for name, q := range queries(Postgres) {
			plan := queryLines(t, db, "EXPLAIN "+c.q(q), args[name], func(rows *sql.Rows) (string, error) {
				var line string
				err := rows.Scan(&line)
				return strings.TrimSpace(line), err
			})
			got := strings.Join(plan, "\n")
			if !strings.Contains(got, "Index Scan using sqlgate_lease_principal_state") ||
				!strings.Contains(got, "Index Cond: (((principal_id)::text = 'p'::text) AND ((state)::text = ANY") {
				t.Errorf("%s: plan\n%s\nwant sqlgate_lease_principal_state on principal_id and state", name, got)
			}
		}
	})
}

// pgxConfigDSN returns dsn (URL or key=value form) pointing at database
// name.
func pgxConfigDSN(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil
}

// queryLines runs q and returns one line per row, as scan reads it.
func queryLines(t *testing.T, db *sql.DB, q string, args []any, scan func(*sql.Rows) (string, error)) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		line, err := scan(rows)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
