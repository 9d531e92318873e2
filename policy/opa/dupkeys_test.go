package opa_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/policy/opa"
)

// TestDuplicateKeysAreRefused: OPA's loader keeps the last of two equal keys
// without a word, so a second block for a route (or `deny: []` after the real
// deny list) would silently drop limits, redactions or denials. Every reader
// of a policy directory refuses such a data file, naming file and line: the
// engine (a reload keeps the last good policy), Check, Test and Eval.
func TestDuplicateKeysAreRefused(t *testing.T) {
	const denyPat = "deny:\n      - principals: [pat@example.com]\n        reason: under investigation\n    deny: []"
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"yaml_route_block_twice", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, "data.yaml"), "      orders.v1.get:\n",
				"      orders.v1.create:\n        groups: [sales]\n      orders.v1.get:\n")
		}, `data.yaml:49: key "orders.v1.create" of data.sqlgate.config.routes is defined twice (first at line 36)`},
		{"yaml_deny_list_emptied", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, "data.yaml"), "deny: []", denyPat)
		}, `data.yaml:109: key "deny" of data.sqlgate.config is defined twice (first at line 106)`},
		{"yaml_deep", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, "data.yaml"), "            max: 1000\n", "            max: 1000\n            max: 100000\n")
		}, `data.yaml:44: key "max" of data.sqlgate.config.routes["orders.v1.create"].limits[0] is defined twice (first at line 43)`},
		{"yaml_number_and_string_key", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "extra", "data.yml"), "codes:\n  1: one\n  \"1\": uno\n")
		}, `extra/data.yml:3: key "1" of data.extra.codes is defined twice (first at line 2)`},
		{"yaml_later_document", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "extra", "data.yaml"), "a: 1\n---\nb: 1\nb: 2\n")
		}, `extra/data.yaml:4: key "b" of data.extra is defined twice (first at line 3)`},
		{"json_top", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "extra", "data.json"), "{\"a\": 1,\n \"a\": 2}\n")
		}, `extra/data.json:2: key "a" of data.extra is defined twice (first at line 1)`},
		{"json_nested_escaped", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "extra", "data.json"), "{\"routes\": [\n  {\"x\": {}, \"deny\": [\"pat\"],\n   \"d\\u0065ny\": []}\n]}\n")
		}, `extra/data.json:3: key "deny" of data.extra.routes[0] is defined twice (first at line 2)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyRules(t)
			e, err := opa.Open(t.Context(), opa.Config{EvalTimeout: testEvalTimeout, Dir: dir, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			good := e.Revision()
			tc.setup(t, dir)

			err = e.Reload(t.Context())
			if !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Reload = %v\nwant ErrInvalidPolicy with %q", err, tc.want)
			}
			if e.Revision() != good {
				t.Errorf("revision %s after the refused reload, want the last good %s", e.Revision(), good)
			}
			if errs := opa.Check(t.Context(), dir, nil); len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("Check = %v\nwant only %q", errs, tc.want)
			}
			if _, err := opa.Test(t.Context(), dir, opa.TestOptions{}, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Test = %v\nwant %q", err, tc.want)
			}
		})
	}
}

// TestDuplicateCheckKeepsOtherErrors: a data file that does not parse is
// reported with OPA's message, as before the duplicate check; a merge key
// that is overridden is YAML, not a duplicate.
func TestDuplicateCheckKeepsOtherErrors(t *testing.T) {
	dir := copyRules(t)
	writeFile(t, filepath.Join(dir, "extra", "data.yaml"), "base: &base\n  a: 1\n  b: 2\nderived:\n  <<: *base\n  b: 3\n")
	writeFile(t, filepath.Join(dir, "extra", "more", "data.json"), `{"a": [1, {"b": {}}, []], "b": {"a": 1}}`)
	if errs := opa.Check(t.Context(), dir, nil); len(errs) != 0 {
		t.Fatalf("Check = %v, want no problem", errs)
	}
	writeFile(t, filepath.Join(dir, "extra", "more", "data.json"), `{"a": 1,}`)
	errs := opa.Check(t.Context(), dir, nil)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "extra/more/data.json: invalid character '}'") {
		t.Errorf("Check = %v, want OPA's syntax error", errs)
	}
	if err := os.Remove(filepath.Join(dir, "extra", "more", "data.json")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "extra", "data.yaml"), "a: [1\n")
	errs = opa.Check(t.Context(), dir, nil)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "extra/data.yaml: error converting YAML to JSON") {
		t.Errorf("Check = %v, want OPA's syntax error", errs)
	}
}
