package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// privateSQLiteFile makes the SQLite database at path (created when
// missing) inaccessible to other users before SQLite opens it: a new file
// is created 0600, whatever the umask (SQLite would create it 0644 under
// the usual umask 022); an existing one, and its -wal and -shm files, lose
// the access bits of other users (the owner's and group's are left as the
// operator set them). SQLite creates -wal and -shm with the database
// file's mode, so they follow.
func privateSQLiteFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		err = f.Chmod(0o600) // whatever the umask left
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
		return nil
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("create %s: %w", path, err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := restrictOthers(p); err != nil && (p == path || !errors.Is(err, fs.ErrNotExist)) {
			return err
		}
	}
	return nil
}

// restrictOthers removes other users' access bits from a file.
func restrictOthers(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o007 != 0 {
		if err := f.Chmod(perm &^ 0o007); err != nil {
			return err
		}
	}
	return nil
}
