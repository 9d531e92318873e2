package secretfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/internal/secretfile"
)

// TestModes: owner- and group-only files are read; a file others may read,
// write or run is refused naming the file and the fix; a missing file is
// Read's error and not Check's business.
func TestModes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode    os.FileMode
		refused bool
	}{
		{0o600, false}, {0o440, false}, {0o640, false}, {0o644, true}, {0o604, true}, {0o602, true}, {0o601, true},
	} {
		path := filepath.Join(dir, tc.mode.String())
		if err := os.WriteFile(path, []byte("s3cret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		b, err := secretfile.Read(path, "a seed")
		cerr := secretfile.Check(path, "a seed")
		switch {
		case tc.refused && (err == nil || cerr == nil):
			t.Errorf("mode %04o: Read = %q, %v; Check = %v; want both refused", tc.mode, b, err, cerr)
		case tc.refused && (!strings.Contains(err.Error(), "it holds a seed") || !strings.Contains(err.Error(), "chmod o-rwx "+path)):
			t.Errorf("mode %04o: error %q does not say what the file holds and how to fix it", tc.mode, err)
		case tc.refused && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("mode %04o: error quotes the secret", tc.mode)
		case !tc.refused && (err != nil || cerr != nil || string(b) != "s3cret"):
			t.Errorf("mode %04o: Read = %q, %v; Check = %v; want the content", tc.mode, b, err, cerr)
		}
	}
	missing := filepath.Join(dir, "missing")
	if _, err := secretfile.Read(missing, "a secret"); !os.IsNotExist(err) {
		t.Errorf("Read of a missing file = %v, want not exist", err)
	}
	if err := secretfile.Check(missing, "a secret"); err != nil {
		t.Errorf("Check of a missing file = %v, want nil", err)
	}
}
