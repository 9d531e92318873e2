package audit_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// checkpointEvery writes a log of n records (log_start, then intents) with
// a checkpoint after every record. Intent i is named "c<i>" before index
// forkAt and "d<i>" from it, so two logs of the same key and clock are
// identical up to forkAt and differ after.
func checkpointEvery(t *testing.T, n, forkAt int) *audittest.Store {
	t.Helper()
	store := audittest.NewStore()
	clock := newFakeClock()
	l := openLog(t, store, func(c *audit.Config) {
		c.Now, c.CheckpointInterval, c.Heartbeat = clock.Now, time.Hour, time.Hour
	})
	for i := 1; i < n; i++ {
		clock.tick()
		name := fmt.Sprint("c", i)
		if i >= forkAt {
			name = fmt.Sprint("d", i)
		}
		mustAppend(t, l, intent(name))
		if err := l.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	return store
}

func checkpointOf(t *testing.T, store *audittest.Store, size int64) []byte {
	t.Helper()
	cp, err := store.CheckpointAt(t.Context(), origin, size)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(cp)
}

// TestVerifyFailsATrustedCopyItCannotCheck: an auditor kept the checkpoint
// of size 10 of log A. The operator, holding the key, wrote log B, the same
// up to index 5 and different after, and pruned it before index 20, so the
// bundle starts after the copy. The copy cannot be checked without a
// consistency proof, and a copy nothing checks must not pass: it passed
// with an unchecked_checkpoint exception and "1 trusted copies checked".
// Exported with the copy's size, the honest log proves it and the forged
// one fails.
func TestVerifyFailsATrustedCopyItCannotCheck(t *testing.T) {
	a, b := checkpointEvery(t, 29, 29), checkpointEvery(t, 29, 5)
	kept := checkpointOf(t, a, 10)
	if bytes.Equal(kept, checkpointOf(t, b, 10)) || !bytes.Equal(checkpointOf(t, a, 4), checkpointOf(t, b, 4)) {
		t.Fatal("the logs should agree up to index 5 and differ at size 10")
	}
	for _, s := range []*audittest.Store{a, b} {
		if _, err := s.Prune(t.Context(), origin, 20); err != nil {
			t.Fatal(err)
		}
	}
	opts := audit.VerifyOptions{Keys: []string{vkey(t, 1)}, Trusted: [][]byte{kept}}

	rep := verify(t, openBundle(t, writeBundle(t, b, audit.BundleOptions{})), opts)
	f := rep.FirstFailure()
	if rep.OK() || f.Code != audit.ProblemUncheckedTrusted || f.Size != 10 || rep.Origins[0].Trusted != 0 {
		t.Fatalf("the forged log without a proof from the trusted copy: failures %v, trusted checked %d", rep.Failures, rep.Origins[0].Trusted)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if out := text.String(); !strings.Contains(out, "FAILED") || !strings.Contains(out, "0 trusted copies checked") || !strings.Contains(out, "size 10") {
		t.Errorf("report:\n%s", out)
	}

	withProof := audit.BundleOptions{ProofSizes: []int64{10, 25, 0}} // 25 and 0 are not below the first record: ignored
	rep = verify(t, openBundle(t, writeBundle(t, b, withProof)), opts)
	if f := rep.FirstFailure(); rep.OK() || f.Code != audit.ProblemFork || f.Size != 10 {
		t.Errorf("the forged log with a proof from the trusted copy: %v", rep.Failures)
	}

	rep = verify(t, openBundle(t, writeBundle(t, a, withProof)), opts)
	requireOK(t, rep)
	if rep.Origins[0].Trusted != 1 {
		t.Errorf("the honest log: %d trusted copies checked, want 1", rep.Origins[0].Trusted)
	}
	// The store keeps every hash: it proves the copy without a bundle.
	requireOK(t, verify(t, a, opts))
	if rep := verify(t, b, opts); rep.OK() || rep.FirstFailure().Code != audit.ProblemFork {
		t.Errorf("the forged store: %v", rep.Failures)
	}
}

// TestVerifyFromCountsCopiesCheckedInThePrefix: a bundle holds no frontier
// at From, so the records before From are hashed; the trusted copies among
// them are checked then, and counted, not listed as unchecked.
func TestVerifyFromCountsCopiesCheckedInThePrefix(t *testing.T) {
	a := checkpointEvery(t, 29, 29)
	bundle := openBundle(t, writeBundle(t, a, audit.BundleOptions{}))
	rep := verify(t, bundle, audit.VerifyOptions{
		Keys: []string{vkey(t, 1)}, Trusted: [][]byte{checkpointOf(t, a, 10), checkpointOf(t, a, 12)}, From: 15,
	})
	requireOK(t, rep)
	if n := rep.ExceptionCounts[audit.ProblemUnchecked]; n != 0 || rep.Origins[0].Trusted != 2 {
		t.Errorf("--from 15: %d unchecked (%v), %d trusted copies checked, want 0 and 2", n, rep.Exceptions, rep.Origins[0].Trusted)
	}
}
