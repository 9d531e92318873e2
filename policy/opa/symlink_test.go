package opa_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
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

// moveToLink moves dir/rel to target (outside dir) and leaves a symbolic
// link to it in its place.
func moveToLink(t *testing.T, dir, rel, target string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, rel), target); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, rel)); err != nil {
		t.Fatal(err)
	}
}

// testCount runs Test on dir and returns its summary line.
func testCount(t *testing.T, dir string) string {
	t.Helper()
	var out bytes.Buffer
	passed, err := opa.Test(t.Context(), dir, opa.TestOptions{}, &out)
	if err != nil {
		t.Fatalf("Test(%s) = %v", dir, err)
	}
	t.Logf("Test(%s): passed %v\n%s", dir, passed, out.String())
	return strings.TrimSpace(out.String())
}

// TestSymlinkedDirectoryIsServed: a directory reached through a symbolic
// link (sqlgate/shared -> a directory elsewhere, holding lint.rego) is
// served, checked and tested alike. The engine skipped it while `policy
// test` followed it, so the tests ran on a policy with lint and the engine
// served one without.
func TestSymlinkedDirectoryIsServed(t *testing.T) {
	dir := copyRules(t)
	shared := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"lint.rego", "lint_test.rego"} {
		if err := os.Rename(filepath.Join(dir, "sqlgate", f), filepath.Join(shared, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(shared, filepath.Join(dir, "sqlgate", "shared")); err != nil {
		t.Fatal(err)
	}
	if got, want := testCount(t, dir), testCount(t, rulesDir); got != want {
		t.Errorf("Test through the link: %q, want %q as without it", got, want)
	}

	// A configuration the lint refuses is refused through the link too.
	edit(t, filepath.Join(dir, "data.yaml"), "max_rows: 100", "max_rows: many")
	const problem = "routes.orders.v1.get.max_rows: must be a whole number"
	if _, err := opa.Open(t.Context(), opa.Config{Dir: dir, Logger: testLogger(t)}); err == nil || !strings.Contains(err.Error(), problem) {
		t.Errorf("Open = %v, want the lint problem", err)
	}
	if errs := opa.Check(t.Context(), dir, nil); len(errs) != 1 || !strings.Contains(errs[0].Error(), problem) {
		t.Errorf("Check = %v, want the lint problem", errs)
	}
}

// TestBrokenSymlinksAreRefused: a link that does not resolve, or that leads
// back into the directory it is in, is an error for every reader (a cycle
// used to be skipped by the engine and walked until the path was too long by
// `policy test`).
func TestBrokenSymlinksAreRefused(t *testing.T) {
	for _, tc := range []struct {
		name, target, want string
	}{
		{"cycle", "..", "sqlgate/loop: symbolic link cycle"},
		{"dangling", "nowhere", "sqlgate/loop: symbolic link that does not resolve"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyRules(t)
			if err := os.Symlink(tc.target, filepath.Join(dir, "sqlgate", "loop")); err != nil {
				t.Fatal(err)
			}
			if _, err := opa.Open(t.Context(), opa.Config{Dir: dir, Logger: testLogger(t)}); !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open = %v, want ErrInvalidPolicy with %q", err, tc.want)
			}
			if errs := opa.Check(t.Context(), dir, nil); len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Errorf("Check = %v, want %q", errs, tc.want)
			}
			if _, err := opa.Test(t.Context(), dir, opa.TestOptions{}, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Test = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestWatchFollowsSymlinks: edits behind symbolic links are loaded: in the
// file a link points to, in a directory a link points to, and behind a link
// re-pointed outside the tree (which no watched directory reports; the
// periodic re-read finds it).
func TestWatchFollowsSymlinks(t *testing.T) {
	dir := copyRules(t)
	outside := t.TempDir()
	// data.yaml -> config/data.yaml -> releases/v1.yaml: only releases/,
	// where the file is, is watched.
	releases := filepath.Join(outside, "releases")
	moveToLink(t, dir, "data.yaml", filepath.Join(releases, "v1.yaml"))
	if err := os.Mkdir(filepath.Join(outside, "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(releases, "v1.yaml"), filepath.Join(outside, "config", "data.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "data.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "config", "data.yaml"), filepath.Join(dir, "data.yaml")); err != nil {
		t.Fatal(err)
	}
	moveToLink(t, dir, "sqlgate/lib", filepath.Join(outside, "lib"))
	v2 := filepath.Join(releases, "v2.yaml") // the next release: as v1 is now
	writeFile(t, v2, string(readFile(t, filepath.Join(releases, "v1.yaml"))))
	e := openWatching(t, dir)
	if allows1500(t, e) {
		t.Fatal("1500 allowed before any edit")
	}

	edit(t, filepath.Join(releases, "v1.yaml"), "max: 1000", "max: 2000")
	eventually(t, "an edit of a linked file is loaded", func() bool { return allows1500(t, e) })

	writeFile(t, filepath.Join(outside, "lib", "extra.rego"), "package sqlgate.lib.extra\n\nx := 1\n")
	eventually(t, "a module added to a linked directory is loaded", func() bool {
		return slices.Contains(e.Status().Modules, "sqlgate/lib/extra.rego")
	})

	// Re-point config/data.yaml, a link outside the tree that nothing watches.
	tmp := filepath.Join(outside, "config", "tmp.yaml")
	if err := os.Symlink(v2, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(outside, "config", "data.yaml")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a link re-pointed outside the tree is loaded", func() bool { return !allows1500(t, e) })
}

// TestWatchConfigMapVolume: a ConfigMap mount with nested paths (sqlgate ->
// ..data/sqlgate) is served whole, and an update (a new timestamped
// directory, ..data re-pointed, the old one removed) is loaded.
func TestWatchConfigMapVolume(t *testing.T) {
	files := fstest.MapFS{}
	err := fs.WalkDir(rules.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(rules.FS, p)
		files[p] = &fstest.MapFile{Data: b, Mode: 0o644}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeConfigMap(t, dir, "2026_11_27_12_00_00.000000001", files)
	e := openWatching(t, dir)
	library := openFS(t, rules.FS)
	if got, want := e.Status().Modules, library.Status().Modules; !slices.Equal(got, want) {
		t.Errorf("modules served from the ConfigMap %v, want the library's %v", got, want)
	}
	if got, want := testCount(t, dir), testCount(t, rulesDir); got != want {
		t.Errorf("Test of the ConfigMap: %q, want %q", got, want)
	}

	data := string(files["data.yaml"].Data)
	files["data.yaml"] = &fstest.MapFile{Data: []byte(strings.Replace(data, "max: 1000", "max: 2000", 1)), Mode: 0o644}
	writeConfigMap(t, dir, "2026_11_27_12_05_00.000000002", files)
	eventually(t, "the updated ConfigMap is loaded", func() bool { return allows1500(t, e) && e.Status().LastError == nil })
}
