package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOutputIntoFIFO: an output path that is a FIFO (like /dev/stdout or
// /dev/null, a file that is not regular) is written in place, not replaced
// by a renamed temporary file: `sqlgate creds nats -o /dev/null` run as root
// used to turn /dev/null into a regular file.
func TestOutputIntoFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	got := readFIFO(t, fifo)
	if err := writeFileAtomic(fifo, []byte("creds")); err != nil {
		t.Fatal(err)
	}
	// Checked before waiting for the reader: had the FIFO been replaced,
	// the reader would wait for a writer forever.
	fi, err := os.Lstat(fifo)
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("after the write %s is %v (%v), want the FIFO still", fifo, fi.Mode(), err)
	}
	if s := <-got; s != "creds" {
		t.Errorf("reader got %q, want %q", s, "creds")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestOutputRegularFile: a regular destination is replaced whole, with the
// permissions asked for; a failed write leaves the earlier file and no
// temporary file; a directory is refused.
func TestOutputRegularFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.creds")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(b) != "new" || fi.Mode().Perm() != 0o600 {
		t.Errorf("file = %q mode %04o, want \"new\" 0600", b, fi.Mode().Perm())
	}

	o, err := createOutput(path, ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = o.WriteString("partial")
	o.discard() // the run failed
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("after a failed run the file holds %q, want the earlier \"new\"", b)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	if _, err := createOutput(dir, ".tmp-*"); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("createOutput(directory) = %v, want refused", err)
	}
}

// TestOutputThroughSymlink: a link to a regular file is followed (the file
// is replaced whole, the link stays a link); a link that cannot be resolved
// (like /dev/stdout -> /proc/self/fd/1 -> "pipe:[…]") is written through in
// place, never replaced by a regular file.
func TestOutputThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "real.creds")
	if err := os.WriteFile(file, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.creds")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(link, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); string(b) != "new" {
		t.Errorf("the link's target holds %q, want \"new\"", b)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link is now %v (%v), want still a link", fi.Mode(), err)
	}

	// A link to a FIFO reached through a link (as /dev/stdout is).
	fifo := filepath.Join(dir, "pipe")
	got := readFIFO(t, fifo)
	stdout := filepath.Join(dir, "stdout")
	if err := os.Symlink(fifo, stdout); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(stdout, []byte("creds")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(stdout); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link to the FIFO is now %v (%v), want still a link", fi.Mode(), err)
	}
	if s := <-got; s != "creds" {
		t.Errorf("reader got %q, want %q", s, "creds")
	}
}

// readFIFO makes a FIFO at path and reads it to its end in the background:
// the channel gets what was written (or why it could not be opened).
func readFIFO(t *testing.T, path string) <-chan string {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	got := make(chan string, 1)
	go func() {
		f, err := os.Open(path)
		if err != nil {
			got <- "open: " + err.Error()
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		got <- string(b)
	}()
	return got
}
