package main

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

const evidenceOrigin = "sqlgate.test/evidence"

// callsBundle writes the bundle of a log of 2 March 2026 with a policy
// load, a call and a denial. It returns the path, the store and the
// verifier key.
func callsBundle(t *testing.T) (string, *audittest.Store, string) {
	t.Helper()
	store := audittest.NewStore()
	clk := audittest.NewClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	cfg := audittest.Config(t, evidenceOrigin)
	cfg.Now = clk.Now
	l, err := audit.Open(context.Background(), store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	allow, deny := true, false
	who := &audit.Actor{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com"}
	add := func(r *audit.Record) int64 {
		t.Helper()
		clk.Add(time.Minute)
		i, err := l.Append(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	add(&audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load", Detail: "revision r1"}})
	intent := add(&audit.Record{
		Kind: audit.KindIntent, CorrelationID: "call-1", Actor: who, Allow: &allow, Route: "orders.v1.create",
		TargetKind: "procedure", Target: "create_order", SQL: &audit.SQL{Server: "pg", Database: "orders", Outcome: "pending"},
	})
	add(&audit.Record{
		Kind: audit.KindOutcome, CorrelationID: "call-1", IntentIndex: intent, Actor: who, Route: "orders.v1.create",
		TargetKind: "procedure", Target: "create_order",
		SQL: &audit.SQL{Server: "pg", Database: "orders", Outcome: "commit", TransactionID: "42"}, Result: &audit.Result{Status: "ok"},
	})
	add(&audit.Record{
		Kind: audit.KindDecision, CorrelationID: "denied-1", Actor: who, Allow: &deny, Entry: "call", Route: "orders.v1.create",
		Reasons: []string{"amount 5000 exceeds the sales limit of 1000"}, Result: &audit.Result{Status: "forbidden"},
	})
	clk.Add(time.Hour)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := audit.WriteBundle(t.Context(), &b, store, audit.BundleOptions{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "log.bundle")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	_, vkey := audittest.Key(t, evidenceOrigin, 1)
	return path, store, vkey
}

// removeRows writes a copy of the archive at path whose CSV file name
// holds its header only, with manifest.json written again to match (the
// file's SHA-256 and rows), as anyone who handles an unsigned archive can.
func removeRows(t *testing.T, path, name string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	files := audittest.Unzip(t, data)
	edited := files[name][:bytes.IndexByte(files[name], '\n')+1]
	var m evidence.Manifest
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	for i := range m.Files {
		if m.Files[i].Name == name {
			sum := sha256.Sum256(edited)
			m.Files[i].SHA256, m.Files[i].Rows = hex.EncodeToString(sum[:]), 0
		}
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	files[name], files["manifest.json"] = edited, append(manifest, '\n')
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, f := range zr.File { // in the archive's order
		w, err := zw.Create(f.Name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(files[f.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	forged := filepath.Join(t.TempDir(), "forged.zip")
	if err := os.WriteFile(forged, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return forged
}

const unauthenticatedWarning = "WARNING: the checkpoints vouch for the log, not for the files of this archive"

// TestAuditCheckEvidenceRegenerates: the checkpoints of an unsigned archive
// vouch for the log, not for its rows. An archive whose denials were
// removed, with its manifest written again, still checks, but the output
// says the populations are not authenticated; with --bundle, the archive is
// written again from the log and the forgery is refused, naming the file
// and the record it lacks.
func TestAuditCheckEvidenceRegenerates(t *testing.T) {
	bundle, _, vkey := callsBundle(t)
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	zipPath := filepath.Join(t.TempDir(), "evidence.zip")
	c.must("", "audit", "evidence", "--bundle", bundle, "--key", vkey, "--from", "2026-03-02", "--to", "2026-03-02T11:00:00Z", "-o", zipPath)
	forged := removeRows(t, zipPath, "csv/denials.csv")

	for _, tc := range []struct {
		name, archive string
	}{
		{"as_written", zipPath},
		{"denials_removed", forged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := c.run("", "audit", "check-evidence", tc.archive, "--key", vkey)
			if code != 0 || !strings.Contains(out, unauthenticatedWarning) || !strings.Contains(out, "--bundle FILE") {
				t.Errorf("check-evidence without --bundle: exit %d\nstdout: %s\nstderr: %s\nwant exit 0 and %q", code, out, errOut, unauthenticatedWarning)
			}
		})
	}

	out := c.must("", "audit", "check-evidence", zipPath, "--key", vkey, "--bundle", bundle)
	if !strings.Contains(out, "written again from the log in "+bundle+": every file compared matches") || strings.Contains(out, unauthenticatedWarning) {
		t.Errorf("check-evidence --bundle of the archive as written:\n%s", out)
	}
	code, out, errOut := c.run("", "audit", "check-evidence", forged, "--key", vkey, "--bundle", bundle)
	if code != 1 || !strings.Contains(errOut, "csv/denials.csv: the archive has 0 rows, the log gives 1: row 1 of the log's (record 4 of "+evidenceOrigin+") is not in the archive") {
		t.Errorf("check-evidence --bundle of the archive whose denials were removed: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	var checked struct {
		Regenerated bool     `json:"regenerated"`
		Warnings    []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(c.must("", "audit", "check-evidence", zipPath, "--key", vkey, "--bundle", bundle, "--output", "json")), &checked); err != nil ||
		!checked.Regenerated || len(checked.Warnings) != 1 || checked.Warnings[0] != evidence.NoTrustedCopy {
		t.Errorf("check-evidence --bundle --output json = %+v, %v", checked, err)
	}
	if code, _, errOut := c.run("", "audit", "check-evidence", zipPath, "--key", vkey, "--trusted-checkpoint", t.TempDir()); code != 2 || !strings.Contains(errOut, "--trusted-checkpoint needs --bundle") {
		t.Errorf("check-evidence --trusted-checkpoint without --bundle: exit %d, %s", code, errOut)
	}
}

// TestAuditWarnsWithoutTrustedCheckpoint: without --trusted-checkpoint,
// verify, evidence and check-evidence say on stderr that no independently
// kept checkpoint was compared, and exit as before. verify and evidence do
// not warn with a copy; check-evidence warns unless it compared a copy
// itself (--bundle --trusted-checkpoint), since an unsigned archive's claim
// of copies is anyone's.
func TestAuditWarnsWithoutTrustedCheckpoint(t *testing.T) {
	bundle, store, vkey := callsBundle(t)
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	copies := writeFiles(t, map[string][]byte{"copy.checkpoint": newestCheckpoint(t, store, evidenceOrigin)})
	const warning = "WARNING: no independently kept checkpoint was compared: a holder of the signing key could have rewritten this log"
	plain := filepath.Join(t.TempDir(), "plain.zip")
	trusted := filepath.Join(t.TempDir(), "trusted.zip")
	period := []string{"--from", "2026-03-02", "--to", "2026-03-02T11:00:00Z"}
	for _, tc := range []struct {
		name  string
		args  []string
		warns bool
	}{
		{"verify", []string{"audit", "verify", "--bundle", bundle, "--key", vkey}, true},
		{"verify_json", []string{"audit", "verify", "--bundle", bundle, "--key", vkey, "--output", "json"}, true},
		{"verify_trusted", []string{"audit", "verify", "--bundle", bundle, "--key", vkey, "--trusted-checkpoint", copies}, false},
		{"evidence", append([]string{"audit", "evidence", "--bundle", bundle, "--key", vkey, "-o", plain}, period...), true},
		{"evidence_trusted", append([]string{"audit", "evidence", "--bundle", bundle, "--key", vkey, "-o", trusted, "--trusted-checkpoint", copies}, period...), false},
		{"check_evidence", []string{"audit", "check-evidence", plain, "--key", vkey}, true},
		{"check_evidence_of_trusted", []string{"audit", "check-evidence", trusted, "--key", vkey}, true},
		{"check_evidence_of_trusted_bundle", []string{"audit", "check-evidence", trusted, "--key", vkey, "--bundle", bundle}, true},
		{"check_evidence_bundle_trusted", []string{"audit", "check-evidence", plain, "--key", vkey, "--bundle", bundle, "--trusted-checkpoint", copies}, false},
	} {
		// In order: the check-evidence cases read the archives the evidence
		// cases wrote.
		code, out, errOut := c.run("", tc.args...)
		if code != 0 || strings.Contains(errOut, warning) != tc.warns || strings.Contains(out, warning) {
			t.Errorf("%s: exit %d, stderr %q; want exit 0 and the warning on stderr: %t\nstdout: %s", tc.name, code, errOut, tc.warns, out)
		}
	}
}

// TestAuditEvidenceRelativeBoundsPrintAlike: a period given relative to now
// is cut to the microsecond once, so the manifest, the command's output and
// the exceptions print its end alike.
func TestAuditEvidenceRelativeBoundsPrintAlike(t *testing.T) {
	bundle, _, vkey := callsBundle(t)
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	zipPath := filepath.Join(t.TempDir(), "evidence.zip")
	out := c.must("", "audit", "evidence", "--bundle", bundle, "--key", vkey, "--from", "-24h", "--to", "now", "-o", zipPath)
	data, err := os.ReadFile(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	files := audittest.Unzip(t, data)
	var m evidence.Manifest
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	to, err := time.Parse(time.RFC3339Nano, m.Period.To)
	if err != nil {
		t.Fatal(err)
	}
	if to.Nanosecond()%1000 != 0 {
		t.Errorf("period to %s is finer than a microsecond", m.Period.To)
	}
	// Printed as every time of the evidence is: to the microsecond (a
	// whole second, 1 in a million, prints without a fraction).
	printed := to.Format("2006-01-02T15:04:05.000000Z")
	if to.Nanosecond() != 0 && m.Period.To != printed {
		t.Errorf("manifest period to %q, the exceptions print it %q", m.Period.To, printed)
	}
	if !strings.Contains(out, "to "+m.Period.To+" written to") {
		t.Errorf("audit evidence output does not print the manifest's period end %s:\n%s", m.Period.To, out)
	}
	// The log is of March: the period ends after its newest checkpoint.
	recs, err := csv.NewReader(bytes.NewReader(files["csv/exceptions.csv"])).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs[1:] {
		found = found || (r[1] == string(evidence.ExceptionNotCovered) && strings.Contains(r[4], "the period ends at "+printed+","))
	}
	if !found {
		t.Errorf("exceptions.csv has no %s row naming the period end %s:\n%s", evidence.ExceptionNotCovered, printed, files["csv/exceptions.csv"])
	}
}
