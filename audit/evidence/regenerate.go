package evidence

import (
	"archive/zip"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/audit"
)

// RegenerateOptions say how [Regenerate] verifies the log it writes the
// archive again from.
type RegenerateOptions struct {
	// Keys are the trusted verifier keys of the log (required).
	Keys []string
	// Trusted are checkpoint copies kept out of the operator's reach, as
	// [audit.VerifyOptions].Trusted.
	Trusted [][]byte
	// TempDir holds the archive written again and its sections while it is
	// written ("": the system's temporary directory).
	TempDir string
}

// integrityName is the CSV file of each origin's verification, and
// trustedColumn its column that depends on the checkpoint copies the
// verification compared, not on the log.
const (
	integrityName = "csv/integrity.csv"
	trustedColumn = "trusted_copies_checked"
)

// Regenerate writes the archive that [Check] checked (rep, read from r)
// again from src, with the period, origins and generator its manifest
// states, and compares the two. The checkpoints vouch for the log, not for
// the archive's files; this is what shows that the populations are the
// log's, whoever produced the archive:
//
//   - the same origins, each read over the same records under the same
//     newest checkpoint: src must be the log the archive was made from, as
//     it was then (a later export has later checkpoints, and gives other
//     populations);
//   - every file the same bytes, the CSV files compared row by row;
//   - the manifest's statements: each file's rows, description, selection
//     and criteria, the incomplete statements, the records verified and
//     the exception counts.
//
// What the archive restates of the verification it was written after, its
// keys and the trusted checkpoint copies each origin was compared with
// (manifest.json, integrity.csv's trusted_copies_checked, report.pdf and
// report.xlsx), depends on that verification, not on the log: this check
// may be given other keys or copies. The archive is written again restating
// the archive's own (from its manifest and integrity.csv), so that every
// file is compared, byte for byte; the manifest's count of copies must be
// the sum of integrity.csv's. When the two verifications differ, rep.Notes
// says so.
//
// A difference is an error wrapping [ErrBadArchive] that names the first
// differing file and row; a log that does not verify, an error wrapping
// [ErrNotVerified]. When every file matches, rep.Regenerated is set and the
// warning that the populations are not authenticated is dropped from
// rep.Warnings. The archive's account of its verification stays a claim:
// when it says more than this check compared (a key this check was not
// given, more trusted copies) and no trusted key signed the manifest, a
// warning names the files that say it. [NoTrustedCopy] is dropped when this
// verification compared a trusted copy, and kept otherwise: a claim of
// copies counts only as [Check] counts it.
func Regenerate(ctx context.Context, r io.ReaderAt, size int64, rep *CheckReport, src audit.Source, opts RegenerateOptions) error {
	m := rep.Manifest
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadArchive}, args...)...)
	}
	from, err := time.Parse(time.RFC3339Nano, m.Period.From)
	if err != nil {
		return bad("%s: period from: %w", manifestName, err)
	}
	to, err := time.Parse(time.RFC3339Nano, m.Period.To)
	if err != nil {
		return bad("%s: period to: %w", manifestName, err)
	}
	origin := ""
	if len(m.Origins) == 1 {
		// The evidence of one origin, which the bundle may hold beside
		// others (the dashboard writes it so).
		origin = m.Origins[0].Origin
	}
	archive, err := zip.NewReader(r, size)
	if err != nil {
		return bad("not a zip archive: %w", err)
	}
	claimed, err := trustedClaims(archive)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(opts.TempDir, "sqlgate-regenerated-*.zip")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // temporary
	// This check's verification, before the archive's is restated.
	var keys []string
	compared := map[string]int{}
	copies := 0
	restate := func(v *audit.Report) {
		keys = slices.Clone(v.Keys)
		v.Keys = slices.Clone(m.Verification.Keys)
		for _, o := range v.Origins {
			compared[o.Origin] = o.Trusted
			copies += o.Trusted
			if n, ok := claimed[o.Origin]; ok {
				o.Trusted = n
			}
		}
	}
	got, err := write(ctx, tmp, src, Options{
		From: from, To: to, Verify: audit.VerifyOptions{Keys: opts.Keys, Trusted: opts.Trusted, Origin: origin},
		Generator: m.Generator, TempDir: opts.TempDir,
	}, restate)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the archive again from the log: %w", err)
	}

	// The same records under the same checkpoints.
	names := func(origins []OriginSource) string {
		var n []string
		for _, o := range origins {
			n = append(n, o.Origin)
		}
		return joinNone(n)
	}
	if names(m.Origins) != names(got.Origins) {
		return bad("the archive holds the evidence of %s, the log gives that of %s", names(m.Origins), names(got.Origins))
	}
	for i, a := range m.Origins {
		g := got.Origins[i]
		switch {
		case a.CheckpointSize != g.CheckpointSize || a.CheckpointRoot != g.CheckpointRoot:
			return bad("origin %s: the archive was read under a checkpoint of size %d, the log's newest is of size %d (root %s): "+
				"this is not the log the archive was made from, as it was then (give that bundle: a later export gives other populations)",
				a.Origin, a.CheckpointSize, g.CheckpointSize, g.CheckpointRoot)
		case a.First != g.First || a.End != g.End || a.PeriodFirst != g.PeriodFirst || a.PeriodLast != g.PeriodLast ||
			a.Checkpoint != g.Checkpoint || !slices.Equal(a.KeyIDs, g.KeyIDs):
			return bad("origin %s: the archive says records %d to %d (in the period %d to %d, %s, keys %s), the log gives %d to %d (%d to %d, %s, keys %s)",
				a.Origin, a.First, a.End-1, a.PeriodFirst, a.PeriodLast, a.Checkpoint, strings.Join(a.KeyIDs, " "),
				g.First, g.End-1, g.PeriodFirst, g.PeriodLast, g.Checkpoint, strings.Join(g.KeyIDs, " "))
		}
	}

	// Every file.
	again, err := zip.OpenReader(tmp.Name())
	if err != nil {
		return err
	}
	defer func() { _ = again.Close() }() // read-only
	gotFiles := map[string]File{}
	for _, f := range got.Files {
		gotFiles[f.Name] = f
	}
	for _, f := range m.Files {
		if _, ok := gotFiles[f.Name]; !ok {
			return bad("%s is in the archive, but not a file the log gives", f.Name)
		}
	}
	for _, g := range got.Files {
		i := slices.IndexFunc(m.Files, func(f File) bool { return f.Name == g.Name })
		if i < 0 {
			return bad("%s: the log gives it, the archive does not have it", g.Name)
		}
		a := m.Files[i]
		if a.SHA256 != g.SHA256 {
			if !isCSV(a.Name) {
				hint := ""
				switch a.Name {
				case verifyName:
					hint = " (an archive written by another version of sqlgate: regenerate it with that version)"
				case reportName, workbookName:
					hint = fmt.Sprintf(" (restating the verification the archive says it was written after: keys %s, %d trusted checkpoint copies)",
						joinNone(m.Verification.Keys), m.Verification.TrustedCopies)
				}
				return bad("%s differs from the one the log gives (SHA-256 %s, the log gives %s)%s", a.Name, a.SHA256, g.SHA256, hint)
			}
			if err := diffCSV(archive, &again.Reader, a, g); err != nil {
				return err
			}
		}
		switch {
		case a.Rows != g.Rows:
			return bad("%s: the archive has %s, the log gives %s", a.Name, a.Count(), g.Count())
		case a.Description != g.Description || a.Selection != g.Selection || a.Criteria != g.Criteria:
			return bad("%s: the manifest describes it otherwise than the log's archive does (description, selection or criteria)", a.Name)
		}
	}

	// The manifest's statements.
	switch {
	case !slices.Equal(m.Incomplete, got.Incomplete):
		return bad("%s: the incomplete statements differ from the log's (the archive has %d, the log gives %d)", manifestName, len(m.Incomplete), len(got.Incomplete))
	case m.Verification.Records != got.Verification.Records || m.Verification.OK != got.Verification.OK:
		return bad("%s: the archive says %d records verified, the log has %d", manifestName, m.Verification.Records, got.Verification.Records)
	case !maps.Equal(m.Verification.ExceptionCount, got.Verification.ExceptionCount):
		return bad("%s: the exception counts %v differ from the log's %v", manifestName, m.Verification.ExceptionCount, got.Verification.ExceptionCount)
	case m.Verification.TrustedCopies != got.Verification.TrustedCopies:
		return bad("%s says %d trusted checkpoint copies were compared, %s (%s) %d", manifestName, m.Verification.TrustedCopies,
			integrityName, trustedColumn, got.Verification.TrustedCopies)
	}

	// What the archive restates of its verification, against this check's.
	restated, more := !slices.Equal(m.Verification.Keys, keys), false
	for _, k := range m.Verification.Keys {
		more = more || !slices.Contains(keys, k)
	}
	for o, n := range claimed {
		restated = restated || n != compared[o]
		more = more || n > compared[o]
	}
	if restated {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s, %s and %s's %s restate the verification the archive was written after (keys %s, %d trusted checkpoint copies), "+
			"not this check's (keys %s, %d): they were written again restating the archive's, and compared",
			reportName, workbookName, integrityName, trustedColumn, joinNone(m.Verification.Keys), m.Verification.TrustedCopies, joinNone(keys), copies))
	}

	rep.Regenerated = true
	var warnings []string
	if more && rep.SignedBy == "" {
		warnings = append(warnings, fmt.Sprintf("%s, %s, %s and %s (%s) say the log was verified with keys %s and %d trusted checkpoint copies; "+
			"this check used keys %s and compared %d, and no key you trust signed %s: that account of the verification is not authenticated "+
			"(give the copies: --trusted-checkpoint)",
			manifestName, reportName, workbookName, integrityName, trustedColumn, joinNone(m.Verification.Keys), m.Verification.TrustedCopies,
			joinNone(keys), copies, manifestName))
	}
	for _, w := range rep.Warnings {
		if w == unauthenticated || (w == NoTrustedCopy && copies > 0) {
			continue
		}
		warnings = append(warnings, w)
	}
	rep.Warnings = warnings
	return nil
}

// trustedClaims reads the trusted_copies_checked column of the archive's
// integrity.csv: the checkpoint copies each origin was compared with, as
// the archive says.
func trustedClaims(archive *zip.Reader) (map[string]int, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s"+format, append([]any{ErrBadArchive, integrityName}, args...)...)
	}
	f, err := archive.Open(integrityName)
	if err != nil {
		return nil, bad(": %w", err)
	}
	defer func() { _ = f.Close() }() // read-only
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, bad(": %w", err)
	}
	oc, tc := slices.Index(header, "log_origin"), slices.Index(header, trustedColumn)
	if oc < 0 || tc < 0 {
		return nil, bad(" has no log_origin or %s column: the archive was written by another version of sqlgate, or edited", trustedColumn)
	}
	claimed := map[string]int{}
	for row := 1; ; row++ {
		cells, err := cr.Read()
		switch {
		case errors.Is(err, io.EOF):
			return claimed, nil
		case err != nil:
			return nil, bad(": %w", err)
		case len(cells) <= max(oc, tc):
			return nil, bad(" row %d: %d columns, the header has %d", row, len(cells), len(header))
		}
		n, err := strconv.Atoi(cells[tc])
		if err != nil || n < 0 {
			return nil, bad(" row %d: %s is %s, not a count", row, trustedColumn, cellQuote(cells[tc]))
		}
		if _, dup := claimed[cells[oc]]; dup {
			return nil, bad(" names origin %s twice", cells[oc])
		}
		claimed[cells[oc]] = n
	}
}

// diffCSV compares the CSV file a of the archive with g of the archive
// written again, row by row, and returns an error naming the first row that
// differs.
func diffCSV(archive *zip.Reader, again *zip.Reader, a, g File) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s"+format, append([]any{ErrBadArchive, a.Name}, args...)...)
	}
	open := func(zr *zip.Reader) (*csv.Reader, func(), error) {
		f, err := zr.Open(a.Name)
		if err != nil {
			return nil, nil, err
		}
		cr := csv.NewReader(f)
		cr.FieldsPerRecord = -1
		return cr, func() { _ = f.Close() }, nil // read-only
	}
	ar, closeA, err := open(archive)
	if err != nil {
		return bad(": %w", err)
	}
	defer closeA()
	gr, closeG, err := open(again)
	if err != nil {
		return err
	}
	defer closeG()
	var header []string
	for row := 0; ; row++ {
		ac, aerr := ar.Read()
		gc, gerr := gr.Read()
		if aerr != nil && !errors.Is(aerr, io.EOF) {
			return bad(": %w", aerr)
		}
		if gerr != nil && !errors.Is(gerr, io.EOF) {
			return fmt.Errorf("%s written again: %w", a.Name, gerr)
		}
		switch {
		case aerr != nil && gerr != nil:
			return nil // every cell the log's, written otherwise (quoting, line ends)
		case aerr != nil:
			return bad(": the archive has %d rows, the log gives %d: row %d of the log's (%s) is not in the archive",
				a.Rows, g.Rows, row, rowName(header, gc))
		case gerr != nil:
			return bad(": the archive has %d rows, the log gives %d: row %d of the archive's (%s) is not the log's",
				a.Rows, g.Rows, row, rowName(header, ac))
		case row == 0:
			if !slices.Equal(ac, gc) {
				return bad(": the header differs from the one the log gives (%d columns, the log's %d): the archive was written by another version of sqlgate, "+
					"or edited; regenerate it with the version that wrote it", len(ac), len(gc))
			}
			header = slices.Clone(gc)
			continue
		case len(ac) != len(gc):
			return bad(" row %d (%s): %d columns, the log's has %d", row, rowName(header, gc), len(ac), len(gc))
		}
		for j := range gc {
			if ac[j] != gc[j] {
				return bad(" row %d (%s): %s is %s in the archive, %s in the log", row, rowName(header, gc), header[j], cellQuote(ac[j]), cellQuote(gc[j]))
			}
		}
	}
}

// rowName names a row by the record it comes from, or by its first cell.
func rowName(header, cells []string) string {
	get := func(name string) string {
		if i := slices.Index(header, name); i >= 0 && i < len(cells) {
			return cells[i]
		}
		return ""
	}
	if o, i := get("log_origin"), get("log_index"); i != "" {
		return fmt.Sprintf("record %s of %s", i, o)
	}
	if len(cells) > 0 {
		return cellQuote(cells[0])
	}
	return "empty"
}

// cellQuote quotes a cell for an error, cut to 120 bytes.
func cellQuote(v string) string {
	const most = 120
	if len(v) > most {
		return fmt.Sprintf("%q…", strings.ToValidUTF8(v[:most], ""))
	}
	return fmt.Sprintf("%q", v)
}

func joinNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
