package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sort"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Verification reads the checkpoints of an origin twice and keeps none of
// them beyond a window, so that its memory does not grow with their number
// (one per busy second, never pruned):
//
//   - loadCheckpoints opens every checkpoint (signature included) and keeps
//     what the range and the rules need: counts, the newest, the sizes the
//     time bounds and the retired-key rule start at (cpStats), and a
//     SHA-256 over every note it read;
//   - stream reads them again, without checking signatures a second time,
//     and hands the scan a window of them at a time, reading the records
//     up to the window's last size before the next window. At its end the
//     notes must hash as in the first pass: the source cannot show the
//     scan other checkpoints than those whose signatures were checked.
//
// The source must list checkpoints in ascending size order (the SQL store
// does, a [Bundle] orders its runs of checkpoint lines); a valid checkpoint
// listed after a larger one cannot be compared with the log at its size and
// is a bad_checkpoint failure.

// Window bounds: the scan reads records once it holds at least
// minWindow checkpoints spanning minWindowRecords records, or maxWindow
// checkpoints (variables for the tests).
var (
	minWindow        = 1024
	minWindowRecords = int64(4096)
	maxWindow        = 8192
)

// cpStats is what loadCheckpoints keeps of an origin's checkpoints.
type cpStats struct {
	n      int64  // notes read, valid or not
	digest []byte // SHA-256 over the notes read (noteDigest)
	// skip lists, ascending, the positions (among the n) of the notes that
	// are not used: invalid, of another origin, or out of order.
	skip []int64
	// fromTimeAt is the largest size of a checkpoint dated at or before
	// FromTime (0: none); toTimeAt the smallest of one dated at or after
	// ToTime (-1: none).
	fromTimeAt, toTimeAt int64
	// rotAt and rotKey are the size and key of the first checkpoint that
	// carries [rotationsExtension] (-1: none); legacyEnd the largest size
	// of one that does not.
	rotAt     int64
	rotKey    int32
	legacyEnd int64
}

// noteDigest adds a note to the digest of a pass.
func noteDigest(h hash.Hash, msg []byte) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(msg)))])
	h.Write(msg)
}

// loadCheckpoints opens every checkpoint of the origin (the first pass).
func (v *originVerifier) loadCheckpoints(ctx context.Context) error {
	origin := v.or.Origin
	st := &v.st
	*st = cpStats{toTimeAt: -1, rotAt: -1, rotKey: -1}
	h := sha256.New()
	var lastValid int64
	var prev cpSum
	hasPrev := false
	keyIDs := map[string]bool{}
	err := v.src.Checkpoints(ctx, origin, func(msg []byte) error {
		pos := st.n
		st.n++
		noteDigest(h, msg)
		if why, inner, ok := cutBadCheckpointRow(msg); ok {
			size := int64(-1)
			if c, perr := ParseCheckpoint(inner); perr == nil {
				size = c.Size
			}
			v.fail(ProblemBadCheckpoint, lastValid, size, fmt.Sprintf("checkpoint of size %d (as its note says): %s", size, why))
			st.skip = append(st.skip, pos)
			return nil
		}
		cp, err := OpenCheckpoint(msg, v.verifiers)
		if err != nil {
			size := int64(-1)
			if c, perr := ParseCheckpoint(noteText(msg)); perr == nil {
				size = c.Size
			}
			v.fail(ProblemBadCheckpoint, lastValid, size, fmt.Sprintf("checkpoint of size %d: %v", size, err))
			st.skip = append(st.skip, pos)
			return nil
		}
		if cp.Origin != origin {
			v.fail(ProblemBadCheckpoint, lastValid, cp.Size, fmt.Sprintf("checkpoint of size %d names origin %q", cp.Size, cp.Origin))
			st.skip = append(st.skip, pos)
			return nil
		}
		sum := sumOf(cp)
		sum.Key = v.intern(cp.KeyID)
		if hasPrev && sum.Size < prev.Size {
			v.fail(ProblemBadCheckpoint, lastValid, sum.Size, fmt.Sprintf("checkpoint of size %d is listed after the checkpoint of size %d: the source does not list checkpoints in ascending size order, so it cannot be compared with the log (a bundle edited?)", sum.Size, prev.Size))
			st.skip = append(st.skip, pos)
			return nil
		}
		if hasPrev {
			a, b := prev, sum
			if a.Size == b.Size && a.Root != b.Root {
				v.fail(ProblemFork, a.Size, a.Size, fmt.Sprintf("two signed checkpoints of size %d disagree", a.Size))
			}
			if !a.Time.IsZero() && b.Time.Before(a.Time) {
				v.exception(ProblemCheckpointTime, -1, b.Size, fmt.Sprintf("checkpoint of size %d is dated %s, before the checkpoint of size %d (%s)",
					b.Size, b.Time.Format(time.RFC3339), a.Size, a.Time.Format(time.RFC3339)))
			}
		}
		prev, hasPrev = sum, true
		keyIDs[cp.KeyID] = true
		v.or.Checkpoints++
		if v.or.Latest == nil || cp.Size >= v.or.Latest.Size {
			v.or.Latest = cp
		}
		lastValid = cp.Size
		if t := v.opts.FromTime; !t.IsZero() && !sum.Time.After(t) {
			st.fromTimeAt = max(st.fromTimeAt, sum.Size)
		}
		if t := v.opts.ToTime; !t.IsZero() && !sum.Time.Before(t) && (st.toTimeAt < 0 || sum.Size < st.toTimeAt) {
			st.toTimeAt = sum.Size
		}
		if sum.Rotations && (st.rotAt < 0 || sum.Size < st.rotAt) {
			st.rotAt, st.rotKey = sum.Size, sum.Key
		}
		if !sum.Rotations {
			st.legacyEnd = max(st.legacyEnd, sum.Size)
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.digest = h.Sum(nil)
	for id := range keyIDs {
		v.or.KeyIDs = append(v.or.KeyIDs, id)
	}
	slices.Sort(v.or.KeyIDs)
	return nil
}

// badCheckpointRowMarker starts what a source passes to
// [Source.Checkpoints] for a stored checkpoint whose size, kept beside its
// note, is not the size the note states ([CheckpointRow]): then why, a
// NUL byte and the note. No note starts with a NUL byte.
const badCheckpointRowMarker = "\x00sqlgate: bad checkpoint row\x00"

// CheckpointRow returns what a [Source] that stores each checkpoint's size
// beside its note (a column it lists them in order of) passes to
// Checkpoints for a stored row: the note when ok and size is the size the
// note states (or when the note is not a checkpoint at all: [Verify]
// names that itself); else the note marked, which [Verify] reports as
// bad_checkpoint at the size its note states, without using it (the row's
// size was edited: the source lists the checkpoint in another place than
// its size), and [WriteBundle] exports as it is, so that a verification of
// the bundle reports it too. ok is false when the stored size is not an
// integer.
func CheckpointRow(size int64, ok bool, note []byte) []byte {
	if _, rest, found := bytes.Cut(note, []byte("\n")); ok && found && size >= 0 {
		var buf [20]byte
		if line := strconv.AppendInt(buf[:0], size, 10); bytes.HasPrefix(rest, line) && len(rest) > len(line) && rest[len(line)] == '\n' {
			return note // states size (the fast path of every honest row)
		}
	}
	c, err := ParseCheckpoint(note)
	switch {
	case err != nil:
		return note
	case !ok:
		return markBadCheckpointRow(note, "the store keeps it under a size that is not an integer (edited?)")
	case c.Size != size:
		return markBadCheckpointRow(note, fmt.Sprintf("the store keeps it under size %d (edited?), so it is listed where a checkpoint of that size would be", size))
	}
	return note
}

func markBadCheckpointRow(note []byte, why string) []byte {
	out := make([]byte, 0, len(badCheckpointRowMarker)+len(why)+1+len(note))
	out = append(out, badCheckpointRowMarker...)
	out = append(out, why...)
	out = append(out, 0)
	return append(out, note...)
}

// cutBadCheckpointRow splits what markBadCheckpointRow wrote.
func cutBadCheckpointRow(msg []byte) (why string, note []byte, ok bool) {
	rest, ok := bytes.CutPrefix(msg, []byte(badCheckpointRowMarker))
	if !ok {
		return "", nil, false
	}
	w, n, found := bytes.Cut(rest, []byte{0})
	if !found {
		return string(rest), nil, true
	}
	return string(w), n, true
}

// unverified opens notes without checking their signatures (the key must
// still be known): the second pass reads the notes the first one checked.
type unverified struct{ note.Verifiers }

func (u unverified) Verifier(name string, hash uint32) (note.Verifier, error) {
	v, err := u.Verifiers.Verifier(name, hash)
	if err != nil {
		return nil, err
	}
	return acceptAll{v}, nil
}

type acceptAll struct{ note.Verifier }

func (acceptAll) Verify(msg, sig []byte) bool { return true }

// errStopScan ends the second pass once the scan stopped.
var errStopScan = errors.New("the scan stopped")

// stream is the second pass: it reads the checkpoints again and the
// records [scanFrom, hi) between them.
func (v *originVerifier) stream(ctx context.Context, s *scan, scanFrom, hi int64, fullTail bool) error {
	st := &v.st
	s.w.covered = -1
	var (
		begun   bool
		below   *cpSum  // the newest checkpoint below scanFrom
		atStart []cpSum // those of size scanFrom
		window  []cpSum
		pos     = scanFrom // records before pos are read
		n       int64
		skip    = st.skip
	)
	h := sha256.New()
	begin := func() error {
		begun = true
		v.cps = atStart
		if below != nil {
			v.cps = append([]cpSum{*below}, atStart...)
		}
		return s.begin(ctx, scanFrom)
	}
	flush := func() error {
		s.window(window, fullTail, false)
		window = nil
		if to := min(v.cps[len(v.cps)-1].Size, hi); to > pos && !s.stopped {
			if err := s.records(ctx, pos, to); err != nil {
				return err
			}
			pos = s.front.size // short of to when the source has no more records
		}
		return nil
	}
	err := v.src.Checkpoints(ctx, v.or.Origin, func(msg []byte) error {
		if n == st.n {
			return errStopScan // written after the first pass
		}
		p := n
		n++
		noteDigest(h, msg)
		if len(skip) > 0 && skip[0] == p {
			skip = skip[1:]
			return nil
		}
		cp, err := OpenCheckpoint(msg, unverified{v.verifiers})
		if err != nil || cp.Origin != v.or.Origin {
			return nil //nolint:nilerr // changed since the first pass: the digests differ and verification fails
		}
		sum := sumOf(cp)
		sum.Key = v.intern(cp.KeyID)
		if !begun {
			switch {
			case sum.Size < scanFrom:
				below = &sum
				return nil
			case sum.Size == scanFrom:
				atStart = append(atStart, sum)
				return nil
			}
			if err := begin(); err != nil {
				return err
			}
		}
		if k := len(window); k > 0 && sum.Size > window[k-1].Size &&
			(k >= maxWindow || k >= minWindow && window[k-1].Size-pos >= minWindowRecords) {
			if err := flush(); err != nil {
				return err
			}
		}
		if s.stopped {
			return errStopScan
		}
		window = append(window, sum)
		return nil
	})
	switch {
	case errors.Is(err, errStopScan):
	case err != nil:
		return err
	}
	if !s.stopped && !begun {
		if err := begin(); err != nil {
			return err
		}
	}
	if !s.stopped && len(window) > 0 {
		if err := flush(); err != nil {
			return err
		}
	}
	if !s.stopped {
		s.window(nil, fullTail, true)
		if err := s.records(ctx, pos, hi); err != nil {
			return err
		}
	}
	if s.stopped {
		return nil
	}
	if n != st.n || !bytes.Equal(h.Sum(nil), st.digest) {
		v.fail(ProblemBadCheckpoint, -1, 0, fmt.Sprintf("the source's checkpoints changed while they were verified (%d read again of %d): the checkpoints compared with the log are not those whose signatures were checked", n, st.n))
		return nil
	}
	s.end(hi, fullTail)
	return nil
}

// window is what the scan keeps of the log checkpoints before the window
// it is at.
type window struct {
	covered int64       // the largest size matched, -1: none
	beyond  []cpSum     // those beyond the records, when the whole tail is verified
	free    chan *chunk // chunks for the next records (verify_scan.go)
}

// window makes cps (ascending, of sizes after those of the checkpoints
// before) the log checkpoints the scan compares the tree with next. Of
// those before, it keeps what the end of the scan needs: the largest size
// matched, and, when the whole tail is verified, those beyond the records
// (truncation), which the last window (final) holds again for finish.
func (s *scan) window(cps []cpSum, fullTail, final bool) {
	v := s.v
	var trusted []due
	for i := range s.due {
		d := &s.due[i]
		switch {
		case d.trusted:
			if !d.done {
				trusted = append(trusted, *d)
			}
		case d.done && !d.retired:
			s.w.covered = max(s.w.covered, v.cps[d.i].Size)
		case !d.done && fullTail && v.cps[d.i].Size > s.front.size:
			s.w.beyond = append(s.w.beyond, v.cps[d.i])
		}
	}
	if final {
		cps = append(s.w.beyond, cps...)
		s.w.beyond = nil
	}
	v.cps = cps
	s.due = s.due[:0]
	for i := range v.cps {
		s.due = append(s.due, due{i: int32(i)})
	}
	s.due = append(s.due, trusted...)
	sort.SliceStable(s.due, func(i, j int) bool { return s.cp(&s.due[i]).Size < s.cp(&s.due[j]).Size })
	s.next = 0
}
