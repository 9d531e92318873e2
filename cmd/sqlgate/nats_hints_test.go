package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorruptNATSInfoSaysWhatToDo: a nats.json that does not parse fails
// call with the file and what to run (creds nats writes a new one), as a
// corrupt state.json does.
func TestCorruptNATSInfoSaysWhatToDo(t *testing.T) {
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	path := filepath.Join(c.home, natsInfoFile)
	if err := os.WriteFile(path, []byte(`{"creds": "/home/alice/.config/sqlg`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := c.run("", "call", "orders.v1.get", `{"id":1}`)
	if code != 1 || !strings.Contains(errOut, path) || !strings.HasSuffix(strings.TrimSpace(errOut), ": run sqlgate creds nats") {
		t.Errorf("call with a corrupt nats.json: exit %d, %q; want an error naming the file and ending with \": run sqlgate creds nats\"", code, errOut)
	}
}
