package sqlserver

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/golang-sql/civil"
	mssql "github.com/microsoft/go-mssqldb"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/route"
	goldenfile "github.com/sqlgate/sqlgate/internal/golden"
)

// declOf spells the declaration go-mssqldb v1.11.2 puts in
// sp_executesql's parameter list for a value, so reviewers see what the
// server receives. The driver exports none of this, so declOf mirrors it
// (reviewed against the module source; TestDeclOfMirrorsTheDriver pins
// the cases that differ from a naive reading):
//   - Conn.CheckNamedValue (mssql_go19.go:102): an OUTPUT destination is
//     dereferenced and passed through convertInputParameter (:52);
//   - Stmt.makeParam (mssql.go:1044): a driver.Valuer with a non-NULL
//     value is replaced by its value (stringOut by "", a valid
//     sql.NullString by its string); a string is nvarchar of its UTF-16
//     length in bytes (makeStrParam, mssql.go:1037), a []byte varbinary
//     of its length (mssql.go:1187), a NULL sql.NullString nvarchar(4000);
//     the mssql types go through makeParamExtra (mssql_go19.go:177);
//   - makeDecl (types.go:1231): a size of 0 or over 8000 bytes is (max),
//     so the empty string is nvarchar(max) and a []byte of up to 8000
//     bytes varbinary(n); time with scale 7 is plain "time"; an OUTPUT
//     parameter gets " output" (mssql.go:736).
//
// A NULL value is marked " (NULL)" after the declaration.
func declOf(v any) string {
	if o, ok := v.(sql.Out); ok {
		return driverDecl(deref(o.Dest)) + " output" + nullMark(deref(o.Dest))
	}
	return driverDecl(v) + nullMark(v)
}

// nullMark is " (NULL)" when the driver sends v as NULL.
func nullMark(v any) string {
	switch x := v.(type) {
	case nil:
		return " (NULL)"
	case []byte:
		if x == nil {
			return " (NULL)"
		}
	case driver.Valuer:
		if dv, err := x.Value(); err == nil && dv == nil {
			return " (NULL)"
		}
	}
	return ""
}

// sizedDecl is makeDecl's rule for the variable-length types: size in
// bytes, 0 or over 8000 is (max), per is the bytes per character.
func sizedDecl(name string, size, per int) string {
	if size == 0 || size > 8000 {
		return name + "(max)"
	}
	return fmt.Sprintf("%s(%d)", name, size/per)
}

// driverDecl is makeDecl(makeParam(v).ti) for the value types sqlgate binds.
func driverDecl(v any) string {
	switch x := v.(type) {
	case nil:
		return "nvarchar(1)" // typeNull
	case sql.NullString:
		if x.Valid {
			return driverDecl(x.String)
		}
		return "nvarchar(4000)"
	case sql.NullInt64:
		return "bigint"
	case sql.NullInt32:
		return "int"
	case sql.NullInt16:
		return "smallint"
	case sql.NullByte:
		return "tinyint"
	case sql.NullBool:
		return "bit"
	case sql.NullFloat64:
		return "float"
	case sql.NullTime:
		return "datetimeoffset(7)"
	case mssql.UniqueIdentifier, mssql.NullUniqueIdentifier:
		return "uniqueidentifier"
	case mssql.NullDate:
		if x.Valid {
			return driverDecl(x.Date)
		}
		return "date"
	case mssql.NullDateTime:
		if x.Valid {
			return driverDecl(x.DateTime)
		}
		return "datetime2(7)"
	case mssql.NullTime:
		if x.Valid {
			return driverDecl(x.Time)
		}
		return "time"
	case stringOut: // its Value is "": makeStrParam, size 0
		return driverDecl("")
	case string:
		return sizedDecl("nvarchar", 2*len(utf16.Encode([]rune(x))), 2)
	case mssql.NVarCharMax:
		return "nvarchar(max)"
	case mssql.VarChar:
		return sizedDecl("varchar", len(x), 1)
	case mssql.VarCharMax:
		return "varchar(max)"
	case mssql.NChar:
		return fmt.Sprintf("nchar(%d)", len(utf16.Encode([]rune(string(x)))))
	case []byte:
		return sizedDecl("varbinary", len(x), 1)
	case int64, int:
		return "bigint"
	case int32:
		return "int"
	case int16:
		return "smallint"
	case int8, uint8:
		return "tinyint"
	case float64:
		return "float"
	case float32:
		return "real"
	case bool:
		return "bit"
	case time.Time, mssql.DateTimeOffset:
		return "datetimeoffset(7)"
	case mssql.DateTime1:
		return "datetime"
	case civil.DateTime:
		return "datetime2(7)"
	case civil.Date:
		return "date"
	case civil.Time:
		return "time"
	}
	return fmt.Sprintf("?%T", v)
}

func deref(p any) any {
	switch d := p.(type) {
	case *sql.NullInt64:
		return *d
	case *sql.NullInt32:
		return *d
	case *sql.NullBool:
		return *d
	case *sql.NullFloat64:
		return *d
	case *sql.NullString:
		return *d
	case *stringOut:
		return *d
	case *sql.NullTime:
		return *d
	case *mssql.NullUniqueIdentifier:
		return *d
	case *[]byte:
		return *d
	}
	return p
}

func describeArgs(args []any) string {
	var b strings.Builder
	for _, a := range args {
		nv := a.(sql.NamedArg)
		fmt.Fprintf(&b, "--   @%s %s\n", nv.Name, declOf(nv.Value))
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Compare(t, filepath.Join("testdata", name+".golden"), []byte(got))
}

// TestGoldenBatches covers every fixed batch the adapter sends, with the
// parameters it binds and their declared types.
func TestGoldenBatches(t *testing.T) {
	storeArgs := []any{
		sql.Named("result", mssql.NVarCharMax("")), sql.Named("rows", int64(0)), sql.Named("rows_affected", int64(0)),
		sql.Named("committed_at", civil.DateTime{}), sql.Named("idempotency_key", mssql.NVarCharMax("")),
	}
	batches := []struct {
		name, text string
		args       []any
		what       string
	}{
		{"idempotency_ddl", IdempotencyDDL, nil, "Creates the idempotency table (deploy/sqlserver/01-idempotency.sql; not run by the adapter)."},
		{"begin", BeginBatch, nil, "Round trip 1 of every call (plain SQL batch): session-level XACT_ABORT, the transaction."},
		{"store", StoreBatch, storeArgs, "Round trip 3 of every call: store the result JSON."},
		{"commit", CommitBatch, nil, "Round trip 4 of every call (plain SQL batch)."},
		{"rollback", RollbackBatch, nil, "Ends a replayed call (round trip 3) or a failed one (plain SQL batch)."},
		{"lookup", LookupBatch, []any{sql.Named("idempotency_key", mssql.NVarCharMax(""))}, "Executor.Lookup (crash recovery)."},
		{
			"committed", CommittedBatch,
			[]any{sql.Named("idempotency_key", mssql.NVarCharMax("")), sql.Named("transaction_id", int64(0))},
			"After a call batch failed with a server error once its record was inserted, and the rollback batch: did the routed procedure commit the call's transaction itself?",
		},
		{"prune", PruneBatch, []any{sql.Named("batch", int64(4000)), sql.Named("before", civil.DateTime{})}, "Executor.Prune (retention), repeated until a statement deletes fewer than @batch."},
		{"check", CheckBatch, []any{sql.Named("name", "[dbo].[orders_create]")}, "Executor.Check at start-up, per procedure route."},
		{"ping", `SELECT TOP (0) 1 FROM sqlgate.idempotency;`, nil, "Open: the idempotency table exists and is readable."},
	}
	for _, b := range batches {
		t.Run(b.name, func(t *testing.T) {
			out := "-- " + b.what + "\n"
			if len(b.args) > 0 {
				out += "-- parameters (sp_executesql):\n" + describeArgs(b.args)
			}
			golden(t, "batch_"+b.name, out+b.text+"\n")
		})
	}
}

// describeCall renders a call batch for review: its parameters with their
// declared types, then the text sent through sp_executesql.
func describeCall(shape *callShape) string {
	return "-- Round trip 2 (sp_executesql): session context, idempotency record, the call.\n-- parameters:\n" +
		describeArgs(shape.args) + shape.query + "\n"
}

// Targets are the conformance suite's routes on SQL Server (testdata/orders.sql).
var targets = map[string]brokertest.Target{
	brokertest.SubjectCreate:    {Procedure: "dbo.orders_create", SQLTypes: map[string]string{"amount": "decimal(12,2)"}},
	brokertest.SubjectGet:       {Statement: `SELECT id, customer, amount, quantity, express, note, status, created_by, correlation_id FROM dbo.orders WHERE id = :id`},
	brokertest.SubjectCancel:    {Procedure: "dbo.orders_cancel", Output: map[string]string{"previous_status": "nvarchar(20)"}},
	brokertest.SubjectCancelAll: {Statement: `UPDATE dbo.orders SET status = N'cancelled' OUTPUT inserted.id WHERE status = N'open'`},
	brokertest.SubjectCount:     {Statement: `SELECT COUNT_BIG(*) AS n FROM dbo.orders`},
	brokertest.SubjectSession: {Statement: `SELECT CAST(SESSION_CONTEXT(N'sqlgate.correlation_id') AS nvarchar(256)) AS correlation_id,
       CAST(SESSION_CONTEXT(N'sqlgate.principal') AS nvarchar(512)) AS principal,
       CAST(SESSION_CONTEXT(N'sqlgate.decision_id') AS nvarchar(128)) AS decision_id`},
	brokertest.SubjectSlowCreate: {Procedure: "dbo.orders_slow_create", SQLTypes: map[string]string{"seconds": "int"}},
}

// TestGoldenCalls shows the call batch of each test route:
// what a DBA reviews for a routed call.
func TestGoldenCalls(t *testing.T) {
	cat, err := brokertest.Catalog("test", targets)
	if err != nil {
		t.Fatal(err)
	}
	payloads := map[string]string{
		brokertest.SubjectCreate:     `{"customer":"ACME","amount":12.50,"quantity":3,"express":true,"note":null}`,
		brokertest.SubjectGet:        `{"id":1}`,
		brokertest.SubjectCancel:     `{"id":1}`,
		brokertest.SubjectCancelAll:  `{}`,
		brokertest.SubjectCount:      `{}`,
		brokertest.SubjectSession:    `{}`,
		brokertest.SubjectSlowCreate: `{"customer":"ACME","seconds":2}`,
	}
	for _, s := range brokertest.Subjects() {
		t.Run(s, func(t *testing.T) {
			r, _ := cat.Lookup(s)
			c, err := brokertest.NewCall(r, payloads[s], "k")
			if err != nil {
				t.Fatal(err)
			}
			shape, err := buildCall(c)
			if err != nil {
				t.Fatal(err)
			}
			out := describeCall(shape)
			golden(t, "call_"+strings.ReplaceAll(s, ".", "_"), out)
		})
	}
}

func TestQuoteNameInjection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, target string
		valid        bool
		quoted       string
	}{
		{"plain", "dbo.create_order", true, "[dbo].[create_order]"},
		{"three_part", "orders.dbo.create_order", true, "[orders].[dbo].[create_order]"},
		{"semicolon", "dbo.x; DROP TABLE orders", false, "[dbo].[x; DROP TABLE orders]"},
		{"bracket_breakout", "dbo.[x]]; DROP TABLE orders; --]", false, "[dbo].[[x]]]]; DROP TABLE orders; --]]]"},
		{"quote", "dbo.x'--", false, "[dbo].[x'--]"},
		{"comment", "dbo.x/**/", false, "[dbo].[x/**/]"},
		{"space", "dbo.create order", false, "[dbo].[create order]"},
		{"unicode_lookalike", "dbo.сreate_order", false, "[dbo].[сreate_order]"},
		{"four_parts", "srv.db.dbo.p", false, "[srv].[db].[dbo].[p]"},
		{"exec_prefix", "EXEC dbo.p", false, "[EXEC dbo].[p]"},
		{"empty_part", "dbo..p", false, "[dbo].[].[p]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := route.ValidProcedureName(tc.target); got != tc.valid {
				t.Errorf("ValidProcedureName(%q) = %v, want %v", tc.target, got, tc.valid)
			}
			q := quoteName(tc.target)
			if q != tc.quoted {
				t.Errorf("quoteName(%q) = %q, want %q", tc.target, q, tc.quoted)
			}
			// Whatever the catalog let through, the quoted name is one
			// identifier per part: no unescaped ] inside a part.
			for _, part := range strings.Split(strings.TrimSuffix(strings.TrimPrefix(q, "["), "]"), "].[") {
				if strings.Count(part, "]")%2 != 0 {
					t.Errorf("quoteName(%q) = %q leaves an unescaped ]", tc.target, q)
				}
			}
		})
	}
	// Catalog statement parameter names and SQL types cannot carry syntax
	// either: both are validated before the adapter sees them.
	for _, bad := range []string{"x; DROP TABLE t", "int); DROP TABLE t; --", "nvarchar(max) collate x"} {
		if route.ValidSQLType(bad) {
			t.Errorf("ValidSQLType(%q) = true", bad)
		}
	}
}

func TestSessionLimits(t *testing.T) {
	t.Parallel()
	r := &route.Route{Subject: "x"}
	long := strings.Repeat("é", 257)
	c := &broker.Call{Route: r, IdempotencyKey: long, CorrelationID: "c", Principal: "p", DecisionID: "d"}
	err := checkSessionLimits(c)
	var inv *route.InvalidError
	if !errors.As(err, &inv) || inv.Field != "Idempotency-Key" {
		t.Errorf("checkSessionLimits(257-character key) = %v, want InvalidError on Idempotency-Key", err)
	}
	c.IdempotencyKey = strings.Repeat("é", 256)
	if err := checkSessionLimits(c); err != nil {
		t.Errorf("checkSessionLimits(256-character key) = %v, want nil", err)
	}
	// nvarchar(512) holds 512 UTF-16 code units: 300 emoji are 600, and
	// the server would cut the principal to 256 of them.
	c.Principal = strings.Repeat("😀", 300)
	if err := checkSessionLimits(c); !errors.As(err, &inv) || inv.Field != "principal" {
		t.Errorf("checkSessionLimits(principal of 300 emoji, 600 UTF-16 units) = %v, want InvalidError on principal", err)
	}
	c.Principal = strings.Repeat("😀", 256)
	if err := checkSessionLimits(c); err != nil {
		t.Errorf("checkSessionLimits(principal of 256 emoji, 512 UTF-16 units) = %v, want nil", err)
	}
}

// The call batch declares locals in the namespace of its sp_executesql
// parameters: none may be a name a route can give a parameter or output
// (any case: variable names compare case-insensitively under the usual
// collations), else every call of the route fails with Msg 134.
func TestCallLocalsReserved(t *testing.T) {
	t.Parallel()
	props := map[string]any{}
	for _, n := range []string{"c", "p", "d", "return_value"} {
		props[n] = map[string]any{"type": "integer"}
	}
	cat, err := route.New([]route.Spec{
		{Subject: "t.proc", Database: "d", Procedure: "dbo.p", Params: map[string]any{"type": "object", "properties": props}, Output: map[string]string{"D_out": "int"}},
		{Subject: "t.stmt", Database: "d", Statement: &route.StatementSpec{Name: "s", SQL: "SELECT :c + :p + :d + :return_value, :sqlgate_principal"}, Params: map[string]any{"type": "object", "properties": props}},
	})
	if err != nil {
		t.Fatal(err)
	}
	declared := regexp.MustCompile(`(?:\bDECLARE|,)\s*@(\w+)\s+\w`)
	for _, s := range cat.Subjects() {
		r, _ := cat.Lookup(s)
		c, err := brokertest.NewCall(r, `{"c":1,"p":2,"d":3,"return_value":4}`, "k")
		if err != nil {
			t.Fatal(err)
		}
		shape, err := buildCall(c)
		if err != nil {
			t.Fatal(err)
		}
		params := map[string]bool{}
		for _, a := range shape.args {
			params[strings.ToLower(a.(sql.NamedArg).Name)] = true
		}
		for _, m := range declared.FindAllStringSubmatch(shape.query, -1) {
			local := strings.ToLower(m[1])
			if !strings.HasPrefix(local, route.SessionPrefix) {
				t.Errorf("%s: the call batch declares @%s, a name outside the reserved %s prefix", s, m[1], route.SessionPrefix)
			}
			if params[local] {
				t.Errorf("%s: the call batch declares @%s, which is also one of its parameters", s, m[1])
			}
		}
	}
}

// TestDeclOfMirrorsTheDriver pins the declarations go-mssqldb v1.11.2
// makes where a naive reading goes wrong (see declOf for the driver lines):
// the empty string and strings over 4000 UTF-16 units are nvarchar(max),
// a character outside the BMP counts twice, a []byte of up to 8000 bytes
// is varbinary of its length, time(7) is "time".
func TestDeclOfMirrorsTheDriver(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    any
		want string
	}{
		{"", "nvarchar(max)"},
		{"a", "nvarchar(1)"},
		{"😀", "nvarchar(2)"},
		{strings.Repeat("x", 4000), "nvarchar(4000)"},
		{strings.Repeat("x", 4001), "nvarchar(max)"},
		{strings.Repeat("😀", 2000), "nvarchar(4000)"},
		{strings.Repeat("😀", 2001), "nvarchar(max)"},
		{[]byte{1, 2, 3}, "varbinary(3)"},
		{make([]byte, 8000), "varbinary(8000)"},
		{make([]byte, 8001), "varbinary(max)"},
		{[]byte{}, "varbinary(max)"},
		{[]byte(nil), "varbinary(max) (NULL)"},
		{mssql.VarChar("abc"), "varchar(3)"},
		{mssql.VarChar(""), "varchar(max)"},
		{sql.NullString{}, "nvarchar(4000) (NULL)"},
		{sql.NullString{String: "ab", Valid: true}, "nvarchar(2)"},
		{stringOut{}, "nvarchar(max)"},
		{civil.Time{}, "time"},
		{nil, "nvarchar(1) (NULL)"},
		{sql.Out{Dest: &sql.NullInt32{}}, "int output (NULL)"},
		{sql.Out{Dest: &stringOut{}}, "nvarchar(max) output"},
		{uint8(1), "tinyint"},
	} {
		if got := declOf(tc.v); got != tc.want {
			t.Errorf("declOf(%T %.20v) = %q, want %q", tc.v, tc.v, got, tc.want)
		}
	}
}
