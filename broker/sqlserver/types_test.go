package sqlserver

import (
	"database/sql"
	"database/sql/driver"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker/route"
)

// CheckSQLType keeps lengths, precisions and scales within what SQL Server
// accepts, and says which bound a type breaks.
func TestCheckSQLTypeBounds(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{
		"int", "nvarchar(1)", "nvarchar(4000)", "NVARCHAR(MAX)", "nchar(4000)", "varchar(8000)", "varchar(max)", "char(8000)",
		"varbinary(8000)", "varbinary(max)", "binary(1)", "decimal(38,38)", "numeric(1)", "decimal(12, 2)", "decimal(5,0)", " datetime2 ",
		"text", "double precision", "timestamptz", "uuid",
	} {
		if err := CheckSQLType(ok); err != nil {
			t.Errorf("CheckSQLType(%q) = %v, want nil", ok, err)
		}
	}
	for bad, why := range map[string]string{
		"nvarchar(9999)":  "nvarchar lengths of 1 to 4000 or max",
		"nvarchar(4001)":  "nvarchar lengths of 1 to 4000 or max",
		"nvarchar(0)":     "nvarchar lengths of 1 to 4000 or max",
		"nchar(4001)":     "nchar lengths of 1 to 4000",
		"varchar(9000)":   "varchar lengths of 1 to 8000 or max",
		"varbinary(9999)": "varbinary lengths of 1 to 8000 or max",
		"char(0)":         "char lengths of 1 to 8000",
		"binary(8001)":    "binary lengths of 1 to 8000",
		"nchar(max)":      "nchar lengths of 1 to 4000, not max",
		"char(MAX)":       "char lengths of 1 to 8000, not max",
		"binary(max)":     "binary lengths of 1 to 8000, not max",
		"decimal(99,98)":  "precision of 1 to 38",
		"numeric(50,2)":   "precision of 1 to 38",
		"numeric(0)":      "precision of 1 to 38",
		"decimal(5,9)":    "scale of 0 to the precision (5)",
		"decimal(39)":     "precision of 1 to 38",
		"nvarchar(10)) x": "unsupported SQL type",
		"money(5)":        "unsupported SQL type",
	} {
		err := CheckSQLType(bad)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("CheckSQLType(%q) = %v, want an error saying %q", bad, err, why)
		}
	}
}

// The catalog loads a route whose types only PostgreSQL takes; on SQL
// Server, Check (run for every route at start) refuses it, naming every
// type and its bound, before asking the server anything.
func TestCheckRouteSQLTypes(t *testing.T) {
	t.Parallel()
	cat, err := route.New([]route.Spec{{
		Subject: "orders.note", Database: "orders", Procedure: "sales.note", Timeout: "1m",
		Params: map[string]any{"type": "object", "properties": map[string]any{
			"note": map[string]any{"type": "string"}, "total": map[string]any{"type": "number"}, "id": map[string]any{"type": "integer"},
		}},
		SQLTypes: map[string]string{"note": "nvarchar(9999)", "total": "numeric(50,2)", "id": "int"},
		Output:   map[string]string{"ref": "varchar(9000)", "n": "int"},
	}, {
		Subject: "orders.ok", Database: "orders", Procedure: "sales.ok", Timeout: "1m",
		Params:   map[string]any{"type": "object", "properties": map[string]any{"note": map[string]any{"type": "string"}}},
		SQLTypes: map[string]string{"note": "nvarchar(4000)"},
	}})
	if err != nil {
		t.Fatalf("the catalog refused types of another dialect's bounds: %v", err)
	}
	rec := &recorder{answer: func(q string, _ map[string]any) ([]string, []driver.Value, error) {
		if q == CheckBatch {
			return []string{"found", "can_exec"}, []driver.Value{true, true}, nil
		}
		return nil, nil, nil
	}}
	db := sql.OpenDB(rec)
	t.Cleanup(func() { _ = db.Close() })
	cfg := Config{Name: "orders"}
	cfg.defaults()
	e := &Executor{cfg: cfg, db: db}

	bad, _ := cat.Lookup("orders.note")
	err = e.Check(t.Context(), bad)
	for _, want := range []string{
		`route orders.note: sqlTypes note: SQL type "nvarchar(9999)": SQL Server takes nvarchar lengths of 1 to 4000 or max`,
		`route orders.note: sqlTypes total: SQL type "numeric(50,2)": SQL Server takes a precision of 1 to 38`,
		`route orders.note: output ref: SQL type "varchar(9000)": SQL Server takes varchar lengths of 1 to 8000 or max`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check = %v, want it to say %q", err, want)
		}
	}
	if n := len(rec.log()); n != 0 {
		t.Errorf("Check sent %d batches for a route it refuses, want none", n)
	}
	// The OBO base executor (no pool of its own) refuses it the same way.
	obo := &Executor{cfg: cfg}
	if err := obo.Check(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "1 to 4000") {
		t.Errorf("Check on the on-behalf-of executor = %v, want the type bound", err)
	}

	good, _ := cat.Lookup("orders.ok")
	if err := e.Check(t.Context(), good); err != nil {
		t.Errorf("Check(route within bounds) = %v", err)
	}
}
