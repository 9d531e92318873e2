package evidence_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

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

// claimCopies writes the archive's manifest again saying that its log was
// compared with n trusted checkpoint copies, as whoever handled an unsigned
// archive can.
func claimCopies(t *testing.T, data []byte, n int) []byte {
	t.Helper()
	return rezip(t, data, func(name string, b []byte) ([]byte, bool) {
		if name != "manifest.json" {
			return b, true
		}
		var m evidence.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		m.Verification.TrustedCopies = n
		out, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		return append(out, '\n'), true
	}, nil)
}

// setColumn sets a column of every row of a CSV file.
func setColumn(t *testing.T, column, value string) func([]byte) []byte {
	return func(b []byte) []byte {
		recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		j := slices.Index(recs[0], column)
		if j < 0 {
			t.Fatalf("no column %s in %q", column, recs[0])
		}
		for _, r := range recs[1:] {
			r[j] = value
		}
		var out bytes.Buffer
		w := csv.NewWriter(&out)
		if err := w.WriteAll(recs); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
}

// TestRegenerateComparesTheReports: an unsigned archive that claims
// trusted checkpoint copies its check was not given is still compared file
// by file, report.pdf and report.xlsx included (written again restating the
// archive's claim), so a forged report is refused; and the claim does not
// stop Check from warning that no independently kept checkpoint was
// compared.
func TestRegenerateComparesTheReports(t *testing.T) {
	store, vkey := buildLog(t)
	data := write(t, store, vkey)
	appendBytes := func(b []byte) []byte { return append(bytes.Clone(b), "% forged\n"...) }
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"report_forged", func(d []byte) []byte { return forge(t, d, "report.pdf", false, appendBytes) }, "report.pdf differs from the one the log gives"},
		{"workbook_forged", func(d []byte) []byte { return forge(t, d, "report.xlsx", false, appendBytes) }, "report.xlsx differs from the one the log gives"},
		{"copies_claimed", func(d []byte) []byte { return d }, "manifest.json says 3 trusted checkpoint copies were compared, csv/integrity.csv (trusted_copies_checked) 0"},
		{
			"copies_claimed_in_integrity", func(d []byte) []byte {
				return forge(t, d, "csv/integrity.csv", false, setColumn(t, "trusted_copies_checked", "3"))
			},
			"report.pdf differs from the one the log gives",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forged := claimCopies(t, tc.edit(data), 3)
			rep, err := evidence.Check(bytes.NewReader(forged), int64(len(forged)), evidence.CheckOptions{Keys: []string{vkey}})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if !slices.Contains(rep.Warnings, evidence.NoTrustedCopy) {
				t.Errorf("Check of an unsigned archive claiming 3 trusted copies: warnings %q lack %q", rep.Warnings, evidence.NoTrustedCopy)
			}
			err = evidence.Regenerate(t.Context(), bytes.NewReader(forged), int64(len(forged)), rep, store, evidence.RegenerateOptions{Keys: []string{vkey}})
			if !errors.Is(err, evidence.ErrBadArchive) || !strings.Contains(err.Error(), tc.want) || rep.Regenerated {
				t.Errorf("Regenerate = %v (regenerated %t, warnings %q, notes %q), want ErrBadArchive saying %q", err, rep.Regenerated, rep.Warnings, rep.Notes, tc.want)
			}
		})
	}
}

// TestRegenerateWithoutTheTrustedCopies: an archive written with a trusted
// checkpoint copy is regenerated without it: every file matches, the
// report and the workbook written again restating the archive's
// verification, and the notes say so. The archive's claim of a copy is
// more than this check compared: unless a key the auditor trusts (not the
// log's) signed the manifest, a warning names the files that make it, and
// no independently kept checkpoint was compared. With the copy, nothing is
// left to warn of.
func TestRegenerateWithoutTheTrustedCopies(t *testing.T) {
	store, vkey := buildLog(t)
	var newest []byte
	if err := store.Checkpoints(t.Context(), origin, func(n []byte) error { newest = bytes.Clone(n); return nil }); err != nil || newest == nil {
		t.Fatalf("checkpoints: %v", err)
	}
	logSigner, _ := audittest.Key(t, origin, 1)
	jane, janeKey := audittest.Key(t, "evidence.example.com/jane", 7)
	const claim = "manifest.json, report.pdf, report.xlsx and csv/integrity.csv (trusted_copies_checked) say the log was verified with keys"
	for _, tc := range []struct {
		name        string
		signer      note.Signer
		warnsClaim  bool // the claim of a copy is not authenticated
		warnsNoCopy bool // NoTrustedCopy without the copy
	}{
		{"unsigned", nil, true, true},
		{"signed_by_the_log_key", logSigner, false, true},
		{"signed_by_a_signer_key", jane, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := options(vkey)
			opts.Verify.Trusted = [][]byte{newest}
			opts.Signer = tc.signer
			var buf bytes.Buffer
			if m, err := evidence.Write(t.Context(), &buf, store, opts); err != nil || m.Verification.TrustedCopies == 0 {
				t.Fatalf("Write with a trusted copy: %v", err)
			}
			data := buf.Bytes()
			check := func() *evidence.CheckReport {
				t.Helper()
				rep, err := evidence.Check(bytes.NewReader(data), int64(len(data)), evidence.CheckOptions{Keys: []string{vkey}, SignerKeys: []string{janeKey}})
				if err != nil {
					t.Fatal(err)
				}
				return rep
			}
			rep := check()
			if err := evidence.Regenerate(t.Context(), bytes.NewReader(data), int64(len(data)), rep, store, evidence.RegenerateOptions{Keys: []string{vkey}}); err != nil || !rep.Regenerated {
				t.Fatalf("Regenerate without the trusted copy = %v, regenerated %t", err, rep.Regenerated)
			}
			notes := strings.Join(rep.Notes, "\n")
			if want := "report.pdf, report.xlsx and csv/integrity.csv's trusted_copies_checked restate the verification the archive was written after (keys " + strings.Join(rep.Manifest.Verification.Keys, ", ") +
				", 1 trusted checkpoint copies), not this check's"; !strings.Contains(notes, want) {
				t.Errorf("notes %q do not say %q", rep.Notes, want)
			}
			warnsClaim := slices.ContainsFunc(rep.Warnings, func(w string) bool {
				return strings.HasPrefix(w, claim) && strings.Contains(w, "and compared 0") && strings.Contains(w, "not authenticated")
			})
			noCopy := slices.Contains(rep.Warnings, evidence.NoTrustedCopy)
			if warnsClaim != tc.warnsClaim || noCopy != tc.warnsNoCopy || len(rep.Warnings) != btoi(tc.warnsClaim)+btoi(tc.warnsNoCopy) {
				t.Errorf("warnings %q: the claim of a copy not authenticated %t (want %t), no trusted copy %t (want %t)",
					rep.Warnings, warnsClaim, tc.warnsClaim, noCopy, tc.warnsNoCopy)
			}
			// With the copy, everything is compared, and it is this check's.
			rep = check()
			if err := evidence.Regenerate(t.Context(), bytes.NewReader(data), int64(len(data)), rep, store,
				evidence.RegenerateOptions{Keys: []string{vkey}, Trusted: [][]byte{newest}}); err != nil || len(rep.Notes) != 0 || len(rep.Warnings) != 0 {
				t.Errorf("Regenerate with the trusted copy = %v, notes %q, warnings %q", err, rep.Notes, rep.Warnings)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
