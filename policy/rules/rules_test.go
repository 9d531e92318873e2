package rules_test

import (
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

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
