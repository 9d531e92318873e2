package evidence_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

// forge edits the file name of an archive and writes its manifest again
// to match (SHA-256 and, unless keepRows, rows), as whoever handled an
// unsigned archive can.
func forge(t *testing.T, data []byte, name string, keepRows bool, edit func([]byte) []byte) []byte {
	t.Helper()
	files := audittest.Unzip(t, data)
	edited := edit(files[name])
	var m evidence.Manifest
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	for i := range m.Files {
		if m.Files[i].Name == name {
			sum := sha256.Sum256(edited)
			m.Files[i].SHA256 = hex.EncodeToString(sum[:])
			if !keepRows && strings.HasSuffix(name, ".csv") {
				m.Files[i].Rows = bytes.Count(edited, []byte("\n")) - 1
			}
		}
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return rezip(t, data, func(n string, b []byte) ([]byte, bool) {
		switch n {
		case name:
			return edited, true
		case "manifest.json":
			return append(manifest, '\n'), true
		}
		return b, true
	}, nil)
}

// headerOnly keeps the first line of a CSV file: its rows are removed.
func headerOnly(b []byte) []byte { return b[:bytes.IndexByte(b, '\n')+1] }

// TestCheckCountsRows: a CSV file whose rows were removed without the
// manifest's row count does not check.
func TestCheckCountsRows(t *testing.T) {
	store, vkey := buildLog(t)
	data := write(t, store, vkey)
	forged := forge(t, data, "csv/denials.csv", true, headerOnly)
	_, err := evidence.Check(bytes.NewReader(forged), int64(len(forged)), evidence.CheckOptions{Keys: []string{vkey}})
	if !errors.Is(err, evidence.ErrBadArchive) || !strings.Contains(err.Error(), "csv/denials.csv holds 0 rows, the manifest says 1") {
		t.Errorf("Check of denials.csv emptied, rows not counted again: %v", err)
	}
}

func write(t *testing.T, src audit.Source, vkey string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := evidence.Write(t.Context(), &buf, src, options(vkey)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRegenerate: the checkpoints vouch for the log, not for the rows of an
// unsigned archive. One whose denials were removed, with its manifest
// written again, checks, with a warning that its populations are not
// authenticated; written again from the log, it is refused, naming the
// first row it lacks. The archive as written matches the log.
func TestRegenerate(t *testing.T) {
	store, vkey := buildLog(t)
	data := write(t, store, vkey)
	regenerate := func(t *testing.T, data []byte, opts evidence.RegenerateOptions) (*evidence.CheckReport, error) {
		t.Helper()
		rep, err := evidence.Check(bytes.NewReader(data), int64(len(data)), evidence.CheckOptions{Keys: []string{vkey}})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "not for the files of this archive") }) {
			t.Errorf("Check of an unsigned archive: warnings %q do not say its rows are not authenticated", rep.Warnings)
		}
		opts.Keys = []string{vkey}
		return rep, evidence.Regenerate(t.Context(), bytes.NewReader(data), int64(len(data)), rep, store, opts)
	}

	t.Run("as_written", func(t *testing.T) {
		rep, err := regenerate(t, data, evidence.RegenerateOptions{TempDir: t.TempDir()})
		if err != nil || !rep.Regenerated || len(rep.Notes) != 0 {
			t.Fatalf("Regenerate of the archive as written = %v, regenerated %t, notes %q", err, rep.Regenerated, rep.Notes)
		}
		if !slices.Equal(rep.Warnings, []string{evidence.NoTrustedCopy}) {
			t.Errorf("warnings after Regenerate = %q, want only %q", rep.Warnings, evidence.NoTrustedCopy)
		}
	})

	denial := table(t, audittest.Unzip(t, data)["csv/denials.csv"])[0]["log_index"]
	for _, tc := range []struct {
		name, file string
		edit       func([]byte) []byte
		want       string
	}{
		{"denials_removed", "csv/denials.csv", headerOnly, "csv/denials.csv: the archive has 0 rows, the log gives 1: row 1 of the log's (record " + denial + " of " + origin + ") is not in the archive"},
		{
			"denial_edited", "csv/denials.csv", func(b []byte) []byte { return bytes.Replace(b, []byte("5000"), []byte("500"), 1) },
			`csv/denials.csv row 1 (record ` + denial + ` of ` + origin + `): reasons is "amount 500 exceeds the sales limit of 1000" in the archive, "amount 5000 exceeds the sales limit of 1000" in the log`,
		},
		{
			"activity_row_added", "csv/activity.csv", func(b []byte) []byte { return append(bytes.Clone(b), []byte("x,y\n")...) },
			"csv/activity.csv: the archive has 4 rows, the log gives 3: row 4 of the archive's (\"x\") is not the log's",
		},
		{"verify_replaced", "VERIFY.md", func([]byte) []byte { return []byte("trust me\n") }, "VERIFY.md differs from the one the log gives"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forged := forge(t, data, tc.file, false, tc.edit)
			rep, err := regenerate(t, forged, evidence.RegenerateOptions{})
			if !errors.Is(err, evidence.ErrBadArchive) || !strings.Contains(err.Error(), tc.want) || rep.Regenerated {
				t.Errorf("Regenerate of the forged archive = %v (regenerated %t), want ErrBadArchive saying %q", err, rep.Regenerated, tc.want)
			}
		})
	}

	// The log the archive was made from, as it was then: a later one has
	// other checkpoints.
	t.Run("later_log", func(t *testing.T) {
		store, vkey := buildLog(t)
		data := write(t, store, vkey)
		cfg := audittest.Config(t, origin)
		cfg.Now = audittest.NewClock(day(4, 0)).Now
		l, err := audit.Open(context.Background(), store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load", Detail: "revision r2"}}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		rep, err := evidence.Check(bytes.NewReader(data), int64(len(data)), evidence.CheckOptions{Keys: []string{vkey}})
		if err != nil {
			t.Fatal(err)
		}
		err = evidence.Regenerate(t.Context(), bytes.NewReader(data), int64(len(data)), rep, store, evidence.RegenerateOptions{Keys: []string{vkey}})
		if !errors.Is(err, evidence.ErrBadArchive) || !strings.Contains(err.Error(), "this is not the log the archive was made from") {
			t.Errorf("Regenerate from a later log = %v", err)
		}
	})
}

// TestRegenerateWithoutTheTrustedCopies: an archive written with a trusted
// checkpoint copy is regenerated without it: the populations match, and
// what depends on the copies (integrity.csv's trusted_copies_checked, the
// report and the workbook, which restate the verification) is named as not
// compared.
func TestRegenerateWithoutTheTrustedCopies(t *testing.T) {
	store, vkey := buildLog(t)
	var newest []byte
	if err := store.Checkpoints(t.Context(), origin, func(n []byte) error { newest = bytes.Clone(n); return nil }); err != nil || newest == nil {
		t.Fatalf("checkpoints: %v", err)
	}
	opts := options(vkey)
	opts.Verify.Trusted = [][]byte{newest}
	var buf bytes.Buffer
	if m, err := evidence.Write(t.Context(), &buf, store, opts); err != nil || m.Verification.TrustedCopies == 0 {
		t.Fatalf("Write with a trusted copy: %v", err)
	}
	data := buf.Bytes()
	rep, err := evidence.Check(bytes.NewReader(data), int64(len(data)), evidence.CheckOptions{Keys: []string{vkey}})
	if err != nil {
		t.Fatal(err)
	}
	if err := evidence.Regenerate(t.Context(), bytes.NewReader(data), int64(len(data)), rep, store, evidence.RegenerateOptions{Keys: []string{vkey}}); err != nil {
		t.Fatalf("Regenerate without the trusted copy: %v", err)
	}
	notes := strings.Join(rep.Notes, "\n")
	for _, want := range []string{"csv/integrity.csv: trusted_copies_checked was not compared", "report.pdf and report.xlsx were not compared"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q do not say %q", rep.Notes, want)
		}
	}
	// With the copy, everything is compared.
	rep, err = evidence.Check(bytes.NewReader(data), int64(len(data)), evidence.CheckOptions{Keys: []string{vkey}})
	if err != nil {
		t.Fatal(err)
	}
	if err := evidence.Regenerate(t.Context(), bytes.NewReader(data), int64(len(data)), rep, store,
		evidence.RegenerateOptions{Keys: []string{vkey}, Trusted: [][]byte{newest}}); err != nil || len(rep.Notes) != 0 || len(rep.Warnings) != 0 {
		t.Errorf("Regenerate with the trusted copy = %v, notes %q, warnings %q", err, rep.Notes, rep.Warnings)
	}
}
