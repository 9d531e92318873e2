package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
)

// TestCheckpointPagesHoldNoConnection: the store lists checkpoints a page
// at a time and holds no result set while its caller handles them, so the
// verifier can read the records between two checkpoints from there even
// on a pool of a single connection (a result set held open across the
// callback would wait for that connection forever); every checkpoint is
// listed once, in ascending size order, across the pages.
func TestCheckpointPagesHoldNoConnection(t *testing.T) {
	sqlstore.SetCheckpointsPage(t, 3)
	s, db, _ := newSQLite(t)
	l, err := openCfg(t, s, audittest.Config(t, origin))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		appendN(t, l, 1+i%3, "page")
		if err := l.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute) // a guard: a held result set blocks forever
	defer cancel()
	var sizes []int64
	err = s.Checkpoints(ctx, origin, func(msg []byte) error {
		c, err := audit.ParseCheckpoint(msg)
		if err != nil {
			return err
		}
		sizes = append(sizes, c.Size)
		return s.Records(ctx, origin, c.Size-1, c.Size, func(int64, []byte, *tlog.Hash) error { return nil })
	})
	if err != nil {
		t.Fatalf("Checkpoints reading records from its callback: %v", err)
	}
	if len(sizes) < 20 || sizes[len(sizes)-1] != l.Size() {
		t.Fatalf("checkpoint sizes %v, want at least 20 up to %d", sizes, l.Size())
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] <= sizes[i-1] {
			t.Fatalf("checkpoint sizes %v are not ascending and distinct", sizes)
		}
	}
	_, vk := audittest.Key(t, origin, 1)
	rep, err := audit.Verify(ctx, s, audit.VerifyOptions{Keys: []string{vk}})
	if err != nil || !rep.OK() {
		t.Fatalf("Verify on one connection: %v %v", err, rep.Failures)
	}
	if o := rep.Origins[0]; o.Checkpoints != len(sizes) || o.Records != l.Size() || o.Uncovered != 0 {
		t.Errorf("origin report %+v, want %d checkpoints and %d records, all covered", o, len(sizes), l.Size())
	}
}
