package route_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlgate/sqlgate/broker/route"
)

func loadDemo(t testing.TB) *route.Catalog {
	t.Helper()
	c, err := route.LoadFile("testdata/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadDemo(t *testing.T) {
	c := loadDemo(t)
	if got, want := c.Subjects(), []string{"orders.v1.create", "orders.v1.get"}; !cmp.Equal(got, want) {
		t.Errorf("Subjects() = %v, want %v", got, want)
	}
	r, _ := c.Lookup("orders.v1.create")
	if r.Kind != route.StatementKind || r.Target != "create_order" || r.Database != "orders" || r.Emit != "orders.v1.created" {
		t.Errorf("create route = %+v", r)
	}
	if r.MaxPayload != route.DefaultMaxPayload || r.Timeout.String() != "2s" || r.Mode != route.Sync || r.Batch != 1 {
		t.Errorf("defaults: payload %d timeout %s mode %s batch %d", r.MaxPayload, r.Timeout, r.Mode, r.Batch)
	}
	c, err := route.Parse([]byte("routes:\n  - {subject: a.b, procedure: p, database: d, mode: async, batch: 32}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Lookup("a.b"); r.Mode != route.Async || r.Batch != 32 {
		t.Errorf("async route with batch 32: mode %s batch %d", r.Mode, r.Batch)
	}
	amount, ok := r.Param("amount")
	if !ok || amount.Type != "number" || amount.SQLType != "decimal(12,2)" || !amount.Required {
		t.Errorf("amount param = %+v", amount)
	}
	note, _ := r.Param("note")
	if !note.Nullable || note.Type != "string" || note.Required {
		t.Errorf("note param = %+v", note)
	}
	got := r.Statement.Render(func(i int, name string) string { return "$" + name })
	if !strings.Contains(got, "VALUES ($customer, $amount, $note, 'open', $sqlgate_principal, $sqlgate_correlation_id)") {
		t.Errorf("Render = %s", got)
	}
	var schema map[string]any
	if err := json.Unmarshal(r.SchemaJSON, &schema); err != nil || schema["additionalProperties"] != false {
		t.Errorf("schema is not closed by default: %s", r.SchemaJSON)
	}
}

// TestCatalogErrors checks that every problem is reported at once, naming
// the route, and that unknown keys are rejected.
func TestCatalogErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown_key", "routes:\n  - subject: a.b\n    procedur: x\n", []string{`line 3: unknown key "procedur"`}},
		{"many_problems", `routes:
  - subject: "orders.*"
    database: "x;y"
    timeout: forever
    params: {type: object, properties: {a: {type: object}}}
  - subject: ok.one
    procedure: dbo.p
    statement: {name: s, sql: "select 1"}
    database: db
`, []string{
			`route orders.*: subject "orders.*" must be a concrete NATS subject`,
			"route orders.*: a target is required",
			`route orders.*: database "x;y" must be a plain identifier`,
			`route orders.*: timeout "forever"`,
			`route orders.*: parameter "a": type must be string, integer, number or boolean`,
			"route ok.one: set either procedure or statement, not both",
		}},
		{"duplicate", "routes:\n  - {subject: a.b, procedure: p, database: d}\n  - {subject: a.b, procedure: q, database: d}\n", []string{"route a.b: duplicate subject"}},
		{"reserved_subjects", "routes:\n  - {subject: _INBOX.x, procedure: p, database: d}\n  - {subject: $SYS.x, procedure: p, database: d}\n  - {subject: sqlgate.async.x, procedure: p, database: d}\n", []string{
			"route _INBOX.x: subject", "route $SYS.x: subject", "route sqlgate.async.x: subject",
		}},
		{"bad_procedure", "routes:\n  - {subject: a.b, procedure: \"dbo.p; drop table x\", database: d}\n", []string{"procedure \"dbo.p; drop table x\" must be"}},
		{"two_statements", "routes:\n  - {subject: a.b, statement: {name: s, sql: \"select 1; drop table x\"}, database: d}\n", []string{"more than one statement"}},
		{"undeclared_placeholder", "routes:\n  - {subject: a.b, statement: {name: s, sql: \"select :x\"}, database: d}\n", []string{"statement uses :x which is not a declared parameter"}},
		{"reserved_param", "routes:\n  - {subject: a.b, procedure: p, database: d, params: {type: object, properties: {sqlgate_principal: {type: string}}}}\n", []string{`parameter "sqlgate_principal": the sqlgate_ prefix (in any case) is reserved`}},
		{"reserved_param_case", "routes:\n  - {subject: a.b, procedure: p, database: d, params: {type: object, properties: {Sqlgate_Principal: {type: string}, SQLGATE_C: {type: integer}}}}\n", []string{
			`route a.b: parameter "SQLGATE_C": the sqlgate_ prefix (in any case) is reserved`,
			`route a.b: parameter "Sqlgate_Principal": the sqlgate_ prefix (in any case) is reserved`,
		}},
		{"reserved_output", "routes:\n  - {subject: a.b, procedure: p, database: d, output: {Sqlgate_Return_Value: int}}\n", []string{`output "Sqlgate_Return_Value": the sqlgate_ prefix (in any case) is reserved`}},
		{"reserved_placeholder_case", "routes:\n  - {subject: a.b, statement: {name: s, sql: \"select :SQLGATE_PRINCIPAL\"}, database: d}\n", []string{"statement uses :SQLGATE_PRINCIPAL; session placeholders are"}},
		// SQL Server compares variable names case-insensitively: two
		// parameters, or an output and an input, equal but for case fail
		// every call (Msg 134); a catalog must load nowhere it cannot run.
		{"params_differ_in_case", "routes:\n  - {subject: a.b, procedure: p, database: d, params: {type: object, properties: {Id: {type: integer}, id: {type: integer}}}}\n", []string{
			`route a.b: parameter "id" and parameter "Id" differ only in case`,
		}},
		{"output_differs_from_param_in_case", "routes:\n  - {subject: a.b, procedure: p, database: d, params: {type: object, properties: {status: {type: string}}}, output: {Status: \"nvarchar(20)\"}}\n", []string{
			`route a.b: output "Status" and parameter "status" differ only in case`,
		}},
		{"outputs_differ_in_case", "routes:\n  - {subject: a.b, procedure: p, database: d, output: {total: int, TOTAL: int}}\n", []string{
			`route a.b: output "total" and output "TOTAL" differ only in case`,
		}},
		{"param_name_128", "routes:\n  - {subject: a.b, procedure: p, database: d, params: {type: object, properties: {" + strings.Repeat("a", 128) + ": {type: integer}}}, output: {" + strings.Repeat("o", 128) + ": int}}\n", []string{
			`route a.b: parameter "` + strings.Repeat("a", 128) + `" is 128 characters long; names are limited to 127`,
			`route a.b: output "` + strings.Repeat("o", 128) + `" is 128 characters long; names are limited to 127`,
		}},
		{"bad_sqltype", "routes:\n  - {subject: a.b, procedure: p, database: d, params: {type: object, properties: {a: {type: string}}}, sqlTypes: {a: \"nvarchar(10)); drop\"}}\n", []string{"unsupported SQL type"}},
		// Each type's error says what is wrong with it, listed with the
		// other problems.
		{"sqltype_errors", "routes:\n  - {subject: a.b, procedure: p, database: d, params: {type: object, properties: {a: {type: string}, b: {type: number}}}, sqlTypes: {a: \"nvarchar(10000)\", b: \"decimal(100,2)\"}, output: {o: \"money(5)\"}}\n", []string{
			`route a.b: sqlTypes: "a": unsupported SQL type "nvarchar(10000)"`, `route a.b: sqlTypes: "b": unsupported SQL type "decimal(100,2)"`,
			`route a.b: output "o": unsupported SQL type "money(5)"`,
		}},
		{"output_on_statement", "routes:\n  - {subject: a.b, statement: {name: s, sql: \"select 1\"}, database: d, output: {x: int}}\n", []string{"output parameters need a procedure target"}},
		// The validator ignores keywords it does not know: a misspelt bound
		// or an unknown format would bound nothing, so the catalog refuses
		// them.
		{"schema_keywords", `routes:
  - subject: invoices.v1.create
    procedure: p
    database: d
    params:
      type: object
      properties:
        customer: {type: string, maxLenght: 5}
        amount: {type: number, maximun: 100}
        at: {type: string, format: datetime}
        id: {type: integer, maxLength: 3, format: uuid, default: 4}
        flag: {type: boolean, minimum: 1}
      requird: [customer, amount]
      additionalProperties: {type: string}
      $schema: http://json-schema.org/draft-07/schema#
`, []string{
			`route invoices.v1.create: parameter "customer": unknown keyword "maxLenght" (did you mean maxLength?); a parameter of type string may use $comment, const, deprecated, description, enum, examples, format, maxLength, minLength, pattern, title, type`,
			`route invoices.v1.create: parameter "amount": unknown keyword "maximun" (did you mean maximum?)`,
			`route invoices.v1.create: params: unknown keyword "requird" (did you mean required?)`,
			`route invoices.v1.create: parameter "at": format datetime is not one sqlgate checks (did you mean date-time?); formats: date, date-time,`,
			`route invoices.v1.create: parameter "id": keyword "maxLength" applies to strings only, and this parameter is of type integer`,
			`route invoices.v1.create: parameter "id": keyword "format" applies to strings only`,
			`route invoices.v1.create: parameter "id": keyword "default" is not supported: sqlgate does not apply it`,
			`route invoices.v1.create: parameter "flag": keyword "minimum" applies to numbers only`,
			`route invoices.v1.create: params: additionalProperties must be true or false`,
			`route invoices.v1.create: params: $schema must be https://json-schema.org/draft/2020-12/schema or left out`,
		}},
		{"format_idn", "routes:\n  - {subject: a.b, procedure: p, database: d, params: {type: object, properties: {m: {type: [string, \"null\"], format: idn-email}}}}\n", []string{
			`route a.b: parameter "m": format idn-email is not one sqlgate checks; formats: date, date-time,`,
		}},
		{"emit_same_as_subject", "routes:\n  - {subject: a.b, procedure: p, database: d, emit: a.b}\n", []string{"emit must differ"}},
		// serve, dev and nats-setup refuse an emit on a route subject when
		// they build the NATS accounts: the catalog (and so serve --check)
		// refuses it first, naming both routes.
		{"emit_is_another_routes_subject", "routes:\n  - {subject: invoices.v1.create, procedure: p, database: d, emit: invoices.v1.void}\n  - {subject: invoices.v1.void, procedure: q, database: d, emit: invoices.v1.voided}\n", []string{
			`route invoices.v1.create: emit "invoices.v1.void" is the subject of route invoices.v1.void (#2): an event there would be a call to that route`,
		}},
		{"emit_reserved", "routes:\n  - {subject: a.b, procedure: p, database: d, emit: sqlgate.async.x}\n  - {subject: a.c, procedure: p, database: d, emit: sqlgate.reply.x}\n", []string{
			`route a.b: emit "sqlgate.async.x" must be a concrete NATS subject`, `route a.c: emit "sqlgate.reply.x" must be`,
		}},
		{"limits", "routes:\n  - {subject: a.b, procedure: p, database: d, maxPayload: 99999999, maxRows: -1, timeout: 1h}\n", []string{"maxPayload", "maxRows", "timeout 1h0m0s must be"}},
		{"batch", "routes:\n  - {subject: a.b, procedure: p, database: d, batch: 257}\n  - {subject: a.c, procedure: p, database: d, mode: async, batch: 1000}\n  - {subject: a.d, procedure: p, database: d, mode: async, batch: -1}\n", []string{
			"route a.b: batch 257 must be from 1 to 256", "route a.c: batch 1000 must be from 1 to 256", "route a.d: batch -1 must be",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := route.Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("Parse succeeded, want errors")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// TestCatalogErrorsAtOnce: a problem in one stage hides none of another.
// A route with an unknown key is still checked, one with a value of the
// wrong type is not (the value is missing) but the other routes are, and
// the subjects are compared whatever else is wrong with the routes.
func TestCatalogErrorsAtOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		want       []string
		notWant    []string
	}{
		{"unknown_key_then_semantics", `routes:
  - {subject: a.b, procedure: p, database: d, timeout: forever, colour: red}
  - {subject: a.c, procedure: p, database: "x;y"}
`, []string{
			`decode: line 2: unknown key "colour"`, `route a.b: timeout "forever"`, `route a.c: database "x;y" must be a plain identifier`,
		}, nil},
		{"wrong_type_skips_only_its_route", `routes:
  - subject: a.b
    procedure: p
    database: d
    batch: many
  - subject: a.c
    procedure: p
    database: "x;y"
    params: {type: object, properties: {n: {type: integer, maximun: 3}}}
`, []string{
			"decode: line 5: cannot unmarshal !!str into int", `route a.c: database "x;y"`, `route a.c: parameter "n": unknown keyword "maximun"`,
		}, []string{"route a.b:"}},
		{"duplicate_whatever_else", `routes:
  - {subject: a.b, procedure: p, database: d, timeout: forever}
  - {subject: a.b, procedure: q, database: "x;y"}
  - {subject: a.b, procedure: r, database: d, batch: many}
`, []string{
			`route a.b: timeout "forever"`, `route a.b: database "x;y"`,
			"route a.b: duplicate subject (routes #1 and #2)", "route a.b: duplicate subject (routes #1 and #3)",
			"decode: line 4: cannot unmarshal !!str into int",
		}, nil},
		{"emit_of_undecoded_route", `routes:
  - {subject: a.b, procedure: p, database: d, emit: a.c, batch: many}
  - {subject: a.c, procedure: p, database: d}
`, []string{`route a.b: emit "a.c" is the subject of route a.c (#2)`}, nil},
		{"syntax_error_stops", "routes:\n  - {subject: a.b, database: \"x;y\"\n", []string{"decode: yaml: line"}, []string{"route a.b:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := route.Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("Parse succeeded, want errors")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error = %v\nwant it to contain %q", err, w)
				}
			}
			for _, nw := range tc.notWant {
				if strings.Contains(err.Error(), nw) {
					t.Errorf("Parse error = %v\nwant it not to contain %q", err, nw)
				}
			}
		})
	}
}

// CheckFile returns, with the errors, the routes valid on their own, for
// the checks of what refers to them (serve --check compares their
// databases with the configuration's); LoadFile returns no catalog.
func TestCheckFileReturnsTheValidRoutes(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "routes.yaml")
	yaml := `routes:
  - {subject: a.ok, procedure: p, database: one}
  - {subject: a.bad, procedure: p, database: two, timeout: forever}
  - {subject: a.typed, procedure: p, database: three, batch: many}
  - {subject: a.extra, procedure: p, database: four, colour: red}
  - {subject: a.emit, procedure: p, database: five, emit: a.ok}
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := route.CheckFile(path)
	if err == nil || c == nil {
		t.Fatalf("CheckFile = %v, %v; want the valid routes and an error", c, err)
	}
	if got, want := c.Subjects(), []string{"a.extra", "a.ok"}; !slices.Equal(got, want) {
		t.Errorf("CheckFile routes %v, want %v", got, want)
	}
	if c, lerr := route.LoadFile(path); c != nil || lerr == nil || lerr.Error() != err.Error() {
		t.Errorf("LoadFile = %v, %v; want no catalog and CheckFile's error %v", c, lerr, err)
	}
	if err := os.WriteFile(path, []byte("routes: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := route.CheckFile(path); c != nil || err == nil {
		t.Errorf("CheckFile(not YAML) = %v, %v; want no catalog and an error", c, err)
	}
}

// A catalog does not know its routes' dialects: it checks how a SQL type is
// spelled, not one database's bounds. Types PostgreSQL takes and SQL Server
// refuses load (the SQL Server adapter refuses them when it checks the
// route, see sqlserver.CheckSQLType).
func TestCatalogSQLTypeBoundsAreTheDialects(t *testing.T) {
	t.Parallel()
	c, err := route.Parse([]byte("routes:\n  - {subject: a.b, procedure: p, database: pg, params: {type: object, properties: {a: {type: number}, b: {type: string}, c: {type: string}}}, sqlTypes: {a: \"numeric(50,2)\", b: \"varchar(9000)\", c: \"nvarchar(9999)\"}, output: {o: \"decimal(5,9)\"}}\n"))
	if err != nil {
		t.Fatalf("Parse = %v, want the route to load", err)
	}
	r, _ := c.Lookup("a.b")
	var got []string
	for _, p := range slices.Concat(r.Params, r.Outputs) {
		got = append(got, p.Name+" "+p.SQLType)
	}
	if want := "a numeric(50,2),b varchar(9000),c nvarchar(9999),o decimal(5,9)"; strings.Join(got, ",") != want {
		t.Errorf("SQL types %s, want %s", strings.Join(got, ","), want)
	}
}

// A schema that uses only the keywords sqlgate supports loads, and its
// bounds hold; annotations are served as written.
func TestCatalogSchemaKeywords(t *testing.T) {
	t.Parallel()
	c, err := route.Parse([]byte(`routes:
  - subject: a.b
    procedure: p
    database: d
    params:
      $schema: https://json-schema.org/draft/2020-12/schema
      title: Create
      description: Create an invoice.
      $comment: reviewed
      examples: [{customer: ACME, amount: 1}]
      type: object
      properties:
        customer: {type: string, minLength: 1, maxLength: 5, pattern: "^[A-Z]+$", description: who, title: Customer, examples: [ACME], deprecated: false}
        amount: {type: number, exclusiveMinimum: 0, maximum: 100, multipleOf: 0.01}
        qty: {type: [integer, "null"], minimum: 1, exclusiveMaximum: 10, enum: [1, 2, 3, null]}
        kind: {type: string, const: invoice, format: regex}
        paid: {type: boolean, $comment: flag}
      required: [customer, amount]
      additionalProperties: false
`))
	if err != nil {
		t.Fatalf("Parse = %v, want the route to load", err)
	}
	r, _ := c.Lookup("a.b")
	for payload, want := range map[string]string{
		`{"amount":1}`:                                     `field "customer": is required`,
		`{"customer":"ACMEXY","amount":1}`:                 `field "customer"`,
		`{"customer":"ACME","amount":100.5}`:               `field "amount"`,
		`{"customer":"ACME","amount":1,"qty":4}`:           `field "qty"`,
		`{"customer":"ACME","amount":1,"kind":"receipt"}`:  `field "kind"`,
		`{"customer":"acme","amount":1}`:                   `field "customer": does not match the pattern`,
		`{"customer":"ACME","amount":1,"qty":null,"x":1}`:  `field "x": unknown field`,
		`{"customer":"ACME","amount":0.01,"paid":true}`:    ``,
		`{"customer":"ACME","amount":99,"kind":"invoice"}`: ``,
	} {
		_, err := r.Decode([]byte(payload))
		switch {
		case want == "" && err != nil:
			t.Errorf("Decode(%s) = %v, want it accepted", payload, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("Decode(%s) = %v, want an error containing %q", payload, err, want)
		}
	}
	if !strings.Contains(string(r.SchemaJSON), `"description":"who"`) {
		t.Errorf("served schema %s lost the parameter's description", r.SchemaJSON)
	}
}

// Every format the catalog accepts is one the validator asserts: a value
// that is no such thing is refused.
func TestCatalogFormatsAreChecked(t *testing.T) {
	t.Parallel()
	for _, f := range route.Formats {
		c, err := route.New([]route.Spec{{
			Subject: "a.b", Procedure: "p", Database: "d",
			Params: map[string]any{"type": "object", "properties": map[string]any{"x": map[string]any{"type": "string", "format": f}}},
		}})
		if err != nil {
			t.Fatalf("format %s: %v", f, err)
		}
		r, _ := c.Lookup("a.b")
		if _, err := r.Decode([]byte(`{"x":"%("}`)); err == nil || !strings.Contains(err.Error(), "is not a valid "+f) {
			t.Errorf("format %s: Decode(%%() = %v, want it refused as not a valid %s", f, err, f)
		}
	}
}

// The longest names SQL Server keeps as variables (127 characters and the
// @), distinct in case-insensitive comparison, load.
func TestCatalogPortableNames(t *testing.T) {
	long, out := strings.Repeat("a", route.MaxParamName), strings.Repeat("o", route.MaxParamName)
	c, err := route.Parse([]byte("routes:\n  - {subject: a.b, procedure: p, database: d, params: {type: object, properties: {" + long + ": {type: integer}, Id: {type: integer}, id_2: {type: integer}}}, output: {" + out + ": int, ID_3: int}}\n"))
	if err != nil {
		t.Fatalf("Parse = %v, want the route to load", err)
	}
	r, _ := c.Lookup("a.b")
	if len(r.Params) != 3 || len(r.Outputs) != 2 {
		t.Errorf("params %+v outputs %+v, want 3 and 2", r.Params, r.Outputs)
	}
}

func TestParseStatement(t *testing.T) {
	tests := []struct {
		sql   string
		names []string
	}{
		{"select :a, :b", []string{"a", "b"}},
		{"select ':notparam', \":nor\", [also] -- :comment\n, :yes", []string{"yes"}},
		{"select x::int, :p::text /* :c */", []string{"p"}},
		{"select 'it''s :x', :y", []string{"y"}},
		{"select :a, :a", []string{"a", "a"}},
		// PostgreSQL's dollar quotes and E'…' strings, where SQL Server
		// and SQLite read the same statement and placeholders.
		{"SELECT $$it is$$ AS x, :customer AS y", []string{"customer"}},
		{"SELECT $fn$ a b $fn$, :y", []string{"y"}},
		{"SELECT a$b$, :x, c$$ FROM t$ WHERE :y", []string{"x", "y"}}, // $ inside identifiers
		{`SELECT e'a\\', :x, E'b''c :y\\'`, []string{"x"}},
		{`SELECT E'line\nbreak', :x`, []string{"x"}},
		{`SELECT name'x', :x, some'\', :y`, []string{"x", "y"}}, // no E token: a backslash is text
		// A block comment without another /* inside reads the same
		// everywhere.
		{"SELECT /* a :x */ :z", []string{"z"}},
		// SQL Server's $ (money, pseudo-columns) opens no dollar quote.
		{"SELECT $12.50, $action, :x FROM [t$]", []string{"x"}},
		// SQLite's quoted identifiers without quotes, colons or ';' inside.
		{"SELECT `a b`, [c d] FROM t WHERE e = :e", []string{"e"}},
		// A -- comment may end with \r\n.
		{"SELECT :a -- note\r\n, :b", []string{"a", "b"}},
	}
	for _, tc := range tests {
		st, err := route.ParseStatement("s", tc.sql)
		if err != nil {
			t.Errorf("ParseStatement(%q): %v", tc.sql, err)
			continue
		}
		if !cmp.Equal(st.Names(), tc.names) {
			t.Errorf("ParseStatement(%q).Names() = %v, want %v", tc.sql, st.Names(), tc.names)
		}
		// Rendering with the names back must give the original text.
		if got := st.Render(func(_ int, n string) string { return ":" + n }); got != tc.sql {
			t.Errorf("Render round trip = %q, want %q", got, tc.sql)
		}
	}
	// A final semicolon may be followed by whitespace and comments, which
	// are dropped with it.
	for sql, want := range map[string]string{
		"SELECT id FROM t WHERE c = :customer; -- trailing comment": "SELECT id FROM t WHERE c = @customer",
		"SELECT :a;\n/* note; :b */\n-- end\n  ":                    "SELECT @a",
		"SELECT ';' || :a; ":                                        "SELECT ';' || @a",
		"SELECT $$x$$, :a; -- done":                                 "SELECT $$x$$, @a",
	} {
		st, err := route.ParseStatement("s", sql)
		if err != nil {
			t.Errorf("ParseStatement(%q): %v", sql, err)
			continue
		}
		if got := st.Render(func(_ int, n string) string { return "@" + n }); got != want {
			t.Errorf("ParseStatement(%q) renders %q, want %q", sql, got, want)
		}
	}
	for _, bad := range []string{
		"select 'open", "select /* open", "select [open", "", "select 1; select 2",
		"select 1; -- c\nselect 2", "select 1; /* c */ 'x'", "select 1;;",
		"select $$open", "select $a$ x $A$", "select E'open\\'", "select /* a /* b */ :x",
		"select :a\x00",
	} {
		if _, err := route.ParseStatement("s", bad); err == nil {
			t.Errorf("ParseStatement(%q) succeeded, want error", bad)
		}
	}
}

// TestParseStatementDialects checks statements that the dialects read
// differently: each is refused, and the error names the dialects and the
// construct. The first two ran a second statement on SQLite (route: skip
// PostgreSQL dollar quotes... made them load).
func TestParseStatementDialects(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want []string
	}{
		// SQLite ends the comment at the first */ and runs DELETE.
		{
			`UPDATE t SET v = :v WHERE id = 1 /* /* */; DELETE FROM t; -- */`,
			[]string{"more than one statement in SQLite (';' at offset 41", "in PostgreSQL and SQL Server it is inside a block comment starting at offset 33", "block comments nest"},
		},
		// SQLite and SQL Server read e, then the string '\'.
		{
			`SELECT :v AS a, e'\' FROM t; DELETE FROM t; -- '`,
			[]string{"more than one statement in SQL Server and SQLite (';' at offset 27", "in PostgreSQL it is inside an E'…' escape string starting at offset 16", "backslash escapes"},
		},
		// PostgreSQL and SQL Server: a nested comment; SQLite: a comment,
		// DELETE, a comment.
		{"SELECT 1 /* /* */ ; DELETE FROM t; -- */", []string{"more than one statement in SQLite"}},
		// SQLite reads a Tcl-style parameter @a(') up to the ')'.
		{`SELECT @a(') ; DELETE FROM t; -- '`, []string{"more than one statement in SQLite", "inside a string starting at offset 10"}},
		{`SELECT 1 FROM t WHERE x = :1(') ; DELETE FROM t; -- '`, []string{"more than one statement in SQLite"}},
		{`SELECT 1..$a(') ; DELETE FROM t; -- '`, []string{"more than one statement in SQLite"}}, // 1. . $a(')
		// ]] is a ] only in SQL Server.
		{`SELECT [a]]; DELETE FROM t; --]`, []string{"more than one statement in PostgreSQL and SQLite", "in SQL Server it is inside a […] identifier"}},
		// Only PostgreSQL has dollar quotes, only SQLite backticks.
		{"SELECT $$;$$, :a", []string{"more than one statement in SQL Server and SQLite", "dollar-quoted"}},
		{"SELECT `a;b` FROM t", []string{"more than one statement in PostgreSQL and SQL Server", "`…` identifier"}},
		// PostgreSQL joins E'x' and a string on a later line into one
		// escape string: \' then quotes, and :v is inside it there.
		{"SELECT E'x'\n'\\' AS a, :v AS b -- '", []string{"continued by a string on a later line"}},
		{"SELECT :v AS a, E'x' -- c\n'\\' AS b, :v AS c -- '", []string{"continued by a string on a later line"}},
		// PostgreSQL ends a -- comment at \r, SQLite does not.
		{"SELECT 1 -- c\r; DELETE FROM t", []string{"line break other than \\n"}},
		// The statement ends at different offsets.
		{`SELECT e'\'' ; -- '`, []string{"ends at the ';' at offset 13 in PostgreSQL, not in SQL Server and SQLite"}},
		// Placeholders in one dialect's literal.
		{"SELECT $$:customer$$ AS x", []string{"dollar-quoted string"}},
		{"SELECT $$it's :customer$$ AS x, :customer AS y", []string{"under the rules of SQL Server and SQLite: unterminated '", "in PostgreSQL it is inside a dollar-quoted string"}},
		{`SELECT E'it\'s :x' AS x, :customer AS y`, []string{"unterminated '", "backslash escapes"}},
		{"SELECT /* a /* :x */ :y */ :z", []string{":y at offset 21 is a placeholder in SQLite, not in PostgreSQL and SQL Server"}},
		{"SELECT `:x`, :y", []string{":x at offset 8 is a placeholder in PostgreSQL and SQL Server, not in SQLite"}},
		{"SELECT arr[ :i ] FROM t", []string{":i at offset 12 is a placeholder in PostgreSQL, not in SQL Server and SQLite"}},
		{"SELECT @a(:x)", []string{"placeholder in PostgreSQL and SQL Server, not in SQLite", "SQLite parameter"}},
		// Bind markers glued to the text around them.
		{"SELECT $t:a$ x $t$", []string{"directly after \"$t\""}},
		{"SELECT :a$$ x $$", []string{"directly followed by \"$\""}},
		{"SELECT x:::a", []string{"':::'"}},
		{"SELECT :a:b", []string{`directly after ":a"`}}, // @a@b in SQL Server
		{"SELECT #t#:a", []string{`directly after "#"`}}, // #t#@a
		{"SELECT $1$$ x $$", []string{"PostgreSQL versions read it differently"}},
		{"SELECT 1E'x'", []string{"PostgreSQL versions read it differently"}},
	} {
		_, err := route.ParseStatement("s", tc.sql)
		if err == nil {
			t.Errorf("ParseStatement(%q) succeeded, want an error", tc.sql)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseStatement(%q) = %v, want it to mention %q", tc.sql, err, w)
			}
		}
	}
	// The route catalog refuses them too.
	_, err := route.New([]route.Spec{{
		Subject: "t.v1.update", Database: "d", Params: map[string]any{"type": "object", "properties": map[string]any{"v": map[string]any{"type": "string"}}},
		Statement: &route.StatementSpec{Name: "s", SQL: `UPDATE t SET v = :v WHERE id = 1 /* /* */; DELETE FROM t; -- */`},
	}})
	if err == nil || !strings.Contains(err.Error(), "more than one statement in SQLite") {
		t.Errorf("route.New = %v, want more than one statement in SQLite", err)
	}
}

func TestDecode(t *testing.T) {
	c := loadDemo(t)
	create, _ := c.Lookup("orders.v1.create")
	get, _ := c.Lookup("orders.v1.get")
	// open passes undeclared fields through untyped.
	oc, err := route.New([]route.Spec{{
		Subject: "t.open", Database: "orders", Statement: &route.StatementSpec{Name: "s", SQL: "SELECT 1"},
		Params: map[string]any{"type": "object", "additionalProperties": true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	open, _ := oc.Lookup("t.open")
	tests := []struct {
		name      string
		r         *route.Route
		payload   string
		want      map[string]any
		wantField string
		wantMsg   string
	}{
		{name: "ok", r: create, payload: `{"customer":"Ada","amount":12.50}`, want: map[string]any{"customer": "Ada", "amount": json.Number("12.50")}},
		{name: "ok_null_note", r: create, payload: `{"customer":"Ada","amount":1,"note":null}`, want: map[string]any{"customer": "Ada", "amount": json.Number("1"), "note": nil}},
		{name: "injection_is_data", r: create, payload: `{"customer":"x'); DROP TABLE orders; --","amount":1}`, want: map[string]any{"customer": "x'); DROP TABLE orders; --", "amount": json.Number("1")}},
		{name: "integer_typed", r: get, payload: `{"id":42}`, want: map[string]any{"id": int64(42)}},
		{name: "not_json", r: get, payload: `id=1`, wantMsg: "payload is not JSON"},
		{name: "array", r: get, payload: `[1]`, wantMsg: "payload must be a JSON object"},
		{name: "trailing", r: get, payload: `{"id":1} {"id":2}`, wantMsg: "trailing data"},
		{name: "duplicate", r: get, payload: `{"id":1,"id":2}`, wantField: "id", wantMsg: "duplicate key"},
		{name: "wrong_type", r: get, payload: `{"id":"1"}`, wantField: "id", wantMsg: "must be integer, got string"},
		{name: "fraction_for_integer", r: get, payload: `{"id":1.5}`, wantField: "id"},
		{name: "exponent_integer", r: get, payload: `{"id":1e2}`, wantField: "id", wantMsg: "must be an integer"},
		{name: "huge_integer", r: get, payload: `{"id":99999999999999999999}`, wantField: "id", wantMsg: "must be an integer"},
		{name: "missing", r: create, payload: `{"customer":"Ada"}`, wantField: "amount", wantMsg: "is required"},
		{name: "extra", r: get, payload: `{"id":1,"admin":true}`, wantField: "admin", wantMsg: "unknown field"},
		{name: "below_minimum", r: create, payload: `{"customer":"Ada","amount":0}`, wantField: "amount"},
		{name: "huge_exponent", r: create, payload: `{"customer":"Ada","amount":1e999999999}`, wantField: "amount", wantMsg: "number out of range"},
		{name: "tiny_exponent", r: create, payload: `{"customer":"Ada","amount":1E-401}`, wantField: "amount", wantMsg: "number out of range"},
		{name: "exponent_within_range", r: create, payload: `{"customer":"Ada","amount":1.5e2}`, want: map[string]any{"customer": "Ada", "amount": json.Number("1.5e2")}},
		{name: "nan", r: get, payload: `{"id":NaN}`, wantField: "id", wantMsg: "syntax error"},
		{name: "bad_utf8", r: get, payload: "{\"id\":1,\"x\":\"\xff\"}", wantMsg: "not valid UTF-8"},
		{name: "nul_in_string", r: create, payload: `{"customer":"a\u0000b","amount":1}`, wantField: "customer", wantMsg: "must not contain the NUL character (U+0000)"},
		{name: "nul_alone", r: create, payload: `{"customer":"Ada","amount":1,"note":"\u0000"}`, wantField: "note", wantMsg: "must not contain the NUL character (U+0000)"},
		{name: "nul_nested_extra", r: open, payload: `{"tags":{"a":["x","y\u0000"]}}`, wantField: "tags.a", wantMsg: "must not contain the NUL character (U+0000)"},
		{name: "escaped_backslash_is_text", r: create, payload: `{"customer":"a\\u0000b","amount":1}`, want: map[string]any{"customer": `a\u0000b`, "amount": json.Number("1")}},
		{name: "lone_high_surrogate", r: create, payload: `{"customer":"\ud800","amount":1}`, wantField: "customer", wantMsg: "escaped UTF-16 surrogate"},
		{name: "lone_low_surrogate", r: create, payload: `{"customer":"Ada \uDFFF","amount":1}`, wantField: "customer", wantMsg: "escaped UTF-16 surrogate"},
		{name: "high_then_letter", r: create, payload: `{"customer":"\uD83Dx","amount":1}`, wantField: "customer", wantMsg: "escaped UTF-16 surrogate"},
		{name: "high_then_escaped_letter", r: create, payload: `{"customer":"\ud83d\u0041","amount":1}`, wantField: "customer", wantMsg: "escaped UTF-16 surrogate"},
		{name: "two_highs", r: create, payload: `{"customer":"\ud83d\ud83d","amount":1}`, wantField: "customer", wantMsg: "escaped UTF-16 surrogate"},
		{name: "low_then_high", r: create, payload: `{"customer":"\ude00\ud83d","amount":1}`, wantField: "customer", wantMsg: "escaped UTF-16 surrogate"},
		{name: "pair_then_lone", r: create, payload: `{"customer":"\ud83d\ude00\udc00","amount":1}`, wantField: "customer", wantMsg: "escaped UTF-16 surrogate"},
		{name: "lone_surrogate_nested", r: open, payload: `{"tags":{"a":["x","\udbff"]}}`, wantField: "tags.a", wantMsg: "escaped UTF-16 surrogate"},
		{name: "lone_surrogate_in_name", r: open, payload: `{"a":{"x\ud800":1}}`, wantField: "a.x\ufffd", wantMsg: "the name contains an escaped UTF-16 surrogate"},
		{name: "surrogate_pair", r: create, payload: `{"customer":"\ud83d\uDE00 \u00e9","amount":1}`, want: map[string]any{"customer": "\U0001F600 \u00e9", "amount": json.Number("1")}},
		{name: "replacement_character_escaped", r: create, payload: `{"customer":"\ufffd","amount":1}`, want: map[string]any{"customer": "\ufffd", "amount": json.Number("1")}},
		{name: "escaped_backslash_before_surrogate_text", r: create, payload: `{"customer":"\\ud800","amount":1}`, want: map[string]any{"customer": `\ud800`, "amount": json.Number("1")}},
		{name: "deep", r: create, payload: `{"customer":"a","amount":1,"note":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, wantField: "note", wantMsg: "nesting deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.r.Decode([]byte(tc.payload))
			if tc.want != nil {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("Decode mismatch (-want +got):\n%s", diff)
				}
				return
			}
			var ie *route.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("Decode error = %v, want *InvalidError", err)
			}
			if ie.Field != tc.wantField {
				t.Errorf("Field = %q, want %q (%v)", ie.Field, tc.wantField, err)
			}
			if !strings.Contains(ie.Message, tc.wantMsg) {
				t.Errorf("Message = %q, want it to contain %q", ie.Message, tc.wantMsg)
			}
			if strings.Contains(err.Error(), "DROP") {
				t.Errorf("error echoes the payload: %v", err)
			}
		})
	}
	t.Run("too_large", func(t *testing.T) {
		_, err := get.Decode([]byte(`{"id":1,"pad":"` + strings.Repeat("x", route.DefaultMaxPayload) + `"}`))
		var tl *route.TooLargeError
		if !errors.As(err, &tl) {
			t.Fatalf("Decode = %v, want TooLargeError", err)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"customer":"Ada","amount":12.50}`, `{"id":1,"id":2}`, `{"id":1e400}`, `{}`, `{"note":[[[]]]}`, "{\"a\":\"\\ud800\"}",
		`{"customer":"\ud83d\ude00","amount":1}`, `{"customer":"\udfff","amount":1}`, `{"customer":"\\ud800\ufffd","amount":1}`,
		`{"customer":"a","amount":1,"\ud800":2}`,
	} {
		f.Add([]byte(s))
	}
	c := loadDemo(f)
	create, _ := c.Lookup("orders.v1.create")
	f.Fuzz(func(t *testing.T, data []byte) {
		params, err := create.Decode(data)
		if doc, perr := route.ParseObject(data); perr == nil {
			// Every U+FFFD parsed was sent as one: written raw or as the
			// \ufffd escape, never made of a lone surrogate escape.
			if got, sent := replacements(doc), strings.Count(string(data), "\uFFFD")+strings.Count(strings.ToLower(string(data)), `\ufffd`); got > sent {
				t.Fatalf("ParseObject made %d U+FFFD of %d sent: %q", got, sent, data)
			}
		}
		if err != nil {
			var ie *route.InvalidError
			var tl *route.TooLargeError
			if !errors.As(err, &ie) && !errors.As(err, &tl) {
				t.Fatalf("Decode error of unexpected type %T: %v", err, err)
			}
			if len(err.Error()) > 1024 {
				t.Fatalf("error of %d bytes: %.200q", len(err.Error()), err)
			}
			return
		}
		// Whatever passed must be exactly the declared, required shape.
		if _, ok := params["customer"].(string); !ok {
			t.Fatalf("customer = %#v", params["customer"])
		}
		if _, ok := params["amount"].(json.Number); !ok {
			t.Fatalf("amount = %#v", params["amount"])
		}
		for k := range params {
			if _, ok := create.Param(k); !ok {
				t.Fatalf("undeclared parameter %q passed", k)
			}
		}
	})
}

// replacements counts U+FFFD in the names and strings of v, at any depth.
func replacements(v any) int {
	n := 0
	switch x := v.(type) {
	case string:
		n = strings.Count(x, "\uFFFD")
	case []any:
		for _, el := range x {
			n += replacements(el)
		}
	case map[string]any:
		for k, el := range x {
			n += strings.Count(k, "\uFFFD") + replacements(el)
		}
	}
	return n
}

func FuzzParseStatement(f *testing.F) {
	for _, s := range []string{
		"select :a", "select ':a'", "x::int", "[a]]b] :c", "/* */ :d -- :e",
		"select $$it's :a$$, :b", "select $t$ $$ :a $t$", `select E'\\'' :a'`, "select :a; -- c", "/* /* :a */ */ :b",
		"select $1, a$b$, $12.50 :c", "select :a;\n/* :b */",
		// They read differently in PostgreSQL, SQL Server and SQLite.
		`UPDATE t SET v = :v WHERE id = 1 /* /* */; DELETE FROM t; -- */`,
		`SELECT :v AS a, e'\' FROM t; DELETE FROM t; -- '`,
		`SELECT @a(') ; DELETE FROM t; -- '`, `SELECT [a]]; DELETE FROM t; --]`, "SELECT `a;b`, :x",
		"SELECT 1 -- c\r; DELETE FROM t", `SELECT e'\'' ; -- '`, "SELECT $t:a$ x $t$", "SELECT x::int(';')",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		literalsHideText(t, sql)
		st, err := route.ParseStatement("s", sql)
		if err != nil {
			return
		}
		// Rendering the placeholders back reproduces the text (a trailing
		// semicolon is dropped), so parsing loses and invents nothing.
		if got := st.Render(func(_ int, n string) string { return ":" + n }); !strings.Contains(sql, ";") && got != sql {
			t.Fatalf("Render round trip = %q, want %q", got, sql)
		}
		for _, n := range st.Names() {
			if n == "" || strings.ContainsAny(n, " '\";:") {
				t.Fatalf("placeholder name %q is not an identifier", n)
			}
		}
		// Whatever the route's database, it runs one statement, with the
		// bind markers where the placeholders were found.
		dialectReadsOne(t, sql, st)
	})
}

// literalsHideText checks that text inside a literal, quoted identifier or
// comment, written with that form's escaping, is never a placeholder nor
// ends the statement: each wrapping of text is followed by :p, the one
// placeholder expected. The forms every dialect reads alike must be
// accepted; the others ('[…]', '`…`', E'…', dollar quotes) may be refused
// where another dialect reads the text differently.
func literalsHideText(t *testing.T, text string) {
	t.Helper()
	quote := func(open, closeCh string) string {
		return open + strings.ReplaceAll(text, closeCh, closeCh+closeCh) + closeCh
	}
	portable := []string{quote("'", "'"), quote(`"`, `"`)}
	other := []string{quote("`", "`"), quote("[", "]"), `E'` + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(text) + `'`}
	if strings.Index(text+"$q$", "$q$") == len(text) {
		other = append(other, "$q$"+text+"$q$")
	}
	if strings.Index(text+"$$", "$$") == len(text) {
		other = append(other, "$$"+text+"$$")
	}
	if c := "/*" + text + "*/"; !strings.Contains(c[1:len(c)-1], "/*") && strings.Index(c[2:], "*/") == len(text) {
		portable = append(portable, c)
	}
	if !strings.ContainsAny(text, "\n\r\v\f\u0085\u2028\u2029") {
		portable = append(portable, "--"+text+"\n")
	}
	for k, w := range append(portable, other...) {
		sql := "SELECT " + w + " , :p"
		st, err := route.ParseStatement("s", sql)
		if err != nil {
			if k < len(portable) && !strings.Contains(text, "\x00") {
				t.Fatalf("ParseStatement(%q): %v", sql, err)
			}
			continue
		}
		if !slices.Equal(st.Names(), []string{"p"}) {
			t.Fatalf("ParseStatement(%q) found placeholders %q, want only p", sql, st.Names())
		}
		if got := st.Render(func(_ int, n string) string { return ":" + n }); got != sql {
			t.Fatalf("Render round trip = %q, want %q", got, sql)
		}
		dialectReadsOne(t, sql, st)
	}
}

func BenchmarkDecode(b *testing.B) {
	c := loadDemo(b)
	create, _ := c.Lookup("orders.v1.create")
	payload := []byte(`{"customer":"Ada Lovelace","amount":125.50,"note":"deliver before noon"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := create.Decode(payload); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzParse feeds the catalog decoder arbitrary YAML: it never panics, and
// a catalog it accepts holds only valid, distinct subjects that Lookup
// finds.
func FuzzParse(f *testing.F) {
	demo, err := os.ReadFile("testdata/demo.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(demo)
	f.Add([]byte("routes:\n  - subject: a.b\n    database: d\n    procedure: p\n"))
	f.Add([]byte("routes: [{subject: 'a.*', database: d, procedure: p}]"))
	f.Add([]byte("routes:\n  - {subject: a.b, database: d, statement: {name: s, sql: 'SELECT :x'}, params: {type: object, properties: {x: {type: string}}}}\n"))
	f.Add([]byte("routes: &a [*a]"))
	f.Add([]byte("routes:\n  - {subject: a.b, database: d, procedure: p, mode: async, batch: 16}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := route.Parse(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, r := range c.Routes() {
			if !route.ValidSubject(r.Subject) || seen[r.Subject] {
				t.Fatalf("accepted subject %q (seen before: %v)", r.Subject, seen[r.Subject])
			}
			seen[r.Subject] = true
			if r.Batch < 1 || r.Batch > route.MaxBatch || (r.Batch > 1 && r.Mode != route.Async) {
				t.Fatalf("route %s: batch %d in mode %s", r.Subject, r.Batch, r.Mode)
			}
			if got, ok := c.Lookup(r.Subject); !ok || got != r {
				t.Fatalf("Lookup(%q) does not find its route", r.Subject)
			}
		}
	})
}

// CheckSQLType accepts the spellings the adapters know, whatever one
// dialect's bounds (see sqlserver.CheckSQLType), and nothing else.
func TestCheckSQLType(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		"int", "nvarchar(1)", "NVARCHAR(MAX)", "nchar(4000)", "varchar(max)", "decimal(38,38)", "numeric(1)", "decimal(12, 2)", " datetime2 ",
		"double precision", "timestamptz", "uuid",
		// Bounds of one dialect: PostgreSQL takes these.
		"varchar(9000)", "numeric(50,2)", "nvarchar(9999)", "decimal(5,9)", "char(max)",
	} {
		if err := route.CheckSQLType(ok); err != nil || !route.ValidSQLType(ok) {
			t.Errorf("CheckSQLType(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{
		"nvarchar(10)) x", "decimal(100,2)", "varchar(10000)", "nvarchar(-1)", "money(5)", "decimal(12,2) ; ",
		"nvarchar(max) collate x", "int); DROP TABLE t; --", "",
	} {
		err := route.CheckSQLType(bad)
		if err == nil || !strings.Contains(err.Error(), "unsupported SQL type") || route.ValidSQLType(bad) {
			t.Errorf("CheckSQLType(%q) = %v, want unsupported SQL type", bad, err)
		}
	}
}

// TestDecodeErrorQuotesLittleOfThePayload: an error quotes at most 128
// bytes of a field name, and no value: a reply quoting a name as long as
// the payload (1 MiB allowed) would exceed the NATS server's max_payload and
// never reach the caller.
func TestDecodeErrorQuotesLittleOfThePayload(t *testing.T) {
	props := map[string]any{
		"code": map[string]any{"type": "string", "pattern": "^[A-Z]{3}$"},
		"day":  map[string]any{"type": "string", "format": "date"},
	}
	c, err := route.New([]route.Spec{{
		Subject: "t.closed", Database: "orders", Statement: &route.StatementSpec{Name: "s", SQL: "SELECT :code, :day"},
		MaxPayload: route.MaxMaxPayload, Params: map[string]any{"type": "object", "properties": props},
	}, {
		Subject: "t.open", Database: "orders", Statement: &route.StatementSpec{Name: "s", SQL: "SELECT 1"},
		MaxPayload: route.MaxMaxPayload, Params: map[string]any{"type": "object", "additionalProperties": true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	closed, _ := c.Lookup("t.closed")
	open, _ := c.Lookup("t.open")
	name := "é" + strings.Repeat("N", 500_000) // a two-byte character first: the cut falls between characters
	value := strings.Repeat("V", 600_000)
	for _, tc := range []struct {
		name    string
		r       *route.Route
		payload string
		want    string
	}{
		{"unknown field", closed, `{"` + name + `":1}`, "unknown field"},
		{"duplicate key", open, `{"` + name + `":1,"` + name + `":2}`, "duplicate key"},
		{"nested name", open, `{"a":{"` + name + `":"\u0000"}}`, "NUL character"},
		{"pattern", closed, `{"code":"` + value + `"}`, `field "code": does not match the pattern "^[A-Z]{3}$"`},
		{"format", closed, `{"day":"` + value + `"}`, `field "day": is not a valid date`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.r.Decode([]byte(tc.payload))
			var ie *route.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("Decode = %v, want an InvalidError", err)
			}
			msg := err.Error()
			if len(msg) > 300 || !strings.Contains(msg, tc.want) || strings.Contains(msg, "VVVV") || !utf8.ValidString(msg) {
				t.Errorf("error of %d bytes = %.400q, want at most 300 containing %q and no value", len(msg), msg, tc.want)
			}
			if strings.Contains(ie.Field, "N") && !strings.Contains(msg, "NNN…") {
				t.Errorf("error = %.400q, want the name's start and …", msg)
			}
		})
	}
}
