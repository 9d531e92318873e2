package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// FuzzVerifyTrusted verifies a genuine log against an arbitrary trusted
// checkpoint copy (--trusted-checkpoint: a file from a sink or an earlier
// verification, which may be damaged or not a checkpoint at all). The
// copy is never ignored: verification passes only when it is a checkpoint
// the log's key signed for the log's own tree at its size; nothing panics.
func FuzzVerifyTrusted(f *testing.F) {
	store := audittest.NewStore()
	cfg := audittest.Config(f, origin)
	cfg.Now = newFakeClock().Now
	cfg.CheckpointInterval = time.Hour
	l, err := audit.Open(context.Background(), store, cfg)
	if err != nil {
		f.Fatal(err)
	}
	for i := range 5 {
		in, _ := l.Append(context.Background(), intent(fmt.Sprint(i)))
		_, _ = l.Append(context.Background(), outcome(fmt.Sprint(i), in))
		_ = l.Sync(context.Background())
	}
	_ = l.Close(context.Background())
	genuine := map[int64]tlog.Hash{} // the log's tree hash at each signed size
	err = store.Checkpoints(context.Background(), origin, func(msg []byte) error {
		c, err := audit.ParseCheckpoint(msg)
		if err != nil {
			return err
		}
		genuine[c.Size] = c.Root
		f.Add(bytes.Clone(msg))
		f.Add(bytes.Replace(msg, []byte("\n"), []byte("\r\n"), 1))
		f.Add(msg[:len(msg)-2])
		return nil
	})
	if err != nil || len(genuine) < 2 {
		f.Fatalf("checkpoints: %v (%d)", err, len(genuine))
	}
	other, _ := audittest.Key(f, origin, 2) // the same origin, a key the verifier does not trust
	latest, _ := l.Latest(context.Background())
	if text, _, ok := bytes.Cut(latest.Note, []byte("\n\n")); ok {
		forged, err := note.Sign(&note.Note{Text: string(text) + "\n"}, other)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(forged)
	}
	f.Add([]byte(`{"format":"sqlgate-audit-bundle/1"}`))
	f.Add([]byte(""))
	_, vk := audittest.Key(f, origin, 1)
	verifiers, err := audit.NewVerifiers(vk)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := audit.Verify(context.Background(), store, audit.VerifyOptions{Keys: []string{vk}, Trusted: [][]byte{data}, Workers: 1})
		if err != nil || !rep.OK() {
			return
		}
		c, err := audit.OpenCheckpoint(data, verifiers)
		if err != nil {
			t.Fatalf("verification passed with a trusted copy that does not open: %v\n%q", err, data)
		}
		if root, ok := genuine[c.Size]; c.Origin != origin || !ok || root != c.Root {
			t.Fatalf("verification passed with a trusted copy of %s at size %d the log did not sign: %q", c.Origin, c.Size, data)
		}
	})
}
