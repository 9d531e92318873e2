package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkableCatalog is checkableExample with the example route catalog
// changed by edit, written to a file of its own.
func checkableCatalog(t *testing.T, edit func(routes string) string) (config, policyDir string) {
	t.Helper()
	config, policyDir = checkableExample(t)
	routesPath, err := filepath.Abs("../../deploy/examples/routes.yaml") // as checkableExample writes it
	if err != nil {
		t.Fatal(err)
	}
	routes, err := os.ReadFile(routesPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := edit(string(routes))
	if edited == string(routes) {
		t.Fatal("the edit changed nothing in the example route catalog")
	}
	newRoutes := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(newRoutes, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "routes: "+routesPath) {
		t.Fatalf("the checkable example names no routes: %s", routesPath)
	}
	if err := os.WriteFile(config, []byte(strings.Replace(string(text), "routes: "+routesPath, "routes: "+newRoutes, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return config, policyDir
}

// TestServeCheckRefusesEmitOnARouteSubject: an emit equal to another
// route's subject passed --check, and then serve, dev and nats-setup
// refused to start without naming the route (the broker account may not
// export one subject as a service and a stream). --check refuses it,
// naming both routes.
func TestServeCheckRefusesEmitOnARouteSubject(t *testing.T) {
	config, _ := checkableCatalog(t, func(routes string) string {
		return strings.Replace(routes, "emit: orders.v1.created", "emit: orders.v1.get", 1)
	})
	var out strings.Builder
	err := run(t.Context(), []string{"serve", "--config", config, "--check"}, &out, &out)
	want := `route orders.v1.create: emit "orders.v1.get" is the subject of route orders.v1.get (#2)`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("serve --check with an emit on a route subject: err = %v, want it to contain %q\n%s", err, want, out.String())
	}
}

// TestServeCheckReportsEveryStage: a problem of the route catalog hides
// neither the catalog-to-database check of the routes that are valid nor
// the policy's problems, which are checked against the subjects and
// parameters the catalog file names.
func TestServeCheckReportsEveryStage(t *testing.T) {
	config, policyDir := checkableCatalog(t, func(routes string) string {
		return strings.NewReplacer(
			"customer: {type: string, minLength: 1, maxLength: 200}", "customer: {type: string, minLength: 1, maxLenght: 200}",
			"database: billing", "database: invoices",
		).Replace(routes)
	})
	data := filepath.Join(policyDir, "data.yaml")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	misspelt := strings.Replace(string(b), "param: amount", "param: amout", 1)
	if misspelt == string(b) {
		t.Fatal("data.yaml has no param: amount")
	}
	if err := os.WriteFile(data, []byte(misspelt), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func() error {
		t.Helper()
		var out strings.Builder
		err := run(t.Context(), []string{"serve", "--config", config, "--check"}, &out, &out)
		if err == nil {
			t.Fatalf("serve --check passed:\n%s", out.String())
		}
		return err
	}
	err = check()
	for _, want := range []string{
		`route orders.v1.create: parameter "customer": unknown keyword "maxLenght" (did you mean maxLength?)`,
		`routes: billing.v1.invoice_total use database "invoices", which databases does not define`,
		"amout is not a parameter of orders.v1.create",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("serve --check: %v\nwant it to contain %q", err, want)
		}
	}

	// A policy that does not compile is reported with the catalog's problems.
	if err := os.WriteFile(filepath.Join(policyDir, "broken.rego"), []byte("package sqlgate.broken\n\nallow if {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = check()
	for _, want := range []string{`unknown keyword "maxLenght"`, "broken.rego"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("serve --check: %v\nwant it to contain %q", err, want)
		}
	}
}
