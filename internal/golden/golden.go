// Package golden compares test output with golden files, so that a change
// of what sqlgate sends or writes (SQL, canonical records, claim mappings)
// shows in review. `go test -update` rewrites the files. Only tests import
// it: it registers the -update flag.
package golden

import (
	"flag"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// Compare checks got against the golden file at path; with -update it
// writes got there first.
func Compare(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil { //nolint:gosec // G306: test data, not secret
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path) //nolint:gosec // G304: the test names its golden file
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-golden +got; run go test -update and review):\n%s", path, diff)
	}
}
