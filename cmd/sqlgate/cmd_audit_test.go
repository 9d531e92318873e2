package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditExportKeepsFileOnFailure checks that an export the broker
// refuses leaves an earlier bundle at -o as it was, and leaves no temporary
// file behind.
func TestAuditExportKeepsFileOnFailure(t *testing.T) {
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":{"code":"forbidden","message":"auditors only"}}`))
	}))
	dir := t.TempDir()
	bundle := filepath.Join(dir, "log.bundle")
	const earlier = "an earlier, verified export\n"
	if err := os.WriteFile(bundle, []byte(earlier), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := c.run("", "audit", "export", "-o", bundle)
	if code != 1 || !strings.Contains(errOut, "403") {
		t.Errorf("refused export: exit %d, %s; want 1 and the broker's refusal", code, errOut)
	}
	if got, err := os.ReadFile(bundle); err != nil || string(got) != earlier {
		t.Errorf("after a refused export, %s = %q, %v; want the earlier export untouched", bundle, got, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("after a refused export, the directory holds %d entries, want only the earlier bundle", len(entries))
	}
}
