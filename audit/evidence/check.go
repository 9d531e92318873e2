package evidence

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/sqlgate/sqlgate/audit"
)

// ErrBadArchive marks an evidence archive that does not check: a file that
// is missing, added or altered, a checkpoint that is not signed by a trusted
// key or does not cover the records, or a manifest signature that does not
// verify.
var ErrBadArchive = errors.New("the evidence archive does not check")

// CheckOptions say which keys an archive is checked against.
type CheckOptions struct {
	// Keys are the trusted verifier keys of the log (note format): every
	// checkpoint must be signed by one, and the archive must have an origin
	// for each (a key's name is its log's origin). A manifest signed by one
	// of them (as the dashboard signs, with the log's key) is checked too.
	Keys []string
	// SignerKeys are further keys trusted to sign the manifest.
	SignerKeys []string
	// RequireSignature refuses an archive whose manifest no trusted key
	// signed.
	RequireSignature bool
}

// CheckReport is what [Check] found in an archive that checks.
type CheckReport struct {
	Manifest *Manifest `json:"manifest"`
	// Files is the number of files whose SHA-256 matched the manifest.
	Files int `json:"files_checked"`
	// Checkpoints are the key ids that signed each origin's checkpoint.
	Checkpoints []string `json:"checkpoint_keys"`
	// SignedBy is the key id that signed the manifest, "" when it is not
	// signed by a trusted key; Untrusted names the signers of a signature
	// no trusted key made.
	SignedBy  string `json:"manifest_signed_by,omitempty"`
	Untrusted string `json:"untrusted_signers,omitempty"`
	// Regenerated is set by [Regenerate] when the archive was written again
	// from the log and every file compared matched.
	Regenerated bool `json:"regenerated,omitempty"`
	// Warnings say what the check does not vouch for: the populations,
	// when no trusted key signed the manifest and they were not regenerated
	// from the log; what the archive says of its verification beyond what
	// [Regenerate] compared; and a log compared with no independently kept
	// checkpoint ([NoTrustedCopy]): the archive's own claim of copies counts
	// only when a key of [CheckOptions].SignerKeys that is not a log key
	// signed the manifest.
	Warnings []string `json:"warnings,omitempty"`
	// Notes say where [Regenerate] restated the archive's verification
	// (keys, trusted copies) rather than its own, and compared that.
	Notes []string `json:"notes,omitempty"`
}

// unauthenticated is the warning of an archive whose manifest no trusted
// key signed and whose populations were not regenerated.
const unauthenticated = "the checkpoints vouch for the log, not for the files of this archive: no key you trust signed manifest.json, " +
	"so anyone who handled the archive could have removed or changed rows of the populations (csv/*.csv, report.pdf, report.xlsx) " +
	"and written manifest.json again; to trust them, regenerate them from the log bundle the archive was made from " +
	"(check-evidence --bundle FILE, VERIFY.md step 1)"

// maxManifest bounds what Check reads of manifest.json and manifest.sig.
const maxManifest = 16 << 20

// Check checks an evidence archive offline, as `sqlgate audit
// check-evidence` does:
//
//   - manifest.json is an archive of this [Format] and every other file but
//     manifest.sig is listed in it, with a matching SHA-256; no file is
//     missing, added or listed twice;
//   - the manifest names at least one origin, and every origin a key in
//     opts.Keys is named after (the log of each key is in the evidence);
//   - each origin's checkpoint is signed by a key in opts.Keys whose name is
//     the origin, states the size and root hash the manifest repeats, and
//     covers every record the evidence was read from;
//   - manifest.sig, when present, is a signature over manifest.json's
//     SHA-256; it must verify if a trusted key made it, and must exist when
//     opts.RequireSignature is set;
//   - each CSV file holds the rows the manifest counts.
//
// Errors wrap [ErrBadArchive] and name the file. Check does not reread the
// log: it proves the archive is the one the signers produced, and the
// checkpoints let each row be proven against the log (`sqlgate audit
// prove`). They do not vouch for the rows: an archive whose manifest no
// trusted key signed could have been edited with its manifest, and the
// report's Warnings say so; [Regenerate] compares it with the log. Nor do
// they vouch for the manifest's claim of trusted checkpoint copies:
// Warnings hold [NoTrustedCopy] unless the claim is signed by a key of
// opts.SignerKeys that is not a log key.
func Check(r io.ReaderAt, size int64, opts CheckOptions) (*CheckReport, error) {
	if len(opts.Keys) == 0 {
		return nil, errors.New("checking evidence needs the trusted verifier keys of the log")
	}
	logKeys, err := audit.NewVerifiers(opts.Keys...)
	if err != nil {
		return nil, fmt.Errorf("a trusted key of the log: %w", err)
	}
	signerKeys, err := audit.NewVerifiers(append(slices.Clone(opts.Keys), opts.SignerKeys...)...)
	if err != nil {
		return nil, fmt.Errorf("a trusted signer key: %w", err)
	}
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("%w: not a zip archive: %w", ErrBadArchive, err)
	}
	files := map[string]*zip.File{}
	for _, f := range zr.File {
		if files[f.Name] != nil {
			return nil, fmt.Errorf("%w: %s is in the archive twice", ErrBadArchive, f.Name)
		}
		files[f.Name] = f
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadArchive}, args...)...)
	}
	manifest, err := readFile(files, manifestName, maxManifest)
	if err != nil {
		return nil, bad("%w", err)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(manifest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, bad("%s: %w", manifestName, err)
	}
	if m.Format != Format {
		return nil, bad("%s: format %q, want %q", manifestName, m.Format, Format)
	}
	rep := &CheckReport{Manifest: &m}

	// Every file but the manifest and its signature is listed, once, with
	// its hash.
	listed := map[string]File{}
	for _, f := range m.Files {
		if _, dup := listed[f.Name]; dup || f.Name == manifestName || f.Name == signatureName {
			return nil, bad("%s lists %s twice or lists itself", manifestName, f.Name)
		}
		listed[f.Name] = f
	}
	for _, f := range zr.File {
		if f.Name == manifestName || f.Name == signatureName {
			continue
		}
		want, ok := listed[f.Name]
		if !ok {
			return nil, bad("%s is not listed in %s", f.Name, manifestName)
		}
		got, rows, err := fileSum(f)
		if err != nil {
			return nil, bad("%s: %w", f.Name, err)
		}
		if got != want.SHA256 {
			return nil, bad("%s: SHA-256 %s, the manifest says %s", f.Name, got, want.SHA256)
		}
		if rows >= 0 && rows != want.Rows {
			return nil, bad("%s holds %d rows, the manifest says %d", f.Name, rows, want.Rows)
		}
		rep.Files++
	}
	for name := range listed {
		if files[name] == nil {
			return nil, bad("%s is listed in %s but not in the archive", name, manifestName)
		}
	}

	// Each origin's checkpoint: trusted, and covering what was read.
	if len(m.Origins) == 0 {
		return nil, bad("%s names no log origin: the archive holds no evidence", manifestName)
	}
	for _, o := range m.Origins {
		data, err := readFile(files, o.Checkpoint, maxManifest)
		if err != nil {
			return nil, bad("origin %s: %w", o.Origin, err)
		}
		c, err := audit.OpenCheckpoint(data, logKeys)
		if err != nil {
			return nil, bad("%s: %w", o.Checkpoint, err)
		}
		switch {
		case c.Origin != o.Origin:
			return nil, bad("%s is a checkpoint of %s, the manifest says %s", o.Checkpoint, c.Origin, o.Origin)
		case c.Size != o.CheckpointSize || c.Root.String() != o.CheckpointRoot:
			return nil, bad("%s states size %d and root %s, the manifest says %d and %s", o.Checkpoint, c.Size, c.Root, o.CheckpointSize, o.CheckpointRoot)
		case o.End > c.Size || o.First > o.End:
			return nil, bad("%s covers %d records, the evidence of %s was read from records %d to %d", o.Checkpoint, c.Size, o.Origin, o.First, o.End-1)
		}
		rep.Checkpoints = append(rep.Checkpoints, c.KeyID)
	}
	// The log of every key: a key is named after its origin, and evidence
	// is written from every log the source holds, so an origin left out
	// means its log was missing.
	for _, k := range opts.Keys {
		v, _ := note.NewVerifier(strings.TrimSpace(k)) // parsed above
		if !slices.ContainsFunc(m.Origins, func(o OriginSource) bool { return o.Origin == v.Name() }) {
			return nil, bad("%s has no origin %s, whose key was given: the evidence leaves out that log", manifestName, v.Name())
		}
	}

	// The manifest's signature.
	independent := false // signed by a key that is not a log's
	if files[signatureName] != nil {
		sig, err := readFile(files, signatureName, maxManifest)
		if err != nil {
			return nil, bad("%w", err)
		}
		n, err := note.Open(sig, signerKeys)
		var unverified *note.UnverifiedNoteError
		switch {
		case errors.As(err, &unverified):
			rep.Untrusted = signerNames(unverified.Note.UnverifiedSigs)
		case err != nil:
			return nil, bad("%s: %w", signatureName, err)
		case n.Text != manifestNoteText(manifest):
			return nil, bad("%s signs another manifest", signatureName)
		default:
			rep.SignedBy = fmt.Sprintf("%s+%08x", n.Sigs[0].Name, n.Sigs[0].Hash)
			for _, s := range n.Sigs {
				if _, err := logKeys.Verifier(s.Name, s.Hash); err != nil {
					independent = true
				}
			}
		}
	}
	if opts.RequireSignature && rep.SignedBy == "" {
		if rep.Untrusted != "" {
			return nil, bad("%s is signed by %s, which is not a trusted key", signatureName, rep.Untrusted)
		}
		return nil, bad("the manifest is not signed (no %s)", signatureName)
	}
	if rep.SignedBy == "" {
		rep.Warnings = append(rep.Warnings, unauthenticated)
	}
	// Whoever handled an unsigned archive could have written its claim of
	// trusted copies, and a holder of the log's key is whom the copies
	// guard against: the claim counts only when another key the checker
	// trusts signed it.
	if m.Verification.TrustedCopies == 0 || !independent {
		rep.Warnings = append(rep.Warnings, NoTrustedCopy)
	}
	return rep, nil
}

// readFile reads a file of the archive, at most limit bytes.
func readFile(files map[string]*zip.File, name string, limit int64) ([]byte, error) {
	f := files[name]
	if f == nil {
		return nil, fmt.Errorf("no %s in the archive", name)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer func() { _ = rc.Close() }() // read-only
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: %w", name, err)
	case int64(len(data)) > limit:
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return data, nil
}

// fileSum is the hex SHA-256 of a file of the archive and, for a CSV
// file, the number of its rows below the header (-1 for another file).
func fileSum(f *zip.File) (string, int, error) {
	rc, err := f.Open()
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = rc.Close() }() // read-only
	h := sha256.New()
	rows := -1
	if isCSV(f.Name) {
		// Counted as it is hashed, one record at a time; the first is
		// the header.
		cr := csv.NewReader(io.TeeReader(rc, h))
		cr.FieldsPerRecord, cr.ReuseRecord = -1, true
		records := 0
		for {
			_, err := cr.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return "", 0, err
			}
			records++
		}
		rows = max(records-1, 0)
	}
	if _, err := io.Copy(h, rc); err != nil { //nolint:gosec // G110: hashed as it streams; nothing is held in memory
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), rows, nil
}

// isCSV reports whether an archive file is one of the CSV sections.
func isCSV(name string) bool {
	return strings.HasPrefix(name, "csv/") && strings.HasSuffix(name, ".csv")
}

func signerNames(sigs []note.Signature) string {
	var b bytes.Buffer
	for i, s := range sigs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s+%08x", s.Name, s.Hash)
	}
	return b.String()
}
