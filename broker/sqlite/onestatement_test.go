package sqlite_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/route"
)

// TestOneStatementUnderSQLiteRules loads routes whose statement is one
// statement under PostgreSQL's lexical rules and two under SQLite's,
// through the catalog loader and this executor's Check, as sqlgated
// does. SQLite ends a block comment at the first */ and has no E'…'
// escape strings, so it ran the second statement on every call and
// emptied the table. The catalog must refuse them whatever the route's
// database.
func TestOneStatementUnderSQLiteRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, sql string
		want      []string // in the catalog's error
	}{
		{
			name: "nested_comment",
			sql:  `UPDATE t SET v = :v WHERE id = 1 /* /* */; DELETE FROM t; -- */`,
			want: []string{"more than one statement", "SQLite", "block comment"},
		},
		{
			name: "escape_string",
			sql:  `SELECT :v AS a, e'\' FROM t; DELETE FROM t; -- '`,
			want: []string{"more than one statement", "SQLite", "E'"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := openTest(t)
			if _, err := e.DB().ExecContext(t.Context(),
				`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, e TEXT); INSERT INTO t VALUES (1, 'a', 'x'), (2, 'b', 'y')`); err != nil {
				t.Fatal(err)
			}
			yaml := fmt.Sprintf("routes:\n  - subject: t.v1.%s\n    database: test\n    statement: {name: s, sql: %q}\n"+
				"    params: {type: object, properties: {v: {type: string}}, required: [v]}\n", tc.name, tc.sql)
			cat, err := route.Parse([]byte(yaml))
			if err != nil {
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("catalog error %q does not mention %q", err, w)
					}
				}
				return
			}
			// The catalog accepted it: show what a call then does.
			r, _ := cat.Lookup("t.v1." + tc.name)
			if err := e.Check(t.Context(), r); err != nil {
				t.Fatalf("catalog accepted %q (SQLite refused it at Check: %v)", tc.sql, err)
			}
			call, err := brokertest.NewCall(r, `{"v":"z"}`, "")
			if err != nil {
				t.Fatal(err)
			}
			_, execErr := e.Execute(t.Context(), call)
			var n int
			if err := e.DB().QueryRowContext(t.Context(), `SELECT count(*) FROM t`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			t.Fatalf("catalog and Check accepted %q; a call returned %v and left %d of 2 rows in t", tc.sql, execErr, n)
		})
	}
}
