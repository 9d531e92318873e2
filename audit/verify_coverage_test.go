package audit_test

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// TestVerifyNeedsTheLogOfEveryKey: a key is named after its log, so an
// auditor who pins the keys of two instances learns when the source holds
// only one of them (a log deleted, or left out of the export).
func TestVerifyNeedsTheLogOfEveryKey(t *testing.T) {
	store := audittest.NewStore()
	l := buildLog(t, store, 5, 0, "c", nil, nil)
	_ = l.Close(t.Context())
	const gone = "sqlgate.test/gone"
	_, goneKey := audittest.Key(t, gone, 1)
	keys := []string{vkey(t, 1), goneKey}

	for name, src := range map[string]audit.Source{"store": store, "bundle": openBundle(t, writeBundle(t, store, audit.BundleOptions{}))} {
		t.Run(name, func(t *testing.T) {
			rep := verify(t, src, audit.VerifyOptions{Keys: keys})
			if rep.OK() || len(rep.Failures) != 1 || rep.Failures[0].Code != audit.ProblemOriginMissing || rep.Failures[0].Origin != gone {
				t.Fatalf("Verify with the key of a log the source does not hold: failures = %v, want one origin_missing for %s", rep.Failures, gone)
			}
			var text bytes.Buffer
			_ = rep.WriteText(&text)
			if !strings.Contains(text.String(), "FAILED") || !strings.Contains(text.String(), `names origin "sqlgate.test/gone", which the log does not hold`) {
				t.Errorf("text report:\n%s", text.String())
			}
			// Restricted to the origin the source holds, the other key is
			// not asked about.
			requireOK(t, verify(t, src, audit.VerifyOptions{Keys: keys, Origin: origin}))
		})
	}
}

// TestVerifyNeedsACheckpoint: with trusted keys, a log no checkpoint signed
// by one of them covers proves nothing and fails; an uncovered tail after
// the newest checkpoint is an exception the text report shows at the top.
func TestVerifyNeedsACheckpoint(t *testing.T) {
	keys := []string{vkey(t, 1)}
	build := func(t *testing.T, keep func(size int64) bool) *audittest.Store {
		store := audittest.NewStore()
		l := buildLog(t, store, 10, 2, "c", nil, nil) // checkpoints 1, 5, 9, ..., 21
		_ = l.Close(t.Context())
		store.Tamper(origin, func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
			var kept [][]byte
			for _, cp := range c {
				if keep(checkpointSize(t, cp)) {
					kept = append(kept, cp)
				}
			}
			return r, l, kept
		})
		return store
	}

	t.Run("no_checkpoint", func(t *testing.T) {
		store := build(t, func(int64) bool { return false })
		rep := verify(t, store, audit.VerifyOptions{Keys: keys})
		if rep.OK() {
			t.Fatal("Verify with the pinned key passed a log of 21 records that no checkpoint covers")
		}
		if f := rep.FirstFailure(); f.Code != audit.ProblemNoCheckpoint || f.Origin != origin || f.Index != 0 {
			t.Errorf("first failure = %+v, want no_checkpoint of %s at 0", f, origin)
		}
		var text bytes.Buffer
		_ = rep.WriteText(&text)
		if !strings.Contains(text.String(), "no checkpoint signed by a trusted key") {
			t.Errorf("text report does not say why:\n%s", text.String())
		}
		// Without keys, the log's own key history is all there is, and a
		// log without any checkpoint is not even self-consistent (every log
		// signs one over its first record): it fails too.
		rep = verify(t, store, audit.VerifyOptions{})
		if f := rep.FirstFailure(); rep.OK() || f.Code != audit.ProblemNoCheckpoint || !strings.Contains(f.Message, "no checkpoint signed by any key of its own key history") {
			t.Errorf("without keys: failures %v, want no_checkpoint", rep.Failures)
		}
	})

	t.Run("uncovered_tail", func(t *testing.T) {
		store := build(t, func(size int64) bool { return size <= 9 })
		rep := verify(t, store, audit.VerifyOptions{Keys: keys})
		requireOK(t, rep)
		if got := rep.Origins[0].Uncovered; got != 12 || rep.ExceptionCounts[audit.ProblemUncoveredTail] != 1 {
			t.Errorf("Uncovered = %d, exceptions %v; want 12 and one uncovered_tail", got, rep.ExceptionCounts)
		}
		var text bytes.Buffer
		_ = rep.WriteText(&text)
		lines := strings.Split(text.String(), "\n")
		want := "WARNING: origin sqlgate.test/a: the newest 12 records (indexes 9 to 20) are not covered by a signed checkpoint"
		if len(lines) < 2 || !strings.HasPrefix(lines[1], want) {
			t.Errorf("the second line of the text report is not the warning %q:\n%s", want, text.String())
		}
		if !strings.Contains(text.String(), "NOT COVERED by a signed checkpoint: 12 records (indexes 9 to 20)") {
			t.Errorf("the origin's paragraph does not count the uncovered records:\n%s", text.String())
		}
	})
}
