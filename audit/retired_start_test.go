package audit_test

import (
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// TestVerifyRefusesAFirstCheckpointOfAnotherKeyThanLogStart: a log whose
// log_start record names key 1 but whose every checkpoint (all saying
// "rotations recorded") key 2 signed was not written by sqlgate: it signs
// with the key its log_start names. With both keys trusted it passed, as
// the first checkpoint's key overrode the record; a version that records
// every key change wrote that record, so it names the key.
func TestVerifyRefusesAFirstCheckpointOfAnotherKeyThanLogStart(t *testing.T) {
	store := audittest.NewStore()
	l := buildLog(t, store, 6, 2, "c", nil, nil)
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	v1, v2 := vkey(t, 1), vkey(t, 2)
	keys := audit.VerifyOptions{Keys: []string{v1, v2}}
	requireOK(t, verify(t, store, keys))
	s2, _ := audittest.Key(t, origin, 2)
	store.Tamper(origin, func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		for i := range c {
			c[i] = resign(t, c[i], s2)
		}
		return r, l, c
	})
	rep := verify(t, store, keys)
	f := rep.FirstFailure()
	if rep.OK() || f.Code != audit.ProblemRetiredKey || f.Index != 0 {
		t.Fatalf("every checkpoint signed by another key than log_start names: %v, want retired_key at record 0", rep.Failures)
	}
	if !strings.Contains(f.Message, "log_start record 0 names key "+audit.Key{VerifierKey: v1}.ID()) {
		t.Errorf("message %q does not name the log_start record and its key", f.Message)
	}
}
