package golden_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sqlgate/sqlgate/internal/golden"
)

// recorder notes failures instead of failing the test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

// TestCompare: equal output passes, different output and a missing golden
// file fail.
func TestCompare(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.golden")
	if err := os.WriteFile(path, []byte("SELECT 1;\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, got string
		fail      bool
	}{
		{path, "SELECT 1;\n", false},
		{path, "SELECT 2;\n", true},
		{filepath.Join(t.TempDir(), "missing.golden"), "SELECT 1;\n", true},
	} {
		r := &recorder{TB: t}
		golden.Compare(r, tc.path, []byte(tc.got))
		if r.failed != tc.fail {
			t.Errorf("Compare(%q) failed = %v, want %v", tc.got, r.failed, tc.fail)
		}
	}
}
