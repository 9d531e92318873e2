package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Source is what [Verify] reads: an audit log exported or served by someone
// the verifier does not trust. Nothing it returns is believed without a
// check against signed checkpoints and trusted keys. Implementations: the
// control database (audit/sqlstore), a bundle file ([OpenBundle]) and the
// broker's HTTP API.
type Source interface {
	// Origins lists the logs the source holds.
	Origins(ctx context.Context) ([]string, error)
	// Keys returns the signing key history of every origin.
	Keys(ctx context.Context) ([]Key, error)
	// Checkpoints calls fn with each signed checkpoint note of origin, in
	// ascending size order (Verify fails a checkpoint listed after a
	// larger one). fn may call Records: Verify reads the records between
	// two windows of checkpoints from it. A source that orders them by a
	// size stored beside the note passes each through [CheckpointRow].
	Checkpoints(ctx context.Context, origin string, fn func(note []byte) error) error
	// Bounds returns the retained record range [first, end) of origin;
	// records before first were pruned. first may grow while the source is
	// read (retention): Verify then starts the origin over.
	Bounds(ctx context.Context, origin string) (first, end int64, err error)
	// Frontier returns the tree hashes at FrontierIndexes(size), or an error
	// wrapping ErrNotFound when the source cannot provide them for this size
	// (it must for size == first).
	Frontier(ctx context.Context, origin string, size int64) ([]tlog.Hash, error)
	// TreeProof returns the consistency proof from the tree of oldSize to
	// the tree of newSize, or an error wrapping ErrNotFound.
	TreeProof(ctx context.Context, origin string, oldSize, newSize int64) (tlog.TreeProof, error)
	// Records calls fn for each retained record with from <= index < to in
	// ascending index order. index is where the source keeps the record;
	// leaf is the stored leaf hash, nil when the source has none. data and
	// leaf are only valid during the call. Records stops and returns fn's
	// error when fn fails.
	Records(ctx context.Context, origin string, from, to int64, fn func(index int64, data []byte, leaf *tlog.Hash) error) error
}

// DefaultMaxGap is the largest time between two records that [Verify]
// accepts by default: two heartbeats plus a minute.
const DefaultMaxGap = 2*DefaultHeartbeat + time.Minute

// VerifyOptions tune [Verify].
type VerifyOptions struct {
	// Keys are the trusted public verifier keys (note format), all
	// generations of each origin's key. When empty, Verify uses the key
	// history stored in the source and says so in the report
	// (KeysFromSource): that only proves the source is self-consistent,
	// since whoever can write the source can re-sign it with a key of their
	// own.
	Keys []string
	// Trusted are signed checkpoint notes kept outside the operator's reach
	// ([LoadCheckpoints], [DirSink]). The log must contain and extend every
	// one of them; this is what detects rollback, truncation and forks.
	Trusted [][]byte
	// Origin restricts verification to one origin.
	Origin string
	// From and To restrict the records checked to indexes [From, To) of each
	// origin (To 0: to the end). Records before From are still hashed when
	// the source cannot provide the tree frontier at From.
	From, To int64
	// FromTime and ToTime restrict the records checked to the span between
	// the last checkpoint made at or before FromTime and the first made at
	// or after ToTime.
	FromTime, ToTime time.Time
	// MaxGap is the longest accepted time between consecutive records
	// (default DefaultMaxGap, negative: no check). Longer gaps are reported
	// as heartbeat_gap exceptions.
	MaxGap time.Duration
	// MaxListed caps the exceptions listed per kind and origin (default 100);
	// all are counted.
	MaxListed int
	// Workers is the number of goroutines decoding records (default
	// GOMAXPROCS).
	Workers int
}

// ProblemCode names what is wrong.
type ProblemCode string

// Integrity failures: the log was altered, truncated, forked, or cannot be
// shown to be intact.
const (
	// ProblemBadRecord: a record is not a canonical schema v1 record.
	ProblemBadRecord ProblemCode = "bad_record"
	// ProblemIndexMismatch: a record claims another index than its position
	// (records swapped, deleted or inserted).
	ProblemIndexMismatch ProblemCode = "index_mismatch"
	// ProblemMissingRecord: the index sequence has a gap.
	ProblemMissingRecord ProblemCode = "missing_record"
	// ProblemWrongOrigin: a record names another origin.
	ProblemWrongOrigin ProblemCode = "wrong_origin"
	// ProblemLeafMismatch: a record's bytes differ from its stored leaf hash.
	ProblemLeafMismatch ProblemCode = "leaf_mismatch"
	// ProblemRootMismatch: the records do not hash to a signed checkpoint.
	ProblemRootMismatch ProblemCode = "root_mismatch"
	// ProblemBadCheckpoint: a checkpoint is malformed, signed by an unknown
	// key or badly signed.
	ProblemBadCheckpoint ProblemCode = "bad_checkpoint"
	// ProblemTruncated: a signed checkpoint covers records the log no longer
	// has (tail deleted, log rolled back).
	ProblemTruncated ProblemCode = "truncated"
	// ProblemFork: the log is not an extension of a trusted checkpoint, or
	// two checkpoints of one size disagree.
	ProblemFork ProblemCode = "fork"
	// ProblemOriginMissing: a trusted checkpoint or a verifier key names an
	// origin the source does not hold (a key's name is its log's origin).
	ProblemOriginMissing ProblemCode = "origin_missing"
	// ProblemNoCheckpoint: the origin has no checkpoint signed by a
	// trusted key (or, without trusted keys, by a key of the source's key
	// history): nothing proves any record (checkpoints deleted, or signed
	// by another key).
	ProblemNoCheckpoint ProblemCode = "no_checkpoint"
	// ProblemRetiredKey: a checkpoint is signed by a key other than the one
	// the log's last "log_start" or "key_rotation" record before its size
	// names: a retired key (or one the log never rotated to) vouches for
	// records written after the rotation, e.g. a log rewritten after a key
	// rotation and re-signed with the old key. The rule applies from the
	// log's first checkpoint that says the log records every key change
	// (the extension line "rotations recorded"). Its own key counts as
	// named there only when a checkpoint without that line (versions up to
	// e8247d9, which went back to an earlier key without a record) covers
	// the last rotation record before it.
	ProblemRetiredKey ProblemCode = "retired_key"
	// ProblemLinkMismatch: an outcome differs from the intent it names in a
	// field that ties the call to its SQL transaction (correlation_id,
	// idempotency_key, route, target_kind, target, sql.server,
	// sql.database): the link between the call and the transaction was
	// falsified, e.g. an intent edited while crash recovery read it.
	ProblemLinkMismatch ProblemCode = "link_mismatch"
	// ProblemUncheckedTrusted: a trusted checkpoint copy precedes the
	// records the source holds (pruned, or left out of the export) and the
	// source gives no consistency proof from its size: a fork or rewrite
	// before those records would go unnoticed. A bundle carries such
	// proofs when it is exported for the trusted copies' sizes
	// ([BundleOptions].ProofSizes, `sqlgate audit export
	// --trusted-checkpoint`).
	ProblemUncheckedTrusted ProblemCode = "unchecked_trusted_checkpoint"
	// ProblemSource: the source failed while being read (its connection,
	// driver or file), not what it holds: a tree hash, checkpoint or key
	// it lacks (an error wrapping [ErrNotFound]) is [ProblemMissingRecord].
	ProblemSource ProblemCode = "source_error"
)

// Exceptions: facts an auditor must see that are not, by themselves, proof
// of tampering.
const (
	// ProblemUnpairedIntent: an intent has no outcome (crash, timeout, or an
	// in-flight call at the end of the log).
	ProblemUnpairedIntent ProblemCode = "unpaired_intent"
	// ProblemOrphanOutcome: an outcome names no open intent.
	ProblemOrphanOutcome ProblemCode = "orphan_outcome"
	// ProblemHeartbeatGap: more than MaxGap passed between two records.
	ProblemHeartbeatGap ProblemCode = "heartbeat_gap"
	// ProblemUncoveredTail: the newest records are not yet covered by a
	// checkpoint ([OriginReport.Uncovered] counts them).
	ProblemUncoveredTail ProblemCode = "uncovered_tail"
	// ProblemUnchecked: a checkpoint of the log older than the verified
	// range could not be checked against it (no consistency proof
	// available). A trusted copy that cannot be checked is a failure,
	// [ProblemUncheckedTrusted].
	ProblemUnchecked ProblemCode = "unchecked_checkpoint"
	// ProblemCheckpointTime: checkpoint times go backwards as sizes grow.
	ProblemCheckpointTime ProblemCode = "checkpoint_time_order"
)

// Problem is one finding of [Verify].
type Problem struct {
	Origin string      `json:"origin"`
	Code   ProblemCode `json:"code"`
	// Index is the first record index the problem concerns, -1 when it is
	// not about records.
	Index int64 `json:"index"`
	// Size is the checkpoint size involved, when there is one.
	Size    int64  `json:"size,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	where := ""
	if p.Index >= 0 {
		where = fmt.Sprintf("index %d: ", p.Index)
	}
	return fmt.Sprintf("%s%s (%s)", where, p.Message, p.Code)
}

// OriginReport summarizes one origin.
type OriginReport struct {
	Origin string `json:"origin"`
	// First and End delimit the records checked, [First, End).
	First int64 `json:"first"`
	End   int64 `json:"end"`
	// Pruned is the number of records before the retained range.
	Pruned  int64 `json:"pruned"`
	Records int64 `json:"records"`
	// Checkpoints counts the signed checkpoints whose signature verified.
	Checkpoints int `json:"checkpoints"`
	// Trusted counts the trusted checkpoints of this origin that were
	// checked against the log: compared with the tree at their size, or
	// proven consistent with it (a copy beyond a range cut short by To or
	// ToTime, or one no proof reaches, is not counted).
	Trusted int `json:"trusted"`
	// Latest is the newest valid checkpoint.
	Latest *Checkpoint `json:"latest,omitempty"`
	// KeyIDs are the keys that signed this origin's checkpoints.
	KeyIDs []string `json:"key_ids,omitempty"`
	// FirstRecordTime and LastRecordTime span the records checked.
	FirstRecordTime time.Time `json:"first_record_time,omitzero"`
	LastRecordTime  time.Time `json:"last_record_time,omitzero"`
	// Unpaired counts intents without an outcome.
	Unpaired int64 `json:"unpaired"`
	// Uncovered counts the checked records after the newest checkpoint,
	// [End-Uncovered, End): nothing signed vouches for them yet.
	Uncovered int64 `json:"uncovered"`
	// FirstBad is the first index with an integrity failure, -1 when none.
	FirstBad int64 `json:"first_bad"`
}

// Report is the result of [Verify].
type Report struct {
	// KeysFromSource is true when no trusted keys were given and the
	// source's own key history was used.
	KeysFromSource bool `json:"keys_from_source"`
	// Keys are the ids of the keys checkpoints were checked against.
	Keys    []string        `json:"keys"`
	Origins []*OriginReport `json:"origins"`
	// Failures are integrity failures; any makes OK false.
	Failures []Problem `json:"failures"`
	// Exceptions are listed facts an auditor must review (capped per kind
	// and origin; ExceptionCounts has the totals).
	Exceptions      []Problem             `json:"exceptions"`
	ExceptionCounts map[ProblemCode]int64 `json:"exception_counts"`
	Records         int64                 `json:"records"`
	Duration        time.Duration         `json:"duration_ns"`
}

// OK reports whether no integrity failure was found.
func (r *Report) OK() bool { return len(r.Failures) == 0 }

// SourceFailed reports whether the verification failed only because the
// source could not be read (every failure is [ProblemSource]): nothing was
// found wrong with the log, it was not read to the end (a database outage,
// an unreadable file). A caller serving the log reports that as the
// source's outage, not as a log that did not verify. Content the source
// lacks or holds edited is never only that: it is an integrity failure.
func (r *Report) SourceFailed() bool {
	if len(r.Failures) == 0 {
		return false
	}
	for _, p := range r.Failures {
		if p.Code != ProblemSource {
			return false
		}
	}
	return true
}

// FirstFailure returns the failure with the smallest record index (the
// first found among equals), nil when OK.
func (r *Report) FirstFailure() *Problem {
	var best *Problem
	for i := range r.Failures {
		p := &r.Failures[i]
		if best == nil || p.Index >= 0 && (best.Index < 0 || p.Index < best.Index) {
			best = p
		}
	}
	return best
}

// Verify checks the audit logs in src offline, with public keys only: it
// recomputes every leaf and tree hash, checks every checkpoint signature,
// that every checkpoint (and every trusted checkpoint) is a prefix of the
// log, that indexes are contiguous, pairs intents with outcomes and looks
// for heartbeat gaps, per origin. Integrity failures make [Report.OK]
// false; the error is for a verification that could not run at all (bad
// options, unreadable source list).
func Verify(ctx context.Context, src Source, opts VerifyOptions) (*Report, error) {
	start := time.Now()
	if opts.MaxGap == 0 {
		opts.MaxGap = DefaultMaxGap
	}
	if opts.MaxListed <= 0 {
		opts.MaxListed = 100
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	rep := &Report{ExceptionCounts: map[ProblemCode]int64{}}
	vkeys := opts.Keys
	if len(vkeys) == 0 {
		keys, err := src.Keys(ctx)
		if err != nil {
			return nil, fmt.Errorf("verify: read keys: %w", err)
		}
		for _, k := range keys {
			vkeys = append(vkeys, k.VerifierKey)
		}
		rep.KeysFromSource = true
	}
	verifiers, err := NewVerifiers(vkeys...)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	for _, k := range vkeys {
		rep.Keys = append(rep.Keys, keyID(k))
	}
	slices.Sort(rep.Keys)
	rep.Keys = slices.Compact(rep.Keys)

	origins, err := src.Origins(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: list origins: %w", err)
	}
	trusted := map[string][]*Checkpoint{}
	for _, msg := range opts.Trusted {
		cp, err := OpenCheckpoint(msg, verifiers)
		if err != nil {
			rep.Failures = append(rep.Failures, Problem{
				Origin: uncheckedOrigin(msg), Code: ProblemBadCheckpoint, Index: -1,
				Message: fmt.Sprintf("trusted checkpoint does not verify: %v", err),
			})
			continue
		}
		trusted[cp.Origin] = append(trusted[cp.Origin], cp)
	}
	for o, cps := range trusted {
		if opts.Origin != "" && o != opts.Origin {
			continue
		}
		if !slices.Contains(origins, o) {
			maxSize := int64(0)
			for _, c := range cps {
				maxSize = max(maxSize, c.Size)
			}
			rep.Failures = append(rep.Failures, Problem{
				Origin: o, Code: ProblemOriginMissing, Index: 0, Size: maxSize,
				Message: fmt.Sprintf("trusted checkpoints cover %d records of origin %q, which the log does not hold", maxSize, o),
			})
		}
	}
	// A key is named after its log: the source must hold the log of every
	// key, or a deleted log would pass unnoticed.
	missing := map[string]bool{}
	for _, k := range vkeys {
		o := keyOrigin(k)
		if opts.Origin != "" && o != opts.Origin || slices.Contains(origins, o) || trusted[o] != nil || missing[o] {
			continue
		}
		missing[o] = true
		rep.Failures = append(rep.Failures, Problem{
			Origin: o, Code: ProblemOriginMissing, Index: 0,
			Message: fmt.Sprintf("the verifier key %s names origin %q, which the log does not hold (log deleted, or not part of this export)", keyID(k), o),
		})
	}
	slices.Sort(origins)
	for _, o := range origins {
		if opts.Origin != "" && o != opts.Origin {
			continue
		}
		v := &originVerifier{
			src: src, opts: &opts, verifiers: verifiers, rep: rep,
			or: &OriginReport{Origin: o, FirstBad: -1},
		}
		for _, c := range trusted[o] {
			sum := sumOf(c)
			sum.Key = v.intern(c.KeyID)
			v.tcps = append(v.tcps, sum)
		}
		if err := v.runOrigin(ctx); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		rep.Origins = append(rep.Origins, v.or)
		rep.Records += v.or.Records
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// maxPruneRestarts bounds how many times [Verify] starts an origin over
// because retention pruned its oldest records while they were read.
const maxPruneRestarts = 3

// runOrigin verifies one origin. When the scan found a failure and the
// source's retained range now starts later than when the scan began,
// retention pruned the oldest records while they were read (an hourly
// prune may run during a long verification, and the records are read a
// window at a time): what the scan saw missing may just have been pruned
// (missing_record where records were), so it starts over from the new
// first record, forgetting what it reported (at most maxPruneRestarts
// times; then the last scan's findings stand). A deletion of records the
// new range still holds is found again. It returns an error only when ctx
// ended.
func (v *originVerifier) runOrigin(ctx context.Context) error {
	rep := v.rep
	nf, ne := len(rep.Failures), len(rep.Exceptions)
	counts := maps.Clone(rep.ExceptionCounts)
	for restarts := 0; ; restarts++ {
		v.first = -1
		if err := v.run(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			v.readFailed(err)
		}
		if len(rep.Failures) == nf || restarts == maxPruneRestarts || !v.prunedSince(ctx) {
			return nil
		}
		rep.Failures, rep.Exceptions = rep.Failures[:nf], rep.Exceptions[:ne]
		clear(rep.ExceptionCounts)
		maps.Copy(rep.ExceptionCounts, counts)
		*v.or = OriginReport{Origin: v.or.Origin, FirstBad: -1}
		v.listed, v.cps, v.noCheckpoint, v.legacyEnd, v.st = nil, nil, false, 0, cpStats{}
	}
}

// prunedSince reports whether the source's retained range of the origin
// starts after where the last scan started it.
func (v *originVerifier) prunedSince(ctx context.Context) bool {
	if v.first < 0 {
		return false
	}
	first, _, err := v.src.Bounds(ctx, v.or.Origin)
	return err == nil && first > v.first
}

// readFailed reports err, which ended the reading of the origin. The
// source not holding what the log wrote (a tree hash, the origin: an
// error wrapping [ErrNotFound]) is an integrity failure: the store never
// prunes tree hashes, checkpoints or keys. Any other error is the
// source's failure (a database outage, a dropped connection, an
// unreadable file): [ProblemSource], which alone makes
// [Report.SourceFailed].
func (v *originVerifier) readFailed(err error) {
	if errors.Is(err, ErrNotFound) {
		v.fail(ProblemMissingRecord, -1, 0, fmt.Sprintf("the source does not hold what the log wrote: %v (tree hashes, checkpoints and keys are never pruned: deleted or damaged)", err))
		return
	}
	v.fail(ProblemSource, -1, 0, fmt.Sprintf("reading the log failed: %v", err))
}

// keyOrigin returns the name of a verifier key, which is its log's origin.
func keyOrigin(vkey string) string {
	name, _, _ := strings.Cut(strings.TrimSpace(vkey), "+")
	return name
}

// uncheckedOrigin returns the origin line of a note without checking it.
func uncheckedOrigin(msg []byte) string {
	line, _, _ := bytes.Cut(msg, []byte("\n"))
	if len(line) > 256 {
		line = line[:256]
	}
	return string(line)
}

type originVerifier struct {
	src       Source
	opts      *VerifyOptions
	verifiers note.Verifiers
	rep       *Report
	or        *OriginReport
	listed    map[ProblemCode]int

	cps          []cpSum // the window of log checkpoints the scan is at (verify_stream.go)
	tcps         []cpSum // the trusted checkpoints of the origin
	st           cpStats // what loadCheckpoints kept of the log's checkpoints
	first        int64   // the first retained record when the scan began, -1 before
	noCheckpoint bool    // a ProblemNoCheckpoint failure was reported
	// legacyEnd is the largest size of a checkpoint without
	// [rotationsExtension] (0: none): a version that did not record every
	// key change wrote records up to there.
	legacyEnd int64

	// keyNames and keyIdx intern the key ids of checkpoints and rotation
	// records (cpSum.Key indexes keyNames).
	keyNames []string
	keyIdx   map[string]int32
}

// intern returns the number of key id id.
func (v *originVerifier) intern(id string) int32 {
	if k, ok := v.keyIdx[id]; ok {
		return k
	}
	if v.keyIdx == nil {
		v.keyIdx = map[string]int32{}
	}
	k := int32(len(v.keyNames))
	v.keyNames = append(v.keyNames, id)
	v.keyIdx[id] = k
	return k
}

// cpSum is what verification keeps of a checkpoint: a log may hold
// hundreds of thousands, so not their notes (only the newest is kept, as
// [OriginReport.Latest]).
type cpSum struct {
	Size int64
	Root tlog.Hash
	Time time.Time
	// Key is the signing key (originVerifier.keyNames). Trusted
	// checkpoints are not checked against the log's rotations.
	Key int32
	// Rotations is set when the checkpoint carries [rotationsExtension].
	Rotations bool
}

func sumOf(c *Checkpoint) cpSum {
	return cpSum{Size: c.Size, Root: c.Root, Time: c.Time, Key: -1, Rotations: recordsRotations(c.Note)}
}

func (v *originVerifier) fail(code ProblemCode, index, size int64, msg string) {
	v.rep.Failures = append(v.rep.Failures, Problem{Origin: v.or.Origin, Code: code, Index: index, Size: size, Message: msg})
	if index >= 0 && (v.or.FirstBad < 0 || index < v.or.FirstBad) {
		v.or.FirstBad = index
	}
}

func (v *originVerifier) exception(code ProblemCode, index, size int64, msg string) {
	v.rep.ExceptionCounts[code]++
	if v.listed == nil {
		v.listed = map[ProblemCode]int{}
	}
	if v.listed[code] >= v.opts.MaxListed {
		return
	}
	v.listed[code]++
	v.rep.Exceptions = append(v.rep.Exceptions, Problem{Origin: v.or.Origin, Code: code, Index: index, Size: size, Message: msg})
}

// noteText returns the text part of a signed note (before the blank line).
func noteText(msg []byte) []byte {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return msg
	}
	return msg[:i+1]
}

func (v *originVerifier) run(ctx context.Context) error {
	origin := v.or.Origin
	if err := v.loadCheckpoints(ctx); err != nil {
		return err
	}
	first, end, err := v.src.Bounds(ctx, origin)
	if err != nil {
		return err
	}
	v.first = first
	v.or.Pruned = first
	if x, ok := v.src.(interface {
		extraRecords(origin string) (line int, n int64)
	}); ok {
		if line, n := x.extraRecords(origin); n > 0 {
			v.fail(ProblemIndexMismatch, end, 0, fmt.Sprintf("the bundle holds %d record lines past the origin's end, the first at line %d: its header gives records [%d, %d) (records appended or repeated after the end)", n, line, first, end))
		}
	}
	if v.or.Checkpoints == 0 {
		// Every log starts with a record and a checkpoint covering it, so an
		// empty one without a checkpoint was emptied too. This holds with
		// the source's own key history as well: without any checkpoint the
		// log is not even self-consistent.
		v.noCheckpoint = true
		by := "a trusted key"
		if v.rep.KeysFromSource {
			by = "any key of its own key history"
		}
		v.fail(ProblemNoCheckpoint, first, 0, fmt.Sprintf("the log has %d records and no checkpoint signed by %s: nothing proves them (checkpoints deleted, or signed by another key)", end, by))
	}
	lo, hi := first, end
	if v.opts.From > lo {
		lo = v.opts.From
	}
	if v.opts.To > 0 && v.opts.To < hi {
		hi = v.opts.To
	}
	if !v.opts.FromTime.IsZero() {
		lo = max(lo, v.st.fromTimeAt)
	}
	if !v.opts.ToTime.IsZero() && v.st.toTimeAt >= 0 {
		hi = min(hi, v.st.toTimeAt)
	}
	lo = min(lo, hi)
	// Only when the caller did not cut the range short can checkpoints
	// beyond the last record prove a truncation.
	fullTail := hi == end && (v.opts.To == 0 || v.opts.To > end) && v.opts.ToTime.IsZero()
	v.or.First, v.or.End = lo, hi

	// Start from the frontier at lo, or at first and hash up to lo.
	scanFrom := lo
	hashes, err := v.src.Frontier(ctx, origin, lo)
	if errors.Is(err, ErrNotFound) && lo != first {
		scanFrom = first
		hashes, err = v.src.Frontier(ctx, origin, first)
	}
	if errors.Is(err, ErrNotFound) {
		v.fail(ProblemMissingRecord, scanFrom, 0, fmt.Sprintf("the tree hashes of records [0, %d), which the records from %d continue, are not in the source (%v): "+
			"tree hashes are never pruned (deleted or damaged), and without them no record from %d can be proven", scanFrom, scanFrom, err, scanFrom))
		return nil
	}
	if err != nil {
		return fmt.Errorf("read frontier: %w", err)
	}
	front, ok := newFrontier(scanFrom, hashes)
	if !ok {
		v.fail(ProblemFork, scanFrom, 0, fmt.Sprintf("the tree frontier of size %d is malformed", scanFrom))
		return nil
	}
	s := &scan{
		v: v, front: front, lo: lo, lastMatch: scanFrom, lastTrusted: scanFrom,
		intents: map[int64]linkSum{}, active: -1, activeAt: -1,
	}
	s.strictAt, s.strictKey = v.rotationsFrom()
	return v.stream(ctx, s, scanFrom, hi, fullTail)
}

// begin runs what needs the checkpoints at and before the scan's start,
// which v.cps holds (the newest before it and those of its size).
func (s *scan) begin(ctx context.Context, scanFrom int64) error {
	v := s.v
	if scanFrom > 0 && s.strictAt >= 0 && s.strictAt <= scanFrom {
		// The rotation records before the scan are not read: the key of
		// the newest checkpoint there stands for them (a rotation's
		// record and the first checkpoint under the new key are written
		// together).
		s.strict = true
		for _, cps := range [][]cpSum{v.tcps, v.cps} { // a log checkpoint first
			for _, c := range cps {
				if c.Size <= scanFrom && (s.active < 0 || c.Size >= s.activeCp) {
					s.active, s.activeCp = c.Key, c.Size
				}
			}
		}
	}
	if err := s.atStart(ctx, scanFrom); err != nil {
		return err
	}
	// Checkpoints that fall inside the scanned range, ascending.
	for i, c := range v.cps {
		if c.Size > scanFrom || c.Size == scanFrom && scanFrom > 0 {
			s.due = append(s.due, due{i: int32(i)})
		}
	}
	for i, c := range v.tcps {
		if c.Size > scanFrom || c.Size == scanFrom && scanFrom > 0 {
			s.due = append(s.due, due{i: int32(i), trusted: true})
		}
	}
	sort.SliceStable(s.due, func(i, j int) bool { return s.cp(&s.due[i]).Size < s.cp(&s.due[j]).Size })
	s.checkDue() // checkpoints at exactly scanFrom
	return nil
}

// end reports what is left once the records up to hi were read.
func (s *scan) end(hi int64, fullTail bool) {
	v := s.v
	if s.stopped {
		return
	}
	got := s.front.size
	if got < hi {
		v.fail(ProblemMissingRecord, got, 0, fmt.Sprintf("records [%d, %d) are missing", got, hi))
		return
	}
	v.finish(s, got, fullTail)
}

// rotationsFrom returns the size and key of the first checkpoint (of the
// log, or a trusted one) that carries [rotationsExtension], from which the
// retired-key rule applies; -1, -1 when there is none (a log written by a
// version before it). It also sets v.legacyEnd.
func (v *originVerifier) rotationsFrom() (size int64, key int32) {
	size, key = v.st.rotAt, v.st.rotKey // the log's (loadCheckpoints)
	v.legacyEnd = v.st.legacyEnd
	for _, cps := range [][]cpSum{v.tcps} {
		for _, c := range cps {
			if c.Rotations && (size < 0 || c.Size < size) {
				size, key = c.Size, c.Key
			}
			if !c.Rotations {
				v.legacyEnd = max(v.legacyEnd, c.Size)
			}
		}
	}
	return size, key
}

// finish reports what is left after the scan reached got.
func (v *originVerifier) finish(s *scan, got int64, fullTail bool) {
	covered := s.w.covered
	for i := range s.due {
		d := &s.due[i]
		size := s.cp(d).Size
		if d.done {
			if !d.trusted && !d.retired {
				covered = max(covered, size)
			}
			continue
		}
		if !fullTail {
			continue // beyond the requested range
		}
		who := "signed checkpoint"
		if d.trusted {
			who = "trusted checkpoint"
		}
		v.fail(ProblemTruncated, got, size, fmt.Sprintf("%s of size %d covers records [%d, %d) that the log does not have (truncated or rolled back)",
			who, size, got, size))
		s.failed = true
	}
	if got > s.lo && covered < got && !s.failed && !v.noCheckpoint {
		from := max(covered, s.lo)
		v.or.Uncovered = got - from
		v.exception(ProblemUncoveredTail, from, 0, fmt.Sprintf("%d records [%d, %d) are not covered by a signed checkpoint yet: nothing proves them until one is written", got-from, from, got))
	}
	for idx := range s.intents {
		s.unpaired = append(s.unpaired, idx)
	}
	slices.Sort(s.unpaired)
	v.or.Unpaired = int64(len(s.unpaired))
	for _, idx := range s.unpaired {
		v.exception(ProblemUnpairedIntent, idx, 0, "intent has no outcome")
	}
}

// due is a checkpoint the scan compares the tree with when it reaches its
// size: an index into originVerifier.cps, or .tcps when trusted.
type due struct {
	i       int32
	trusted bool
	done    bool
	retired bool // signed by a key the log had rotated away from
}

func (s *scan) cp(d *due) *cpSum {
	if d.trusted {
		return &s.v.tcps[d.i]
	}
	return &s.v.cps[d.i]
}

// scan folds records in index order.
type scan struct {
	v           *originVerifier
	front       *frontier
	lo          int64
	due         []due
	next        int // first due not yet reached
	lastMatch   int64
	lastTrusted int64
	stopped     bool // an integrity failure ended the scan
	failed      bool
	w           window // of the log's checkpoints (verify_stream.go)

	intents  map[int64]linkSum // open intents: what their outcome must repeat
	unpaired []int64
	maxTime  time.Time
	seen     bool

	// active is the key (originVerifier.keyNames) that signs checkpoints
	// at the current size, -1 while unknown: named by the log_start or
	// key_rotation record at activeAt (activeAction), or, when activeAt
	// is -1, by the checkpoint of size activeCp: the first one carrying
	// [rotationsExtension] when activeFirst, else the newest one before
	// the scan.
	active       int32
	activeAt     int64
	activeCp     int64
	activeFirst  bool
	activeAction string
	// strict is set once the retired-key rule applies: from strictAt, the
	// size of the first checkpoint that carries [rotationsExtension]
	// (signed by key strictKey); -1 when none does.
	strict    bool
	strictAt  int64
	strictKey int32
}

// rotated records that the log_start or key_rotation record at index p
// names key id.
func (s *scan) rotated(p int64, action, id string) {
	s.active, s.activeAt, s.activeAction = s.v.intern(id), p, action
}

// startStrict applies the retired-key rule from here on (the first
// checkpoint that carries [rotationsExtension]). The active key is the one
// the last rotation record names, unless a version before the extension
// wrote after that record (a checkpoint without the extension covers it):
// such a version may have gone back to an earlier key without a record,
// so the first checkpoint's own key is the active one. A record that only
// checkpoints with the extension cover was written by a version that
// records every key change: a first checkpoint of another key is a
// retired (or foreign) key's.
func (s *scan) startStrict() {
	s.strict = true
	if s.activeAt >= 0 && (s.active == s.strictKey || s.activeAt >= s.v.legacyEnd) {
		return // named by the rotation record written with it
	}
	s.active, s.activeAt, s.activeCp, s.activeFirst = s.strictKey, -1, s.strictAt, true
}

// checkKey fails a log checkpoint of the current size that is not signed
// by the active key, once the retired-key rule applies.
func (s *scan) checkKey(d *due, c *cpSum) {
	if !s.strict && s.strictAt >= 0 && c.Size >= s.strictAt {
		s.startStrict()
	}
	if d.trusted || !s.strict || s.active < 0 || c.Key < 0 || c.Key == s.active {
		return
	}
	v := s.v
	d.retired = true
	signer, want := v.keyNames[c.Key], v.keyNames[s.active]
	switch {
	case s.activeAt >= 0:
		v.fail(ProblemRetiredKey, s.activeAt, c.Size, fmt.Sprintf("the checkpoint of size %d is signed by key %s, but the log's %s record %d names key %s for every checkpoint after it: a retired key vouches for records written after the rotation (rewritten and re-signed?)",
			c.Size, signer, s.activeAction, s.activeAt, want))
	case s.activeFirst:
		v.fail(ProblemRetiredKey, s.activeCp, c.Size, fmt.Sprintf("the checkpoint of size %d is signed by key %s, but the log records its key rotations from its checkpoint of size %d, signed by key %s, and no key_rotation record since names %s: a retired key vouches for records written after it (rewritten and re-signed?)",
			c.Size, signer, s.activeCp, want, signer))
	default:
		v.fail(ProblemRetiredKey, s.activeCp, c.Size, fmt.Sprintf("the checkpoint of size %d is signed by key %s, but the newest checkpoint before the checked records (size %d) is signed by key %s and no key_rotation record in between names %s",
			c.Size, signer, s.activeCp, want, signer))
	}
}

// atStart runs the checks that need the tree at the scan's start (its
// frontier): the checkpoints below it, the newest log checkpoint and every
// trusted copy, must be prefixes of it, shown by a consistency proof from
// the source. Checkpoints at or after the start are compared with the tree
// while the records are hashed (those of a prefix hashed before From too).
// A trusted copy no proof reaches is a failure: the log could have been
// forked before the records the source holds.
func (s *scan) atStart(ctx context.Context, at int64) error {
	v := s.v
	if at == 0 {
		return nil
	}
	root := s.front.root()
	type below struct {
		c       cpSum
		trusted bool
	}
	var check []below
	for _, c := range v.cps {
		if c.Size < at {
			check = append(check[:0], below{c: c}) // the newest below at
		}
	}
	for _, c := range v.tcps {
		if c.Size < at {
			check = append(check, below{c: c, trusted: true})
		}
	}
	for _, b := range check {
		c := b.c
		proof, err := v.src.TreeProof(ctx, v.or.Origin, c.Size, at)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("consistency proof %d -> %d: %w", c.Size, at, err)
		}
		switch {
		case err != nil && b.trusted:
			v.fail(ProblemUncheckedTrusted, -1, c.Size, fmt.Sprintf("the trusted checkpoint of size %d precedes the first record the source holds (%d) and the source gives no consistency proof from it: "+
				"a fork or rewrite of records before %d would go unnoticed (export the bundle with the trusted copies' proofs: sqlgate audit export --trusted-checkpoint, "+
				"or verify without --bundle; or leave this copy out)", c.Size, at, at))
			continue
		case err != nil:
			v.exception(ProblemUnchecked, -1, c.Size, fmt.Sprintf("checkpoint of size %d precedes the checked range and no consistency proof is available: %v", c.Size, err))
			continue
		}
		if b.trusted {
			v.or.Trusted++
		}
		if err := tlog.CheckTree(proof, at, root, c.Size, c.Root); err != nil {
			who := "checkpoint"
			if b.trusted {
				who = "trusted checkpoint"
			}
			v.fail(ProblemFork, -1, c.Size, fmt.Sprintf("the log at size %d does not extend the %s of size %d (fork or rewrite before the checked range)", at, who, c.Size))
			s.failed = true
		}
	}
	return nil
}

// checkDue compares the tree with every checkpoint of the current size.
func (s *scan) checkDue() {
	n := s.front.size
	for s.next < len(s.due) && s.cp(&s.due[s.next]).Size <= n {
		d := &s.due[s.next]
		c := s.cp(d)
		s.next++
		if c.Size < n {
			continue // below the scan start (handled by atLo)
		}
		d.done = true
		if d.trusted {
			s.v.or.Trusted++
		}
		s.checkKey(d, c)
		root := s.front.root()
		if root == c.Root {
			switch {
			case d.trusted:
				s.lastTrusted = max(s.lastTrusted, n)
			case !d.retired:
				s.lastMatch = max(s.lastMatch, n)
			}
			continue
		}
		v := s.v
		if d.trusted {
			v.fail(ProblemFork, s.lastTrusted, n, fmt.Sprintf("the log differs from the trusted checkpoint of size %d in records [%d, %d) (fork or rewrite)", n, s.lastTrusted, n))
		} else {
			v.fail(ProblemRootMismatch, s.lastMatch, n, fmt.Sprintf("records [%d, %d) do not hash to the signed checkpoint of size %d (record altered, inserted, removed or reordered)", s.lastMatch, n, n))
		}
		s.stopped = true
		return
	}
}

// record checks one decoded record at position p (>= lo).
func (s *scan) record(p int64, info *recInfo) {
	v := s.v
	v.or.Records++
	if info.time.After(s.maxTime) {
		if s.seen && v.opts.MaxGap > 0 && info.time.Sub(s.maxTime) > v.opts.MaxGap {
			v.exception(ProblemHeartbeatGap, p, 0, fmt.Sprintf("%s without records before this one (max %s)",
				info.time.Sub(s.maxTime).Round(time.Second), v.opts.MaxGap))
		}
		s.maxTime = info.time
	}
	if !s.seen {
		v.or.FirstRecordTime = info.time
		s.seen = true
	}
	v.or.LastRecordTime = info.time
	switch info.kind {
	case KindIntent:
		s.intents[p] = info.link
	case KindOutcome:
		if info.intent < s.lo && info.intent > 0 {
			break // its intent is before the checked range
		}
		in, ok := s.intents[info.intent]
		if !ok {
			v.exception(ProblemOrphanOutcome, p, 0, fmt.Sprintf("outcome names intent %d, which is not an open intent", info.intent))
			break
		}
		delete(s.intents, info.intent)
		if f := in.differs(&info.link); f != "" {
			v.fail(ProblemLinkMismatch, p, 0, fmt.Sprintf("outcome of intent %d differs from it in %s: the link between the call and its SQL transaction was falsified", info.intent, f))
		}
	}
}
