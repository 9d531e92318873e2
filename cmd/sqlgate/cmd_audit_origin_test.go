package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

const (
	originA = "sqlgate.test/a"
	originB = "sqlgate.test/b"
)

// newestCheckpoint returns the note of the largest checkpoint of origin.
func newestCheckpoint(t *testing.T, store *audittest.Store, origin string) []byte {
	t.Helper()
	var newest []byte
	var size int64 = -1
	err := store.Checkpoints(t.Context(), origin, func(n []byte) error {
		c, err := audit.ParseCheckpoint(n)
		if err != nil {
			return err
		}
		if c.Size > size {
			size, newest = c.Size, bytes.Clone(n)
		}
		return nil
	})
	if err != nil || newest == nil {
		t.Fatalf("checkpoints of %s: %v", origin, err)
	}
	return newest
}

// writeFiles writes files (slash paths) under a new directory.
func writeFiles(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestAuditVerifyTrustedCheckpoints: --trusted-checkpoint never checks
// nothing in silence. A directory without checkpoints is an error; the
// checkpoints/N.note files of an unpacked evidence archive are trusted
// copies that catch a rollback; with --origin, copies of other origins only
// are an error; an origin no copy covers gets a warning.
func TestAuditVerifyTrustedCheckpoints(t *testing.T) {
	bundle, store, keys := twoInstanceBundle(t, 0)
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	both := []string{"--key", keys[originA], "--key", keys[originB]}
	verify := func(args ...string) (int, string, string) {
		return c.run("", append([]string{"audit", "verify", "--bundle", bundle}, args...)...)
	}

	empty := t.TempDir()
	if code, out, errOut := verify(append(both, "--trusted-checkpoint", empty)...); code != 1 || out != "" || !strings.Contains(errOut, "no checkpoint files (*.checkpoint, *.note)") {
		t.Errorf("empty --trusted-checkpoint dir: exit %d, stdout %q, stderr %q; want 1 and why", code, out, errOut)
	}

	// An earlier evidence archive, unpacked: checkpoints/1.note is a's.
	archive := writeFiles(t, map[string][]byte{
		"manifest.json":      []byte("{}\n"),
		"checkpoints/1.note": newestCheckpoint(t, store, originA),
	})
	out := c.must("", append([]string{"audit", "verify", "--bundle", bundle, "--trusted-checkpoint", archive}, both...)...)
	if !strings.Contains(out, "OK") || !strings.Contains(out, "1 trusted copies checked") ||
		!strings.Contains(out, "WARNING: origin "+originB+": --trusted-checkpoint "+archive+" holds no checkpoint of it") ||
		strings.Contains(out, "WARNING: origin "+originA) {
		t.Errorf("verify with a's checkpoint only: %s; want OK, a's copy checked and a warning for b", out)
	}
	// A sink shared by both instances, verified for one with its key alone:
	// the other instance's copies are not its to check.
	shared := writeFiles(t, map[string][]byte{
		"a/1.checkpoint": newestCheckpoint(t, store, originA),
		"b/1.checkpoint": newestCheckpoint(t, store, originB),
	})
	if code, out, errOut := verify("--origin", originA, "--key", keys[originA], "--trusted-checkpoint", shared); code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, "1 trusted copies checked") {
		t.Errorf("--origin a against a shared sink with a's key: exit %d, %s %s; want OK with a's copy checked", code, out, errOut)
	}
	code, _, errOut := verify(append(both, "--origin", originB, "--trusted-checkpoint", archive)...)
	if code != 1 || !strings.Contains(errOut, "holds no checkpoint of origin "+originB+" (its 1 checkpoints are of: "+originA+")") {
		t.Errorf("--origin b with a's copies only: exit %d, %q; want 1 and why", code, errOut)
	}

	// a rolled back to 5 records: self-consistent, caught by the copy.
	store.Tamper(originA, func(r [][]byte, l []tlog.Hash, cps [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		var kept [][]byte
		for _, n := range cps {
			if c, err := audit.ParseCheckpoint(n); err == nil && c.Size <= 5 {
				kept = append(kept, n)
			}
		}
		return r[:5], l[:5], kept
	})
	var rolled bytes.Buffer
	if err := audit.WriteBundle(t.Context(), &rolled, store, audit.BundleOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, rolled.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must("", append([]string{"audit", "verify", "--bundle", bundle}, both...)...)
	if code, out, _ := verify(append(both, "--trusted-checkpoint", archive)...); code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "truncated") {
		t.Errorf("rolled-back log against the archive's checkpoint: exit %d, %s; want 1 and truncated", code, out)
	}
}

// TestAuditVerifyOrigin: --origin verifies one instance of a shared control
// database with that instance's key alone; an origin the bundle does not
// hold is an error, not an empty success.
func TestAuditVerifyOrigin(t *testing.T) {
	bundle, _, keys := twoInstanceBundle(t, 0)
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	if code, out, _ := c.run("", "audit", "verify", "--bundle", bundle, "--key", keys[originA]); code != 1 || !strings.Contains(out, "FAILED") {
		t.Errorf("both logs with a's key only: exit %d, %s; want 1 (b has no checkpoint signed by a trusted key)", code, out)
	}
	out := c.must("", "audit", "verify", "--bundle", bundle, "--origin", originA, "--key", keys[originA])
	if !strings.Contains(out, "OK (13 records, 1 origin") || !strings.Contains(out, "origin "+originA+"\n") || strings.Contains(out, originB) {
		t.Errorf("--origin a: %s; want a's 13 records only", out)
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(c.must("", "audit", "verify", "--bundle", bundle, "--origin", originB, "--key", keys[originB], "--output", "json")), &rep); err != nil ||
		len(rep.Origins) != 1 || rep.Origins[0].Origin != originB {
		t.Errorf("--origin b --output json: %+v, %v", rep.Origins, err)
	}
	code, out, errOut := c.run("", "audit", "verify", "--bundle", bundle, "--origin", "sqlgate.test/c", "--key", keys[originA])
	if code != 1 || out != "" || !strings.Contains(errOut, "--origin sqlgate.test/c: "+bundle+" holds no log of that origin (it holds: "+originA+", "+originB+")") {
		t.Errorf("--origin of no log: exit %d, stdout %q, stderr %q; want 1 and the origins held", code, out, errOut)
	}
}

// TestAuditEvidenceOrigin: the evidence of one instance, as the dashboard
// writes it, checks with that instance's key alone.
func TestAuditEvidenceOrigin(t *testing.T) {
	bundle, _, keys := twoInstanceBundle(t, 0)
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	zipPath := filepath.Join(t.TempDir(), "a.zip")
	c.must("", "audit", "evidence", "--bundle", bundle, "--origin", originA, "--key", keys[originA], "--from", "2026-03-02", "--to", "2026-03-03", "-o", zipPath)
	data, err := os.ReadFile(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := evidence.Check(bytes.NewReader(data), int64(len(data)), evidence.CheckOptions{Keys: []string{keys[originA]}})
	if err != nil || len(rep.Manifest.Origins) != 1 || rep.Manifest.Origins[0].Origin != originA {
		t.Fatalf("check-evidence of the evidence of a: %v, %v", rep, err)
	}
	if n := rep.Manifest.Origins[0].End; n != 13 {
		t.Errorf("the evidence of a read %d records, want 13", n)
	}
	other := filepath.Join(t.TempDir(), "c.zip")
	code, _, errOut := c.run("", "audit", "evidence", "--bundle", bundle, "--origin", "sqlgate.test/c", "--key", keys[originA],
		"--from", "2026-03-02", "--to", "2026-03-03", "-o", other)
	if code != 1 || !strings.Contains(errOut, "holds no log of that origin (it holds: "+originA+", "+originB+")") {
		t.Errorf("--origin of no log: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("evidence of an origin the bundle does not hold wrote %s: %v", other, err)
	}
}

// TestAuditExportOrigin: the broker exports every origin; with --origin the
// CLI keeps one, writing the bundle the broker would write for that origin
// alone (also from an index after 0: frontier and consistency proof kept).
func TestAuditExportOrigin(t *testing.T) {
	_, store, keys := twoInstanceBundle(t, 0)
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, _ := strconv.ParseInt(r.URL.Query().Get("from"), 10, 64)
		to, _ := strconv.ParseInt(r.URL.Query().Get("to"), 10, 64)
		if r.URL.Path != "/api/v1/audit/export" || r.URL.Query().Has("origin") {
			http.Error(w, "unexpected request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		if err := audit.WriteBundle(r.Context(), w, store, audit.BundleOptions{From: from, To: to}); err != nil {
			t.Error(err)
		}
	}))
	dir := t.TempDir()
	for _, from := range []int64{0, 5} {
		path := filepath.Join(dir, "a-"+strconv.FormatInt(from, 10)+".bundle")
		c.must("", "audit", "export", "-o", path, "--origin", originA, "--from", strconv.FormatInt(from, 10))
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := audit.WriteBundle(t.Context(), &want, store, audit.BundleOptions{Origin: originA, From: from}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("export --origin a --from %d differs from the bundle of a alone:\n%s\nwant:\n%s", from, got, want.Bytes())
		}
		out := c.must("", "audit", "verify", "--bundle", path, "--key", keys[originA])
		if !strings.Contains(out, "OK") || strings.Contains(out, originB) {
			t.Errorf("verify of the export of a from %d: %s", from, out)
		}
	}
	missing := filepath.Join(dir, "c.bundle")
	code, _, errOut := c.run("", "audit", "export", "-o", missing, "--origin", "sqlgate.test/c")
	if code != 1 || !strings.Contains(errOut, "--origin sqlgate.test/c: the broker holds no log of that origin (it holds: "+originA+", "+originB+")") {
		t.Errorf("export --origin of no log: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a refused export wrote %s: %v", missing, err)
	}
}
