package audit_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
)

// passes is a bundle that lists other checkpoints on later passes over
// them, as a source written to while it is verified, or one that answers
// the verifier's second pass with other checkpoints than its first, would.
type passes struct {
	*audit.Bundle
	n     int
	later func(notes [][]byte) [][]byte // the notes of the passes after the first
}

func (p *passes) Checkpoints(ctx context.Context, o string, fn func([]byte) error) error {
	p.n++
	var notes [][]byte
	if err := p.Bundle.Checkpoints(ctx, o, func(msg []byte) error {
		notes = append(notes, bytes.Clone(msg))
		return nil
	}); err != nil {
		return err
	}
	if p.n > 1 {
		notes = p.later(notes)
	}
	for _, msg := range notes {
		if err := fn(msg); err != nil {
			return err
		}
	}
	return nil
}

// Verify reads the checkpoints twice and checks their signatures in the
// first pass only: checkpoints written after the first pass (a live log)
// are left out, as they were when the checkpoints were read once, and any
// other difference in the second pass is a failure, since the checkpoints
// compared with the log must be those whose signatures were checked.
func TestVerifyBindsItsSecondPassToTheFirst(t *testing.T) {
	data, vk := manyCheckpointsBundle(t, 40)
	other, _ := manyCheckpointsBundle(t, 41) // the same log, one record and checkpoint longer
	extra := openBundle(t, other)
	var last []byte
	if err := extra.Checkpoints(t.Context(), origin, func(msg []byte) error { last = bytes.Clone(msg); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		later func([][]byte) [][]byte
		ok    bool
	}{
		{"same", func(n [][]byte) [][]byte { return n }, true},
		{"one_written_since", func(n [][]byte) [][]byte { return append(n, last) }, true},
		{"one_left_out", func(n [][]byte) [][]byte { return n[:len(n)-1] }, false},
		{"one_left_out_in_the_middle", func(n [][]byte) [][]byte { return append(n[:10:10], n[11:]...) }, false},
		{"one_repeated", func(n [][]byte) [][]byte { return append(n[:10:10], n[9:]...) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &passes{Bundle: openBundle(t, data), later: tc.later}
			rep, err := audit.Verify(t.Context(), src, audit.VerifyOptions{Keys: []string{vk}})
			if err != nil {
				t.Fatal(err)
			}
			if tc.ok {
				if !rep.OK() || rep.Origins[0].Checkpoints != 40 || rep.Origins[0].Latest.Size != 40 {
					t.Fatalf("Verify = %v, %+v; want OK with the 40 checkpoints of the first pass", rep.Failures, rep.Origins[0])
				}
				return
			}
			if rep.OK() {
				t.Fatal("Verify passed although the second pass listed other checkpoints")
			}
			found := false
			for _, f := range rep.Failures {
				found = found || f.Code == audit.ProblemBadCheckpoint && strings.Contains(f.Message, "changed while they were verified")
			}
			if !found {
				t.Errorf("failures %v, want bad_checkpoint: the checkpoints changed while they were verified", rep.Failures)
			}
		})
	}
}

// A checkpoint listed after a larger one cannot be compared with the tree
// at its size any more (the scan passed it): a bundle whose checkpoint
// lines were reordered fails, naming it, where it used to be sorted in
// memory. Bundles as the export writes them (the newest checkpoint before
// the records after the others) verify.
func TestVerifyRefusesCheckpointsOutOfOrder(t *testing.T) {
	data, vk := manyCheckpointsBundle(t, 30)
	lines := bytes.SplitAfter(data, []byte("\n"))
	// lines: format, key, origin, then the checkpoints of sizes 1..30.
	lines[3+10], lines[3+11] = lines[3+11], lines[3+10] // sizes 11 and 12
	rep := verify(t, openBundle(t, bytes.Join(lines, nil)), audit.VerifyOptions{Keys: []string{vk}})
	if rep.OK() {
		t.Fatal("Verify passed a bundle whose checkpoints are out of order")
	}
	f := rep.Failures[0]
	if len(rep.Failures) != 1 || f.Code != audit.ProblemBadCheckpoint || f.Size != 11 || !strings.Contains(f.Message, "listed after the checkpoint of size 12") {
		t.Errorf("failures %v, want one bad_checkpoint naming size 11 listed after 12", rep.Failures)
	}
	if o := rep.Origins[0]; o.Checkpoints != 29 || o.Records != 30 {
		t.Errorf("origin report %+v, want the 29 other checkpoints and every record checked", o)
	}
}

// endsEarly is a bundle that stops listing records at gap in a read of
// records that reaches it (a source that lost them, or gave up), and lists
// those after it when asked from after it.
type endsEarly struct {
	*audit.Bundle
	gap int64
}

func (e *endsEarly) Records(ctx context.Context, o string, from, to int64, fn func(int64, []byte, *tlog.Hash) error) error {
	if from <= e.gap && e.gap < to {
		to = e.gap
	}
	return e.Bundle.Records(ctx, o, from, to, fn)
}

// Records are read in ranges between windows of checkpoints; a range that
// ends short of its checkpoint does not make the next range start after
// the records that did not come: they are missing, as when the records
// were read in one go.
func TestVerifyRecordsMissingInAWindow(t *testing.T) {
	data, vk := manyCheckpointsBundle(t, 30)
	src := &endsEarly{Bundle: openBundle(t, data), gap: 12}
	rep := verify(t, src, audit.VerifyOptions{Keys: []string{vk}})
	if rep.OK() {
		t.Fatal("Verify passed a log missing records")
	}
	first := rep.FirstFailure()
	if first.Code != audit.ProblemMissingRecord || first.Index != 12 {
		t.Errorf("first failure %v, want missing_record at 12; all: %v", first, rep.Failures)
	}
}
