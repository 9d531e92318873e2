// Package evidence writes SOC 2 evidence for a period from a verified audit
// log: populations as CSV files an auditor can sort and sample (activity,
// denials, credentials, the access population at the period's end, policy and
// administrative changes, exceptions) and an integrity attestation, the
// same populations as worksheets (report.xlsx), a PDF report, and a
// manifest that states the parameters, the record range each file came from,
// the signed checkpoints that cover it, and each file's row count and
// SHA-256 (docs/evidence.md).
//
// The evidence is derived, never trusted: [Write] verifies the whole log with
// the given public keys first and writes nothing when verification fails.
// Every row names its record's origin, log index and leaf hash, so a sampled
// row can be proven against a checkpoint with `sqlgate audit prove --bundle`. The same log,
// keys and period give a byte-identical archive, so anyone holding the log
// can regenerate the evidence and compare hashes instead of trusting the
// person who produced it.
package evidence

import (
	"archive/zip"
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
)

// Format names the archive layout in the manifest.
const Format = "sqlgate-evidence/1"

// ErrNotVerified marks a log that failed verification, or that no longer
// reads as it verified: no evidence is written from it.
var ErrNotVerified = errors.New("the audit log did not verify")

// ExceptionPruned is the code of the exception the evidence adds for an
// origin whose first records were pruned: the populations may miss records
// (the access population, credentials issued before the first retained
// record).
const ExceptionPruned audit.ProblemCode = "pruned_records"

// ExceptionNotCovered is the code of the exception the evidence adds when
// the period starts before the log's first record or ends after what its
// newest signed checkpoints cover: the populations miss that part of the
// period.
const ExceptionNotCovered audit.ProblemCode = "period_not_covered"

// ExceptionRevocationPending is the code of the exception the evidence adds
// for a SQL login that expired or was being revoked and whose removal had
// not succeeded by the period's end (listed in the access population with
// status revocation_pending).
const ExceptionRevocationPending audit.ProblemCode = "revocation_pending"

// ExceptionUnknownOutcome is the code of the exception the evidence adds
// for a call of the period whose outcome is "unknown": the database could
// not say whether its transaction committed. A retry under the same
// idempotency key is then answered with the stored result (replayed,
// outcome none, the stored transaction id), so a transaction the call did
// commit appears in no commit row: the exception names the later replay
// and its transaction when the records read hold one.
const ExceptionUnknownOutcome audit.ProblemCode = "unknown_outcome"

// ExceptionRecoveredOutcome is the code of the exception the evidence adds
// for a call of the period whose outcome crash recovery wrote (result
// recovered): the instance stopped before recording it, and the outcome
// says what the target database's idempotency record showed at the next
// start. A recovered outcome that is unknown is an [ExceptionUnknownOutcome].
const ExceptionRecoveredOutcome audit.ProblemCode = "recovered_outcome"

// Status values of the access population.
const (
	accessValid   = "valid"
	accessPending = "revocation_pending"
)

// maxListedPending caps the revocation_pending rows of exceptions.csv; the
// manifest counts them all and the access population lists them all.
const maxListedPending = 100

// maxListedCalls caps the unknown_outcome and recovered_outcome rows of
// exceptions.csv per origin and code; the manifest counts them all and
// activity.csv shows every call's outcome.
const maxListedCalls = 100

// Options select the period and how the log is verified.
type Options struct {
	// From and To delimit the period, [From, To). Records are selected by
	// their time; the access population is taken as of To.
	From, To time.Time
	// Verify are the options of the verification that must pass first. Its
	// Keys are required: evidence is only as good as the key it trusts.
	Verify audit.VerifyOptions
	// Generator names the program in the manifest (e.g. "sqlgate audit
	// evidence"); it must not vary between runs that should compare equal.
	Generator string
	// TempDir holds the sections while they are written ("": the system's
	// temporary directory).
	TempDir string
	// Signer, when set, signs the manifest: the archive gets manifest.sig,
	// a signed note over manifest.json's SHA-256 (see [Check]). Ed25519
	// signatures are deterministic, so a signed archive stays
	// byte-identical for the same inputs and key.
	Signer note.Signer
}

// Manifest describes an evidence archive (manifest.json).
type Manifest struct {
	Format    string `json:"format"`
	Generator string `json:"generator"`
	// Period is the selected time range, RFC 3339 UTC, to exclusive.
	Period struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"period"`
	// Origins are the logs the evidence came from.
	Origins []OriginSource `json:"origins"`
	// Verification summarizes the check that passed before writing.
	Verification Verification `json:"verification"`
	// Incomplete says, per origin, why the populations may miss records:
	// records pruned by retention or deleted ([ExceptionPruned]), or a
	// period that starts before the log's first record or ends after what
	// its signed checkpoints cover ([ExceptionNotCovered]); empty when the
	// log holds every record the period needs. Each is also a row of
	// csv/exceptions.csv.
	Incomplete []string `json:"incomplete,omitempty"`
	// Files lists every other file of the archive.
	Files []File `json:"files"`
}

// OriginSource is one log the evidence came from.
type OriginSource struct {
	Origin string `json:"origin"`
	// First and End delimit the records read, [First, End); PeriodFirst and
	// PeriodEnd the indexes of the records inside the period (-1 when none).
	First       int64 `json:"first"`
	End         int64 `json:"end"`
	PeriodFirst int64 `json:"period_first"`
	PeriodLast  int64 `json:"period_last"`
	// Checkpoint is the archive file holding the newest signed checkpoint,
	// which covers every record read; CheckpointSize and CheckpointRoot
	// repeat what it says.
	Checkpoint     string   `json:"checkpoint"`
	CheckpointSize int64    `json:"checkpoint_size"`
	CheckpointRoot string   `json:"checkpoint_root"`
	KeyIDs         []string `json:"key_ids"`
}

// Verification is the summary of the verification that passed.
// ExceptionCount also counts the exceptions the evidence adds
// ([ExceptionPruned], [ExceptionNotCovered], [ExceptionRevocationPending],
// [ExceptionUnknownOutcome], [ExceptionRecoveredOutcome]).
type Verification struct {
	OK             bool             `json:"ok"`
	Records        int64            `json:"records"`
	Keys           []string         `json:"keys"`
	TrustedCopies  int              `json:"trusted_copies"`
	ExceptionCount map[string]int64 `json:"exception_counts"`
}

// File is one file of the archive.
type File struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Selection states which records the rows come from.
	Selection string `json:"selection"`
	// Criteria are the SOC 2 trust services criteria the file evidences.
	Criteria string `json:"criteria,omitempty"`
	// Rows counts what the file holds: rows of a CSV file, pages of the
	// report, sheets of the workbook, the checkpoint of a note ([File.Count]
	// names the unit).
	Rows   int    `json:"rows"`
	SHA256 string `json:"sha256"`
}

// Count is Rows with its unit, e.g. "12 rows", "3 pages" or "8 sheets";
// "" for a file that holds fixed text.
func (f File) Count() string {
	unit := "rows"
	switch {
	case f.Name == verifyName:
		return ""
	case f.Name == reportName:
		unit = "pages"
	case f.Name == workbookName:
		unit = "sheets"
	case strings.HasSuffix(f.Name, ".note"):
		unit = "checkpoints"
	}
	if f.Rows == 1 {
		unit = strings.TrimSuffix(unit, "s")
	}
	return strconv.Itoa(f.Rows) + " " + unit
}

// Write verifies src and writes the evidence archive (zip) of the period to
// w. It returns the manifest it wrote. When verification fails, when src
// holds no log, or when a record read for the evidence differs from what
// was verified (src changed during the call), it writes nothing and
// returns an error wrapping [ErrNotVerified]. When src fails while it is
// read (a database outage), it writes nothing and returns an error that
// does not wrap it: the log was not found wrong.
//
// The sections are written to temporary files in tempDir ("" for the
// system's) while the log is read, so memory does not grow with the log:
// it holds the outcome columns of the period's calls (about 300 bytes
// each), the calls answered with a stored result (replays) since the
// period's start (about 150 bytes each) and the credentials that may be
// valid at the period's end. The workbook is written from the sections'
// files with at most 16 MB of each sheet in memory.
func Write(ctx context.Context, w io.Writer, src audit.Source, opts Options) (*Manifest, error) {
	return write(ctx, w, src, opts, nil)
}

// write is [Write]. restate, when set, is given the verification's report
// once it passed, before anything is written from it, and may change what
// the archive restates of the verification: the keys and each origin's
// trusted copies ([Regenerate] restates the archive's own).
func write(ctx context.Context, w io.Writer, src audit.Source, opts Options, restate func(*audit.Report)) (*Manifest, error) {
	switch {
	case len(opts.Verify.Keys) == 0:
		return nil, errors.New("evidence needs the trusted verifier keys of the log")
	case opts.From.IsZero() || opts.To.IsZero() || !opts.From.Before(opts.To):
		return nil, errors.New("the period needs a start before its end")
	}
	rep, err := audit.Verify(ctx, src, opts.Verify)
	if err != nil {
		return nil, err
	}
	if rep.SourceFailed() {
		// The source failed while it was read (a database outage): not a
		// log that did not verify, and not [ErrNotVerified].
		first := rep.FirstFailure()
		return nil, fmt.Errorf("evidence: the audit log could not be read: %s: %s", first.Origin, first.Message)
	}
	if !rep.OK() {
		first := rep.FirstFailure()
		return nil, fmt.Errorf("%w: %s: %s", ErrNotVerified, first.Origin, first)
	}
	if len(rep.Origins) == 0 {
		if opts.Verify.Origin != "" {
			return nil, fmt.Errorf("%w: the source holds no log of origin %s", ErrNotVerified, opts.Verify.Origin)
		}
		return nil, fmt.Errorf("%w: the source holds no audit log", ErrNotVerified)
	}
	if restate != nil {
		restate(rep)
	}
	dir, err := os.MkdirTemp(opts.TempDir, "sqlgate-evidence-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }() // temporary sections

	from, to := opts.From.UTC(), opts.To.UTC()
	c, err := newCollector(dir, from, to)
	if err != nil {
		return nil, err
	}
	defer c.close()
	m := &Manifest{Format: Format, Generator: opts.Generator}
	m.Period.From, m.Period.To = periodText(from), periodText(to)
	m.Verification = Verification{OK: true, Records: rep.Records, Keys: rep.Keys, ExceptionCount: map[string]int64{}}
	for code, n := range rep.ExceptionCounts {
		m.Verification.ExceptionCount[string(code)] = n
	}
	var notes []*section
	incomplete := func(p *audit.Problem) {
		c.added = append(c.added, *p)
		m.Verification.ExceptionCount[string(p.Code)]++
		m.Incomplete = append(m.Incomplete, p.Origin+": "+p.Message)
	}
	var spans []span
	for i, o := range rep.Origins {
		m.Verification.TrustedCopies += o.Trusted
		c.rank = i
		osrc, err := c.readOrigin(ctx, src, o)
		if err != nil {
			return nil, err
		}
		if p := c.pruned(o, osrc); p != nil {
			incomplete(p)
		}
		spans = append(spans, span{o: o, src: osrc, first: c.firstTime, last: c.lastTime})
		osrc.Checkpoint = fmt.Sprintf("checkpoints/%d.note", i+1)
		note, err := newFileSection(dir, osrc.Checkpoint, "the newest signed checkpoint of an origin (C2SP signed note); check it with the verifier key", "checkpoint")
		if err != nil {
			return nil, err
		}
		note.raw(o.Latest.Note)
		if err := note.done(); err != nil {
			return nil, err
		}
		notes = append(notes, note)
		m.Origins = append(m.Origins, osrc)
	}
	for _, p := range notCovered(spans, from, to) {
		incomplete(&p)
	}
	sections, err := c.finish(rep)
	if err != nil {
		return nil, err
	}
	if c.pending > 0 {
		m.Verification.ExceptionCount[string(ExceptionRevocationPending)] += int64(c.pending)
	}
	for code, n := range c.callCounts {
		m.Verification.ExceptionCount[string(code)] += n
	}
	sections = append(sections, notes...)
	for _, sec := range sections {
		if err := sec.done(); err != nil {
			return nil, err
		}
		m.Files = append(m.Files, File{
			Name: sec.name, Description: sec.description, Selection: sec.selection, Criteria: criteria[sec.name],
			Rows: sec.rows, SHA256: hex.EncodeToString(sec.sum),
		})
	}
	pdf, pages, err := report(m, &c.accessExcerpt, &c.denialExcerpt, c.withReasons, to)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(pdf)
	m.Files = append(m.Files, File{
		Name: reportName, Description: "the report: scope, source and integrity, every population with its criteria, exceptions, excerpts",
		Selection: "this manifest and the first rows of the access population and the denials", Rows: pages, SHA256: hex.EncodeToString(sum[:]),
	})
	sum = sha256.Sum256([]byte(verifyText))
	m.Files = append(m.Files, File{
		Name: verifyName, Description: "how to check this archive", Selection: "fixed text", SHA256: hex.EncodeToString(sum[:]),
	})
	book, err := writeWorkbook(dir, m, sections, to)
	if err != nil {
		return nil, err
	}
	m.Files = append(m.Files, File{
		Name: book.name, Description: book.description, Selection: book.selection, Rows: book.rows, SHA256: hex.EncodeToString(book.sum),
	})
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	manifest = append(manifest, '\n')
	var sig []byte
	if opts.Signer != nil {
		if sig, err = note.Sign(&note.Note{Text: manifestNoteText(manifest)}, opts.Signer); err != nil {
			return nil, fmt.Errorf("sign the manifest: %w", err)
		}
	}
	return m, writeZip(w, manifest, sig, pdf, append([]*section{book}, sections...), to)
}

// Names of the archive's fixed files.
const (
	manifestName  = "manifest.json"
	signatureName = "manifest.sig"
	verifyName    = "VERIFY.md"
	reportName    = "report.pdf"
)

// manifestNoteText is the text of the note that signs a manifest: the
// format, what it signs and the manifest's SHA-256. Its second line is not a
// number, so no checkpoint parser takes it for a tree head even when the
// log's own key signed it.
func manifestNoteText(manifest []byte) string {
	sum := sha256.Sum256(manifest)
	return Format + " manifest\nsha256 " + hex.EncodeToString(sum[:]) + "\n"
}

// writeZip writes the manifest, its signature (if any), VERIFY.md, the
// report and the files (the workbook, the sections) in order with a fixed
// time, so the same content gives the same bytes. The workbook is a zip
// archive itself: it is stored, not compressed again.
func writeZip(w io.Writer, manifest, sig, pdf []byte, files []*section, modified time.Time) error {
	zw := zip.NewWriter(w)
	add := func(name string, r io.Reader) error {
		method := zip.Deflate
		if name == workbookName {
			method = zip.Store
		}
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: modified})
		if err != nil {
			return err
		}
		_, err = io.Copy(fw, r)
		return err
	}
	if err := add(manifestName, bytes.NewReader(manifest)); err != nil {
		return err
	}
	if sig != nil {
		if err := add(signatureName, bytes.NewReader(sig)); err != nil {
			return err
		}
	}
	if err := add(verifyName, strings.NewReader(verifyText)); err != nil {
		return err
	}
	if err := add(reportName, bytes.NewReader(pdf)); err != nil {
		return err
	}
	for _, sec := range files {
		f, err := os.Open(sec.path)
		if err != nil {
			return err
		}
		err = add(sec.name, f)
		_ = f.Close() // read-only
		if err != nil {
			return err
		}
	}
	return zw.Close()
}

// section is one file of the archive, written to a temporary file and
// hashed as it is written.
type section struct {
	name, description, selection string
	path                         string
	file                         *os.File
	buf                          *bufio.Writer
	hash                         hash.Hash
	csv                          *csv.Writer // nil for a raw file
	rows                         int
	sum                          []byte
	cells                        []string // reused by row
}

func newFileSection(dir, name, description, selection string) (*section, error) {
	f, err := os.CreateTemp(dir, "section-*")
	if err != nil {
		return nil, err
	}
	s := &section{name: name, description: description, selection: selection, path: f.Name(), file: f, hash: sha256.New()}
	s.buf = bufio.NewWriter(io.MultiWriter(f, s.hash))
	return s, nil
}

// newCSVSection starts a CSV file with its header row.
func newCSVSection(dir, name, description, selection string, header ...string) (*section, error) {
	s, err := newFileSection(dir, name, description, selection)
	if err != nil {
		return nil, err
	}
	s.csv = csv.NewWriter(s.buf)
	_ = s.csv.Write(header) // errors surface at done
	return s, nil
}

// raw writes bytes to a non-CSV section.
func (s *section) raw(b []byte) {
	_, _ = s.buf.Write(b) // errors surface at done
	s.rows++
}

// row writes one CSV row. A cell that a spreadsheet would read as a
// formula gets a leading apostrophe: callers choose some values
// (correlation ids, client names, reasons), and an auditor opens these
// files in a spreadsheet.
func (s *section) row(cells ...string) {
	s.cells = s.cells[:0]
	for _, v := range cells {
		s.cells = append(s.cells, neutralize(v))
	}
	_ = s.csv.Write(s.cells) // errors surface at done
	s.rows++
}

// done flushes the section and records its hash.
func (s *section) done() error {
	if s.file == nil {
		return nil
	}
	if s.csv != nil {
		s.csv.Flush()
		if err := s.csv.Error(); err != nil {
			return err
		}
	}
	err := s.buf.Flush()
	if cerr := s.file.Close(); err == nil {
		err = cerr
	}
	s.file = nil
	s.sum = s.hash.Sum(nil)
	if err != nil {
		return fmt.Errorf("evidence %s: %w", s.name, err)
	}
	return nil
}

func neutralize(v string) string {
	if v == "" || !strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return v
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return v // a number, such as -1, is not a formula
	}
	return "'" + v
}

// criteria are the SOC 2 trust services criteria each population evidences
// (docs/evidence.md).
var criteria = map[string]string{ //nolint:gosec // G101 reads the file names as credentials
	"csv/activity.csv":          "CC6.1, CC7.2",
	"csv/denials.csv":           "CC6.1, CC7.2",
	"csv/credentials.csv":       "CC6.1, CC6.2, CC6.3",
	"csv/access_population.csv": "CC6.1, CC6.2, CC6.3",
	"csv/changes.csv":           "CC8.1, CC7.1",
	"csv/exceptions.csv":        "CC4.1, CC7.2, IPE",
	"csv/integrity.csv":         "CC4.1, CC2.1, IPE",
}

// ref is where a record is in the log.
type ref struct {
	origin string
	index  int64
	leaf   tlog.Hash
}

// cells are the reference columns; hashes are hex, which no spreadsheet
// reads as a formula.
func (r ref) cells() []string {
	return []string{r.origin, strconv.FormatInt(r.index, 10), hex.EncodeToString(r.leaf[:])}
}

var refHeader = []string{"log_origin", "log_index", "leaf_hash"}

// collector sorts the records of every origin into the sections.
type collector struct {
	dir      string
	from, to time.Time

	activity, denials, credentials, changes *section
	all                                     []*section

	// outcomes holds the period's calls of the origin being read, by intent
	// index: the intent's time and the outcome columns (nil before its
	// outcome is seen).
	outcomes map[int64]pendingCall
	// replays holds, per idempotency key, server and database, the calls
	// answered with a stored result since the period's start, of every
	// origin read, to name the transaction of a call whose outcome is
	// unknown.
	replays map[callKey][]replay
	// unknown are the listed calls of the period whose outcome is unknown,
	// resolved against replays once every origin is read.
	unknown []unknownCall
	// callCounts counts the [ExceptionUnknownOutcome] and
	// [ExceptionRecoveredOutcome] calls; callListed, the rows listed of
	// the origin being read.
	callCounts map[audit.ProblemCode]int64
	callListed map[audit.ProblemCode]int
	// creds holds, per SQL lease, the state its newest event (by record
	// time, then origin, then index) left it in, whichever origin recorded
	// it: instances share the lease store, so one may issue a lease that
	// another renews, expires or revokes. A lease whose grant expired keeps
	// the grant's holder (for a pending row, should its expiry be recorded
	// after) until a revocation succeeds; then it moves to ended.
	creds map[credKey]credState
	// natsCreds holds, per NATS user key, its JWTs that may still be valid
	// at `to` and the order of its newest revocation or expiry: sqlgate may
	// issue a key again, with a shorter expiry, while its earlier JWT stays
	// valid on NATS until its own expiry.
	natsCreds map[credKey]*natsState
	// ended holds, per SQL lease revoked and NATS user key ended with no
	// JWT that may still be valid, only the order of its newest event (a
	// 16-byte key and a 24-byte order), so that an older event read later
	// cannot bring it back: from another origin, or from the same origin,
	// whose record times may go back (a record's time is taken before it
	// waits for its place in the log).
	ended      map[credKey]order
	sinceSweep int
	// pending counts the SQL logins whose removal was pending at `to`.
	pending int
	// withReasons counts the period's calls whose decision recorded
	// reasons (under the default policy, break-glass justifications).
	withReasons int
	// rank is the position of the origin being read among the sorted
	// origins.
	rank int
	// added are the exceptions of the evidence itself ([ExceptionPruned],
	// [ExceptionNotCovered], [ExceptionRevocationPending],
	// [ExceptionRecoveredOutcome]; [ExceptionUnknownOutcome] at finish).
	added []audit.Problem
	// firstTime is the time of the first record read of the origin being
	// read, lastTime the latest time of the records it read.
	firstTime, lastTime time.Time

	// excerpts of the populations for the PDF report
	accessExcerpt, denialExcerpt excerpt
}

type activeCred struct {
	ref ref
	r   *audit.Record
}

// pendingCall is one of the period's calls awaiting its outcome.
type pendingCall struct {
	intent int64    // the intent's time, Unix nanoseconds
	cells  []string // the outcome columns, nil until the outcome is read
	// errorNumber is the outcome's SQL error number, "" when it has none
	// (the last column of the row).
	errorNumber string
}

// callKey identifies the idempotency record of a call: a hash of its
// idempotency key, server and database.
type callKey [16]byte

func callKeyOf(r *audit.Record) callKey {
	server, database := "", ""
	if r.SQL != nil {
		server, database = r.SQL.Server, r.SQL.Database
	}
	sum := sha256.Sum256([]byte(r.IdempotencyKey + "\x00" + server + "\x00" + database))
	return callKey(sum[:16])
}

// replay is a call answered with the stored result of an earlier one: its
// outcome record and the stored transaction.
type replay struct {
	ord           order
	at            ref
	correlationID string
	transaction   string
}

// unknownCall is a call whose outcome is unknown: its outcome record and
// the intent's time.
type unknownCall struct {
	at     ref
	r      *audit.Record
	intent int64
}

// credKey identifies a credential: a hash of its type, NATS user key and
// lease id (16 bytes, so the credentials that ended cost little memory).
type credKey [16]byte

func keyOf(cr *audit.Credential) credKey {
	sum := sha256.Sum256([]byte(cr.Type + "\x00" + cr.UserKey + "\x00" + cr.LeaseID))
	return credKey(sum[:16])
}

// order places a credential event among the events of every origin: by
// record time, then origin, then log index.
type order struct {
	time  int64 // Unix nanoseconds
	rank  int   // of the origin
	index int64
}

func (o order) after(p order) bool {
	return cmp.Or(cmp.Compare(o.time, p.time), cmp.Compare(o.rank, p.rank), cmp.Compare(o.index, p.index)) > 0
}

// credPhase is what a credential's newest event left it in.
type credPhase uint8

const (
	// phaseEnded: revoked, or (a NATS credential) expired; also a grant
	// dropped once it expired.
	phaseEnded credPhase = iota
	// phaseGranted: issued or renewed, valid until its expiry.
	phaseGranted
	// phasePending: a SQL login that expired, or whose revocation was
	// requested, and whose removal has not succeeded yet (`expire`,
	// `revoke_failed`): the login may still exist.
	phasePending
)

// credState is the state of one credential.
type credState struct {
	last  order // of the newest event applied
	phase credPhase
	// grant is the newest issue or renewal (nil once revoked; once it
	// expired, only its actor and time), event the record that made the
	// credential pending.
	grant, event *activeCred
	grantOrder   order
}

// natsGrant is one JWT of a NATS user key: its issue or renewal record.
type natsGrant struct {
	cred    activeCred
	ord     order
	expires int64 // Unix nanoseconds; math.MaxInt64 when it never expires
}

// natsState is what is known of a NATS user key: the order of its newest
// end event (revoke, expire), which ends every JWT of the key issued
// before it, and the grants newer than that end whose JWT may still be
// valid at `to`, oldest first. No grant kept is dominated by a newer one
// that expires at the same time or later: an end event that ends the newer
// grant ends the older too, and the newer one is valid whenever the older
// is, so the older one can never be the one listed. The expiries of the
// grants kept thus fall as their order rises.
type natsState struct {
	end    order
	ended  bool
	grants []natsGrant
}

// grant adds a JWT of the key unless an end event newer than it, or a newer
// JWT that expires no earlier, makes it irrelevant.
func (st *natsState) grant(g natsGrant) {
	if st.ended && !g.ord.after(st.end) {
		return
	}
	i, _ := slices.BinarySearchFunc(st.grants, g.ord, func(h natsGrant, o order) int {
		if h.ord.after(o) {
			return 1
		}
		return -1 // orders are unique: no record is read twice
	})
	if i < len(st.grants) && st.grants[i].expires >= g.expires {
		return // dominated: newer grants expire ever earlier, this is the latest of them
	}
	// The older grants that expire no later than g are dominated by it.
	j := i
	for j > 0 && st.grants[j-1].expires <= g.expires {
		j--
	}
	st.grants = slices.Insert(slices.Delete(st.grants, j, i), j, g)
}

// endAt applies a revocation or expiry of the key: every JWT issued
// before it ends.
func (st *natsState) endAt(o order) {
	if st.ended && !o.after(st.end) {
		return
	}
	st.end, st.ended = o, true
	n := 0
	for n < len(st.grants) && !st.grants[n].ord.after(o) {
		n++
	}
	st.grants = slices.Delete(st.grants, 0, n)
}

// dropExpired drops the grants that expired at or before now, the time of
// a record read: every record read is before `to`, so such a grant is not
// valid then.
func (st *natsState) dropExpired(now int64) {
	st.grants = slices.DeleteFunc(st.grants, func(g natsGrant) bool { return g.expires <= now })
}

// valid returns the grant listed for the key at `to`: of the JWTs newer
// than every end event of the key and expiring after `to` (or never), the
// one with the latest expiry; nil when there is none.
func (st *natsState) valid(to int64) *natsGrant {
	// Expiries fall as orders rise: the first grant kept expires last.
	if len(st.grants) > 0 && st.grants[0].expires > to {
		return &st.grants[0]
	}
	return nil
}

func newCollector(dir string, from, to time.Time) (*collector, error) {
	c := &collector{
		dir: dir, from: from, to: to, creds: map[credKey]credState{}, natsCreds: map[credKey]*natsState{}, ended: map[credKey]order{},
		replays: map[callKey][]replay{}, callCounts: map[audit.ProblemCode]int64{},
		accessExcerpt: excerpt{
			header: []string{"type", "email", "subject", "NATS user key or SQL login", "database", "role", "expires"},
			widths: []float64{0.05, 0.17, 0.2, 0.26, 0.1, 0.08, 0.14},
		},
		denialExcerpt: excerpt{
			header: []string{"time", "email", "entry", "route", "status", "reasons"},
			widths: []float64{0.14, 0.15, 0.06, 0.14, 0.09, 0.42},
		},
	}
	var err error
	// mk starts a section whose columns are header, the reference of the
	// row's record, then tail.
	mk := func(name, description, selection string, header []string, tail ...string) *section {
		if err != nil {
			return nil
		}
		var s *section
		if s, err = newCSVSection(dir, name, description, selection, slices.Concat(header, refHeader, tail)...); err == nil {
			c.all = append(c.all, s)
		}
		return s
	}
	c.activity = mk("csv/activity.csv", "every routed call: its decision and the reasons it recorded, the SQL transaction it ran and its outcome",
		"intent records whose time is in the period, each with its outcome record wherever it is",
		[]string{
			"time", "correlation_id", "subject", "email", "issuer", "mfa", "nats_user_key", "client_host", "route", "target_kind", "target",
			"sql_server", "sql_database", "decision_id", "policy_revision", "param_hashes", "idempotency_key",
			"outcome", "sql_transaction_id", "rows", "rows_affected", "status", "replayed", "recovered", "duration_us", "outcome_index", "outcome_leaf_hash",
		},
		"reasons", "sql_error_number")
	c.denials = mk("csv/denials.csv", "every refused request: authentication failures and policy denials of calls and credentials",
		"decision records with allow=false whose time is in the period",
		[]string{
			"time", "correlation_id", "subject", "email", "issuer", "mfa", "nats_user_key", "client_host", "entry", "route", "credential",
			"status", "reasons", "decision_id", "policy_revision",
		})
	c.credentials = mk("csv/credentials.csv", "provisioning and revocation: every NATS and SQL credential issued, renewed, revoked or expired",
		"credential records whose time is in the period",
		[]string{
			"time", "type", "action", "status", "subject", "email", "issuer", "user_key", "login", "database", "role", "lease_id", "via",
			"expires_at", "detail", "decision_id", "policy_revision",
		})
	c.changes = mk("csv/changes.csv", "policy loads, failed loads and other administrative changes",
		"admin records whose time is in the period",
		[]string{"time", "instance", "action", "detail", "subject", "email"})
	if err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// close releases the temporary files of unfinished sections.
func (c *collector) close() {
	for _, s := range c.all {
		if s.file != nil {
			_ = s.file.Close() // the directory is removed
		}
	}
}

// readOrigin reads the records of one verified origin that its newest
// signed checkpoint covers, and returns what the manifest says about them.
// Records after that checkpoint are not signed yet and are left out. It
// reads the log twice: the first pass writes every section but the
// activity and notes the outcomes of the period's calls, the second writes
// the activity with them.
//
// Nothing read is taken on trust, as the source may have changed since it
// verified: each pass recomputes every leaf hash, requires contiguous
// indexes and rebuilds the tree. The first pass must reach the verified
// checkpoint's root at its size; the second, the tree the first pass had
// after the period's last record. A difference fails with
// [ErrNotVerified] and discards every row written.
func (c *collector) readOrigin(ctx context.Context, src audit.Source, o *audit.OriginReport) (OriginSource, error) {
	out := OriginSource{Origin: o.Origin, First: o.First, End: o.End, PeriodFirst: -1, PeriodLast: -1, KeyIDs: o.KeyIDs}
	if o.Latest == nil {
		return out, fmt.Errorf("origin %s has no signed checkpoint", o.Origin)
	}
	out.CheckpointSize, out.CheckpointRoot = o.Latest.Size, o.Latest.Root.String()
	out.End = min(out.End, o.Latest.Size)
	c.outcomes = map[int64]pendingCall{}
	c.callListed = map[audit.ProblemCode]int{}
	c.firstTime, c.lastTime = time.Time{}, time.Time{}

	// The tree at the first record read, or at the first retained one when
	// the source keeps no frontier there (records between are hashed only).
	start := out.First
	hashes, err := src.Frontier(ctx, o.Origin, start)
	if errors.Is(err, audit.ErrNotFound) && start != o.Pruned {
		start = o.Pruned
		hashes, err = src.Frontier(ctx, o.Origin, start)
	}
	if err != nil {
		return out, fmt.Errorf("origin %s: read the tree frontier at %d: %w", o.Origin, start, err)
	}
	tree, err := audit.NewTree(start, hashes)
	if err != nil {
		return out, fmt.Errorf("%w: origin %s: %w", ErrNotVerified, o.Origin, err)
	}
	// The trees at the period's first record and after its last, for the
	// second pass.
	var atFirst, afterLast *audit.Tree
	inPeriod := false // the previous record was in the period
	err = readChecked(ctx, src, o.Origin, tree, o.Latest.Size, func(at ref, r *audit.Record) {
		in := false
		if at.index >= out.First && at.index < out.End { // else hashed only
			if at.index == out.First {
				c.firstTime = r.Time
			}
			if r.Time.After(c.lastTime) {
				c.lastTime = r.Time
			}
			in = c.add(at, r)
		}
		if inPeriod && !in {
			afterLast = tree.Clone() // the tree after the previous record
		}
		if in {
			if out.PeriodFirst < 0 {
				out.PeriodFirst, atFirst = at.index, tree.Clone()
			}
			out.PeriodLast = at.index
		}
		inPeriod = in
	})
	if err != nil {
		return out, err
	}
	if inPeriod {
		afterLast = tree.Clone()
	}
	if tree.Root() != o.Latest.Root {
		return out, fmt.Errorf("%w: origin %s: records %d to %d no longer hash to the verified checkpoint of size %d: the log changed after it verified",
			ErrNotVerified, o.Origin, start, o.Latest.Size-1, o.Latest.Size)
	}
	if out.PeriodFirst < 0 {
		return out, nil
	}
	second := atFirst.Clone()
	err = readChecked(ctx, src, o.Origin, second, out.PeriodLast+1, func(at ref, r *audit.Record) {
		if r.Kind == audit.KindIntent && c.inPeriod(r) {
			c.writeActivity(at, r)
		}
	})
	if err != nil {
		return out, err
	}
	if second.Root() != afterLast.Root() {
		return out, fmt.Errorf("%w: origin %s: records %d to %d changed between the two passes of the evidence",
			ErrNotVerified, o.Origin, out.PeriodFirst, out.PeriodLast)
	}
	return out, nil
}

// readChecked calls fn for each record of origin from tree.Size() to end,
// in order, then appends its leaf hash to tree. A missing or repeated
// index, a record whose bytes differ from its stored leaf hash, or one
// that is not a canonical record of this origin at its index fails with
// [ErrNotVerified], naming it.
func readChecked(ctx context.Context, src audit.Source, origin string, tree *audit.Tree, end int64, fn func(ref, *audit.Record)) error {
	err := src.Records(ctx, origin, tree.Size(), end, func(index int64, data []byte, stored *tlog.Hash) error {
		if want := tree.Size(); index != want {
			if err := prunedWhileRead(ctx, src, origin, want); err != nil {
				return err
			}
			return fmt.Errorf("%w: origin %s: record %d is missing (the log returned record %d next)", ErrNotVerified, origin, want, index)
		}
		leaf := audit.LeafHash(data)
		if stored != nil && *stored != leaf {
			return fmt.Errorf("%w: origin %s: record %d no longer matches its leaf hash: it changed after the log verified", ErrNotVerified, origin, index)
		}
		r, err := audit.DecodeRecord(data)
		if err != nil {
			return fmt.Errorf("%w: origin %s: record %d: %w", ErrNotVerified, origin, index, err)
		}
		if r.Index != index || r.Origin != origin {
			return fmt.Errorf("%w: origin %s: record %d says it is record %d of %s", ErrNotVerified, origin, index, r.Index, r.Origin)
		}
		fn(ref{origin: origin, index: index, leaf: leaf}, r)
		tree.Append(leaf)
		return nil
	})
	if err != nil {
		return err
	}
	if tree.Size() != end {
		if err := prunedWhileRead(ctx, src, origin, tree.Size()); err != nil {
			return err
		}
		return fmt.Errorf("%w: origin %s: records %d to %d are missing", ErrNotVerified, origin, tree.Size(), end-1)
	}
	return nil
}

// prunedWhileRead is the error for record index missing from src because
// retention pruned it after it verified (src now starts after it): the
// log was not found wrong, so not [ErrNotVerified]; nil when src still
// starts at or before index.
func prunedWhileRead(ctx context.Context, src audit.Source, origin string, index int64) error {
	first, _, err := src.Bounds(ctx, origin)
	switch {
	case err != nil:
		return fmt.Errorf("origin %s: record %d is not in the source, whose bounds cannot be read again: %w", origin, index, err)
	case first <= index:
		return nil
	}
	return fmt.Errorf("origin %s: records %d to %d were pruned by retention while the evidence was written (the log now starts at record %d): ask for the evidence again",
		origin, index, first-1, first)
}

// pruned returns the exception for an origin whose records before the
// first one read are gone (retention or deletion) or were not verified,
// nil when the evidence read the log from index 0. Retention and deletion
// look the same to a verifier: both leave the tree's frontier and the
// checkpoints.
func (c *collector) pruned(o *audit.OriginReport, src OriginSource) *audit.Problem {
	n := src.First
	if n == 0 {
		return nil
	}
	// Retention and deletion leave the same trace: the verifier cannot
	// tell which removed them.
	why := fmt.Sprintf("records before index %d were pruned by retention or deleted", n)
	if n != o.Pruned {
		why = fmt.Sprintf("records before index %d were not verified", n)
	}
	msg := fmt.Sprintf("evidence incomplete: %s; the access population covers only credentials issued at or after index %d (%s), "+
		"so one issued earlier and still valid at the period's end is not listed", why, n, ts(c.firstTime))
	if c.firstTime.IsZero() || c.from.Before(c.firstTime) {
		first := "no record is retained"
		if !c.firstTime.IsZero() {
			first = "the first retained record, index " + strconv.FormatInt(n, 10) + ", is from " + ts(c.firstTime)
		}
		msg = fmt.Sprintf("evidence incomplete: %s, and the period starts at %s while %s: every population may miss records of the period, "+
			"and the access population misses credentials issued before index %d", why, ts(c.from), first, n)
	}
	return &audit.Problem{Origin: o.Origin, Code: ExceptionPruned, Index: n, Message: msg}
}

// span is what the evidence read of one origin.
type span struct {
	o           *audit.OriginReport
	src         OriginSource
	first, last time.Time // the first record's time, the latest record time
}

// notCovered returns the exceptions for the parts of the period [from, to)
// that the log does not cover, nil when it covers all of it. Instances
// start and stop, so the log is taken as a whole: it covers from its
// earliest first record (an origin read from index 0, whose first record
// is the start of its log; a pruned origin has its own exception) to the
// latest time any origin vouches for, the time of its newest signed
// checkpoint. Nothing signed vouches for the time after it: records
// written then, or cut off, are not in the source, whatever the heartbeat.
func notCovered(spans []span, from, to time.Time) []audit.Problem {
	var out []audit.Problem
	var start, end *span
	var until time.Time
	for i := range spans {
		s := &spans[i]
		if s.src.First == 0 && !s.first.IsZero() && (start == nil || s.first.Before(start.first)) {
			start = s
		}
		if u := s.o.Latest.Time; end == nil || u.After(until) {
			end, until = s, u
		}
	}
	if start != nil && from.Before(start.first) {
		out = append(out, audit.Problem{
			Origin: start.o.Origin, Code: ExceptionNotCovered, Index: 0,
			Message: fmt.Sprintf("evidence incomplete: the period starts at %s, but the log's first record (index 0 of %s) is from %s: "+
				"nothing before it is in this evidence (the log did not exist then, or was replaced)", ts(from), start.o.Origin, ts(start.first)),
		})
	}
	if end != nil && to.After(until) {
		cp := end.o.Latest
		last := "its last covered record is from " + ts(end.last)
		if end.last.IsZero() {
			last = "no record it covers is retained"
		}
		out = append(out, audit.Problem{
			Origin: end.o.Origin, Code: ExceptionNotCovered, Index: cp.Size - 1, Size: cp.Size,
			Message: fmt.Sprintf("evidence incomplete: the period ends at %s, but the log covers only records up to %s "+
				"(the time of the newest signed checkpoint of any origin, %s of size %d; %s): "+
				"whatever happened after that is not in this evidence (a bundle exported before the period ended or with --to, "+
				"a log whose end was cut off, or a period that has not ended)",
				ts(to), ts(until), end.o.Origin, cp.Size, last),
		})
	}
	return out
}

func (c *collector) inPeriod(r *audit.Record) bool {
	return !r.Time.Before(c.from) && r.Time.Before(c.to)
}

// add files one record of the first pass and reports whether it lies in
// the period.
func (c *collector) add(at ref, r *audit.Record) bool {
	if r.Kind == audit.KindOutcome {
		// An outcome may follow its intent after the period's end.
		if p, ok := c.outcomes[r.IntentIndex]; ok && p.cells == nil {
			p.cells = outcomeCells(at, r)
			if r.SQL != nil && r.SQL.ErrorNumber != 0 {
				p.errorNumber = strconv.Itoa(r.SQL.ErrorNumber)
			}
			c.outcomes[r.IntentIndex] = p
			c.outcomeException(at, r, p.intent)
		}
		if r.Result != nil && r.Result.Replayed && r.IdempotencyKey != "" && !r.Time.Before(c.from) {
			k := callKeyOf(r)
			txid := ""
			if r.SQL != nil {
				txid = r.SQL.TransactionID
			}
			c.replays[k] = append(c.replays[k], replay{
				ord: order{time: r.Time.UnixNano(), rank: c.rank, index: at.index}, at: at, correlationID: r.CorrelationID, transaction: txid,
			})
		}
	}
	if r.Kind == audit.KindCredential && r.Time.Before(c.to) {
		c.trackAccess(at, r)
	}
	if !c.inPeriod(r) {
		return false
	}
	a := actorCells(r.Actor)
	switch r.Kind {
	case audit.KindIntent:
		c.outcomes[at.index] = pendingCall{intent: r.Time.UnixNano()} // awaiting its outcome
	case audit.KindDecision:
		if r.Allow != nil && !*r.Allow {
			cred := ""
			if r.Credential != nil {
				cred = r.Credential.Type + " " + r.Credential.Action
			}
			status := ""
			if r.Result != nil {
				status = r.Result.Status
			}
			reasons := strings.Join(r.Reasons, "; ")
			c.denials.row(append([]string{
				ts(r.Time), r.CorrelationID, a.subject, a.email, a.issuer, a.mfa, a.userKey, a.host, r.Entry, r.Route, cred,
				status, reasons, r.DecisionID, r.PolicyRevision,
			}, at.cells()...)...)
			c.denialExcerpt.add(r.Time.UTC().Format(time.RFC3339), a.email, r.Entry, r.Route, status, reasons)
		}
	case audit.KindCredential:
		cr := r.Credential
		if cr == nil {
			cr = &audit.Credential{}
		}
		c.credentials.row(append([]string{
			ts(r.Time), cr.Type, cr.Action, credStatus(r), a.subject, a.email, a.issuer, cr.UserKey, cr.Login, cr.Database, cr.Role, cr.LeaseID, cr.Via,
			ts(cr.ExpiresAt), cr.Detail, r.DecisionID, r.PolicyRevision,
		}, at.cells()...)...)
	case audit.KindAdmin:
		ad := r.Admin
		if ad == nil {
			ad = &audit.Admin{}
		}
		c.changes.row(append([]string{ts(r.Time), r.Instance, ad.Action, ad.Detail, a.subject, a.email}, at.cells()...)...)
	}
	return true
}

// outcomeCells are the outcome columns of an activity row.
func outcomeCells(at ref, o *audit.Record) []string {
	sql, res := o.SQL, o.Result
	if sql == nil {
		sql = &audit.SQL{}
	}
	if res == nil {
		res = &audit.Result{}
	}
	return []string{
		sql.Outcome, sql.TransactionID, strconv.FormatInt(sql.Rows, 10), strconv.FormatInt(sql.RowsAffected, 10), res.Status,
		strconv.FormatBool(res.Replayed), strconv.FormatBool(res.Recovered), strconv.FormatInt(res.DurationUS, 10), strconv.FormatInt(at.index, 10),
		hex.EncodeToString(at.leaf[:]),
	}
}

var missingOutcome = []string{"missing", "", "", "", "", "", "", "", "", ""}

// outcomeException notes the exception of a period's call whose outcome
// (r, at at) is unknown or was written by crash recovery; intent is the
// intent's time. Unknown outcomes are resolved at finish, when the replays
// of every origin are known.
func (c *collector) outcomeException(at ref, r *audit.Record, intent int64) {
	unknown := r.SQL != nil && r.SQL.Outcome == "unknown"
	recovered := r.Result != nil && r.Result.Recovered
	code := ExceptionRecoveredOutcome
	switch {
	case unknown:
		code = ExceptionUnknownOutcome
	case !recovered:
		return
	}
	c.callCounts[code]++
	if c.callListed[code]++; c.callListed[code] > maxListedCalls {
		return
	}
	if unknown {
		c.unknown = append(c.unknown, unknownCall{at: at, r: r, intent: intent})
		return
	}
	c.added = append(c.added, audit.Problem{Origin: at.origin, Code: code, Index: at.index, Message: recoveredMessage(r, intent)})
}

// callText names a call in an exception: its correlation id, intent index,
// route and the intent's time.
func callText(r *audit.Record, intent int64) string {
	return fmt.Sprintf("call %q (intent %d, %s) at %s", r.CorrelationID, r.IntentIndex, r.Route, ts(time.Unix(0, intent)))
}

// recoveredMessage says what crash recovery found for a call.
func recoveredMessage(r *audit.Record, intent int64) string {
	sql, status := r.SQL, ""
	if sql == nil {
		sql = &audit.SQL{}
	}
	if r.Result != nil {
		status = r.Result.Status
	}
	found := ""
	switch sql.Outcome {
	case "commit":
		found = fmt.Sprintf("it held this call's decision, so the call committed as transaction %s", sql.TransactionID)
	case "none":
		found = fmt.Sprintf("it held another call's record under the same idempotency key, so this call was a replay of that call or conflicted with it "+
			"and ran nothing (status %s); that call's outcome records the transaction", status)
	default:
		found = fmt.Sprintf("there was none, so the call did not commit (outcome %s, status %s)", sql.Outcome, status)
	}
	return fmt.Sprintf("%s: its outcome was written by crash recovery at %s, as the instance stopped before recording it, "+
		"from the target database's idempotency record: %s", callText(r, intent), ts(r.Time), found)
}

// unknownMessage says what the log shows of a call whose outcome is
// unknown: a later call under the same idempotency key answered with a
// stored result names the transaction the key committed.
func (c *collector) unknownMessage(u unknownCall) string {
	status, how := "", "the database could not say whether its transaction committed"
	if u.r.Result != nil {
		status = u.r.Result.Status
		if u.r.Result.Recovered {
			how = "crash recovery could not ask the target database: no configured database had its server and database, " +
				"or its idempotency key could not be opened with the parameter keys the instance held, " +
				"so whether its transaction committed is not known"
		}
	}
	msg := fmt.Sprintf("%s: %s (outcome unknown, status %s)", callText(u.r, u.intent), how, status)
	if u.r.IdempotencyKey == "" {
		return msg + "; it has no idempotency key: only the target database can tell"
	}
	var first *replay
	for i, rp := range c.replays[callKeyOf(u.r)] {
		if rp.ord.time >= u.intent && (first == nil || first.ord.after(rp.ord)) {
			first = &c.replays[callKeyOf(u.r)][i]
		}
	}
	if first == nil {
		return msg + "; no later call with the same idempotency key was answered with a stored result in the records read: " +
			"if a later call with that key (activity.csv, idempotency_key) committed a transaction of its own, this call did not commit; " +
			"otherwise only the target database's idempotency record for the key can tell"
	}
	return msg + fmt.Sprintf("; a later call with the same idempotency key, correlation id %q (outcome record %d of %s), "+
		"was answered with the stored result of transaction %s: this call committed as transaction %s, "+
		"unless an earlier call with that key had committed it (activity.csv then shows that call's commit of %s)",
		first.correlationID, first.at.index, first.at.origin, first.transaction, first.transaction, first.transaction)
}

// writeActivity writes the row of one of the period's calls.
func (c *collector) writeActivity(at ref, r *audit.Record) {
	a := actorCells(r.Actor)
	server, database := "", ""
	if r.SQL != nil {
		server, database = r.SQL.Server, r.SQL.Database
	}
	row := []string{
		ts(r.Time), r.CorrelationID, a.subject, a.email, a.issuer, a.mfa, a.userKey, a.host, r.Route, r.TargetKind, r.Target,
		server, database, r.DecisionID, r.PolicyRevision, paramCells(r.Params), r.IdempotencyKey,
	}
	call := c.outcomes[at.index]
	if call.cells != nil {
		row = append(row, call.cells...)
	} else {
		row = append(row, missingOutcome...)
	}
	if len(r.Reasons) > 0 {
		c.withReasons++
	}
	// The columns added last, after the reference, so that scripts reading
	// the earlier ones by position keep working.
	row = append(append(row, at.cells()...), strings.Join(r.Reasons, "; "), call.errorNumber)
	c.activity.row(row...)
}

// sweepEvery is how many credential records pass between drops of the
// credentials that expired (a variable for the tests).
var sweepEvery = 10000

// credStatus is the result of a credential record: its status, or "ok"
// when the record states none (the broker records a result only for an
// operation that failed).
func credStatus(r *audit.Record) string {
	if r.Result == nil || r.Result.Status == "" {
		return "ok"
	}
	return r.Result.Status
}

// trackAccess follows which credentials are valid at the period's end (a
// NATS user key: [collector.trackNATS]). The newest event of a SQL lease by
// time, whichever origin recorded it, decides: an issue or renewal makes it
// valid until it expires, a revocation ends it. A SQL
// login that expired, or whose revocation failed (`revoke_failed`), stays
// pending until a revocation succeeds: the login may still exist (SQL
// Server has no login expiry). Any other record of an operation that failed
// (a SQL login whose creation failed is recorded as an issue with an error
// status) changes nothing.
func (c *collector) trackAccess(at ref, r *audit.Record) {
	cr := r.Credential
	if cr == nil || (cr.LeaseID == "" && cr.UserKey == "") {
		return
	}
	if cr.Type == "nats" {
		c.trackNATS(at, r)
		return
	}
	var phase credPhase
	switch ok := credStatus(r) == "ok"; {
	case cr.Action == "revoke_failed":
		phase = phasePending
	case !ok:
		return
	case cr.Action == "issue" || cr.Action == "renew":
		phase = phaseGranted
	case cr.Action == "revoke":
		phase = phaseEnded
	case cr.Action == "expire" && cr.Type == "sql":
		phase = phasePending
	case cr.Action == "expire":
		phase = phaseEnded
	default:
		return
	}
	key, ord := keyOf(cr), order{time: r.Time.UnixNano(), rank: c.rank, index: at.index}
	st, seen := c.creds[key]
	if !seen {
		if last, ok := c.ended[key]; ok {
			st, seen = credState{last: last, phase: phaseEnded}, true
		}
	}
	switch {
	case !seen || ord.after(st.last):
		st.last, st.phase = ord, phase
		switch phase {
		case phaseGranted:
			st.grant, st.grantOrder, st.event = &activeCred{at, r}, ord, nil
		case phasePending:
			st.event = &activeCred{at, r}
		case phaseEnded:
			st.grant, st.event = nil, nil
		}
	case phase == phaseGranted && st.phase == phasePending && (st.grant == nil || ord.after(st.grantOrder)):
		// An older grant, read later: who held the pending login.
		st.grant, st.grantOrder = &activeCred{at, r}, ord
	default:
		return // older than what is known
	}
	if st.phase == phaseEnded && st.grant == nil {
		delete(c.creds, key)
		c.ended[key] = st.last
	} else {
		delete(c.ended, key)
		c.creds[key] = st
	}
	c.sweep(r)
}

// trackNATS follows the JWTs of a NATS user key. sqlgate may issue a key
// again (a refresh re-issues on the same key) with an earlier expiry than
// its previous JWT, which stays valid on NATS until its own expiry. A
// revocation covers every JWT of the key issued before it, and an `expire`
// is recorded once the key's latest expiry passed. So the key is valid at
// `to` when an issue or renewal newer than every revocation and expiry of
// the key expires after `to` (or never); the latest of those expiries is
// listed. The records arrive origin by origin, not in time order: the
// result does not depend on the reading order. A `revoke_failed` (not
// recorded for NATS keys) or an operation that failed changes nothing.
func (c *collector) trackNATS(at ref, r *audit.Record) {
	cr := r.Credential
	grant := cr.Action == "issue" || cr.Action == "renew"
	if credStatus(r) != "ok" || (!grant && cr.Action != "revoke" && cr.Action != "expire") {
		return
	}
	key, ord := keyOf(cr), order{time: r.Time.UnixNano(), rank: c.rank, index: at.index}
	st := c.natsCreds[key]
	if st == nil {
		st = &natsState{}
		st.end, st.ended = c.ended[key]
		c.natsCreds[key] = st
	}
	if grant {
		expires := int64(math.MaxInt64)
		if !cr.ExpiresAt.IsZero() {
			expires = cr.ExpiresAt.UnixNano()
		}
		// Expired at or before this record, which is before `to`: not
		// valid then.
		if expires > ord.time {
			st.grant(natsGrant{cred: activeCred{at, r}, ord: ord, expires: expires})
		}
	} else {
		st.endAt(ord)
	}
	if st.ended && len(st.grants) == 0 {
		delete(c.natsCreds, key)
		c.ended[key] = st.end
	} else {
		delete(c.ended, key)
	}
	c.sweep(r)
}

// sweep drops, every sweepEvery credential records, the grants that
// expired at or before r, so a long log's ended credentials cost little
// memory.
func (c *collector) sweep(r *audit.Record) {
	if c.sinceSweep++; c.sinceSweep >= sweepEvery {
		c.sinceSweep = 0
		for k, st := range c.natsCreds {
			// A key that ended keeps the order of its newest end event,
			// so that an older grant read later cannot outlive that end.
			if st.dropExpired(r.Time.UnixNano()); len(st.grants) == 0 {
				delete(c.natsCreds, k)
				if st.ended {
					c.ended[k] = st.end
				}
			}
		}
		for k, st := range c.creds {
			// Expired before this record, which is before `to`: not valid
			// then. The order stays, so an older event cannot revive it,
			// and so does who held the lease, with the time of the grant,
			// for the pending row of an `expire` or `revoke_failed` read
			// after: only the successful revocation of the login forgets
			// it. The grant's record is let go.
			if st.phase == phaseGranted {
				if exp := st.grant.r.Credential.ExpiresAt; !exp.IsZero() && !exp.After(r.Time) {
					g := st.grant
					st.phase, st.grant = phaseEnded, &activeCred{ref: g.ref, r: &audit.Record{Time: g.r.Time, Actor: g.r.Actor}}
					c.creds[k] = st
				}
			}
		}
	}
}

// finish writes the sections that need the whole log read and returns
// every section, in archive order.
func (c *collector) finish(rep *audit.Report) ([]*section, error) {
	access, err := newCSVSection(c.dir, "csv/access_population.csv", "the credentials valid at the period's end, and the SQL logins whose removal was still pending then: who could reach NATS or SQL then",
		"credential records before the period's end, the newest event of each credential deciding, in time order across origins: issued or renewed and expiring after the period's end (status valid; "+
			"for a NATS user key, issued again, any issue or renewal newer than its last revocation or expiry, the one expiring last listed); "+
			"a SQL login expired or being revoked without a successful revocation (status revocation_pending)",
		append([]string{"as_of", "type", "status", "subject", "email", "issuer", "user_key", "login", "database", "role", "lease_id", "via", "issued_at", "expires_at"}, refHeader...)...)
	if err != nil {
		return nil, err
	}
	c.all = append(c.all, access)
	type accessRow struct {
		ref    ref         // the record the row comes from
		grant  *activeCred // the newest grant, nil when not read
		record *audit.Record
		status string
	}
	var rows []accessRow
	for _, st := range c.natsCreds {
		if g := st.valid(c.to.UnixNano()); g != nil {
			rows = append(rows, accessRow{g.cred.ref, &g.cred, g.cred.r, accessValid})
		}
	}
	for _, st := range c.creds {
		switch st.phase {
		case phaseGranted:
			if exp := st.grant.r.Credential.ExpiresAt; exp.IsZero() || exp.After(c.to) {
				rows = append(rows, accessRow{st.grant.ref, st.grant, st.grant.r, accessValid})
			}
		case phasePending:
			rows = append(rows, accessRow{st.event.ref, st.grant, st.event.r, accessPending})
		}
	}
	slices.SortFunc(rows, func(x, y accessRow) int {
		return cmp.Or(strings.Compare(x.ref.origin, y.ref.origin), cmp.Compare(x.ref.index, y.ref.index))
	})
	pending := 0
	for _, row := range rows {
		cr, who, issued := row.record.Credential, row.record, time.Time{}
		if row.grant != nil {
			who, issued = row.grant.r, row.grant.r.Time
		}
		a := actorCells(who.Actor)
		access.row(append([]string{
			ts(c.to), cr.Type, row.status, a.subject, a.email, a.issuer, cr.UserKey, cr.Login, cr.Database, cr.Role, cr.LeaseID, cr.Via,
			ts(issued), ts(cr.ExpiresAt),
		}, row.ref.cells()...)...)
		expires := "never"
		if !cr.ExpiresAt.IsZero() {
			expires = cr.ExpiresAt.UTC().Format(time.RFC3339)
		}
		if row.status == accessPending {
			expires = "removal pending"
		}
		c.accessExcerpt.add(cr.Type, a.email, a.subject, cr.UserKey+cr.Login, cr.Database, cr.Role, expires)
		if row.status != accessPending {
			continue
		}
		if pending++; pending <= maxListedPending {
			c.added = append(c.added, audit.Problem{
				Origin: row.ref.origin, Code: ExceptionRevocationPending, Index: row.ref.index,
				Message: fmt.Sprintf("%s login %q (lease %s, database %s): %s at %s, and no revocation succeeded before the period's end: the login may still exist",
					cr.Type, cr.Login, cr.LeaseID, cr.Database, cr.Action, ts(row.record.Time)),
			})
		}
	}
	c.pending = pending
	for _, u := range c.unknown {
		c.added = append(c.added, audit.Problem{Origin: u.at.origin, Code: ExceptionUnknownOutcome, Index: u.at.index, Message: c.unknownMessage(u)})
	}

	exceptions, err := newCSVSection(c.dir, "csv/exceptions.csv", "facts to review (unpaired intents, gaps between records, records not yet covered by a checkpoint, "+
		"records pruned or deleted before the evidence's reach, a period the log does not cover, SQL logins whose removal was pending, "+
		"calls whose outcome is unknown or was written by crash recovery); they are not integrity failures",
		"exceptions of the verification of the whole log, capped per kind, and the evidence's own: pruned_records (one per origin), period_not_covered, "+
			"revocation_pending (capped), unknown_outcome and recovered_outcome (the period's calls, capped per origin); manifest verification.exception_counts has the totals",
		"log_origin", "code", "log_index", "checkpoint_size", "message")
	if err != nil {
		return nil, err
	}
	c.all = append(c.all, exceptions)
	ps := append(slices.Clone(rep.Exceptions), c.added...)
	slices.SortFunc(ps, func(a, b audit.Problem) int { // verification runs in parallel: fix the order
		return cmp.Or(strings.Compare(a.Origin, b.Origin), cmp.Compare(a.Index, b.Index), strings.Compare(string(a.Code), string(b.Code)),
			cmp.Compare(a.Size, b.Size), strings.Compare(a.Message, b.Message))
	})
	for _, p := range ps {
		exceptions.row(p.Origin, string(p.Code), strconv.FormatInt(p.Index, 10), strconv.FormatInt(p.Size, 10), p.Message)
	}

	integrity, err := newCSVSection(c.dir, "csv/integrity.csv", "the verification of each origin that passed before this evidence was written",
		"every retained record of every origin",
		"log_origin", "verdict", "first_index", "end_index", "records_checked", "records_pruned_before", "checkpoints_valid", "trusted_copies_checked",
		"latest_checkpoint_size", "latest_checkpoint_root_hex", "latest_checkpoint_time", "key_ids", "unpaired_intents", "first_record_time", "last_record_time")
	if err != nil {
		return nil, err
	}
	c.all = append(c.all, integrity)
	for _, o := range rep.Origins {
		integrity.row(o.Origin, "ok", strconv.FormatInt(o.First, 10), strconv.FormatInt(o.End, 10), strconv.FormatInt(o.Records, 10), strconv.FormatInt(o.Pruned, 10),
			strconv.Itoa(o.Checkpoints), strconv.Itoa(o.Trusted), strconv.FormatInt(o.Latest.Size, 10), hex.EncodeToString(o.Latest.Root[:]), ts(o.Latest.Time),
			strings.Join(o.KeyIDs, " "), strconv.FormatInt(o.Unpaired, 10), ts(o.FirstRecordTime), ts(o.LastRecordTime))
	}
	return c.all, nil
}

// actor is the printable identity of a record.
type actor struct{ subject, email, issuer, mfa, userKey, host string }

func actorCells(a *audit.Actor) actor {
	if a == nil {
		return actor{}
	}
	return actor{a.Subject, a.Email, a.Issuer, strconv.FormatBool(a.MFA), a.NATSUserKey, a.ClientHost}
}

// paramCells lists the keyed parameter hashes, name=hash, sorted by name.
func paramCells(p map[string]string) string {
	names := make([]string, 0, len(p))
	for n := range p {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + p[n]
	}
	return strings.Join(parts, " ")
}

// periodText is a bound of the period as the manifest states it: RFC 3339,
// with the fraction of a second only when it has one, and then with the
// microseconds every other time of the archive has ([ts]) unless the bound
// is finer (a time given so), so that no digit is lost.
func periodText(t time.Time) string {
	t = t.UTC()
	switch {
	case t.Nanosecond() == 0:
		return t.Format(time.RFC3339)
	case t.Nanosecond()%1000 == 0:
		return ts(t)
	}
	return t.Format(time.RFC3339Nano)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000Z")
}

// verifyText is VERIFY.md of every archive.
const verifyText = `# How to check this evidence

This archive was derived from an sqlgate audit log after that log verified
with the verifier keys named in manifest.json (verification.keys).

1. Check the whole archive in one step with the log's published verifier key
   and the log bundle the archive was made from:
   sqlgate audit check-evidence THIS.zip --key VKEY --bundle FILE
   It checks every file against the SHA-256 in manifest.json (and that no
   file was added), each checkpoint's signature and that it covers the
   records read, that the archive holds the log of every key given, and
   manifest.sig, the signature over manifest.json, when the archive has
   one (the dashboard signs with the log's key). With --bundle it also
   writes the archive again from the verified log and compares every file.
   The checkpoints vouch for the log, not for the files of this archive:
   without --bundle, and unless a key you trust signed manifest.json, anyone
   who handled the archive could have removed or changed rows and written
   manifest.json again. If manifest.json lists "incomplete" statements
   (records pruned by retention or deleted, a period the log does not
   cover), the populations miss what they say; csv/exceptions.csv lists
   them too, with the other facts to review (docs/evidence.md, Exceptions,
   says what each means).
2. By hand: every file but manifest.json and manifest.sig is listed in
   manifest.json with its SHA-256 and row count:
   sha256sum VERIFY.md report.pdf report.xlsx csv/*.csv checkpoints/*.note
   Each checkpoints/N.note is a checkpoint signed by the broker (C2SP signed
   note). It covers every record the evidence was read from (manifest
   origins[].end <= checkpoint_size).
3. Every row names its record (log_origin, log_index, leaf_hash). Prove a
   sampled row against the log bundle, offline:
   sqlgate audit prove --bundle FILE --origin LOG_ORIGIN LOG_INDEX --key VKEY
   It prints the record's leaf hash: it must equal the row's leaf_hash.
4. Regenerate the archive from the same log bundle, keys and period:
   sqlgate audit evidence --bundle FILE --key VKEY --from FROM --to TO -o OUT.zip
   The same inputs give a byte-identical archive; compare the SHA-256 sums.
5. If manifest.json says verification.trusted_copies 0, no independently
   kept checkpoint was compared: a holder of the signing key could have
   rewritten the log. Check the bundle against checkpoint copies kept out
   of the operator's reach (docs/audit.md, section 8):
   sqlgate audit verify --bundle FILE --key VKEY --trusted-checkpoint DIR
`
