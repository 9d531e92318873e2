// Package secretfile reads files that hold secrets (keys, seeds, client
// secrets, connection strings), refusing one that users other than its
// owner and group may access. A Kubernetes Secret mounted 0440 with the
// pod's fsGroup passes; a file left 0644 does not.
package secretfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// exposed reports the error for a file of mode perm, or nil when only its
// owner and group may access it. what says what the file holds ("a
// secret", "a seed").
func exposed(path string, perm fs.FileMode, what string) error {
	if perm&0o007 == 0 {
		return nil
	}
	return fmt.Errorf("%s is accessible to other users (mode %04o): it holds %s; run chmod o-rwx %s (or chmod 0600)", path, perm, what, path)
}

// Check refuses path when other users may access it. A file that does not
// exist, or cannot be examined, is not refused here: whoever reads it
// reports that.
func Check(path, what string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil //nolint:nilerr // missing or unreadable: reported by whoever reads it
	}
	return exposed(path, fi.Mode().Perm(), what)
}

// Read reads path, refusing it when other users may access it. The mode is
// checked on the opened file, so a file replaced in between is not read
// unchecked.
func Read(path, what string) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := exposed(path, fi.Mode().Perm(), what); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}
