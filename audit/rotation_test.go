package audit_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// rotatedLog writes a log under key 1 (records 0-2, checkpoints 1 and 3),
// then under key 2 (record 3 is the key_rotation, then 4 intents;
// checkpoints 4 and 8) and returns the store and both keys.
func rotatedLog(t *testing.T) (store *audittest.Store, s1, s2 audit.Signer, v1, v2 string) {
	t.Helper()
	store = audittest.NewStore()
	s1, v1 = audittest.Key(t, origin, 1)
	s2, v2 = audittest.Key(t, origin, 2)
	l1 := openLog(t, store, func(c *audit.Config) { c.CheckpointInterval = time.Hour })
	mustAppend(t, l1, intent("a"))
	mustAppend(t, l1, intent("b"))
	if err := l1.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, store, func(c *audit.Config) {
		c.Signer, c.PreviousKeys, c.CheckpointInterval = s2, []string{v1}, time.Hour
	})
	for i := range 4 {
		mustAppend(t, l2, intent(fmt.Sprint("c", i)))
	}
	if err := l2.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	return store, s1, s2, v1, v2
}

// signCheckpoint signs a checkpoint of origin over the first size leaves,
// as a holder of s would.
func signCheckpoint(t *testing.T, s note.Signer, leaves []tlog.Hash, size int64, at time.Time) []byte {
	t.Helper()
	tree, err := audit.NewTree(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves[:size] {
		tree.Append(l)
	}
	root := tree.Root()
	text := fmt.Sprintf("%s\n%d\n%s\ntime %s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]), at.UTC().Format(time.RFC3339Nano))
	msg, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestVerifyRefusesCheckpointsOfARetiredKey: after the log rotated from key
// 1 to key 2, a holder of key 1 rewrites a record written after the
// rotation and signs the rewritten tree with key 1. The log's own
// key_rotation record says key 1 signs nothing past it.
func TestVerifyRefusesCheckpointsOfARetiredKey(t *testing.T) {
	store, s1, _, v1, v2 := rotatedLog(t)
	keys := audit.VerifyOptions{Keys: []string{v1, v2}}
	requireOK(t, verify(t, store, keys)) // key 1's checkpoints before the rotation are fine
	store.Tamper(origin, func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		r[6] = bytes.Replace(r[6], []byte(`"c2"`), []byte(`"cX"`), 1)
		l[6] = audit.LeafHash(r[6])
		var keep [][]byte
		for _, cp := range c {
			if checkpointSize(t, cp) < 7 {
				keep = append(keep, cp)
			}
		}
		return r, l, append(keep, signCheckpoint(t, s1, l, 8, time.Now()))
	})
	rep := verify(t, store, keys)
	f := rep.FirstFailure()
	if rep.OK() || f.Code != audit.ProblemRetiredKey || f.Index != 3 || f.Size != 8 {
		t.Fatalf("Verify of a log re-signed with the retired key: %v, want retired_key at record 3 (the rotation), size 8", rep.Failures)
	}
	if !strings.Contains(f.Message, "key_rotation record 3") || !strings.Contains(f.Message, audit.Key{VerifierKey: v1}.ID()) {
		t.Errorf("message %q does not name the rotation and the retired key", f.Message)
	}
	if rep.Origins[0].Uncovered != 8-4 {
		t.Errorf("Uncovered = %d, want 4: a checkpoint of a retired key covers nothing", rep.Origins[0].Uncovered)
	}
	// Checked from record 6 on, the rotation record is not read: the
	// newest checkpoint before the range (size 4, key 2) stands for it.
	rep = verify(t, store, audit.VerifyOptions{Keys: keys.Keys, From: 6})
	if f := rep.FirstFailure(); rep.OK() || f.Code != audit.ProblemRetiredKey || f.Index != 4 {
		t.Errorf("Verify from 6: %v, want retired_key at 4", rep.Failures)
	}
}

// TestOpenRefusesALatestCheckpointOfARetiredKey: the log must not sign on
// (under its current key) from a checkpoint that a retired key signed.
func TestOpenRefusesALatestCheckpointOfARetiredKey(t *testing.T) {
	store, s1, s2, v1, _ := rotatedLog(t)
	store.Tamper(origin, func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		c[len(c)-1] = resign(t, c[len(c)-1], s1)
		return r, l, c
	})
	cfg := audittest.Config(t, origin)
	cfg.Signer, cfg.PreviousKeys = s2, []string{v1}
	_, err := audit.Open(t.Context(), store, cfg)
	if !errors.Is(err, audit.ErrRollback) || !strings.Contains(err.Error(), "retired at record 3") {
		t.Fatalf("Open over a latest checkpoint of the retired key = %v, want ErrRollback naming the rotation", err)
	}
}

// TestGoingBackToAnEarlierKeyIsRecorded: starting again with key 1 after
// key 2 writes a key_rotation record naming key 1, so its new checkpoints
// verify.
func TestGoingBackToAnEarlierKeyIsRecorded(t *testing.T) {
	store, _, _, v1, v2 := rotatedLog(t)
	l := openLog(t, store, func(c *audit.Config) { c.PreviousKeys = []string{v2} })
	mustAppend(t, l, intent("back"))
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	data, err := store.Record(t.Context(), origin, 8)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := audit.DecodeRecord(data); r == nil || r.Admin == nil || r.Admin.Action != audit.AdminKeyRotation || r.Admin.Detail != v1 {
		t.Fatalf("record 8 = %s, want key_rotation naming key 1 again", data)
	}
	requireOK(t, verify(t, store, audit.VerifyOptions{Keys: []string{v1, v2}}))
	if keys, _ := store.Keys(t.Context()); len(keys) != 2 {
		t.Errorf("key history = %v, want the two keys once each", keys)
	}
}

// TestReloadRefusesACheckpointOfAnotherKey: after a failed write the log
// reloads from the store, where every checkpoint since Open is its own.
func TestReloadRefusesACheckpointOfAnotherKey(t *testing.T) {
	store := audittest.NewStore()
	s2, v2 := audittest.Key(t, origin, 2)
	l := openLog(t, store, func(c *audit.Config) { c.PreviousKeys = []string{v2} })
	mustAppend(t, l, intent("a"))
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	store.FailWrites(errors.New("disk full"))
	if _, err := l.Append(t.Context(), intent("b")); err == nil {
		t.Fatal("Append succeeded while the store refused writes")
	}
	store.Tamper(origin, func(r [][]byte, lv []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		c[len(c)-1] = resign(t, c[len(c)-1], s2)
		return r, lv, c
	})
	store.FailWrites(nil)
	_, err := l.Append(t.Context(), intent("c"))
	if !errors.Is(err, audit.ErrRollback) || !strings.Contains(err.Error(), "not by this log's signing key") {
		t.Fatalf("Append after the latest checkpoint was re-signed by another key = %v, want ErrRollback", err)
	}
}

func TestAppendRefusesTheLogsOwnAdminActions(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	for _, action := range []string{audit.AdminLogStart, audit.AdminKeyRotation} {
		r := &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: action, Detail: vkey(t, 2)}}
		if _, err := l.Append(t.Context(), r); err == nil {
			t.Errorf("Append accepted a caller's %s record", action)
		}
		if err := l.Enqueue(t.Context(), r, nil); err == nil {
			t.Errorf("Enqueue accepted a caller's %s record", action)
		}
	}
	mustAppend(t, l, &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "policy_load"}})
}

// TestCheckpointsSayRotationsAreRecorded: every checkpoint the log signs
// carries the extension line from which the verifier applies the
// retired-key rule; earlier readers ignore it (C2SP extension line).
func TestCheckpointsSayRotationsAreRecorded(t *testing.T) {
	store, _, _, _, _ := rotatedLog(t)
	n := 0
	if err := store.Checkpoints(t.Context(), origin, func(msg []byte) error {
		n++
		text := msg[:bytes.LastIndex(msg, []byte("\n\n"))+1]
		if !bytes.HasSuffix(text, []byte("\nrotations recorded\n")) {
			return fmt.Errorf("checkpoint without the rotations line:\n%s", msg)
		}
		if _, err := audit.ParseCheckpoint(text); err != nil {
			return err
		}
		return nil
	}); err != nil || n == 0 {
		t.Fatalf("%d checkpoints: %v", n, err)
	}
}

// TestRetiredKeyAfterRetention: retention removed the key_rotation record;
// the newest checkpoint before the retained records stands for it, in
// Verify and in Open.
func TestRetiredKeyAfterRetention(t *testing.T) {
	store, s1, s2, v1, v2 := rotatedLog(t)
	if _, err := store.Prune(t.Context(), origin, 5); err != nil { // records 0-4, the rotation at 3 among them
		t.Fatal(err)
	}
	keys := audit.VerifyOptions{Keys: []string{v1, v2}}
	requireOK(t, verify(t, store, keys))
	store.Tamper(origin, func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		c[len(c)-1] = resign(t, c[len(c)-1], s1)
		return r, l, c
	})
	rep := verify(t, store, keys)
	if f := rep.FirstFailure(); rep.OK() || f.Code != audit.ProblemRetiredKey || f.Index != 4 || f.Size != 8 {
		t.Errorf("Verify of a pruned log whose latest checkpoint key 1 re-signed: %v, want retired_key at 4 (the newest checkpoint before the retained records), size 8", rep.Failures)
	}
	cfg := audittest.Config(t, origin)
	cfg.Signer, cfg.PreviousKeys = s2, []string{v1}
	_, err := audit.Open(t.Context(), store, cfg)
	if !errors.Is(err, audit.ErrRollback) || !strings.Contains(err.Error(), "newest checkpoint before the retained records") {
		t.Fatalf("Open over it = %v, want ErrRollback naming the checkpoint before the retained records", err)
	}
}

// TestTrustedCheckpointKeepsTheRetiredKeyRule: a holder of the retired key
// 1 rewrites a record written under key 2 and replaces every checkpoint
// with one of its own, without the rotations line, so that the stored log
// looks like one of a version before it. A trusted copy of a checkpoint
// of key 2 still says that the log records its rotations.
func TestTrustedCheckpointKeepsTheRetiredKeyRule(t *testing.T) {
	store, s1, _, v1, v2 := rotatedLog(t)
	trusted, err := store.CheckpointAt(t.Context(), origin, 4)
	if err != nil {
		t.Fatal(err)
	}
	store.Tamper(origin, func(r [][]byte, l []tlog.Hash, _ [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		r[6] = bytes.Replace(r[6], []byte(`"c2"`), []byte(`"cX"`), 1)
		l[6] = audit.LeafHash(r[6])
		var cps [][]byte
		for _, size := range []int64{1, 3, 8} {
			cps = append(cps, signCheckpoint(t, s1, l, size, time.Now()))
		}
		return r, l, cps
	})
	keys := []string{v1, v2}
	requireOK(t, verify(t, store, audit.VerifyOptions{Keys: keys})) // nothing in the store tells
	rep := verify(t, store, audit.VerifyOptions{Keys: keys, Trusted: [][]byte{trusted}})
	if f := rep.FirstFailure(); rep.OK() || f.Code != audit.ProblemRetiredKey || f.Index != 3 || f.Size != 8 {
		t.Errorf("Verify with the trusted checkpoint of key 2: %v, want retired_key at record 3, size 8", rep.Failures)
	}
}

// TestSinkCopyKeepsTheRetiredKeyRule: a holder of the retired key 1 who can
// write the store replaces every stored checkpoint by key-1 ones without
// the "rotations recorded" line, and appends a forged record under key 1.
// The sink's newest copy (key 2, with the line) pins the rotation: Open
// with key 2 refuses to sign on over the forged record, as it does when the
// stored checkpoints are left alone.
func TestSinkCopyKeepsTheRetiredKeyRule(t *testing.T) {
	store := audittest.NewStore()
	sink, err := audit.NewDirSink(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s1, v1 := audittest.Key(t, origin, 1)
	s2, _ := audittest.Key(t, origin, 2)
	l1 := openLog(t, store, func(c *audit.Config) { c.CheckpointInterval = time.Hour; c.Sink = sink })
	mustAppend(t, l1, intent("a"))
	mustAppend(t, l1, intent("b"))
	if err := l1.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	l2 := openLog(t, store, func(c *audit.Config) {
		c.Signer, c.PreviousKeys, c.CheckpointInterval, c.Sink = s2, []string{v1}, time.Hour, sink
	})
	for i := range 4 {
		mustAppend(t, l2, intent(fmt.Sprint("c", i)))
	}
	if err := l2.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	newest, err := sink.Newest(t.Context(), origin)
	if err != nil || newest == nil {
		t.Fatalf("sink newest: %v", err)
	}
	pinned := checkpointSize(t, newest)
	store.Tamper(origin, func(r [][]byte, l []tlog.Hash, old [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		var cps [][]byte
		for _, n := range old {
			c, err := audit.ParseCheckpoint(n)
			if err != nil {
				t.Fatal(err)
			}
			cps = append(cps, signCheckpoint(t, s1, l, c.Size, time.Now()))
		}
		return r, l, cps
	})
	forger := openLog(t, store, func(c *audit.Config) { c.CheckpointInterval = time.Hour })
	mustAppend(t, forger, intent("forged"))
	if err := forger.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	cfg := audittest.Config(t, origin)
	cfg.Signer, cfg.PreviousKeys, cfg.Sink = s2, []string{v1}, sink
	l, err := audit.Open(t.Context(), store, cfg)
	if err == nil {
		_ = l.Close(t.Context())
		t.Fatalf("Open with key 2 over key-1 checkpoints past the rotation the sink copy (size %d) pins: nil error, want ErrRollback", pinned)
	}
	if !errors.Is(err, audit.ErrRollback) {
		t.Errorf("Open = %v, want ErrRollback", err)
	}
}
