package audit_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// TestLoadCheckpointsRefusesNothing: a directory without checkpoint files
// (empty, mistyped, or holding only other files and a sink's temporary
// files) is an error, not an empty list that verifies nothing.
func TestLoadCheckpointsRefusesNothing(t *testing.T) {
	empty := t.TempDir()
	other := t.TempDir()
	for name, data := range map[string]string{
		"manifest.json":             "{}",
		"csv/exceptions.csv":        "log_origin\n",
		".tmp-0123.checkpoint":      "half written",
		"sub/.hidden/x.txt":         "x",
		"notes.checkpoint.bak":      "x",
		"checkpoints/README":        "x",
		"checkpoints/1.note.sha256": "x",
	} {
		p := filepath.Join(other, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{empty, other} {
		cps, err := audit.LoadCheckpoints(dir)
		if !errors.Is(err, audit.ErrNoCheckpoints) || len(cps) != 0 {
			t.Errorf("LoadCheckpoints(%s) = %d checkpoints, %v; want ErrNoCheckpoints", dir, len(cps), err)
		}
	}
}

// TestLoadCheckpointsReadsEvidenceNotes: the checkpoints/N.note files of an
// evidence archive are trusted copies like a sink's *.checkpoint files: an
// unpacked archive of an earlier period detects a log rolled back since.
func TestLoadCheckpointsReadsEvidenceNotes(t *testing.T) {
	store := audittest.NewStore()
	l := buildLog(t, store, 10, 2, "c", nil, nil) // checkpoints 1, 5, 9, ...
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	latest, err := l.Latest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "checkpoints"), 0o750); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"checkpoints/1.note": latest.Note, "manifest.json": []byte("{}")} {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	trusted, err := audit.LoadCheckpoints(dir)
	if err != nil || len(trusted) != 1 || string(trusted[0]) != string(latest.Note) {
		t.Fatalf("LoadCheckpoints(unpacked archive) = %d checkpoints, %v; want its checkpoints/1.note", len(trusted), err)
	}

	// Roll the log back to 5 records, with the checkpoints that fit.
	store.Tamper(origin, func(r [][]byte, lv []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		var kept [][]byte
		for _, cp := range c {
			if checkpointSize(t, cp) <= 5 {
				kept = append(kept, cp)
			}
		}
		return r[:5], lv[:5], kept
	})
	opts := audit.VerifyOptions{Keys: []string{vkey(t, 1)}}
	requireOK(t, verify(t, store, opts)) // self-consistent without the copy
	opts.Trusted = trusted
	rep := verify(t, store, opts)
	if rep.OK() || rep.FirstFailure().Code != audit.ProblemTruncated {
		t.Errorf("rolled-back log against the archive's checkpoint: failures %v, want %s", rep.Failures, audit.ProblemTruncated)
	}
}
