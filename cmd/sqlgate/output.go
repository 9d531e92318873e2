package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// output is where a command writes a file: normally a temporary file beside
// the destination, renamed over it by commit, so that a failed run leaves
// neither a partial file nor a damaged earlier one. A destination that
// exists and is not a regular file (a device such as /dev/null or
// /dev/stdout, a FIFO) is written in place instead: renaming over it would
// replace the device with a regular file (as root, /dev/null itself).
type output struct {
	*os.File
	path string
	tmp  bool
}

// createOutput opens the output for path; pattern names the temporary file
// (os.CreateTemp). A directory is refused. A symbolic link is followed: to a
// regular file, the temporary file goes beside that file and replaces it
// (the link stays); to anything else, or to what cannot be resolved (the
// /proc/self/fd/1 behind /dev/stdout names a pipe), the output is written
// through the link in place.
func createOutput(path, pattern string) (*output, error) {
	target := path
	lfi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return tempOutput(path, pattern)
	case err != nil:
		return nil, fmt.Errorf("write %s: %w", path, err)
	case lfi.Mode()&fs.ModeSymlink != 0:
		resolved, err := filepath.EvalSymlinks(path)
		if err != nil {
			return inPlaceOutput(path)
		}
		target = resolved
	}
	fi, err := os.Stat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return tempOutput(target, pattern)
	case err != nil:
		return nil, fmt.Errorf("write %s: %w", path, err)
	case fi.IsDir():
		return nil, fmt.Errorf("write %s: it is a directory", path)
	case !fi.Mode().IsRegular():
		return inPlaceOutput(path)
	}
	return tempOutput(target, pattern)
}

// tempOutput is an output written beside path and renamed over it.
func tempOutput(path, pattern string) (*output, error) {
	f, err := os.CreateTemp(filepath.Dir(path), pattern)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &output{File: f, path: path, tmp: true}, nil
}

// inPlaceOutput is an output written into path itself.
func inPlaceOutput(path string) (*output, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &output{File: f, path: path}, nil
}

// commit closes the output and, for a temporary file, renames it over the
// destination.
func (o *output) commit() error {
	if err := o.Close(); err != nil {
		o.discard()
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	if o.tmp {
		if err := os.Rename(o.Name(), o.path); err != nil {
			o.discard()
			return fmt.Errorf("write %s: %w", o.path, err)
		}
	}
	return nil
}

// stage writes data into the output, mode 0600, and closes it: a
// temporary file is not put in place yet (rename does), an output written
// in place is written for good.
func (o *output) stage(data []byte) error {
	var err error
	if o.tmp {
		err = o.Chmod(0o600)
	}
	if err == nil {
		_, err = o.Write(data)
	}
	if err == nil && o.tmp {
		err = o.Sync()
	}
	if cerr := o.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	return nil
}

// rename puts an output stage wrote in place: a temporary file is renamed
// over its destination.
func (o *output) rename() error {
	if !o.tmp {
		return nil
	}
	if err := os.Rename(o.Name(), o.path); err != nil {
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	return nil
}

// discard closes the output and removes a temporary file; after commit it
// does nothing.
func (o *output) discard() {
	_ = o.Close()
	if o.tmp {
		_ = os.Remove(o.Name())
	}
}
