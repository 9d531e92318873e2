package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/mod/sumdb/tlog"
)

// BundleFormat is the first line's format name of an audit bundle.
const BundleFormat = "sqlgate-audit-bundle/v1"

// maxBundleLine bounds one line of a bundle file.
const maxBundleLine = 1 << 20

// A bundle is a portable, self-contained export of audit logs that
// `sqlgate audit verify --bundle FILE` checks without any database driver.
// It is JSON Lines, written in this order:
//
//	{"format":"sqlgate-audit-bundle/v1"}
//	{"key":{"origin":…,"vkey":…,"added":…}}                    one per key
//	{"origin":"…","first":F,"end":E,"frontier":["<b64>",…]}  then, per origin:
//	{"checkpoint":"<signed note>"}                             ascending size
//	{"proof":{"old":N,"new":F,"hashes":["<b64>",…]}}           zero or more
//	{"leaf":"<b64>","record":{…canonical record…}}             records F..E-1
//
// The record is embedded byte for byte as the canonical encoding; leaf is
// its stored leaf hash. Nothing in a bundle is trusted by the verifier.

// BundleOptions select what [WriteBundle] exports.
type BundleOptions struct {
	// Origin exports only this origin.
	Origin string
	// From and To export indexes [From, To) of each origin (To 0: to the
	// end). A positive To is lowered to the size of the newest checkpoint at
	// or below it, so that every exported record is covered by a checkpoint.
	From, To int64
	// ProofSizes are tree sizes, usually those of the trusted checkpoint
	// copies the verifier holds: for each one below an origin's first
	// exported index F, the bundle carries the consistency proof from it to
	// F, so that [Verify] can check those copies although their records
	// are not in the bundle (pruned, or before From). The proof from the
	// newest log checkpoint before F is always written. At most
	// [MaxProofSizes] distinct sizes.
	ProofSizes []int64
}

// MaxProofSizes bounds [BundleOptions].ProofSizes.
const MaxProofSizes = 10000

type bundleHeader struct {
	Format     string       `json:"format,omitempty"`
	Key        *Key         `json:"key,omitempty"`
	Origin     *string      `json:"origin,omitempty"`
	First      int64        `json:"first,omitempty"`
	End        int64        `json:"end,omitempty"`
	Frontier   []tlog.Hash  `json:"frontier,omitempty"`
	Checkpoint *string      `json:"checkpoint,omitempty"`
	Proof      *bundleProof `json:"proof,omitempty"`
}

type bundleProof struct {
	Old    int64       `json:"old"`
	New    int64       `json:"new"`
	Hashes []tlog.Hash `json:"hashes"`
}

var (
	recordLinePrefix = []byte(`{"leaf":"`)
	recordLineMiddle = []byte(`","record":`)
)

// WriteBundle exports the logs of src to w. The output depends only on the
// source's content and opts (same input, same bytes).
func WriteBundle(ctx context.Context, w io.Writer, src Source, opts BundleOptions) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	writeJSON := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		b = append(b, '\n')
		_, err = bw.Write(b)
		return err
	}
	if len(opts.ProofSizes) > MaxProofSizes {
		return fmt.Errorf("write bundle: %d proof sizes, at most %d", len(opts.ProofSizes), MaxProofSizes)
	}
	if err := writeJSON(bundleHeader{Format: BundleFormat}); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	origins, err := src.Origins(ctx)
	if err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	slices.Sort(origins)
	keys, err := src.Keys(ctx)
	if err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	for _, k := range keys {
		if opts.Origin != "" && k.Origin != opts.Origin {
			continue
		}
		if err := writeJSON(bundleHeader{Key: &k}); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
	}
	for _, origin := range origins {
		if opts.Origin != "" && origin != opts.Origin {
			continue
		}
		if err := writeBundleOrigin(ctx, bw, writeJSON, src, origin, opts); err != nil {
			return fmt.Errorf("write bundle: origin %q: %w", origin, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write bundle: %w", err)
	}
	return nil
}

func writeBundleOrigin(ctx context.Context, bw *bufio.Writer, writeJSON func(any) error, src Source, origin string, opts BundleOptions) error {
	first, end, err := src.Bounds(ctx, origin)
	if err != nil {
		return err
	}
	// Two passes over the checkpoints, so that none is kept: an origin
	// has one per busy second, for as long as the log lives.
	from := max(first, opts.From)
	to, below, err := exportRange(ctx, src, origin, from, end, opts.To)
	if err != nil {
		return err
	}
	from = min(from, to)
	frontier, err := src.Frontier(ctx, origin, from)
	if err != nil {
		return err
	}
	o := origin
	if err := writeJSON(bundleHeader{Origin: &o, First: from, End: to, Frontier: frontier}); err != nil {
		return err
	}
	if err := writeBundleNotes(ctx, writeJSON, src, origin, from, to); err != nil {
		return err
	}
	var sizes []int64 // the proofs to write, from these sizes to from
	if below != nil && from > 0 {
		s := string(below.note)
		if err := writeJSON(bundleHeader{Checkpoint: &s}); err != nil {
			return err
		}
		sizes = append(sizes, below.size)
	}
	asked := slices.Sorted(slices.Values(opts.ProofSizes))
	for _, n := range slices.Compact(asked) {
		if n > 0 && n < from && (below == nil || n != below.size) {
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		proof, err := src.TreeProof(ctx, origin, n, from)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := writeJSON(bundleHeader{Proof: &bundleProof{Old: n, New: from, Hashes: proof}}); err != nil {
			return err
		}
	}
	var line []byte
	next := from // the index after the source's last record
	err = src.Records(ctx, origin, from, to, func(index int64, data []byte, leaf *tlog.Hash) error {
		if index != next {
			if err := prunedWhileRead(ctx, src, origin, next); err != nil {
				return err
			}
		}
		next = index + 1
		var h tlog.Hash
		if leaf != nil {
			h = *leaf
		} else {
			h = LeafHash(data)
		}
		line = append(line[:0], recordLinePrefix...)
		line = base64.StdEncoding.AppendEncode(line, h[:])
		line = append(line, recordLineMiddle...)
		line = append(line, data...)
		line = append(line, '}', '\n')
		_, err := bw.Write(line)
		return err
	})
	if err == nil && next < to {
		err = prunedWhileRead(ctx, src, origin, next)
	}
	return err
}

// prunedWhileRead is the error of an export whose source lacks record
// index, which its header already says the bundle holds, because
// retention pruned it after the export read the source's bounds (the log
// now starts after it): the record lines would stand for other indexes
// and the bundle would fail verification. nil when the source still starts
// at or before index: the record is missing from the log itself, and the
// verifier of the bundle names it (its record lines are positions).
func prunedWhileRead(ctx context.Context, src Source, origin string, index int64) error {
	first, _, err := src.Bounds(ctx, origin)
	if err != nil {
		return fmt.Errorf("record %d is not in the source, whose bounds cannot be read again: %w", index, err)
	}
	if first <= index {
		return nil
	}
	return fmt.Errorf("records %d to %d were pruned by retention while the bundle was written (the log now starts at record %d), "+
		"after its header said it holds them: the bundle is incomplete; export again", index, first-1, first)
}

// Bundle is an opened bundle file; it implements [Source]. Records and
// checkpoints are read from the file on demand, everything else is held in
// memory. A Bundle is not safe for concurrent use.
type Bundle struct {
	r       io.ReadSeeker
	keys    []Key
	origins []string
	logs    map[string]*bundleLog
}

type bundleLog struct {
	first, end int64
	frontier   []tlog.Hash
	notes      noteRuns                 // checkpoint lines, read again on demand
	proofs     map[[2]int64][]tlog.Hash // consistency proofs by old and new size
	recStart   int64                    // file offset of the first record line, -1 when none
	recLine    int                      // its line number
	recCount   int64
	cursor     recordCursor // where the last Records call stopped
	// extraLine is the line number of the first record line past end
	// (the header's range), 0 when none: [Verify] fails on it.
	extraLine int
}

// held returns how many of the origin's record lines are within its range.
func (l *bundleLog) held() int64 { return min(l.recCount, l.end-l.first) }

// extraRecords reports the record lines of origin past the end its header
// gives: how many, and the line number of the first.
func (b *Bundle) extraRecords(origin string) (line int, n int64) {
	l, ok := b.logs[origin]
	if !ok || l.extraLine == 0 {
		return 0, 0
	}
	return l.extraLine, l.recCount - (l.end - l.first)
}

var _ Source = (*Bundle)(nil)

// OpenBundle reads a bundle's index from r (usually an *os.File). It checks
// the layout, not the content: that is [Verify]'s job.
//
// A bundle may end with blank lines and its lines may end with CRLF (a
// transfer that converted line ends); an error names the line.
func OpenBundle(r io.ReadSeeker) (*Bundle, error) {
	b, err := openBundle(r)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	return b, nil
}

// lineBody is a line without its line end (LF or CRLF).
func lineBody(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

func openBundle(r io.ReadSeeker) (*Bundle, error) {
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	b := &Bundle{r: r, logs: map[string]*bundleLog{}}
	br := bufio.NewReaderSize(r, 1<<16)
	var off int64
	lineNo := 0
	var cur *bundleLog
	inRecords := false
	var lr lineReader
	blank, blanks := 0, int64(0) // the first of a run of blank lines, and how many
	for {
		line, err := lr.read(br)
		if errors.Is(err, io.EOF) && lr.n == 0 {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("line %d: %w", lineNo+1, err)
		}
		lineNo++
		start := off
		off += lr.n
		if lr.long != nil && !bytes.HasPrefix(line, recordLinePrefix) && !inRecords {
			return nil, fmt.Errorf("line %d: longer than %d bytes", lineNo, maxBundleLine)
		}
		body := lineBody(line)
		if lineNo == 1 {
			var h bundleHeader
			if err := json.Unmarshal(body, &h); err != nil || h.Format != BundleFormat {
				return nil, fmt.Errorf("not a %s file (its first line is not {\"format\":%q})", BundleFormat, BundleFormat)
			}
			continue
		}
		if len(bytes.TrimSpace(body)) == 0 {
			// Blank lines may end the file (an editor's or a transfer's
			// newline); inside the records they take a record's place.
			if blanks == 0 {
				blank = lineNo
			}
			blanks++
			continue
		}
		var h bundleHeader
		isRecord := bytes.HasPrefix(body, recordLinePrefix)
		if !isRecord {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			err := dec.Decode(&h)
			if inRecords && (err != nil || h.Origin == nil) {
				// Only an origin's header ends its records: anything else
				// there takes a record's place, and the verifier names it
				// (bad_record, with its line) at its index.
				isRecord = true
			} else if err != nil {
				return nil, fmt.Errorf("line %d: not a line of an audit bundle: %w", lineNo, err)
			}
		}
		if blanks > 0 {
			if !inRecords || !isRecord {
				return nil, fmt.Errorf("line %d: blank line (a bundle has blank lines only at its end)", blank)
			}
			cur.recCount += blanks // each takes a record's place
			if cur.recCount > cur.end-cur.first && cur.extraLine == 0 {
				cur.extraLine = blank + int(cur.end-cur.first-(cur.recCount-blanks))
			}
			blanks = 0
		}
		if isRecord {
			if cur == nil {
				return nil, fmt.Errorf("line %d: record before any origin", lineNo)
			}
			if !inRecords {
				if cur.recStart >= 0 {
					return nil, fmt.Errorf("line %d: records of an origin must be contiguous", lineNo)
				}
				cur.recStart, cur.recLine = start, lineNo
				inRecords = true
			}
			cur.recCount++
			if cur.recCount > cur.end-cur.first && cur.extraLine == 0 {
				cur.extraLine = lineNo
			}
			continue
		}
		inRecords = false
		switch {
		case h.Key != nil:
			b.keys = append(b.keys, *h.Key)
		case h.Origin != nil:
			if _, dup := b.logs[*h.Origin]; dup {
				return nil, fmt.Errorf("line %d: origin %q repeated", lineNo, *h.Origin)
			}
			if h.First < 0 || h.End < h.First {
				return nil, fmt.Errorf("line %d: invalid range", lineNo)
			}
			cur = &bundleLog{first: h.First, end: h.End, frontier: h.Frontier, recStart: -1}
			b.logs[*h.Origin] = cur
			b.origins = append(b.origins, *h.Origin)
		case h.Checkpoint != nil:
			if cur == nil {
				return nil, fmt.Errorf("line %d: checkpoint before any origin", lineNo)
			}
			cur.notes.add(start, off, *h.Checkpoint)
		case h.Proof != nil:
			if cur == nil {
				return nil, fmt.Errorf("line %d: proof before any origin", lineNo)
			}
			if cur.proofs == nil {
				cur.proofs = map[[2]int64][]tlog.Hash{}
			}
			cur.proofs[[2]int64{h.Proof.Old, h.Proof.New}] = h.Proof.Hashes
		default:
			return nil, fmt.Errorf("line %d: unknown line", lineNo)
		}
	}
	if lineNo == 0 {
		return nil, errors.New("empty file")
	}
	return b, nil
}

// lineReader reads the lines of a bundle. A line longer than
// maxBundleLine is not held in memory: it is skipped to its newline, and
// when it is a record line, the leaf hash of its record is computed on the
// way (so the tree, and the verification of the records after it, go on).
type lineReader struct {
	buf  []byte
	n    int64     // bytes of the last line, newline included
	long *longLine // the last line was too long
}

// longLine describes a skipped line.
type longLine struct {
	leaf   tlog.Hash // leaf hash of its record, when it is a record line
	ok     bool      // leaf is set
	stored *tlog.Hash
}

// read returns the next line with its newline, valid until the next read.
// For a long line it returns only the bytes read before it was found too
// long, and sets r.long.
func (r *lineReader) read(br *bufio.Reader) ([]byte, error) {
	r.long = nil
	frag, err := br.ReadSlice('\n')
	r.n = int64(len(frag))
	if !errors.Is(err, bufio.ErrBufferFull) {
		return frag, err
	}
	r.buf = append(r.buf[:0], frag...)
	for {
		frag, err = br.ReadSlice('\n')
		r.n += int64(len(frag))
		if len(r.buf)+len(frag) > maxBundleLine {
			return r.skip(br, frag, err)
		}
		r.buf = append(r.buf, frag...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return r.buf, err
		}
	}
}

// skip reads the rest of a long line, hashing the record of a record line
// (the bytes between `"record":` and the closing `}`, all but the last
// byte before the newline).
func (r *lineReader) skip(br *bufio.Reader, frag []byte, err error) ([]byte, error) {
	long := &longLine{}
	r.long = long
	m := len(recordLinePrefix) + 44 + len(recordLineMiddle)
	isRecord := bytes.HasPrefix(r.buf, recordLinePrefix) && len(r.buf) > m && bytes.Equal(r.buf[m-len(recordLineMiddle):m], recordLineMiddle)
	if isRecord {
		var stored tlog.Hash
		var buf [tlog.HashSize + 3]byte
		n, err := base64.StdEncoding.Strict().Decode(buf[:], r.buf[len(recordLinePrefix):len(recordLinePrefix)+44])
		if err == nil && n == tlog.HashSize {
			copy(stored[:], buf[:n])
			long.stored = &stored
		}
	}
	var held []byte // the last bytes ('}' and the line end) not yet hashed
	h := sha256.New()
	h.Write([]byte{0})
	feed := func(b []byte) {
		if !isRecord {
			return
		}
		held = append(held, b...)
		if keep := 3; len(held) > keep {
			h.Write(held[:len(held)-keep])
			held = append(held[:0], held[len(held)-keep:]...)
		}
	}
	feed(r.buf[min(m, len(r.buf)):])
	for {
		feed(frag)
		if !errors.Is(err, bufio.ErrBufferFull) {
			break
		}
		frag, err = br.ReadSlice('\n')
		r.n += int64(len(frag))
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	held = lineBody(held)
	if isRecord && len(held) > 0 && held[len(held)-1] == '}' {
		h.Write(held[:len(held)-1])
		copy(long.leaf[:], h.Sum(nil))
		long.ok = true
	}
	r.buf = r.buf[:min(len(r.buf), 4096)] // enough to tell what the line was
	return r.buf, err
}

// Origins implements [Source].
func (b *Bundle) Origins(context.Context) ([]string, error) { return slices.Clone(b.origins), nil }

// Keys implements [Source].
func (b *Bundle) Keys(context.Context) ([]Key, error) { return slices.Clone(b.keys), nil }

func (b *Bundle) log(origin string) (*bundleLog, error) {
	l, ok := b.logs[origin]
	if !ok {
		return nil, fmt.Errorf("bundle origin %q: %w", origin, ErrNotFound)
	}
	return l, nil
}

// Bounds implements [Source].
func (b *Bundle) Bounds(_ context.Context, origin string) (int64, int64, error) {
	l, err := b.log(origin)
	if err != nil {
		return 0, 0, err
	}
	return l.first, l.end, nil
}

// Frontier implements [Source]; a bundle holds the frontier at its first
// index only.
func (b *Bundle) Frontier(_ context.Context, origin string, size int64) ([]tlog.Hash, error) {
	l, err := b.log(origin)
	if err != nil {
		return nil, err
	}
	if size != l.first {
		return nil, fmt.Errorf("bundle frontier at %d: %w", size, ErrNotFound)
	}
	return slices.Clone(l.frontier), nil
}

// TreeProof implements [Source]; a bundle holds the proofs its writer put in.
func (b *Bundle) TreeProof(_ context.Context, origin string, oldSize, newSize int64) (tlog.TreeProof, error) {
	l, err := b.log(origin)
	if err != nil {
		return nil, err
	}
	if p, ok := l.proofs[[2]int64{oldSize, newSize}]; ok {
		return slices.Clone(p), nil
	}
	return nil, fmt.Errorf("bundle proof %d -> %d: %w", oldSize, newSize, ErrNotFound)
}

// Records implements [Source]. Positions are assigned in file order from the
// origin's first index.
func (b *Bundle) Records(ctx context.Context, origin string, from, to int64, fn func(int64, []byte, *tlog.Hash) error) error {
	l, err := b.log(origin)
	if err != nil {
		return err
	}
	if l.recStart < 0 || from >= to {
		return nil
	}
	k0, off := l.start(from)
	if _, err := b.r.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("read bundle: %w", err)
	}
	br := bufio.NewReaderSize(b.r, 1<<16)
	var leaf tlog.Hash
	var lr lineReader
	var long []byte
	for k := k0; k < l.recCount; k++ {
		index := l.first + k
		if index >= to {
			l.stopAt(k, off)
			return nil
		}
		line, err := lr.read(br)
		off += lr.n
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read bundle: %w", err)
		}
		if index < from {
			continue
		}
		if lr.long != nil {
			// Not read: the verifier names it (and hashes on from its leaf).
			long = appendOversized(long[:0], lr.n, lr.long.leaf, lr.long.ok)
			if err := fn(index, long, lr.long.stored); err != nil {
				return err
			}
			continue
		}
		if k&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		whole := bytes.HasSuffix(line, []byte("\n"))
		line = lineBody(line)
		data, ok := parseRecordLine(line, &leaf)
		var lp *tlog.Hash
		if ok {
			lp = &leaf
		} else {
			// The verifier names the bad record with its line.
			no := l.recLine + int(k)
			var why string
			switch {
			case len(bytes.TrimSpace(line)) == 0:
				why = "is blank"
			case !bytes.HasPrefix(line, recordLinePrefix):
				why = "is not a record line"
			case !whole && errors.Is(err, io.EOF):
				why = "is cut off: the file ends inside it (truncated?)"
			default:
				why = `is not a well-formed record line {"leaf":"<base64 leaf hash>","record":{…}}`
			}
			long = appendMalformed(long[:0], fmt.Sprintf("line %d of the bundle %s", no, why))
			data = long
		}
		if err := fn(index, data, lp); err != nil {
			return err
		}
	}
	return nil
}

// parseRecordLine splits `{"leaf":"<b64>","record":<data>}`.
func parseRecordLine(line []byte, leaf *tlog.Hash) ([]byte, bool) {
	const b64Len = 44
	p := len(recordLinePrefix)
	m := p + b64Len
	if len(line) < m+len(recordLineMiddle)+1 || !bytes.Equal(line[m:m+len(recordLineMiddle)], recordLineMiddle) || line[len(line)-1] != '}' {
		return nil, false
	}
	var buf [tlog.HashSize + 3]byte
	n, err := base64.StdEncoding.Strict().Decode(buf[:], line[p:m])
	if err != nil || n != tlog.HashSize {
		return nil, false
	}
	copy(leaf[:], buf[:n])
	return line[m+len(recordLineMiddle) : len(line)-1], true
}

// Prove builds the inclusion proof of the record at index of origin in the
// tree of the signed checkpoint cp (usually the newest one [Verify] found
// valid in the bundle), from the bundle's frontier and records, so that a
// record can be proven offline. It reads the records once, whatever the
// number of hashes the proof needs. The proof is checked by
// [VerifyProof], not here: the bundle is not trusted. It fails with
// [ErrNotFound] when the bundle does not hold the record, or cp does not
// cover it or covers more than the bundle holds.
func (b *Bundle) Prove(ctx context.Context, origin string, index int64, cp *Checkpoint) (*Proof, error) {
	l, err := b.log(origin)
	if err != nil {
		return nil, err
	}
	size := cp.Size
	switch {
	case cp.Origin != origin:
		return nil, fmt.Errorf("prove record %d of %s: the checkpoint is of %s", index, origin, cp.Origin)
	case index < l.first || index >= l.first+l.held():
		return nil, fmt.Errorf("prove record %d of %s: the bundle holds records %d to %d: %w", index, origin, l.first, l.first+l.held()-1, ErrNotFound)
	case index >= size || size > l.first+l.held():
		return nil, fmt.Errorf("prove record %d of %s: the checkpoint of size %d does not cover it within the bundle's records %d to %d: %w",
			index, origin, size, l.first, l.first+l.held()-1, ErrNotFound)
	}
	front := frontierIndexes(l.first)
	if len(front) != len(l.frontier) {
		return nil, fmt.Errorf("prove record %d of %s: the bundle's frontier at %d has %d hashes, not %d", index, origin, l.first, len(l.frontier), len(front))
	}
	var data []byte
	err = b.Records(ctx, origin, index, index+1, func(i int64, d []byte, _ *tlog.Hash) error {
		data = bytes.Clone(d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if data == nil {
		return nil, fmt.Errorf("prove record %d of %s: %w", index, origin, ErrNotFound)
	}
	inclusion, err := tlog.ProveRecord(size, index, tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return b.subtreeHashes(ctx, origin, l, front, indexes)
	}))
	if err != nil {
		return nil, fmt.Errorf("prove record %d of %s: %w", index, origin, err)
	}
	return &Proof{Origin: origin, Index: index, Record: data, Inclusion: inclusion, Checkpoint: string(cp.Note)}, nil
}

// subtreeHashes returns the hashes at the stored hash indexes (see
// tlog.StoredHashIndex) of perfect subtrees: one before the bundle's first
// record is a hash of its frontier; one reaching past it is computed from
// the frontier hashes it contains and the leaves of the records after, in
// one pass over them.
func (b *Bundle) subtreeHashes(ctx context.Context, origin string, l *bundleLog, front []int64, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	type subtree struct {
		pos    int
		lo, hi int64 // the leaves [lo, hi) to read
		tree   *Tree
	}
	var pending []*subtree
	from, to := int64(-1), int64(0)
	for i, idx := range indexes {
		level, n := tlog.SplitStoredHashIndex(idx)
		lo, hi := n<<level, (n+1)<<level
		if hi <= l.first {
			k := slices.Index(front, idx)
			if k < 0 {
				return nil, fmt.Errorf("hash of records %d to %d: the bundle's frontier at %d does not hold it", lo, hi-1, l.first)
			}
			out[i] = l.frontier[k]
			continue
		}
		// The frontier's subtrees inside [lo, first) start the tree.
		var start int64
		var hashes []tlog.Hash
		if lo < l.first {
			start = l.first - lo
			for k, fi := range front {
				if lv, m := tlog.SplitStoredHashIndex(fi); m<<lv >= lo {
					hashes = append(hashes, l.frontier[k])
				}
			}
		}
		t, err := NewTree(start, hashes)
		if err != nil {
			return nil, fmt.Errorf("hash of records %d to %d: %w", lo, hi-1, err)
		}
		s := &subtree{pos: i, lo: max(lo, l.first), hi: hi, tree: t}
		pending = append(pending, s)
		if from < 0 || s.lo < from {
			from = s.lo
		}
		to = max(to, hi)
	}
	if len(pending) == 0 {
		return out, nil
	}
	next := from
	err := b.Records(ctx, origin, from, to, func(i int64, data []byte, _ *tlog.Hash) error {
		if i != next {
			return fmt.Errorf("record %d is missing", next)
		}
		next++
		leaf := LeafHash(data)
		for _, s := range pending {
			if i >= s.lo && i < s.hi {
				s.tree.Append(leaf)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if next != to {
		return nil, fmt.Errorf("records %d to %d are missing", next, to-1)
	}
	for _, s := range pending {
		out[s.pos] = s.tree.Root()
	}
	return out, nil
}
