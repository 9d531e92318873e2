package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/broker/route"
)

// startupCatalogHash matches the catalog hash in a startup record's detail.
var startupCatalogHash = regexp.MustCompile(`^sqlgated (\S+), route catalog sha256:([0-9a-f]{64}), (\d+) routes$`)

const hashTestCatalog = `routes:
  - subject: orders.v1.get
    database: orders
    statement:
      name: get_order
      sql: SELECT id, customer FROM orders WHERE id = :id
    params:
      type: object
      properties:
        id: {type: integer, minimum: 1}
      required: [id]
  - subject: orders.v1.create
    database: orders
    procedure: sales.create_order
    emit: orders.v1.created
    params:
      type: object
      properties:
        amount: {type: number}
`

// TestCatalogHash: the hash changes with any route's subject, target,
// statement, parameters or emit, and not with an edit that changes no
// route (a comment, the YAML layout, a default spelled out).
func TestCatalogHash(t *testing.T) {
	t.Parallel()
	hash := func(t *testing.T, yaml string) string {
		t.Helper()
		c, err := route.Parse([]byte(yaml))
		if err != nil {
			t.Fatalf("route.Parse: %v", err)
		}
		h, err := catalogHash(c)
		if err != nil {
			t.Fatalf("catalogHash: %v", err)
		}
		return h
	}
	base := hash(t, hashTestCatalog)
	tests := []struct {
		name       string
		old, new   string
		wantChange bool
	}{
		{"subject", "subject: orders.v1.get", "subject: orders.v2.get", true},
		{"statement_column", "SELECT id, customer FROM", "SELECT id, customer, amount FROM", true},
		{"statement_delete", "sql: SELECT id, customer FROM orders WHERE id = :id", "sql: DELETE FROM orders WHERE id = :id", true},
		{"statement_name", "name: get_order", "name: fetch_order", true},
		{"procedure", "procedure: sales.create_order", "procedure: sales.drop_orders", true},
		{"params", "id: {type: integer, minimum: 1}", "id: {type: integer, minimum: 0}", true},
		{"emit", "emit: orders.v1.created", "emit: orders.v1.made", true},
		{"database", "database: orders\n    procedure", "database: billing\n    procedure", true},
		{"comment", "routes:\n", "# reviewed\nroutes:\n", false},
		{"layout", "required: [id]", "required:\n        - id", false},
		{"default_spelled_out", "emit: orders.v1.created", "emit: orders.v1.created\n    timeout: 5s", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if strings.Count(hashTestCatalog, tc.old) != 1 {
				t.Fatalf("%q is not once in the catalog", tc.old)
			}
			got := hash(t, strings.Replace(hashTestCatalog, tc.old, tc.new, 1))
			if changed := got != base; changed != tc.wantChange {
				t.Errorf("catalogHash changed = %v, want %v", changed, tc.wantChange)
			}
		})
	}
}

// TestRecordStartupFailsWhenTheLogRefuses: a startup record the log cannot
// append is an error, which fails the start.
func TestRecordStartupFailsWhenTheLogRefuses(t *testing.T) {
	t.Parallel()
	store := audittest.NewStore()
	log, err := audit.Open(t.Context(), store, audittest.Config(t, "sqlgate.test/startup"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(t.Context()) })
	catalog, err := route.Parse(demoRoutes)
	if err != nil {
		t.Fatal(err)
	}
	store.FailWrites(errors.New("disk full"))
	if err := recordStartup(t.Context(), log, catalog); err == nil {
		t.Error("recordStartup with a failing store = nil, want an error")
	}
}

// TestDevStartupRecordsTheRouteCatalog: each start appends a startup record
// naming the version and the catalog's hash, so a restart with an edited
// statement is in the signed log; a restart without an edit names the same
// hash.
func TestDevStartupRecordsTheRouteCatalog(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end dev stack: skipped with -short")
	}
	dir := t.TempDir()
	startDev(t, dir).stop()

	routesPath := filepath.Join(dir, "routes.yaml")
	routes, err := os.ReadFile(routesPath)
	if err != nil {
		t.Fatal(err)
	}
	const old = "cancelled_at\n        FROM orders WHERE id = :id"
	if strings.Count(string(routes), old) != 1 {
		t.Fatalf("the demo catalog does not hold %q once", old)
	}
	edited := strings.Replace(string(routes), old, "cancelled_at, cancelled_by\n        FROM orders WHERE id = :id", 1)
	if err := os.WriteFile(routesPath, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	startDev(t, dir).stop()
	startDev(t, dir).stop()

	store := openAuditStore(t, dir)
	origin := loadDevState(dir).AuditOrigin
	first, end, err := store.Bounds(t.Context(), origin)
	if err != nil {
		t.Fatal(err)
	}
	var details []string
	if err := store.Records(t.Context(), origin, first, end, func(_ int64, data []byte, _ *tlog.Hash) error {
		r, err := audit.DecodeRecord(data)
		if err != nil {
			return err
		}
		if r.Kind == audit.KindAdmin && r.Admin != nil && r.Admin.Action == audit.AdminStartup {
			if r.Actor == nil || r.Actor.Transport != "system" {
				t.Errorf("startup record %d: actor %+v, want transport system", r.Index, r.Actor)
			}
			details = append(details, r.Admin.Detail)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(details) != 3 {
		t.Fatalf("startup records = %q, want 3 (one per start)", details)
	}
	var hashes []string
	for _, d := range details {
		m := startupCatalogHash.FindStringSubmatch(d)
		if m == nil {
			t.Fatalf("startup detail %q does not match %s", d, startupCatalogHash)
		}
		if m[1] != version || m[3] != "4" {
			t.Errorf("startup detail %q: want version %s and 4 routes", d, version)
		}
		hashes = append(hashes, m[2])
	}
	if hashes[0] == hashes[1] {
		t.Errorf("restart with an edited statement kept the catalog hash %s", hashes[0])
	}
	if hashes[1] != hashes[2] {
		t.Errorf("restart without an edit changed the catalog hash: %s, then %s", hashes[1], hashes[2])
	}
}
