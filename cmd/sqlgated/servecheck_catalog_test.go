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
