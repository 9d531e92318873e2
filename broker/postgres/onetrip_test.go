package postgres_test

import (
	"fmt"
	"testing"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/broker/route"
)

// typedRows is a function returning every column type the one-round-trip
// form renders in SQL, with the values where renderings differ most: the
// extremes of the integers, exact and special numerics, padded and quoted
// text, json kept as written, times with and without fractions in another
// zone, the edges of the calendar, empty and binary bytea, and NULLs.
const typedRows = `CREATE FUNCTION typed_rows(zone text) RETURNS TABLE (
  i2 smallint, i4 integer, i8 bigint, o oid, n numeric, b boolean, t text, vc varchar(12), c char(4), nm name,
  u uuid, j jsonb, js json, tz timestamptz, ts timestamp, d date, by bytea, nothing text)
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM set_config('TimeZone', zone, true);
  PERFORM set_config('DateStyle', 'SQL, DMY', true);
  PERFORM set_config('bytea_output', 'escape', true);
  RETURN QUERY VALUES
    ((-32768)::smallint, -2147483648, (-9223372036854775808)::bigint, 4294967295::oid, 12345678901234567890.0123456789::numeric, true,
     'a"b\c' || chr(10) || 'é', 'x'::varchar(12), 'ab'::char(4), 'n'::name, '0190e9a5-1234-7abc-8def-0123456789ab'::uuid,
     '{"k": [1, 2.50], "a": null}'::jsonb, '{"z":1,  "a" : [ ]}'::json, '2026-02-03 04:05:06.123456+02'::timestamptz,
     '2026-02-03 04:05:06'::timestamp, '2026-02-03'::date, '\x00ff10'::bytea, NULL::text),
    (32767::smallint, 2147483647, 9223372036854775807::bigint, 0::oid, 'NaN'::numeric, false,
     '', 'Robert''); DROP TABLE orders;--', '', '', NULL, 'null'::jsonb, '[]'::json, '0001-01-01 00:00:00+00'::timestamptz,
     '9999-12-31 23:59:59.999999'::timestamp, '0001-01-01'::date, ''::bytea, 'x'),
    (0::smallint, 0, 0::bigint, 1::oid, 0.000000000000000000001::numeric, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, '2026-11-27 23:30:00.5-05'::timestamptz, '2026-11-27 00:00:00.000001'::timestamp,
     '2026-12-31'::date, NULL, NULL),
    (1::smallint, 1, 1::bigint, 2::oid, 'Infinity'::numeric, true, 't', 'v', 'c', 'n', NULL, NULL, NULL,
     'infinity'::timestamptz, '-infinity'::timestamp, 'infinity'::date, NULL, NULL);
END $$`

// A function's one-round-trip result renders every value exactly as pgx
// reads the same rows through a statement route, and a replay returns the
// same bytes again.
func TestOneTripRendering(t *testing.T) {
	e := openTest(t, 2)
	if _, err := e.Pool().Exec(t.Context(), typedRows); err != nil {
		t.Fatal(err)
	}
	params := map[string]any{"type": "object", "properties": map[string]any{"zone": map[string]any{"type": "string"}}}
	fn := testRoute(t, route.Spec{Procedure: "typed_rows", Params: params})
	stmt := testRoute(t, route.Spec{Statement: &route.StatementSpec{Name: "s", SQL: `SELECT * FROM typed_rows(:zone)`}, Params: params})
	for _, zone := range []string{"UTC", "Pacific/Chatham", "America/St_Johns"} {
		payload := fmt.Sprintf(`{"zone":%q}`, zone)
		run := func(r *route.Route, key string) *broker.Result {
			t.Helper()
			p, err := r.Decode([]byte(payload))
			if err != nil {
				t.Fatal(err)
			}
			res, err := e.Execute(t.Context(), &broker.Call{Route: r, Params: p, IdempotencyKey: key, RequestHash: "h", MaxRows: 10})
			if err != nil {
				t.Fatalf("Execute(%s, %s): %v", r.Target, zone, err)
			}
			return res
		}
		want := run(stmt, "stmt-"+zone)
		got := run(fn, "fn-"+zone)
		if string(got.JSON) != string(want.JSON) {
			t.Errorf("zone %s: function (one round trip) result\n%s\nstatement (pgx) result\n%s", zone, got.JSON, want.JSON)
		}
		if got.Rows != 4 || got.RowsAffected != 4 {
			t.Errorf("zone %s: rows %d, rows affected %d; want 4, 4", zone, got.Rows, got.RowsAffected)
		}
		again := run(fn, "fn-"+zone)
		if !again.Replayed || string(again.JSON) != string(got.JSON) || again.TransactionID != got.TransactionID ||
			!again.CommittedAt.Equal(got.CommittedAt) {
			t.Errorf("zone %s: replay = %+v\nwant the first result %s (txid %s, committed %s)", zone, again, got.JSON, got.TransactionID, got.CommittedAt)
		}
		looked, found, err := e.Lookup(t.Context(), "fn-"+zone)
		if err != nil || !found || string(looked.JSON) != string(got.JSON) {
			t.Errorf("zone %s: Lookup = %+v, %v, %v; want the first result", zone, looked, found, err)
		}
	}
}

// A function returning a type the one-round-trip form does not render
// (float, array, interval) still runs, in two round trips, with its record.
func TestOneTripFallback(t *testing.T) {
	e := openTest(t, 1)
	if _, err := e.Pool().Exec(t.Context(), `CREATE FUNCTION other_types() RETURNS TABLE (f double precision, a integer[], iv interval)
		LANGUAGE sql AS $$ SELECT 0.1::float8, ARRAY[1,2], interval '1 day' $$`); err != nil {
		t.Fatal(err)
	}
	r := testRoute(t, route.Spec{Procedure: "other_types"})
	c := &broker.Call{Route: r, Params: map[string]any{}, IdempotencyKey: "other", RequestHash: "h"}
	res, err := e.Execute(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"rows":[{"f":0.1,"a":[1,2],"iv":"1 day 00:00:00"}],"rows_affected":1}`; string(res.JSON) != want {
		t.Errorf("result = %s, want %s", res.JSON, want)
	}
	again, err := e.Execute(t.Context(), c)
	if err != nil || !again.Replayed || string(again.JSON) != string(res.JSON) {
		t.Errorf("replay = %+v, %v; want the first result", again, err)
	}
}

// Under a stricter default isolation the advisory lock no longer lets a
// duplicate see the first call's record (its snapshot is older), so the
// primary key decides: the duplicate's transaction is rolled back and it
// replays. Every caller still gets the one committed result.
func TestOneTripDuplicateRepeatableRead(t *testing.T) {
	dsn := newSchema(t) + " default_transaction_isolation='repeatable read'"
	e, err := postgres.Open(t.Context(), postgres.Config{Name: "test", DSN: dsn, MaxConns: 8, CreateIdempotencyTable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	r := catalogRoute(t, brokertest.SubjectCreate)
	c, _ := brokertest.NewCall(r, `{"customer":"rr","amount":1,"quantity":1,"express":true}`, "")
	type outcome struct {
		res *broker.Result
		err error
	}
	done := make(chan outcome, 8)
	for range 8 {
		go func() {
			cc := *c
			res, err := e.Execute(t.Context(), &cc)
			done <- outcome{res, err}
		}()
	}
	var first string
	executed := 0
	for range 8 {
		o := <-done
		if o.err != nil {
			t.Fatalf("Execute = %v", o.err)
		}
		if !o.res.Replayed {
			executed++
		}
		if first == "" {
			first = string(o.res.JSON)
		} else if string(o.res.JSON) != first {
			t.Errorf("results differ: %s and %s", o.res.JSON, first)
		}
	}
	var n int
	if err := e.Pool().QueryRow(t.Context(), `SELECT count(*) FROM orders WHERE customer = 'rr'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if executed != 1 || n != 1 {
		t.Errorf("%d calls executed and %d orders exist; want 1 and 1", executed, n)
	}
}

// When a function is dropped and created again with other result columns
// under a running broker, the next call notices, describes it again and
// returns the new columns.
func TestOneTripFunctionRedefined(t *testing.T) {
	e := openTest(t, 1)
	if _, err := e.Pool().Exec(t.Context(), `CREATE FUNCTION shape() RETURNS TABLE (a integer) LANGUAGE sql AS $$ SELECT 1 $$`); err != nil {
		t.Fatal(err)
	}
	r := testRoute(t, route.Spec{Procedure: "shape"})
	call := func(key string) (*broker.Result, error) {
		return e.Execute(t.Context(), &broker.Call{Route: r, Params: map[string]any{}, IdempotencyKey: key, RequestHash: "h"})
	}
	if res, err := call("k1"); err != nil || string(res.JSON) != `{"rows":[{"a":1}],"rows_affected":1}` {
		t.Fatalf("first shape = %v, %v", res, err)
	}
	for i, redefine := range []string{
		`DROP FUNCTION shape(); CREATE FUNCTION shape() RETURNS TABLE (b text) LANGUAGE sql AS $$ SELECT 'x' $$`,
		`DROP FUNCTION shape(); CREATE FUNCTION shape() RETURNS TABLE (b text, c integer) LANGUAGE sql AS $$ SELECT 'x', 2 $$`, // a column added
	} {
		if _, err := e.Pool().Exec(t.Context(), redefine); err != nil {
			t.Fatal(err)
		}
		want := []string{`{"rows":[{"b":"x"}],"rows_affected":1}`, `{"rows":[{"b":"x","c":2}],"rows_affected":1}`}[i]
		if res, err := call(fmt.Sprintf("k2-%d", i)); err != nil || string(res.JSON) != want {
			t.Fatalf("after redefinition %d = %v, %v; want %s", i, res, err, want)
		}
	}
}
