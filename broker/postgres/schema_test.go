package postgres_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/broker/route"
)

// Schema changes under a running broker. Statements are prepared once per
// pooled connection; a pool of one connection makes every call after the
// change meet the statement prepared before it.

func newCall(t *testing.T, r *route.Route, payload, key string) *broker.Call {
	t.Helper()
	c, err := brokertest.NewCall(r, payload, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func execSQL(t *testing.T, e *postgres.Executor, sql string) {
	t.Helper()
	if _, err := e.Pool().Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// A column added under a SELECT * or RETURNING * statement route changes the
// statement's result columns: the next call returns them, executes once, and
// its key replays what it returned.
func TestStatementAfterAddColumn(t *testing.T) {
	idParams := map[string]any{"type": "object", "properties": map[string]any{"id": map[string]any{"type": "integer"}}}
	customer := map[string]any{"type": "object", "properties": map[string]any{"c": map[string]any{"type": "string"}}}
	tests := []struct {
		name   string
		spec   route.Spec
		first  string // payload of the call before the change
		after  string // and after it
		orders int64  // orders the call after the change adds
	}{
		{
			"select_star",
			route.Spec{Statement: &route.StatementSpec{Name: "g", SQL: `SELECT * FROM orders WHERE id = :id`}, Params: idParams},
			`{"id":1}`, `{"id":1}`, 0,
		},
		{
			"returning_star",
			route.Spec{Statement: &route.StatementSpec{Name: "i", SQL: `INSERT INTO orders (customer, amount, quantity, express) VALUES (:c, 1, 1, true) RETURNING *`}, Params: customer},
			`{"c":"before"}`, `{"c":"after"}`, 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := openTest(t, 1)
			if _, err := e.Execute(t.Context(), newCall(t, catalogRoute(t, brokertest.SubjectCreate), `{"customer":"x","amount":1,"quantity":1,"express":true}`, "")); err != nil {
				t.Fatal(err)
			}
			r := testRoute(t, tc.spec)
			if _, err := e.Execute(t.Context(), newCall(t, r, tc.first, "")); err != nil {
				t.Fatal(err)
			}
			execSQL(t, e, `ALTER TABLE orders ADD COLUMN extra text DEFAULT 'new'`)
			before := countOrders(t, e)
			c := newCall(t, r, tc.after, "")
			res, err := e.Execute(t.Context(), c)
			if err != nil {
				t.Fatalf("Execute after ADD COLUMN = %v, want success", err)
			}
			d, err := brokertest.DecodeResult(res.JSON)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Rows) != 1 || d.Rows[0]["extra"] != "new" {
				t.Errorf("rows after ADD COLUMN = %v, want one row with extra = new", d.Rows)
			}
			if got := countOrders(t, e) - before; got != tc.orders {
				t.Errorf("the call added %d orders, want %d", got, tc.orders)
			}
			again, err := e.Execute(t.Context(), c)
			if err != nil || !again.Replayed || string(again.JSON) != string(res.JSON) {
				t.Errorf("replay = %v, %v; want the first result %s", again, err, res.JSON)
			}
			if got := countOrders(t, e) - before; got != tc.orders {
				t.Errorf("the call and its replay added %d orders, want %d", got, tc.orders)
			}
		})
	}
}

// Prepared statements the server no longer has (DEALLOCATE ALL on the
// connection) are prepared again, for every form of call.
func TestStatementDeallocated(t *testing.T) {
	e := openTest(t, 1)
	execSQL(t, e, `CREATE FUNCTION floats() RETURNS TABLE (f float8) LANGUAGE sql AS $$ SELECT 0.5::float8 $$`)
	calls := map[string]func() *broker.Call{
		"statement":     func() *broker.Call { return newCall(t, catalogRoute(t, brokertest.SubjectGet), `{"id":1}`, "") },
		"procedure":     func() *broker.Call { return newCall(t, catalogRoute(t, brokertest.SubjectCancel), `{"id":1}`, "") },
		"function":      func() *broker.Call { return newCall(t, catalogRoute(t, brokertest.SubjectCount), `{}`, "") },
		"function_2rtt": func() *broker.Call { return newCall(t, testRoute(t, route.Spec{Procedure: "floats"}), `{}`, "") },
	}
	for name, c := range calls {
		if _, err := e.Execute(t.Context(), c()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for name, c := range calls {
		execSQL(t, e, `DEALLOCATE ALL`) // on the pool's only connection
		if _, err := e.Execute(t.Context(), c()); err != nil {
			t.Errorf("%s: Execute after DEALLOCATE ALL = %v, want success", name, err)
		}
	}
}

// A function with the two-round-trip form (a float column) redefined with
// other columns: the next call returns them, and runs the function once.
func TestMergedFunctionRedefined(t *testing.T) {
	e := openTest(t, 1)
	execSQL(t, e, `CREATE SEQUENCE fshape_calls;
		CREATE FUNCTION fshape() RETURNS TABLE (a float8) LANGUAGE sql AS $$ SELECT nextval('fshape_calls')::float8 $$`)
	r := testRoute(t, route.Spec{Procedure: "fshape"})
	if res, err := e.Execute(t.Context(), newCall(t, r, `{}`, "")); err != nil || string(res.JSON) != `{"rows":[{"a":1}],"rows_affected":1}` {
		t.Fatalf("first call = %v, %v", res, err)
	}
	execSQL(t, e, `DROP FUNCTION fshape();
		CREATE FUNCTION fshape() RETURNS TABLE (b float8, c float8) LANGUAGE sql AS $$ SELECT nextval('fshape_calls')::float8, 0.5::float8 $$`)
	res, err := e.Execute(t.Context(), newCall(t, r, `{}`, ""))
	if err != nil {
		t.Fatalf("Execute after redefinition = %v, want success", err)
	}
	if want := `{"rows":[{"b":2,"c":0.5}],"rows_affected":1}`; string(res.JSON) != want {
		t.Errorf("after redefinition = %s, want %s (the function runs once per call)", res.JSON, want)
	}
}

// A RETURNS SETOF function whose table gains a column: the one-round-trip
// form notices before it calls the function, describes it again, and the
// call returns the new column, alone or in a batch. The function runs once
// per call (its sequence shows no gap).
func TestOneTripResultTypeChanged(t *testing.T) {
	e := openTest(t, 1)
	execSQL(t, e, `CREATE TABLE things (id bigint);
		CREATE SEQUENCE things_seq;
		CREATE FUNCTION add_thing() RETURNS SETOF things LANGUAGE sql AS $$ INSERT INTO things (id) VALUES (nextval('things_seq')) RETURNING * $$`)
	r := testRoute(t, route.Spec{Procedure: "add_thing"})
	call := func(want string) {
		t.Helper()
		c := newCall(t, r, `{}`, "")
		res, err := e.Execute(t.Context(), c)
		if err != nil {
			t.Fatalf("Execute = %v, want %s", err, want)
		}
		if string(res.JSON) != want {
			t.Fatalf("Execute = %s, want %s", res.JSON, want)
		}
		if again, err := e.Execute(t.Context(), c); err != nil || !again.Replayed || string(again.JSON) != want {
			t.Fatalf("replay = %v, %v; want %s", again, err, want)
		}
	}
	call(`{"rows":[{"id":1}],"rows_affected":1}`)
	execSQL(t, e, `ALTER TABLE things ADD COLUMN note text DEFAULT 'new'`)
	call(`{"rows":[{"id":2,"note":"new"}],"rows_affected":1}`)

	execSQL(t, e, `ALTER TABLE things ADD COLUMN n integer DEFAULT 7`)
	out, err := e.ExecuteBatch(t.Context(), []*broker.Call{newCall(t, r, `{}`, ""), newCall(t, r, `{}`, "")})
	if err != nil {
		t.Fatalf("ExecuteBatch after ADD COLUMN = %v", err)
	}
	for i, o := range out {
		want := fmt.Sprintf(`{"rows":[{"id":%d,"note":"new","n":7}],"rows_affected":1}`, 3+i)
		if o.Err != nil || o.Result == nil || string(o.Result.JSON) != want {
			t.Errorf("batch call %d = %+v; want %s", i, o, want)
		}
	}
	call(`{"rows":[{"id":5,"note":"new","n":7}],"rows_affected":1}`)
}

// A function or procedure that raises feature_not_supported (0A000) itself
// is not a stale statement: the call fails with the error and runs once (its
// sequence, which no rollback resets, advanced once).
func TestOwnFeatureNotSupportedRunsOnce(t *testing.T) {
	tests := []struct {
		name, create string
	}{
		{"function_1rtt", `CREATE FUNCTION unsupported() RETURNS TABLE (a integer) LANGUAGE plpgsql AS $$
			BEGIN PERFORM nextval('unsupported_calls'); RAISE EXCEPTION 'no such feature' USING ERRCODE = 'feature_not_supported'; END $$`},
		{"function_2rtt", `CREATE FUNCTION unsupported() RETURNS TABLE (f float8) LANGUAGE plpgsql AS $$
			BEGIN PERFORM nextval('unsupported_calls'); RAISE EXCEPTION 'no such feature' USING ERRCODE = 'feature_not_supported'; END $$`},
		{"procedure", `CREATE PROCEDURE unsupported() LANGUAGE plpgsql AS $$
			BEGIN PERFORM nextval('unsupported_calls'); RAISE EXCEPTION 'no such feature' USING ERRCODE = 'feature_not_supported'; END $$`},
		{"cached_plan_message", `CREATE FUNCTION unsupported() RETURNS TABLE (a integer) LANGUAGE plpgsql AS $$
			BEGIN PERFORM nextval('unsupported_calls'); RAISE EXCEPTION 'cached plan must not change result type' USING ERRCODE = 'feature_not_supported'; END $$`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := openTest(t, 1)
			execSQL(t, e, `CREATE SEQUENCE unsupported_calls`)
			execSQL(t, e, tc.create)
			r := testRoute(t, route.Spec{Procedure: "unsupported"})
			_, err := e.Execute(t.Context(), newCall(t, r, `{}`, ""))
			var dbe *broker.DBError
			if !errors.As(err, &dbe) || dbe.State != "0A000" {
				t.Errorf("Execute = %v, want DBError 0A000", err)
			}
			var calls int64
			if err := e.Pool().QueryRow(t.Context(), `SELECT last_value FROM unsupported_calls`).Scan(&calls); err != nil {
				t.Fatal(err)
			}
			if calls != 1 {
				t.Errorf("the target ran %d times for one call, want 1", calls)
			}
		})
	}
}
