package sqlite

import (
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"ok", Config{Name: "demo", Path: "x.db"}, nil},
		{
			"everything_wrong",
			Config{Name: "no-dashes", BusyTimeout: -1, ReadConns: -1},
			[]string{`name "no-dashes"`, "path is required", "busyTimeout", "readConns"},
		},
		{"injection_name", Config{Name: "x; DROP TABLE y", Path: "x.db"}, []string{"plain identifier"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestOpenAppliesPragmas(t *testing.T) {
	t.Parallel()
	e, err := Open(t.Context(), Config{Name: "p", Path: filepath.Join(t.TempDir(), "p.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	var mode string
	var syncMode, busy int
	db := e.DB()
	if err := db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&syncMode); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(t.Context(), "PRAGMA busy_timeout").Scan(&busy); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" || syncMode != 2 || busy != 5000 {
		t.Errorf("journal_mode, synchronous, busy_timeout = %s, %d, %d; want wal, 2 (FULL), 5000", mode, syncMode, busy)
	}
}

func testRoute(t *testing.T, rc route.Spec) *route.Route {
	t.Helper()
	rc.Subject, rc.Database = "t.x", "test"
	cat, err := route.New([]route.Spec{rc})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := cat.Lookup("t.x")
	return r
}

func TestCheck(t *testing.T) {
	t.Parallel()
	e, err := Open(t.Context(), Config{Name: "c", Path: filepath.Join(t.TempDir(), "c.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	proc := testRoute(t, route.Spec{Procedure: "dbo.create_order"})
	if err := e.Check(t.Context(), proc); err == nil || !strings.Contains(err.Error(), "statements only") {
		t.Errorf("Check(procedure route) = %v, want statements-only error", err)
	}
	bad := testRoute(t, route.Spec{Statement: &route.StatementSpec{Name: "s", SQL: "SELECT * FROM no_such_table"}})
	var dbe *broker.DBError
	if err := e.Check(t.Context(), bad); !errors.As(err, &dbe) {
		t.Errorf("Check(missing table) = %v, want a DBError", err)
	}
	good := testRoute(t, route.Spec{Statement: &route.StatementSpec{Name: "s", SQL: "SELECT count(*) FROM sqlgate_idempotency"}})
	if err := e.Check(t.Context(), good); err != nil {
		t.Errorf("Check(valid statement) = %v", err)
	}
}

// A write lock held by another process makes calls wait (busy timeout), then
// retry, then fail as unavailable; once released, the same key executes.
func TestBusyDatabase(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "b.db")
	e, err := Open(t.Context(), Config{Name: "b", Path: path, BusyTimeout: 50 * time.Millisecond, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	other, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Close() }()
	lock, err := other.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := testRoute(t, route.Spec{Statement: &route.StatementSpec{Name: "s", SQL: "SELECT 1 AS one"}})
	c := &broker.Call{Route: r, Params: map[string]any{}, IdempotencyKey: "k", RequestHash: "h", CorrelationID: "c"}
	if _, err := e.Execute(t.Context(), c); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Execute(locked database) = %v, want ErrUnavailable", err)
	}
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	res, err := e.Execute(t.Context(), c)
	if err != nil || res.Replayed || string(res.JSON) != `{"rows":[{"one":1}],"rows_affected":0}` {
		t.Fatalf("Execute(after unlock) = %+v, %v; want a fresh {\"one\":1}", res, err)
	}
}

func TestBindAndResultTypes(t *testing.T) {
	t.Parallel()
	e, err := Open(t.Context(), Config{Name: "t", Path: filepath.Join(t.TempDir(), "t.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	if _, err := e.DB().ExecContext(t.Context(), `CREATE TABLE v (f REAL, b BLOB, t DATETIME, ok BOOLEAN, big NUMERIC, txt TEXT)`); err != nil {
		t.Fatal(err)
	}
	r := testRoute(t, route.Spec{
		Statement: &route.StatementSpec{Name: "s", SQL: `INSERT INTO v VALUES (:f, :b, :t, :ok, :big, :txt) RETURNING f, b, t, ok, big, txt, :txt || :txt AS twice`},
		Params: map[string]any{"type": "object", "properties": map[string]any{
			"f": map[string]any{"type": "number"}, "b": map[string]any{"type": "string"}, "t": map[string]any{"type": "string"},
			"ok": map[string]any{"type": "boolean"}, "big": map[string]any{"type": "number"}, "txt": map[string]any{"type": "number"},
		}},
		SQLTypes: map[string]string{"f": "float", "b": "varbinary(10)"},
	})
	p, err := r.Decode([]byte(`{"f":0.5,"b":"AAEC","t":"2026-01-02T03:04:05Z","ok":true,"big":12345678901234.5,"txt":1.10}`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Execute(t.Context(), &broker.Call{Route: r, Params: p, IdempotencyKey: "k", RequestHash: "h"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"rows":[{"f":0.5,"b":"AAEC","t":"2026-01-02T03:04:05Z","ok":true,"big":12345678901234.5,"txt":"1.10","twice":"1.101.10"}],"rows_affected":1}`
	if string(res.JSON) != want {
		t.Errorf("result = %s\nwant     %s", res.JSON, want)
	}
	if _, err := e.Execute(t.Context(), &broker.Call{Route: r, Params: map[string]any{"b": "not base64!"}, IdempotencyKey: "k2"}); err == nil {
		t.Error("Execute(invalid base64 for varbinary) succeeded")
	} else if inv := (*route.InvalidError)(nil); !errors.As(err, &inv) || inv.Field != "b" {
		t.Errorf("Execute(invalid base64) = %v, want InvalidError for field b", err)
	}
}

func TestPrune(t *testing.T) {
	t.Parallel()
	e, err := Open(t.Context(), Config{Name: "p", Path: filepath.Join(t.TempDir(), "p.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	r := testRoute(t, route.Spec{Statement: &route.StatementSpec{Name: "s", SQL: "SELECT 1 AS one"}})
	keys := []string{"a", "b", "c", "d", "e"}
	for _, k := range keys {
		if _, err := e.Execute(t.Context(), &broker.Call{Route: r, Params: map[string]any{}, IdempotencyKey: k, RequestHash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := e.Prune(t.Context(), time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("Prune(an hour ago) = %d, %v; want 0", n, err)
	}
	e.pruneBatch = 2 // five records in three statements
	if n, err := e.Prune(t.Context(), time.Now().Add(time.Second)); err != nil || n != int64(len(keys)) {
		t.Fatalf("Prune(now) = %d, %v; want %d", n, err, len(keys))
	}
	if _, found, err := e.Lookup(t.Context(), "a"); found || err != nil {
		t.Errorf("Lookup(pruned key) = found %v, %v", found, err)
	}
}
