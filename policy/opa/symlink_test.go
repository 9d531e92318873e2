package opa_test

import (
	"bytes"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sqlgate/sqlgate/policy/opa"
)

// flatPolicy is a small policy without subdirectories, with a test, as a
// ConfigMap of plain keys holds it.
var flatPolicy = fstest.MapFS{
	"call.rego": {Data: []byte(`# METADATA
# title: calls
package sqlgate.call

default allow := false

allow if input.params.amount <= data.limit
`)},
	"call_test.rego": {Data: []byte(`package sqlgate.call_test

import data.sqlgate.call

test_within if call.allow with input as {"params": {"amount": 1}}
`)},
	"data.yaml": {Data: []byte("limit: 1000\n")},
}

// writeConfigMap lays out files as the kubelet mounts a ConfigMap volume at
// dir, or updates the mount: the files in a new timestamped directory,
// ..data re-pointed to it atomically, and each top-level name (a file, or the
// first directory of a nested path) a symbolic link through ..data.
func writeConfigMap(t *testing.T, dir, stamp string, files fstest.MapFS) {
	t.Helper()
	stamped := filepath.Join(dir, ".."+stamp)
	if err := os.CopyFS(stamped, files); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(filepath.Base(stamped), filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		top := strings.Split(name, "/")[0]
		link := filepath.Join(dir, top)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(path.Join("..data", top), link); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConfigMapVolume: a policy mounted from a ConfigMap is served, checked
// and tested as the same set of files; the kubelet's ..data link and
// timestamped directory are not loaded a second and third time (`policy
// test` failed on them, "package annotation redeclared").
func TestConfigMapVolume(t *testing.T) {
	dir := t.TempDir()
	writeConfigMap(t, dir, "2026_11_27_12_00_00.000000001", flatPolicy)

	e, err := opa.Open(t.Context(), opa.Config{EvalTimeout: testEvalTimeout, Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.Status().Modules, " "); got != "call.rego" {
		t.Errorf("served modules %q, want call.rego", got)
	}
	if errs := opa.Check(t.Context(), dir, nil); len(errs) != 0 {
		t.Errorf("Check = %v", errs)
	}
	var out bytes.Buffer
	if passed, err := opa.Test(t.Context(), dir, opa.TestOptions{Verbose: true}, &out); !passed || err != nil || !strings.Contains(out.String(), "PASS: 1/1") {
		t.Errorf("Test = %v, %v:\n%s", passed, err, out.String())
	}
}
