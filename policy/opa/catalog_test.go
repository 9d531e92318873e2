package opa_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// largeCatalog is the default library with a configuration of its own:
// routes svc0000.v1.op, svc0001.v1.op, … granted to groups team-0 to team-9
// in turn (route i to team-(i mod 10)), and entries deny entries, entry j
// refusing principal u-deny-j route j.
func largeCatalog(tb testing.TB, routes, entries int) fs.FS {
	tb.Helper()
	catalog := map[string]any{}
	for i := range routes {
		catalog[catalogRoute(i)] = map[string]any{"groups": []string{fmt.Sprintf("team-%d", i%10)}}
	}
	deny := []any{}
	for j := range entries {
		deny = append(deny, map[string]any{
			"principals": []string{fmt.Sprintf("u-deny-%d", j)},
			"routes":     []string{catalogRoute(j)},
			"reason":     "under review",
		})
	}
	data, err := json.Marshal(map[string]any{"sqlgate": map[string]any{"config": map[string]any{
		"routes": catalog,
		"deny":   deny,
		"nats":   map[string]any{"ttl": "15m"},
	}}})
	if err != nil {
		tb.Fatal(err)
	}
	fsys := fstest.MapFS{"data.json": {Data: data}}
	err = fs.WalkDir(rules.FS, "sqlgate", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(rules.FS, p)
		fsys[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return fsys
}

func catalogRoute(i int) string { return fmt.Sprintf("svc%04d.v1.op", i) }

// catalogCredential is a NATS credential request by subject, a member of
// team-3.
func catalogCredential(subject string) *policy.Input {
	in := principalCredential(subject, []string{"all-staff", "team-3"}, "nats")
	in.Credential.Database, in.Credential.Role = "", ""
	return in
}

// TestDenyListWorkDoesNotGrowWithTheCatalog: the deny list removed from a
// NATS credential's pub the routes it refuses by checking every route of the
// catalog against every entry, for every principal, even one no entry names:
// with 600 routes and 15 entries the decision took the whole 100 ms
// evaluation timeout, and every credential (and `sqlgate routes`) was
// refused. The deny list's work is now the same for 50 routes as for 5000.
//
// It is counted in evaluation steps, not timed: at 5000 routes the NATS
// decision takes some 15 ms (140 ms under -race) granting the routes,
// whatever the deny list, which no timeout bound would tell apart from the
// deny list's work on a loaded machine; the count is exact.
func TestDenyListWorkDoesNotGrowWithTheCatalog(t *testing.T) {
	const entries = 20
	steps := map[int]int{}
	for _, routes := range []int{50, 5000} {
		e, err := opa.Open(t.Context(), opa.Config{FS: largeCatalog(t, routes, entries), EvalTimeout: testEvalTimeout, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("Open(%d routes) = %v", routes, err)
		}
		d, counted, err := e.DecideCountingSteps(t.Context(), policy.NATS, catalogCredential("u-1"))
		if err != nil || !d.Allow || len(d.Obligations.Pub) != routes/10 || !slices.Contains(d.Obligations.Pub, catalogRoute(3)) {
			t.Fatalf("%d routes: Decide = allow %v, %d subjects in pub, reasons %q, %v; want an allow of the %d routes of team-3",
				routes, d.Allow, len(d.Obligations.Pub), d.Reasons, err, routes/10)
		}
		steps[routes] = counted["sqlgate/lib/denylist.rego"]

		// The principal entry 3 names loses route 3, and only it.
		d, err = e.Decide(t.Context(), policy.NATS, catalogCredential("u-deny-3"))
		if err != nil || !d.Allow || len(d.Obligations.Pub) != routes/10-1 || slices.Contains(d.Obligations.Pub, catalogRoute(3)) {
			t.Fatalf("%d routes: Decide(u-deny-3) = allow %v, %d subjects in pub, reasons %q, %v; want the routes of team-3 without %s",
				routes, d.Allow, len(d.Obligations.Pub), d.Reasons, err, catalogRoute(3))
		}
	}
	if steps[50] == 0 || steps[5000] != steps[50] {
		t.Errorf("the deny list took %d evaluation steps for 50 routes and %d for 5000 (%d entries naming other principals); want the same number, not zero",
			steps[50], steps[5000], entries)
	}
}
