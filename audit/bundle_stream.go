package audit

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// A log signs a checkpoint per batch while busy (one a second) and never
// prunes them: after a year an origin has tens of millions. Export and
// verification therefore stream them: neither keeps a checkpoint it is done
// with, and a [Bundle] keeps where its checkpoint lines are as runs of
// lines, not one entry per line.

// exportNote is a checkpoint note the export keeps: the newest one before
// the exported records.
type exportNote struct {
	size int64
	note []byte
}

// exportRange is the first of the export's two passes over the
// checkpoints of origin: the end of the exported records (opts.To lowered
// to the newest checkpoint at or below it, from at least) and the newest
// checkpoint before the exported records, whose consistency proof to their
// first index the bundle carries (the last one listed of that size; nil
// when none). The first exported index, min(from, to), is from unless from
// is past end; it does not change during the pass (to only grows from
// from).
func exportRange(ctx context.Context, src Source, origin string, from, end, optTo int64) (to int64, below *exportNote, err error) {
	cut := optTo > 0 && optTo < end
	to = end
	if cut {
		to = from
	}
	err = src.Checkpoints(ctx, origin, func(msg []byte) error {
		c, err := ParseCheckpoint(noteText(msg))
		if err != nil {
			return nil //nolint:nilerr // no size to range on: the second pass writes it and the verifier names it
		}
		if cut && c.Size >= from && c.Size <= optTo {
			to = max(to, c.Size)
		}
		if c.Size < min(from, to) && (below == nil || c.Size >= below.size) {
			below = &exportNote{size: c.Size, note: append(below.reuse(), msg...)}
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return to, below, nil
}

// reuse returns n's buffer for the next note, nil for a nil n.
func (n *exportNote) reuse() []byte {
	if n == nil {
		return nil
	}
	return n.note[:0]
}

// writeBundleNotes is the second pass: it writes, in the source's order,
// every checkpoint of origin of a size in [from, to], and those that do not
// parse (the verifier names them).
func writeBundleNotes(ctx context.Context, writeJSON func(any) error, src Source, origin string, from, to int64) error {
	return src.Checkpoints(ctx, origin, func(msg []byte) error {
		if c, err := ParseCheckpoint(noteText(msg)); err == nil && (c.Size < from || c.Size > to) {
			return nil
		}
		s := string(msg)
		return writeJSON(bundleHeader{Checkpoint: &s})
	})
}

// noteRun is a run of consecutive checkpoint lines of a bundle, in
// ascending size order.
type noteRun struct {
	off, end int64 // the offsets of its first line and after its last
	n        int   // lines
	size     int64 // size of its first checkpoint, -1 when none parses
	last     int64 // size of its last checkpoint that parses, -1: none
}

// noteRuns are the checkpoint lines of an origin of a bundle. A bundle
// written by [WriteBundle] has one or two runs: it lists the newest
// checkpoint before the records last, after the larger ones.
type noteRuns []noteRun

// add notes the checkpoint line note at [start, next): it extends the last
// run when it follows it and is not smaller.
func (rs *noteRuns) add(start, next int64, note string) {
	size := noteSize(note)
	if k := len(*rs) - 1; k >= 0 && (*rs)[k].end == start && (size < 0 || size >= (*rs)[k].last) {
		r := &(*rs)[k]
		r.end, r.n = next, r.n+1
		if size >= 0 {
			r.last = size
			if r.size < 0 {
				r.size = size
			}
		}
		return
	}
	*rs = append(*rs, noteRun{off: start, end: next, n: 1, size: size, last: size})
}

// noteSize returns the size line of a checkpoint note, -1 when there is
// none (the verifier names a malformed note).
func noteSize(note string) int64 {
	_, rest, ok := strings.Cut(note, "\n")
	line, _, ok2 := strings.Cut(rest, "\n")
	n, err := strconv.ParseInt(line, 10, 64)
	if !ok || !ok2 || err != nil || n < 0 {
		return -1
	}
	return n
}

// ascending returns the runs by the size of their first checkpoint, so
// that [Verify], which needs them in ascending order, reads the newest
// checkpoint before the records first.
func (rs noteRuns) ascending() noteRuns {
	return slices.SortedStableFunc(slices.Values(rs), func(a, b noteRun) int {
		return cmp.Compare(a.size, b.size)
	})
}

// seekReaderAt reads at an offset by seeking first: every read of a run
// seeks, so fn (the verifier reading records of the same file) may move
// the file's offset between two checkpoints.
type seekReaderAt struct{ r io.ReadSeeker }

func (s seekReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if _, err := s.r.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.ReadFull(s.r, p)
}

// Checkpoints implements [Source]: the checkpoint lines of origin, each
// run of them in file order, runs in ascending order of their first
// checkpoint's size. fn may read records of the bundle.
func (b *Bundle) Checkpoints(_ context.Context, origin string, fn func([]byte) error) error {
	l, err := b.log(origin)
	if err != nil {
		return err
	}
	for _, run := range l.notes.ascending() {
		br := bufio.NewReaderSize(io.NewSectionReader(seekReaderAt{b.r}, run.off, run.end-run.off), 1<<16)
		var lr lineReader
		for i := range run.n {
			line, err := lr.read(br)
			if lr.long != nil || err != nil && (len(line) == 0 || !errors.Is(err, io.EOF)) {
				return fmt.Errorf("read bundle: the checkpoint lines at offset %d changed since the bundle was opened", run.off)
			}
			var h bundleHeader
			if err := json.Unmarshal(lineBody(line), &h); err != nil || h.Checkpoint == nil {
				return fmt.Errorf("read bundle: checkpoint line %d of the run at offset %d changed since the bundle was opened", i+1, run.off)
			}
			if err := fn([]byte(*h.Checkpoint)); err != nil {
				return err
			}
		}
	}
	return nil
}

// recordCursor is where the last [Bundle.Records] call of an origin
// stopped (the k-th record line, at file offset off; k 0: none), so that
// the next call for records after it does not read the lines before again:
// the verifier reads the records in ranges between checkpoints.
type recordCursor struct {
	k, off int64
}

// start returns the record line to start reading at for records from from.
func (l *bundleLog) start(from int64) (k, off int64) {
	if c := l.cursor; c.k > 0 && l.first+c.k <= from {
		return c.k, c.off
	}
	return 0, l.recStart
}

// stopAt notes that the k-th record line starts at offset off.
func (l *bundleLog) stopAt(k, off int64) { l.cursor = recordCursor{k, off} }
