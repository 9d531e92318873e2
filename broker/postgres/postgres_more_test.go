package postgres_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/broker/route"
)

func catalogRoute(t testing.TB, subject string) *route.Route {
	t.Helper()
	cat, err := brokertest.Catalog("test", targets)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := cat.Lookup(subject)
	return r
}

// A procedure's OUT parameter comes back in "output"; CALL affects no
// command-tag rows.
func TestProcedureOutput(t *testing.T) {
	e := openTest(t, 2)
	c, _ := brokertest.NewCall(catalogRoute(t, brokertest.SubjectCreate), `{"customer":"x","amount":1,"quantity":1,"express":true}`, "")
	res, err := e.Execute(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"rows":[{"id":1}],"rows_affected":1}`; string(res.JSON) != want {
		t.Errorf("create = %s, want %s", res.JSON, want)
	}
	c, _ = brokertest.NewCall(catalogRoute(t, brokertest.SubjectCancel), `{"id":1}`, "")
	res, err = e.Execute(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"rows":[],"output":{"previous_status":"open"},"rows_affected":0}`; string(res.JSON) != want {
		t.Errorf("cancel = %s, want %s", res.JSON, want)
	}
}

func TestDBErrorState(t *testing.T) {
	e := openTest(t, 2)
	c, _ := brokertest.NewCall(catalogRoute(t, brokertest.SubjectCreate), `{"customer":"x","amount":-5,"quantity":1,"express":true}`, "")
	_, err := e.Execute(t.Context(), c)
	var dbe *broker.DBError
	if !errors.As(err, &dbe) || dbe.State != "23514" || dbe.Number != 23514 || !strings.Contains(dbe.Message, "orders_amount_check") {
		t.Fatalf("Execute(check violation) = %v, want DBError 23514 naming orders_amount_check", err)
	}
}

// A value the server cannot parse for the parameter's type is a DBError
// whose message does not quote the value.
func TestDBErrorScrubbed(t *testing.T) {
	e := openTest(t, 2)
	r := testRoute(t, route.Spec{
		Statement: &route.StatementSpec{Name: "s", SQL: "SELECT :n::integer AS n"},
		Params:    map[string]any{"type": "object", "properties": map[string]any{"n": map[string]any{"type": "number"}}},
	})
	p, _ := r.Decode([]byte(`{"n":12345.678}`))
	_, err := e.Execute(t.Context(), &broker.Call{Route: r, Params: p, IdempotencyKey: "s", RequestHash: "h"})
	var dbe *broker.DBError
	if !errors.As(err, &dbe) || dbe.State != "22P02" {
		t.Fatalf("Execute(non-integer) = %v, want DBError 22P02", err)
	}
	if strings.Contains(err.Error(), "12345.678") {
		t.Errorf("error %q quotes the value", err)
	}
}

// A function returning more rows than max_rows fails the merged call and
// rolls it back: the key is not consumed.
func TestFunctionTooManyRows(t *testing.T) {
	e := openTest(t, 1)
	if _, err := e.Pool().Exec(t.Context(), `CREATE FUNCTION many(n integer) RETURNS TABLE (i integer) LANGUAGE sql AS $$ SELECT generate_series(1, n) $$`); err != nil {
		t.Fatal(err)
	}
	r := testRoute(t, route.Spec{Procedure: "many", Params: map[string]any{"type": "object", "properties": map[string]any{"n": map[string]any{"type": "integer"}}}})
	p, _ := r.Decode([]byte(`{"n":10}`))
	c := &broker.Call{Route: r, Params: p, IdempotencyKey: "many", RequestHash: "h", MaxRows: 3}
	if _, err := e.Execute(t.Context(), c); !errors.Is(err, broker.ErrTooManyRows) {
		t.Fatalf("Execute(10 rows, max 3) = %v, want ErrTooManyRows", err)
	}
	if _, found, err := e.Lookup(t.Context(), "many"); found || err != nil {
		t.Fatalf("Lookup after ErrTooManyRows = found %v, %v; want not found", found, err)
	}
	c.MaxRows = 10
	res, err := e.Execute(t.Context(), c)
	if err != nil || res.Rows != 10 || res.Replayed {
		t.Fatalf("Execute(10 rows, max 10) = %+v, %v", res, err)
	}
}

// A serialization failure is retried: the function fails with 40001 on its
// first run (a sequence, which rollbacks do not rewind, counts the runs) and
// succeeds on the retry, which the caller never sees.
func TestRetrySerializationFailure(t *testing.T) {
	e := openTest(t, 2)
	if _, err := e.Pool().Exec(t.Context(), `CREATE SEQUENCE attempts;
		CREATE FUNCTION flaky() RETURNS TABLE (attempt bigint) LANGUAGE plpgsql AS $$
		DECLARE n bigint := nextval('attempts');
		BEGIN
		  IF n = 1 THEN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = '40001'; END IF;
		  RETURN QUERY SELECT n;
		END $$`); err != nil {
		t.Fatal(err)
	}
	r := testRoute(t, route.Spec{Procedure: "flaky"})
	res, err := e.Execute(t.Context(), &broker.Call{Route: r, Params: map[string]any{}, IdempotencyKey: "flaky", RequestHash: "h"})
	if err != nil {
		t.Fatalf("Execute(fails once with 40001) = %v, want success after a retry", err)
	}
	if want := `{"rows":[{"attempt":2}],"rows_affected":1}`; string(res.JSON) != want {
		t.Errorf("result = %s, want %s (the second attempt)", res.JSON, want)
	}
}

func TestPrune(t *testing.T) {
	e := openTest(t, 2)
	r := catalogRoute(t, brokertest.SubjectCount)
	c, _ := brokertest.NewCall(r, `{}`, "")
	if _, err := e.Execute(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Prune(t.Context(), time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Prune(an hour ago) = %d, %v; want 0", n, err)
	}
	if n, err := e.Prune(t.Context(), time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("Prune(now) = %d, %v; want 1", n, err)
	}
	if _, found, err := e.Lookup(t.Context(), c.IdempotencyKey); found || err != nil {
		t.Errorf("Lookup(pruned key) = found %v, %v", found, err)
	}
	// In batches: five records, two per statement.
	postgres.SetPruneBatch(e, 2)
	for range 5 {
		c, _ := brokertest.NewCall(r, `{}`, "")
		if _, err := e.Execute(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := e.Prune(t.Context(), time.Now().Add(time.Second)); err != nil || n != 5 {
		t.Fatalf("Prune(now) in batches of 2 = %d, %v; want 5", n, err)
	}
}

func TestCheckRoutes(t *testing.T) {
	e := openTest(t, 2)
	for _, s := range brokertest.Subjects() {
		if err := e.Check(t.Context(), catalogRoute(t, s)); err != nil {
			t.Errorf("Check(%s) = %v", s, err)
		}
	}
	missing := testRoute(t, route.Spec{Procedure: "no_such_function"})
	if err := e.Check(t.Context(), missing); err == nil || !strings.Contains(err.Error(), "not exactly one function or procedure") {
		t.Errorf("Check(missing function) = %v", err)
	}
	bad := testRoute(t, route.Spec{Statement: &route.StatementSpec{Name: "s", SQL: "SELECT * FROM no_such_table"}})
	var dbe *broker.DBError
	if err := e.Check(t.Context(), bad); !errors.As(err, &dbe) || dbe.State != "42P01" {
		t.Errorf("Check(missing table) = %v, want DBError 42P01", err)
	}
}

func testRoute(t testing.TB, rc route.Spec) *route.Route {
	t.Helper()
	rc.Subject, rc.Database = "t.x", "test"
	cat, err := route.New([]route.Spec{rc})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := cat.Lookup("t.x")
	return r
}

// Identifiers from the catalog are quoted: a target or parameter that
// PostgreSQL would fold or parse never becomes SQL syntax.
func TestQuotedIdentifiers(t *testing.T) {
	e := openTest(t, 2)
	if _, err := e.Pool().Exec(t.Context(), `CREATE FUNCTION "MixedCase"("Select" text) RETURNS TABLE (v text) LANGUAGE sql AS $$ SELECT $1 $$`); err != nil {
		t.Fatal(err)
	}
	r := testRoute(t, route.Spec{Procedure: "MixedCase", Params: map[string]any{"type": "object", "properties": map[string]any{"Select": map[string]any{"type": "string"}}}})
	p, _ := r.Decode([]byte(`{"Select":"'); DROP TABLE orders; --"}`))
	res, err := e.Execute(t.Context(), &broker.Call{Route: r, Params: p, IdempotencyKey: "q", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"rows":[{"v":"'); DROP TABLE orders; --"}],"rows_affected":1}`; string(res.JSON) != want {
		t.Errorf("result = %s, want %s", res.JSON, want)
	}
}

func TestTypes(t *testing.T) {
	e := openTest(t, 2)
	r := testRoute(t, route.Spec{
		Statement: &route.StatementSpec{Name: "s", SQL: `SELECT :n AS n, :m::bigint AS m, :big::numeric * 2 AS twice, :f AS f, :u AS u, :d AS d, :ts AS ts, :b AS b,
			'{"k":[1,2.50]}'::jsonb AS j, ARRAY[1,2] AS arr, 'NaN'::numeric AS nan, :flag AS flag, NULL::text AS nothing`},
		Params: map[string]any{"type": "object", "properties": map[string]any{
			"n": map[string]any{"type": "integer"}, "m": map[string]any{"type": "integer"}, "big": map[string]any{"type": "number"}, "f": map[string]any{"type": "number"},
			"u": map[string]any{"type": "string"}, "d": map[string]any{"type": "string"}, "ts": map[string]any{"type": "string"},
			"b": map[string]any{"type": "string"}, "flag": map[string]any{"type": "boolean"},
		}},
		SQLTypes: map[string]string{"f": "float", "u": "uniqueidentifier", "d": "date", "ts": "datetimeoffset", "b": "varbinary(max)", "big": "numeric(38,10)"},
	})
	p, err := r.Decode([]byte(`{"n":9007199254740993,"m":9007199254740993,"big":12345678901234567890.0123456789,"f":0.1,"u":"0190E9A5-1234-7ABC-8DEF-0123456789AB",
		"d":"2026-02-03","ts":"2026-02-03T04:05:06.123456+02:00","b":"AAEC/w==","flag":false}`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Execute(t.Context(), &broker.Call{Route: r, Params: p, IdempotencyKey: "t", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	// An untyped placeholder is text to PostgreSQL: the integer and the
	// boolean are bound as their text and come back as strings.
	want := `{"rows":[{"n":"9007199254740993","m":9007199254740993,"twice":24691357802469135780.0246913578,"f":0.1,"u":"0190e9a5-1234-7abc-8def-0123456789ab",` +
		`"d":"2026-02-03","ts":"2026-02-03T02:05:06.123456Z","b":"AAEC/w==","j":{"k": [1, 2.50]},"arr":[1,2],"nan":"NaN","flag":"false","nothing":null}],"rows_affected":1}`
	if string(res.JSON) != want {
		t.Errorf("result =\n%s\nwant\n%s", res.JSON, want)
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	_ = l.Close()
	_, err = postgres.Open(t.Context(), postgres.Config{Name: "down", DSN: "host=127.0.0.1 port=" + itoa(addr.Port) + " user=u password=secret-pw dbname=d connect_timeout=2", MinConns: 0, MaxConns: 1})
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Open(unreachable) = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "secret-pw") || strings.Contains(err.Error(), "user=u") {
		t.Errorf("error %q leaks the connection string", err)
	}
}

func itoa(n int) string { return fmtInt(n) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// countingConn counts writes: pgx flushes each request or pipelined batch
// with one write, so writes per call are round trips per call.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(b)
}

func TestRoundTrips(t *testing.T) {
	var writes atomic.Int64
	postgres.SetDialHook(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		return countingConn{c, &writes}, err
	})
	e := openTest(t, 1)
	postgres.SetDialHook(nil)
	tests := []struct {
		name, subject, payload string
		call, replay           int64
	}{
		{"function", brokertest.SubjectCreate, `{"customer":"rt","amount":1,"quantity":1,"express":true}`, 1, 2},
		{"statement", brokertest.SubjectGet, `{"id":1}`, 3, 2},
		{"procedure", brokertest.SubjectCancel, `{"id":1}`, 3, 2},
	}
	for _, tc := range tests {
		r := catalogRoute(t, tc.subject)
		measure := func() (call, replay int64) {
			c, _ := brokertest.NewCall(r, tc.payload, "")
			before := writes.Load()
			if _, err := e.Execute(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			call = writes.Load() - before
			before = writes.Load()
			if res, err := e.Execute(t.Context(), c); err != nil || !res.Replayed {
				t.Fatalf("replay = %v, %v", res, err)
			}
			return call, writes.Load() - before
		}
		measure() // the first use prepares the statements on the connection
		if call, replay := measure(); call != tc.call || replay != tc.replay {
			t.Errorf("%s: round trips per call, replay = %d, %d; want %d, %d", tc.name, call, replay, tc.call, tc.replay)
		}
	}
}

// A replayed or concurrent duplicate key never runs the function, not even
// in a transaction that is rolled back: the identity sequence (which
// rollbacks do not rewind) shows no gap.
func TestDuplicateKeyExecutesNothing(t *testing.T) {
	e := openTest(t, 4)
	r := catalogRoute(t, brokertest.SubjectCreate)
	c, _ := brokertest.NewCall(r, `{"customer":"once","amount":1,"quantity":1,"express":true}`, "")
	done := make(chan error, 8)
	for range 8 {
		go func() {
			cc := *c
			_, err := e.Execute(t.Context(), &cc)
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if res, err := e.Execute(t.Context(), c); err != nil || !res.Replayed {
			t.Fatalf("replay = %v, %v", res, err)
		}
	}
	next, _ := brokertest.NewCall(r, `{"customer":"next","amount":1,"quantity":1,"express":true}`, "")
	res, err := e.Execute(t.Context(), next)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"rows":[{"id":2}],"rows_affected":1}`; string(res.JSON) != want {
		t.Errorf("next create = %s, want %s (a duplicate consumed an id)", res.JSON, want)
	}
}

// A batch takes only function calls with the one-round-trip form: a
// statement or a procedure is ErrBatchUnsupported before anything is sent
// (the broker then runs each call alone). A function whose rows exceed a
// call's limit fails the whole batch, and nothing of it commits.
func TestBatchLimits(t *testing.T) {
	e := openTest(t, 2)
	create, _ := brokertest.NewCall(catalogRoute(t, brokertest.SubjectCreate), `{"customer":"x","amount":1,"quantity":1,"express":true}`, "")
	for _, subject := range []string{brokertest.SubjectGet, brokertest.SubjectCancel} {
		other, _ := brokertest.NewCall(catalogRoute(t, subject), `{"id":1}`, "")
		if _, err := e.ExecuteBatch(t.Context(), []*broker.Call{create, other}); !errors.Is(err, broker.ErrBatchUnsupported) {
			t.Errorf("batch with %s: err = %v, want ErrBatchUnsupported", subject, err)
		}
	}
	if _, found, err := e.Lookup(t.Context(), create.IdempotencyKey); err != nil || found {
		t.Fatalf("an unsupported batch committed the create: found %v, %v", found, err)
	}
	if _, err := e.Pool().Exec(t.Context(), `CREATE FUNCTION many(n integer) RETURNS TABLE (i integer) LANGUAGE sql AS $$ SELECT generate_series(1, n) $$`); err != nil {
		t.Fatal(err)
	}
	r := testRoute(t, route.Spec{Procedure: "many", Params: map[string]any{"type": "object", "properties": map[string]any{"n": map[string]any{"type": "integer"}}}})
	p, _ := r.Decode([]byte(`{"n":10}`))
	many := &broker.Call{Route: r, Params: p, IdempotencyKey: "many", RequestHash: "h", MaxRows: 3}
	if _, err := e.ExecuteBatch(t.Context(), []*broker.Call{create, many}); err == nil {
		t.Fatal("a batch with a call over its row limit succeeded")
	}
	for _, key := range []string{create.IdempotencyKey, "many"} {
		if _, found, err := e.Lookup(t.Context(), key); err != nil || found {
			t.Errorf("the failed batch committed %s: found %v, %v", key, found, err)
		}
	}
	if got := countOrders(t, e); got != 0 {
		t.Errorf("%d orders after the failed batch, want 0", got)
	}
}

func countOrders(t *testing.T, e *postgres.Executor) int64 {
	t.Helper()
	var n int64
	if err := e.Pool().QueryRow(t.Context(), `SELECT count(*) FROM orders`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeclaredLengthRefused: a value longer than its declared varchar(n) is
// refused before anything runs, because the cast the declaration becomes
// would cut it without an error; a value that fits is stored whole.
func TestDeclaredLengthRefused(t *testing.T) {
	e := openTest(t, 1)
	r := testRoute(t, route.Spec{
		Statement: &route.StatementSpec{Name: "v", SQL: `INSERT INTO orders (customer, amount, quantity, express) VALUES (:c, 1, 1, true) RETURNING customer`},
		SQLTypes:  map[string]string{"c": "varchar(5)"},
		Params:    map[string]any{"type": "object", "properties": map[string]any{"c": map[string]any{"type": "string"}}},
	})
	c, err := brokertest.NewCall(r, `{"c":"abcdefghij"}`, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Execute(t.Context(), c)
	var invalid *route.InvalidError
	if !errors.As(err, &invalid) || invalid.Field != "c" || !strings.Contains(invalid.Message, "varchar(5)") {
		t.Fatalf("Execute with 10 characters for varchar(5) = %v, want an InvalidError for c", err)
	}
	c, err = brokertest.NewCall(r, `{"c":"äbcdé"}`, "") // five characters, seven bytes
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Execute(t.Context(), c)
	if err != nil || !strings.Contains(string(res.JSON), "äbcdé") {
		t.Fatalf("Execute with five characters = %v, %v", res, err)
	}
}
