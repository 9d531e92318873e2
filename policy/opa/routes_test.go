package opa_test

import (
	"bytes"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
)

// devCatalog is the route catalog of `sqlgated dev`, as the daemon passes
// it to the engine.
func devCatalog(t *testing.T) []opa.RouteRef {
	t.Helper()
	catalog, err := opa.RoutesFromCatalog(readFile(t, "testdata/routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return catalog
}

// TestServedPolicyAgreesWithTheCatalog: with the serving route catalog, a
// policy that names a route or parameter the catalog lacks is refused at
// load: the reviewer's misspelt deny route, limit parameter and redacted
// parameter each did nothing in the running daemon (only `policy check
// --routes` reported them).
func TestServedPolicyAgreesWithTheCatalog(t *testing.T) {
	catalog := devCatalog(t)
	e, err := opa.Open(t.Context(), opa.Config{Dir: rulesDir, Routes: catalog})
	if err != nil {
		t.Fatalf("Open(library, dev catalog) = %v", err)
	}
	if w := e.Status().Warnings; len(w) != 0 {
		t.Errorf("Warnings = %q, want none", w)
	}

	for _, tc := range []struct {
		name, old, replacement, want string
	}{
		{
			"deny_route",
			"    deny: []\n", "    deny:\n      - principals: [mallory@example.com]\n        routes: [orders.v1.craete]\n",
			"data.sqlgate.config.deny[0].routes[0]: route orders.v1.craete is not in the route catalog",
		},
		{
			"limit_param",
			"            param: amount\n            min: 0\n            max: 1000\n          - role", "            param: amout\n            min: 0\n            max: 1000\n          - role",
			`data.sqlgate.config.routes["orders.v1.create"].limits[0].param: amout is not a parameter of orders.v1.create`,
		},
		{
			"redact_param",
			"        redact_params: [note]\n      orders.v1.get:", "        redact_params: [nte]\n      orders.v1.get:",
			`data.sqlgate.config.routes["orders.v1.create"].redact_params[0]: nte is not a parameter of orders.v1.create`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyRules(t)
			edit(t, filepath.Join(dir, "data.yaml"), tc.old, tc.replacement)
			if _, err := opa.Open(t.Context(), opa.Config{Dir: dir, Routes: catalog}); !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open = %v, want ErrInvalidPolicy naming %q", err, tc.want)
			}
		})
	}

	t.Run("rego_literal", func(t *testing.T) {
		dir := copyRules(t)
		writeFile(t, filepath.Join(dir, "sqlgate", "freeze.rego"), "package sqlgate.freeze\n\nfrozen if input.route.subject == \"orders.v1.cancle\"\n")
		if _, err := opa.Open(t.Context(), opa.Config{Dir: dir, Routes: catalog}); !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), "sqlgate/freeze.rego:3: route orders.v1.cancle is not in the route catalog") {
			t.Errorf("Open = %v, want the literal's route refused", err)
		}
	})

	// A misspelt emit subject in sub, written as a constant, would grant
	// nothing (the broker keeps only the catalog's emit subjects): refused.
	t.Run("sub_literal", func(t *testing.T) {
		dir := copyRules(t)
		writeFile(t, filepath.Join(dir, "sqlgate", "feeds.rego"), "package sqlgate.nats\n\nsub contains \"orders.v1.craeted\"\n")
		if _, err := opa.Open(t.Context(), opa.Config{Dir: dir, Routes: catalog}); !errors.Is(err, opa.ErrInvalidPolicy) ||
			!strings.Contains(err.Error(), "sqlgate/feeds.rego:3: orders.v1.craeted is not an emit subject of the route catalog") {
			t.Errorf("Open = %v, want the sub literal refused", err)
		}
	})

	// A constant in pub that is no route subject (a misspelt route, a
	// wildcard) would grant nothing (the broker keeps only routes): refused
	// like a constant in sub.
	t.Run("pub_literal", func(t *testing.T) {
		for _, subject := range []string{"orders.v1.gett", ">"} {
			dir := copyRules(t)
			writeFile(t, filepath.Join(dir, "sqlgate", "extra.rego"), "package sqlgate.nats\n\npub contains "+strconv.Quote(subject)+"\n")
			if _, err := opa.Open(t.Context(), opa.Config{Dir: dir, Routes: catalog}); !errors.Is(err, opa.ErrInvalidPolicy) ||
				!strings.Contains(err.Error(), `sqlgate/extra.rego:3: "`+subject+`" is not a route subject of the route catalog`) {
				t.Errorf("Open(pub contains %q) = %v, want the pub literal refused", subject, err)
			}
		}
	})

	// Like a granted route, an event granted in data.yaml that this
	// catalog does not emit grants nothing: served, with a warning.
	t.Run("granted_event_missing", func(t *testing.T) {
		without := slices.Clone(catalog)
		for i := range without {
			if without[i].Emit == "orders.v1.imported" {
				without[i].Emit = ""
			}
		}
		e, err := opa.Open(t.Context(), opa.Config{Dir: rulesDir, Routes: without})
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		want := []string{`data.sqlgate.config.events["orders.v1.imported"]: event orders.v1.imported is not an emit subject of the route catalog: the grant has no effect`}
		if got := e.Status().Warnings; !slices.Equal(got, want) {
			t.Errorf("Warnings = %q, want %q", got, want)
		}
	})

	// A route the policy grants that this catalog lacks grants nothing: the
	// policy serves, and says so.
	t.Run("granted_route_missing", func(t *testing.T) {
		without := slices.DeleteFunc(slices.Clone(catalog), func(r opa.RouteRef) bool { return r.Subject == "orders.v1.cancel" })
		e, err := opa.Open(t.Context(), opa.Config{Dir: rulesDir, Routes: without})
		if err != nil {
			t.Fatalf("Open = %v", err)
		}
		want := []string{
			`data.sqlgate.config.events["orders.v1.cancelled"]: event orders.v1.cancelled is not an emit subject of the route catalog: the grant has no effect`,
			`data.sqlgate.config.routes["orders.v1.cancel"]: route orders.v1.cancel is not in the route catalog: the grant has no effect`,
		}
		if got := e.Status().Warnings; !slices.Equal(got, want) {
			t.Errorf("Warnings = %q, want %q", got, want)
		}
	})
}

// TestReloadRefusesWhatTheCatalogLacks: a reload that names a parameter the
// catalog lacks is refused and the last good revision keeps serving.
func TestReloadRefusesWhatTheCatalogLacks(t *testing.T) {
	dir := copyRules(t)
	var events []opa.ReloadEvent
	e, err := opa.Open(t.Context(), opa.Config{
		Dir: dir, Routes: devCatalog(t), EvalTimeout: testEvalTimeout, Logger: testLogger(t),
		Now:      func() time.Time { return monday10 },
		OnReload: func(ev opa.ReloadEvent) { events = append(events, ev) },
	})
	if err != nil {
		t.Fatal(err)
	}
	good := e.Revision()
	edit(t, filepath.Join(dir, "data.yaml"), "            param: amount\n", "            param: amout\n")
	if err := e.Reload(t.Context()); !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), "amout is not a parameter of orders.v1.create") {
		t.Fatalf("Reload = %v, want the parameter refused", err)
	}
	st := e.Status()
	if st.Revision != good || st.LastError == nil || len(events) != 2 || events[1].Err == nil || events[1].Revision != good {
		t.Fatalf("after the refused reload: status %+v, events %+v; want %s serving and the failure reported", st, events, good)
	}
	// The limit of the last good policy still holds.
	if d, err := e.Decide(t.Context(), policy.Call, salesCreate(5000)); err != nil || d.Allow || d.Revision != good {
		t.Errorf("Decide(amount 5000) = %+v, %v; want the last good policy's deny", d, err)
	}
}

// TestLintTimeout: a lint that does not finish in time refuses the policy
// instead of holding the load.
func TestLintTimeout(t *testing.T) {
	_, err := opa.Open(t.Context(), opa.Config{Dir: "testdata/policies/slowlint", EvalTimeout: time.Millisecond})
	if !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), "the lint took longer than allowed") || !strings.Contains(err.Error(), opa.MinLintTimeout.String()) {
		t.Errorf("Open = %v, want the lint refused after %s", err, opa.MinLintTimeout)
	}
}

// TestLoadWarnsWithoutCallEntry: a policy whose call package is misspelt
// (package sqlgate.calls) loads, since its NATS entry is enough, but every
// call of the catalog's routes is denied ("the policy does not decide
// call"). The daemon loaded it with a plain "policy loaded" while `policy
// check --routes` reported it; the load now says so too.
func TestLoadWarnsWithoutCallEntry(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "calls.rego"), "package sqlgate.calls\n\ndefault allow := false\n\nallow if \"sales\" in input.principal.groups\n")
	writeFile(t, filepath.Join(dir, "nats.rego"), "package sqlgate.nats\n\ndefault allow := false\n\nallow if \"sales\" in input.principal.groups\n")
	var log bytes.Buffer
	e, err := opa.Open(t.Context(), opa.Config{Dir: dir, Routes: devCatalog(t), Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatalf("Open = %v, want the policy served", err)
	}
	const want = "the policy defines no data.sqlgate.call (package sqlgate.call), so every call of the route catalog's routes would be denied"
	if w := e.Status().Warnings; len(w) != 1 || !strings.Contains(w[0], want) || !strings.Contains(w[0], "calls.rego has package data.sqlgate.calls") {
		t.Errorf("Warnings = %q, want one containing %q and naming calls.rego", w, want)
	}
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "calls.rego has package data.sqlgate.calls") {
		t.Errorf("log = %s, want a warning naming calls.rego", log.String())
	}

	// Without a catalog there is nothing to warn of.
	e, err = opa.Open(t.Context(), opa.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if w := e.Status().Warnings; len(w) != 0 {
		t.Errorf("Warnings without a catalog = %q, want none", w)
	}
}
