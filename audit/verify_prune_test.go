package audit_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	_ "modernc.org/sqlite"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
)

const pruneOrigin = "sqlgate.test/prune"

// pruneDuring is a SQLite store whose retention runs while it is read: the
// Records call for which when returns true first prunes the records before
// at, as the hourly Config.Retention may while a verification, an export
// or the evidence reads the log a window at a time.
type pruneDuring struct {
	*sqlstore.Store
	at     int64
	when   func(call int, from, to int64) bool
	calls  int
	pruned bool
}

func (p *pruneDuring) Records(ctx context.Context, origin string, from, to int64, fn func(int64, []byte, *tlog.Hash) error) error {
	p.calls++
	if !p.pruned && p.when(p.calls, from, to) {
		p.pruned = true
		if _, err := p.Prune(ctx, origin, p.at); err != nil {
			return err
		}
	}
	return p.Store.Records(ctx, origin, from, to, fn)
}

// pruneLog writes 81 records to a SQLite store, a checkpoint after each
// intent/outcome pair (sizes 1, 3, ..., 81), and returns the store, its
// database and the verification options with the log's key.
func pruneLog(t *testing.T) (*sqlstore.Store, *sql.DB, audit.VerifyOptions) {
	t.Helper()
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(t.TempDir(), "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := sqlstore.Open(t.Context(), db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	cfg := audittest.Config(t, pruneOrigin)
	now := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	cfg.CheckpointInterval, cfg.Heartbeat = time.Hour, time.Hour
	l, err := audit.Open(t.Context(), s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		corr := fmt.Sprintf("c%d", i)
		in, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindIntent, CorrelationID: corr, Route: "orders.v1.create"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(t.Context(), &audit.Record{
			Kind: audit.KindOutcome, CorrelationID: corr, IntentIndex: in, Route: "orders.v1.create",
			SQL: &audit.SQL{Outcome: "commit"}, Result: &audit.Result{Status: "ok"},
		}); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if l.Size() != 81 {
		t.Fatalf("log size %d, want 81", l.Size())
	}
	_, vk := audittest.Key(t, pruneOrigin, 1)
	return s, db, audit.VerifyOptions{Keys: []string{vk}}
}

// TestVerifyWhileRetentionPrunes: retention pruning records [0, 41) after
// the verification read the log's bounds and its first window of records
// (the package's tests verify with windows of one or two checkpoints) does
// not make an honest log fail: the verification starts over from the new
// first record. A record deleted in the middle is still found.
func TestVerifyWhileRetentionPrunes(t *testing.T) {
	second := func(call int, _, _ int64) bool { return call == 2 }
	t.Run("honest", func(t *testing.T) {
		s, _, opts := pruneLog(t)
		src := &pruneDuring{Store: s, at: 41, when: second}
		rep, err := audit.Verify(t.Context(), src, opts)
		if err != nil {
			t.Fatal(err)
		}
		if !src.pruned {
			t.Fatal("the store did not prune during the verification")
		}
		if !rep.OK() {
			t.Fatalf("an honest log pruned while it was verified fails: %v", rep.Failures)
		}
		if o := rep.Origins[0]; o.Pruned != 41 || o.First != 41 || o.Records != 40 {
			t.Errorf("origin report %+v, want records [41, 81) checked, 41 pruned", o)
		}
	})
	t.Run("record_deleted_in_the_middle", func(t *testing.T) {
		s, db, opts := pruneLog(t)
		if _, err := db.ExecContext(t.Context(), "DELETE FROM sqlgate_audit_records WHERE origin = ? AND idx = 60", pruneOrigin); err != nil {
			t.Fatal(err)
		}
		src := &pruneDuring{Store: s, at: 41, when: second}
		rep, err := audit.Verify(t.Context(), src, opts)
		if err != nil {
			t.Fatal(err)
		}
		if f := rep.FirstFailure(); rep.OK() || f.Code != audit.ProblemMissingRecord || f.Index != 60 {
			t.Errorf("a record deleted at 60 with a prune during the verification: %v, want missing_record at 60", rep.Failures)
		}
	})
}

// TestExportWhileRetentionPrunes: an export whose header says it holds
// records from 0 fails, saying why, when retention pruned them before it
// read them; it does not write a bundle whose record lines stand for other
// indexes than their records'.
func TestExportWhileRetentionPrunes(t *testing.T) {
	s, _, opts := pruneLog(t)
	src := &pruneDuring{Store: s, at: 41, when: func(call int, _, _ int64) bool { return call == 1 }}
	var b bytes.Buffer
	err := audit.WriteBundle(t.Context(), &b, src, audit.BundleOptions{})
	if err == nil || !strings.Contains(err.Error(), "pruned by retention while the bundle was written") {
		t.Fatalf("WriteBundle with a prune before the records were read = %v, want the prune named", err)
	}
	// Once pruned, the export starts at 41 and verifies.
	b.Reset()
	if err := audit.WriteBundle(t.Context(), &b, s, audit.BundleOptions{}); err != nil {
		t.Fatal(err)
	}
	bundle, err := audit.OpenBundle(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.Verify(t.Context(), bundle, opts); err != nil || !rep.OK() || rep.Origins[0].Pruned != 41 {
		t.Errorf("the export after the prune: %v %v", err, rep)
	}
}

// TestEvidenceWhileRetentionPrunes: retention pruning the records the
// evidence reads after it verified them is not a log that did not verify
// (ErrNotVerified, which the dashboard reports as such): the error says
// to ask again.
func TestEvidenceWhileRetentionPrunes(t *testing.T) {
	s, _, opts := pruneLog(t)
	// Verify reads windows of one or two checkpoints; the evidence reads
	// the whole log at once after it.
	src := &pruneDuring{Store: s, at: 41, when: func(_ int, from, to int64) bool { return from == 0 && to == 81 }}
	_, err := evidence.Write(t.Context(), io.Discard, src, evidence.Options{
		From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC),
		Verify: opts, Generator: "prune test", TempDir: t.TempDir(),
	})
	if !src.pruned {
		t.Fatal("the store did not prune during the evidence")
	}
	if err == nil || errors.Is(err, evidence.ErrNotVerified) || !strings.Contains(err.Error(), "pruned by retention") {
		t.Errorf("evidence with a prune after the verification = %v, want an error naming the prune, not ErrNotVerified", err)
	}
}
