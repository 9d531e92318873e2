package rules_test

import (
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"

	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// TestRego runs every *_test.rego of the library through OPA's tester, as
// `sqlgate policy test policy/rules` and `opa test policy/rules` do.
func TestRego(t *testing.T) {
	passed, err := opa.Test(t.Context(), ".", opa.TestOptions{Verbose: testing.Verbose(), FailOnEmpty: true}, t.Output())
	if err != nil {
		t.Fatalf("Test: %v", err)
	}
	if !passed {
		t.Fatal("Rego tests failed (see the output above)")
	}
}

// TestFormatted keeps the modules as `opa fmt` writes them.
func TestFormatted(t *testing.T) {
	err := fs.WalkDir(rules.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".rego" {
			return err
		}
		src, err := fs.ReadFile(rules.FS, p)
		if err != nil {
			return err
		}
		got, err := format.SourceWithOpts(p, src, format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			return err
		}
		if string(got) != string(src) {
			t.Errorf("%s is not formatted: run opa fmt -w policy/rules", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestEmbedsEveryPolicyFile: FS holds every policy file of the directory, so
// that `sqlgated dev` copies the library whole.
func TestEmbedsEveryPolicyFile(t *testing.T) {
	list := func(fsys fs.FS) []string {
		var files []string
		err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && slices.Contains([]string{".rego", ".json", ".yaml", ".yml"}, path.Ext(p)) {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	disk, embedded := list(os.DirFS(".")), list(rules.FS)
	if !slices.Equal(disk, embedded) {
		t.Errorf("embedded files %v, want the directory's %v", embedded, disk)
	}
	if !slices.Contains(embedded, "data.yaml") || !slices.ContainsFunc(embedded, func(p string) bool { return strings.HasSuffix(p, "_test.rego") }) {
		t.Errorf("embedded files %v lack the data or the tests", embedded)
	}
}

// TestServes: the engine serves the library, with every entry point.
func TestServes(t *testing.T) {
	e, err := opa.Open(t.Context(), opa.Config{FS: rules.FS})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Status().Entries; !slices.Equal(got, policy.Entries) {
		t.Errorf("entries %v, want %v", got, policy.Entries)
	}
}

// openWith serves the library with dataYAML as its data.yaml, so that the
// tests below keep passing whatever the demo data.yaml holds.
func openWith(t *testing.T, dataYAML string) (*opa.Engine, error) {
	t.Helper()
	fsys := fstest.MapFS{"data.yaml": {Data: []byte(dataYAML)}}
	err := fs.WalkDir(rules.FS, "sqlgate", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := fs.ReadFile(rules.FS, p)
		fsys[p] = &fstest.MapFile{Data: src}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e, err := opa.Open(t.Context(), opa.Config{FS: fsys})
	if e != nil {
		t.Cleanup(func() { e.Close() })
	}
	return e, err
}

// call is pat (subject u-1) in groups calling route at Monday 2026-01-05
// 10:00 UTC.
func call(email string, groups []string, route string, params map[string]any) *policy.Input {
	return &policy.Input{
		Principal: policy.Principal{
			Issuer: "https://idp.example.com", Subject: "u-1", Email: email,
			Groups: groups, Roles: []string{}, MFA: true, AuthTime: 1767603600,
		},
		Route:   &policy.Route{Subject: route, Kind: "statement", Target: "t", Database: "orders", Mode: "sync", Tags: []string{}},
		Params:  params,
		Request: &policy.Request{CorrelationID: "c-1", Time: "2026-01-05T10:00:00Z", TimeNS: 1767607200000000000, Transport: "nats"},
	}
}

// TestReasonsQuoteNoParameterValue: the broker writes a decision's reasons
// verbatim into its signed audit record, where redact_params does not reach
// them, so a deny for a broken limit names the parameter and the bound but
// not the value (an amount redacted from the record's params was in its
// reasons: "amount 4321.5 exceeds the sales limit of 1000").
func TestReasonsQuoteNoParameterValue(t *testing.T) {
	e, err := openWith(t, `sqlgate:
  config:
    routes:
      orders.v1.create:
        groups: [sales]
        limits:
          - {group: sales, param: amount, min: 0, max: 1000}
        redact_params: [note, amount]
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, amount := range []any{json.Number("5000"), json.Number("-5000"), json.Number("5000.5"), "5000"} {
		d, err := e.Decide(t.Context(), policy.Call, call("pat@example.com", []string{"sales"}, "orders.v1.create", map[string]any{"amount": amount, "note": "rush"}))
		if err != nil || d.Allow || len(d.Reasons) == 0 || !slices.Contains(d.Obligations.RedactParams, "amount") {
			t.Fatalf("amount %#v: decision %+v, %v; want a deny with reasons that redacts amount", amount, d, err)
		}
		for _, r := range d.Reasons {
			if strings.Contains(r, "5000") {
				t.Errorf("amount %#v: reason %q quotes the redacted value", amount, r)
			}
		}
	}
}

// TestDenyListMatchesSubjects: a deny-list entry names a principal by its
// subject, which stays when the e-mail (preferred_username, upn, an
// unverified email claim) is changed; an entry naming an e-mail address,
// which a rename would escape, is refused at load.
func TestDenyListMatchesSubjects(t *testing.T) {
	const config = `sqlgate:
  config:
    routes:
      orders.v1.get: {groups: [sales]}
    sql_credentials:
      - {group: sales, database: orders, roles: [reader], max_ttl: 1h}
    deny:
      - principals: [%s]
        reason: account under investigation
`
	e, err := openWith(t, strings.Replace(config, "%s", "u-1", 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"pat@example.com", "pat.renamed@example.com", ""} {
		in := call(email, []string{"sales"}, "orders.v1.get", map[string]any{"id": json.Number("1")})
		d, err := e.Decide(t.Context(), policy.Call, in)
		if err != nil || d.Allow || !slices.Equal(d.Reasons, []string{"account under investigation"}) {
			t.Errorf("call with e-mail %q: decision %+v, %v; want denied by the deny list", email, d, err)
		}
		sql := &policy.Input{Principal: in.Principal, Request: in.Request, Credential: &policy.Credential{Type: "sql", Database: "orders", Role: "reader"}}
		if d, err := e.Decide(t.Context(), policy.SQLCredentials, sql); err != nil || d.Allow {
			t.Errorf("SQL login with e-mail %q: decision %+v, %v; want denied by the deny list", email, d, err)
		}
	}

	_, err = openWith(t, strings.Replace(config, "%s", "pat@example.com", 1))
	if err == nil || !strings.Contains(err.Error(), "deny[0].principals[0]: pat@example.com looks like an e-mail address") {
		t.Errorf("Open with an e-mail deny entry: %v, want it refused", err)
	}
}
