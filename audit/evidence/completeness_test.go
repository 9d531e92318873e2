package evidence_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

// racingSource serves the log as stored to its first readers and passes
// the records of later calls through edit: a DB writer changing the live
// control database while the dashboard builds an archive. Verification
// reads the records once, then the evidence reads them in two passes.
type racingSource struct {
	audit.Source
	after int // calls served unchanged
	edit  func(index int64, data []byte, leaf *tlog.Hash) (newData []byte, newLeaf *tlog.Hash, skip bool)
	calls int
}

func (r *racingSource) Records(ctx context.Context, origin string, from, to int64, fn func(int64, []byte, *tlog.Hash) error) error {
	r.calls++
	changed := r.calls > r.after
	return r.Source.Records(ctx, origin, from, to, func(i int64, d []byte, l *tlog.Hash) error {
		if changed {
			var skip bool
			if d, l, skip = r.edit(i, d, l); skip {
				return nil
			}
		}
		return fn(i, d, l)
	})
}

// mallory replaces alice in record 8 (the period's first call); with
// fixLeaf the stored leaf hash is edited to match.
func mallory(fixLeaf bool) func(int64, []byte, *tlog.Hash) ([]byte, *tlog.Hash, bool) {
	return func(i int64, d []byte, l *tlog.Hash) ([]byte, *tlog.Hash, bool) {
		if i != 8 {
			return d, l, false
		}
		d = bytes.ReplaceAll(d, []byte(`"alice"`), []byte(`"mallory"`))
		if fixLeaf {
			leaf := audit.LeafHash(d)
			l = &leaf
		}
		return d, l, false
	}
}

// TestWriteRefusesLogChangedAfterVerification: records edited, removed or
// re-hashed after the log verified must not reach the CSV files; the
// archive is refused naming the record, or the range the checkpoint no
// longer matches.
func TestWriteRefusesLogChangedAfterVerification(t *testing.T) {
	for _, tc := range []struct {
		name    string
		after   int
		edit    func(int64, []byte, *tlog.Hash) ([]byte, *tlog.Hash, bool)
		wantErr string
	}{
		{"record_edited", 1, mallory(false), "record 8 no longer matches its leaf hash"},
		{"record_and_leaf_edited", 1, mallory(true), "records 0 to 15 no longer hash to the verified checkpoint of size 16"},
		{"record_removed", 1, func(i int64, d []byte, l *tlog.Hash) ([]byte, *tlog.Hash, bool) { return d, l, i == 8 }, "record 8 is missing"},
		{"record_and_leaf_edited_in_the_second_pass", 2, mallory(true), "records 4 to 13 changed between the two passes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, vkey := buildLog(t)
			src := &racingSource{Source: store, after: tc.after, edit: tc.edit}
			var buf bytes.Buffer
			_, err := evidence.Write(t.Context(), &buf, src, options(vkey))
			if !errors.Is(err, evidence.ErrNotVerified) || !strings.Contains(err.Error(), tc.wantErr) || buf.Len() != 0 {
				t.Errorf("Write = %v, %d bytes written; want ErrNotVerified with %q and nothing written", err, buf.Len(), tc.wantErr)
			}
		})
	}
}

// TestWriteSaysWhenRecordsWerePruned: evidence of a log whose first
// records were pruned says it is incomplete, in exceptions.csv, the
// manifest, the report and the workbook.
func TestWriteSaysWhenRecordsWerePruned(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before int64 // prune records before this index (0: none)
		want   string
	}{
		{"not_pruned", 0, ""},
		// Index 2 is from 1 March: the period (2 March) is retained, but a
		// credential issued before index 2 would be missing.
		{"before_the_period", 2, "the access population covers only credentials issued at or after index 2 (2026-03-01T11:00:00.000000Z)"},
		// Indexes 0 to 7 hold 1 March and the credential issues of 2 March.
		{"into_the_period", 8, "the period starts at 2026-03-02T00:00:00.000000Z while the first retained record, index 8, is from 2026-03-02T09:00:00.000000Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, vkey := buildLog(t)
			if tc.before > 0 {
				if _, err := store.Prune(t.Context(), origin, tc.before); err != nil {
					t.Fatal(err)
				}
			}
			var buf bytes.Buffer
			m, err := evidence.Write(t.Context(), &buf, store, options(vkey))
			if err != nil {
				t.Fatal(err)
			}
			files := audittest.Unzip(t, buf.Bytes())
			var pruned []map[string]string
			for _, row := range table(t, files["csv/exceptions.csv"]) {
				if row["code"] == string(evidence.ExceptionPruned) {
					pruned = append(pruned, row)
				}
			}
			if tc.want == "" {
				if len(pruned) != 0 || len(m.Incomplete) != 0 {
					t.Errorf("a log with every record: exceptions %v, incomplete %q", pruned, m.Incomplete)
				}
				return
			}
			// The verifier cannot tell retention from deletion: the text
			// must not claim either.
			prefix := "evidence incomplete: records before index " + strconv.FormatInt(tc.before, 10) + " were pruned by retention or deleted"
			if len(pruned) != 1 || pruned[0]["log_index"] != strconv.FormatInt(tc.before, 10) ||
				!strings.HasPrefix(pruned[0]["message"], prefix) || !strings.Contains(pruned[0]["message"], tc.want) {
				t.Fatalf("exceptions.csv rows %s = %v, want one at %d starting %q and saying %q", evidence.ExceptionPruned, pruned, tc.before, prefix, tc.want)
			}
			var onDisk evidence.Manifest
			if err := json.Unmarshal(files["manifest.json"], &onDisk); err != nil {
				t.Fatal(err)
			}
			if len(onDisk.Incomplete) != 1 || !strings.HasPrefix(onDisk.Incomplete[0], origin+": "+prefix) ||
				onDisk.Verification.ExceptionCount[string(evidence.ExceptionPruned)] != 1 {
				t.Errorf("manifest: incomplete %q, exception counts %v", onDisk.Incomplete, onDisk.Verification.ExceptionCount)
			}
			if !sheetHas(t, files["report.xlsx"], "INCOMPLETE") {
				t.Error("the workbook's summary does not say the evidence is incomplete")
			}
		})
	}
}

// TestWriteSaysWhenNoRecordIsRetained: with every record pruned, the
// exceptions say so instead of printing an empty time.
func TestWriteSaysWhenNoRecordIsRetained(t *testing.T) {
	store, vkey := buildLog(t)
	_, end, err := store.Bounds(t.Context(), origin)
	if err != nil || end == 0 {
		t.Fatalf("bounds: end %d, %v", end, err)
	}
	if _, err := store.Prune(t.Context(), origin, end); err != nil {
		t.Fatal(err)
	}
	opts := options(vkey)
	opts.To = day(5, 0) // after the newest checkpoint
	var buf bytes.Buffer
	m, err := evidence.Write(t.Context(), &buf, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(m.Incomplete, "\n")
	for _, want := range []string{
		"records before index " + strconv.FormatInt(end, 10) + " were pruned by retention or deleted, and the period starts at 2026-03-02T00:00:00.000000Z while no record is retained",
		"only records up to 2026-03-03T02:00:00.000000Z (the time of the newest signed checkpoint of any origin, " + origin + " of size " + strconv.FormatInt(end, 10) + "; no record it covers is retained)",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("incomplete statements do not say %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "from )") || strings.Contains(all, "from ,") || strings.Contains(all, "( ") {
		t.Errorf("an incomplete statement prints an empty time:\n%s", all)
	}
}

// sheetHas reports whether a worksheet of the workbook holds s.
func sheetHas(t *testing.T, xlsx []byte, s string) bool {
	t.Helper()
	for name, data := range audittest.Unzip(t, xlsx) {
		if strings.HasPrefix(name, "xl/") && bytes.Contains(data, []byte(s)) {
			return true
		}
	}
	return false
}

// TestWriteListsUncoveredTail: records after the newest checkpoint are left
// out of the populations, and exceptions.csv says how many.
func TestWriteListsUncoveredTail(t *testing.T) {
	store, l, c := openLog(t, day(1, 9))
	c.set(day(2, 9))
	if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load", Detail: "revision r1"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range 3 { // within the checkpoint interval: not covered yet
		if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load", Detail: "revision r2"}}); err != nil {
			t.Fatal(err)
		}
	}
	_, vkey := audittest.Key(t, origin, 1)
	var buf bytes.Buffer
	if _, err := evidence.Write(t.Context(), &buf, store, options(vkey)); err != nil {
		t.Fatal(err)
	}
	files := audittest.Unzip(t, buf.Bytes())
	var found bool
	for _, row := range table(t, files["csv/exceptions.csv"]) {
		if row["code"] == string(audit.ProblemUncoveredTail) {
			found = row["log_index"] == "2" && strings.HasPrefix(row["message"], "3 records [2, 5) are not covered by a signed checkpoint")
		}
	}
	if !found {
		t.Errorf("exceptions.csv does not list the 3 uncovered records:\n%s", files["csv/exceptions.csv"])
	}
	if got := column(table(t, files["csv/changes.csv"]), "detail"); strings.Join(got, "|") != "revision r1" {
		t.Errorf("changes = %q, want only the covered policy load", got)
	}
}

// TestWriteLeavesFailedIssuesOutOfAccess: the broker records a SQL login
// whose creation failed as an "issue" with an error status. It was never
// usable: credentials.csv shows the status, the access population leaves
// it out.
func TestWriteLeavesFailedIssuesOutOfAccess(t *testing.T) {
	store, l, c := openLog(t, day(1, 9))
	issue := func(lease string, res *audit.Result) {
		t.Helper()
		c.set(day(2, 8))
		if _, err := l.Append(t.Context(), &audit.Record{
			Kind: audit.KindCredential, Actor: alice, Allow: &allow, Result: res,
			Credential: &audit.Credential{Type: "sql", Action: "issue", LeaseID: lease, Login: "u_" + lease, Database: "orders", ExpiresAt: day(5, 0)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	issue("failed", &audit.Result{Status: "unavailable"})
	issue("granted", nil)
	c.set(day(3, 2))
	_ = l.Close(context.Background())
	_, vkey := audittest.Key(t, origin, 1)
	var buf bytes.Buffer
	if _, err := evidence.Write(t.Context(), &buf, store, options(vkey)); err != nil {
		t.Fatal(err)
	}
	files := audittest.Unzip(t, buf.Bytes())
	creds := table(t, files["csv/credentials.csv"])
	if got := column(creds, "lease_id"); strings.Join(got, "|") != "failed|granted" {
		t.Fatalf("credentials.csv leases = %q", got)
	}
	if got := column(creds, "status"); strings.Join(got, "|") != "unavailable|ok" {
		t.Errorf("credentials.csv status = %q, want unavailable|ok", got)
	}
	if got := column(table(t, files["csv/access_population.csv"]), "lease_id"); strings.Join(got, "|") != "granted" {
		t.Errorf("access population leases = %q, want only the granted one", got)
	}
}

// TestCheckNeedsTheLogOfEveryKey: an archive must hold an origin, and the
// origin of every key the auditor gives.
func TestCheckNeedsTheLogOfEveryKey(t *testing.T) {
	store, vkey := buildLog(t)
	var buf bytes.Buffer
	if _, err := evidence.Write(t.Context(), &buf, store, options(vkey)); err != nil {
		t.Fatal(err)
	}
	archive := buf.Bytes()
	check := func(data []byte, keys ...string) error {
		_, err := evidence.Check(bytes.NewReader(data), int64(len(data)), evidence.CheckOptions{Keys: keys})
		return err
	}
	if err := check(archive, vkey); err != nil {
		t.Fatalf("the archive as written: %v", err)
	}
	_, otherKey := audittest.Key(t, "sqlgate.test/another-instance", 1)
	if err := check(archive, vkey, otherKey); !errors.Is(err, evidence.ErrBadArchive) || !strings.Contains(err.Error(), "no origin sqlgate.test/another-instance") {
		t.Errorf("with the key of a log the archive leaves out: err = %v", err)
	}
	noOrigins := rezip(t, archive, func(name string, b []byte) ([]byte, bool) {
		if name != "manifest.json" {
			return b, true
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		m["origins"] = []any{}
		out, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		return out, true
	}, nil)
	if err := check(noOrigins, vkey); !errors.Is(err, evidence.ErrBadArchive) || !strings.Contains(err.Error(), "names no log origin") {
		t.Errorf("a manifest without origins: err = %v", err)
	}
}

// TestWriteRefusesEmptySource: no log, no evidence (an empty archive would
// check).
func TestWriteRefusesEmptySource(t *testing.T) {
	_, vkey := audittest.Key(t, origin, 1)
	var buf bytes.Buffer
	if _, err := evidence.Write(t.Context(), &buf, audittest.NewStore(), options(vkey)); !errors.Is(err, evidence.ErrNotVerified) || buf.Len() != 0 {
		t.Errorf("Write of an empty source = %v, %d bytes written; want ErrNotVerified, nothing", err, buf.Len())
	}
}
