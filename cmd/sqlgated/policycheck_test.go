package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
	"github.com/sqlgate/sqlgate/web"
)

// TestServeCheckRefusesPolicyTheCatalogLacks: --check (the chart's init
// container) checks the policy against the catalog it loaded, as serve
// does: a limit on a parameter the route does not have, which would never be
// enforced, is refused; a granted route the catalog lacks (the example
// catalog has no orders.v1.cancel) grants nothing and is a warning.
func TestServeCheckRefusesPolicyTheCatalogLacks(t *testing.T) {
	config, policyDir := checkableExample(t)
	var out strings.Builder
	if err := run(t.Context(), []string{"serve", "--config", config, "--check"}, &out, &out); err != nil {
		t.Fatalf("serve --check on the example: %v\n%s", err, out.String())
	}
	want := `warning: policy: data.sqlgate.config.routes["orders.v1.cancel"]: route orders.v1.cancel is not in the route catalog: the grant has no effect`
	if !strings.Contains(out.String(), want) {
		t.Errorf("serve --check printed %q, want the warning %q", out.String(), want)
	}

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
	out.Reset()
	err = run(t.Context(), []string{"serve", "--config", config, "--check"}, &out, &out)
	if !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), "amout is not a parameter of orders.v1.create") {
		t.Errorf("serve --check with a misspelt limit parameter: err = %v, want the parameter refused", err)
	}
}

// TestServeCheckRefusesMisspeltSubscription: a `sub` constant that is not an
// emit subject of the catalog granted nothing (the broker keeps only the
// catalog's emit subjects) and passed --check; it is refused like a
// misspelt route. The library's event grants the example catalog does not
// emit are warnings, as granted routes are.
func TestServeCheckRefusesMisspeltSubscription(t *testing.T) {
	config, policyDir := checkableExample(t)
	var out strings.Builder
	if err := run(t.Context(), []string{"serve", "--config", config, "--check"}, &out, &out); err != nil {
		t.Fatalf("serve --check on the example: %v\n%s", err, out.String())
	}
	want := `warning: policy: data.sqlgate.config.events["orders.v1.cancelled"]: event orders.v1.cancelled is not an emit subject of the route catalog: the grant has no effect`
	if !strings.Contains(out.String(), want) {
		t.Errorf("serve --check printed %q, want the warning %q", out.String(), want)
	}
	feeds := "package sqlgate.nats\n\nsub contains \"orders.v1.craeted\"\n"
	if err := os.WriteFile(filepath.Join(policyDir, "sqlgate", "feeds.rego"), []byte(feeds), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(t.Context(), []string{"serve", "--config", config, "--check"}, &out, &out)
	if !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), "orders.v1.craeted is not an emit subject of the route catalog (its emit subjects: orders.v1.created)") {
		t.Errorf("serve --check with a misspelt sub: err = %v, want the subject refused", err)
	}
}

// TestPolicyRoutes: the daemon hands the engine the subjects and parameter
// names of its catalog, as `sqlgate policy check --routes` reads them.
func TestPolicyRoutes(t *testing.T) {
	catalog, err := route.Parse(demoRoutes)
	if err != nil {
		t.Fatal(err)
	}
	want, err := opa.RoutesFromCatalog(demoRoutes)
	if err != nil {
		t.Fatal(err)
	}
	got := policyRoutes(catalog)
	slices.SortFunc(want, func(a, b opa.RouteRef) int { return strings.Compare(a.Subject, b.Subject) })
	slices.SortFunc(got, func(a, b opa.RouteRef) int { return strings.Compare(a.Subject, b.Subject) })
	if !slices.EqualFunc(got, want, func(a, b opa.RouteRef) bool {
		return a.Subject == b.Subject && slices.Equal(a.Params, b.Params) && a.Emit == b.Emit
	}) {
		t.Errorf("policyRoutes = %+v, want %+v", got, want)
	}
}

// TestPolicyEvalRefusesInvalidInput: POST /api/v1/policy/eval of an input
// that is not an input document is not decided: a 400 naming the field, not
// a deny without a decision id (which the CLI printed with exit 0).
func TestPolicyEvalRefusesInvalidInput(t *testing.T) {
	engine, err := opa.Open(t.Context(), opa.Config{FS: rules.FS})
	if err != nil {
		t.Fatal(err)
	}
	p := &policyService{engine: engine}
	d, _, err := p.Eval(context.Background(), policy.Call, []byte(`{"principal":{}}`), false)
	var he *web.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusBadRequest || !strings.Contains(he.Msg, "invalid input document") || d.ID != "" {
		t.Errorf("Eval(invalid input) = %+v, %v; want a 400", d, err)
	}
	in, err := json.Marshal(policy.Input{
		Principal: policy.Principal{Issuer: "https://idp", Subject: "s", Groups: []string{"support"}, Roles: []string{}},
		Route:     &policy.Route{Subject: "orders.v1.cancel", Kind: "statement", Target: "cancel_order", Database: "orders", Mode: "sync", Tags: []string{}},
		Params:    map[string]any{"id": 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, _, err := p.Eval(context.Background(), policy.Call, in, false); err != nil || d.Allow || d.ID == "" {
		t.Errorf("Eval(support cancels) = %+v, %v; want a deny with a decision id", d, err)
	}
}
