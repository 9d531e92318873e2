package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

const origin = "sqlgate.test/sqlite"

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// Now returns the clock's time; it moves only on tick, so two logs fed the
// same appends are byte-identical whatever the goroutine interleaving.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
}

var clocks sync.Map // *audit.Log -> *fakeClock

func openLog(t *testing.T, s audit.Store, clock *fakeClock) *audit.Log {
	t.Helper()
	cfg := audittest.Config(t, origin)
	cfg.Now = clock.Now
	cfg.CheckpointInterval = time.Hour
	cfg.Heartbeat = time.Hour
	l, err := audit.Open(t.Context(), s, cfg)
	if err != nil {
		t.Fatalf("audit.Open = %v", err)
	}
	clocks.Store(l, clock)
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

// writePairs appends intent/outcome pairs from..to-1 (pair i at 1+2i,
// 2+2i) and a checkpoint after every second pair: sizes 1, 5, 9, ...
func writePairs(t *testing.T, l *audit.Log, from, to int, prefix string) {
	t.Helper()
	clock, _ := clocks.Load(l)
	for i := from; i < to; i++ {
		clock.(*fakeClock).tick()
		corr := fmt.Sprintf("%s%d", prefix, i)
		in, err := l.Append(t.Context(), &audit.Record{
			Kind: audit.KindIntent, CorrelationID: corr,
			Actor: &audit.Actor{Subject: "alice"}, Route: "orders.v1.create",
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = l.Append(t.Context(), &audit.Record{
			Kind: audit.KindOutcome, CorrelationID: corr, IntentIndex: in, Route: "orders.v1.create",
			SQL: &audit.SQL{Outcome: "commit", Rows: 1}, Result: &audit.Result{Status: "ok"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			if err := l.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func keys(t *testing.T) []string {
	_, v := audittest.Key(t, origin, 1)
	return []string{v}
}

func execSQL(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	res, err := db.ExecContext(t.Context(), q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatalf("%s changed nothing", q)
	}
}

func recordBytes(t *testing.T, db *sql.DB, idx int64) []byte {
	t.Helper()
	var data []byte
	if err := db.QueryRowContext(t.Context(), "SELECT data FROM sqlgate_audit_records WHERE origin = ? AND idx = ?", origin, idx).Scan(&data); err != nil {
		t.Fatal(err)
	}
	return data
}

func checkpointNote(t *testing.T, db *sql.DB, size int64) []byte {
	t.Helper()
	var n []byte
	if err := db.QueryRowContext(t.Context(), "SELECT note FROM sqlgate_audit_checkpoints WHERE origin = ? AND tree_size = ?", origin, size).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSQLiteAttacks tampers with the control database the way an operator
// with SQL access could, and expects Verify to name the first bad index.
func TestSQLiteAttacks(t *testing.T) {
	other, _ := audittest.Key(t, origin, 2)
	tests := []struct {
		name      string
		attack    func(t *testing.T, db *sql.DB)
		trusted   bool
		wantCode  audit.ProblemCode
		wantIndex int64
	}{
		{"flip_one_byte", func(t *testing.T, db *sql.DB) {
			d := recordBytes(t, db, 37)
			d = bytes.Replace(d, []byte(`"c18"`), []byte(`"c1x"`), 1)
			execSQL(t, db, "UPDATE sqlgate_audit_records SET data = ? WHERE origin = ? AND idx = 37", d, origin)
		}, false, audit.ProblemLeafMismatch, 37},
		{"flip_one_byte_and_its_leaf", func(t *testing.T, db *sql.DB) {
			d := recordBytes(t, db, 39)
			d = bytes.Replace(d, []byte(`"c19"`), []byte(`"c1x"`), 1)
			leaf := audit.LeafHash(d)
			execSQL(t, db, "UPDATE sqlgate_audit_records SET data = ?, leaf = ? WHERE origin = ? AND idx = 39", d, leaf[:], origin)
			execSQL(t, db, "UPDATE sqlgate_audit_hashes SET hash = ? WHERE origin = ? AND id = ?", leaf[:], origin, tlog.StoredHashIndex(0, 39))
		}, false, audit.ProblemRootMismatch, 37},
		{"delete_record_in_the_middle", func(t *testing.T, db *sql.DB) {
			execSQL(t, db, "DELETE FROM sqlgate_audit_records WHERE origin = ? AND idx = 25", origin)
		}, false, audit.ProblemMissingRecord, 25},
		{"delete_last_records", func(t *testing.T, db *sql.DB) {
			execSQL(t, db, "DELETE FROM sqlgate_audit_records WHERE origin = ? AND idx >= 49", origin)
		}, false, audit.ProblemMissingRecord, 49},
		{"delete_last_records_hashes_and_checkpoints", func(t *testing.T, db *sql.DB) {
			// A thorough rollback to size 49: only an outside copy of a newer
			// checkpoint reveals it.
			execSQL(t, db, "DELETE FROM sqlgate_audit_records WHERE origin = ? AND idx >= 49", origin)
			execSQL(t, db, "DELETE FROM sqlgate_audit_hashes WHERE origin = ? AND id >= ?", origin, tlog.StoredHashCount(49))
			execSQL(t, db, "DELETE FROM sqlgate_audit_checkpoints WHERE origin = ? AND tree_size > 49", origin)
		}, true, audit.ProblemTruncated, 49},
		{"swap_two_records", func(t *testing.T, db *sql.DB) {
			a, b := recordBytes(t, db, 30), recordBytes(t, db, 31)
			execSQL(t, db, "UPDATE sqlgate_audit_records SET data = ? WHERE origin = ? AND idx = 30", b, origin)
			execSQL(t, db, "UPDATE sqlgate_audit_records SET data = ? WHERE origin = ? AND idx = 31", a, origin)
		}, false, audit.ProblemLeafMismatch, 30},
		{"swap_two_rows_with_leaves", func(t *testing.T, db *sql.DB) {
			execSQL(t, db, "UPDATE sqlgate_audit_records SET idx = -1 WHERE origin = ? AND idx = 30", origin)
			execSQL(t, db, "UPDATE sqlgate_audit_records SET idx = 30 WHERE origin = ? AND idx = 31", origin)
			execSQL(t, db, "UPDATE sqlgate_audit_records SET idx = 31 WHERE origin = ? AND idx = -1", origin)
		}, false, audit.ProblemIndexMismatch, 30},
		{"checkpoint_signed_by_another_key", func(t *testing.T, db *sql.DB) {
			n := checkpointNote(t, db, 25)
			i := bytes.LastIndex(n, []byte("\n\n"))
			forged, err := note.Sign(&note.Note{Text: string(n[:i+1])}, other)
			if err != nil {
				t.Fatal(err)
			}
			execSQL(t, db, "UPDATE sqlgate_audit_checkpoints SET note = ? WHERE origin = ? AND tree_size = 25", forged, origin)
		}, false, audit.ProblemBadCheckpoint, 21},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, db, _ := newSQLite(t)
			l := openLog(t, s, &fakeClock{t: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)})
			writePairs(t, l, 0, 30, "c")
			if err := l.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			latest, _ := l.Latest(t.Context())
			opts := audit.VerifyOptions{Keys: keys(t)}
			rep, err := audit.Verify(t.Context(), s, opts)
			if err != nil || !rep.OK() || rep.Records != 61 {
				t.Fatalf("before the attack: %v %v", rep.Failures, err)
			}
			tc.attack(t, db)
			if tc.trusted {
				opts.Trusted = [][]byte{latest.Note}
			}
			rep, err = audit.Verify(t.Context(), s, opts)
			if err != nil {
				t.Fatalf("Verify = %v", err)
			}
			if rep.OK() {
				t.Fatal("Verify passed a tampered log")
			}
			f := rep.FirstFailure()
			if f.Code != tc.wantCode || f.Index != tc.wantIndex {
				t.Errorf("first failure %s at %d (%s), want %s at %d", f.Code, f.Index, f.Message, tc.wantCode, tc.wantIndex)
			}
		})
	}
}

// TestSQLiteFork: a second control database replays the log and diverges at
// record 31; the checkpoints exported from the first expose it.
func TestSQLiteFork(t *testing.T) {
	honest, _, _ := newSQLite(t)
	forked, _, _ := newSQLite(t)
	sink, err := audit.NewDirSink(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	a := openLog(t, honest, &fakeClock{t: start})
	b := openLog(t, forked, &fakeClock{t: start})
	writePairs(t, a, 0, 15, "c")
	writePairs(t, b, 0, 15, "c")
	writePairs(t, a, 15, 30, "c")
	writePairs(t, b, 15, 30, "forged-")
	_ = a.Close(t.Context())
	_ = b.Close(t.Context())
	// The auditor's saved copies: every checkpoint of the honest log.
	err = honest.Checkpoints(t.Context(), origin, func(n []byte) error {
		c, err := audit.ParseCheckpoint(n[:bytes.LastIndex(n, []byte("\n\n"))+1])
		if err != nil {
			return err
		}
		c.Note = n
		return sink.Export(t.Context(), c)
	})
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := audit.LoadCheckpoints(sink.Dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(t.Context(), forked, audit.VerifyOptions{Keys: keys(t)})
	if err != nil || !rep.OK() {
		t.Fatalf("the fork is self-consistent, Verify without trusted checkpoints = %v %v", rep.Failures, err)
	}
	rep, err = audit.Verify(t.Context(), forked, audit.VerifyOptions{Keys: keys(t), Trusted: trusted})
	if err != nil {
		t.Fatal(err)
	}
	if f := rep.FirstFailure(); rep.OK() || f.Code != audit.ProblemFork || f.Index != 29 {
		t.Errorf("fork: %v, want fork at 29 (last common checkpoint 29; records from 31 differ)", rep.Failures)
	}
	if rep, _ := audit.Verify(t.Context(), honest, audit.VerifyOptions{Keys: keys(t), Trusted: trusted}); !rep.OK() {
		t.Errorf("honest log against its own exports: %v", rep.Failures)
	}
}

// TestSQLiteCorruptFile damages the database file itself.
func TestSQLiteCorruptFile(t *testing.T) {
	build := func(t *testing.T) (string, []byte) {
		s, db, path := newSQLite(t)
		l := openLog(t, s, &fakeClock{t: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)})
		writePairs(t, l, 0, 20, "c")
		if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindDecision, Reasons: []string{"corrupt-me-marker"}}); err != nil {
			t.Fatal(err)
		}
		writePairs(t, l, 20, 40, "c")
		if err := l.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		latest, _ := l.Latest(t.Context())
		if _, err := db.ExecContext(t.Context(), "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		_ = db.Close()
		return path, latest.Note
	}
	reopen := func(t *testing.T, path string) (*audit.Report, error) {
		db, err := sql.Open("sqlite", "file:"+path+"?_journal_mode=WAL&_synchronous=FULL")
		if err != nil {
			return nil, err
		}
		defer func() { _ = db.Close() }()
		s, err := openStore(t, db)
		if err != nil {
			return nil, err
		}
		defer func() { _ = s.Close() }()
		return audit.Verify(t.Context(), s, audit.VerifyOptions{Keys: keys(t)})
	}

	t.Run("byte_in_a_record", func(t *testing.T) {
		path, _ := build(t)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(raw, []byte("corrupt-me-marker"))
		if i < 0 || bytes.Count(raw, []byte("corrupt-me-marker")) != 1 {
			t.Fatal("marker not found exactly once in the file")
		}
		raw[i] ^= 0x01 // 'c' -> 'b'
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := reopen(t, path)
		if err != nil {
			t.Fatalf("Verify = %v", err)
		}
		if f := rep.FirstFailure(); rep.OK() || f.Index != 41 || f.Code != audit.ProblemLeafMismatch {
			t.Errorf("corrupted record: %v, want leaf mismatch at 41", rep.Failures)
		}
	})
	t.Run("pages_overwritten", func(t *testing.T) {
		path, _ := build(t)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := len(raw) / 3; i < len(raw)/3+8192 && i < len(raw); i++ {
			raw[i] = byte(i * 7)
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := reopen(t, path)
		if err == nil && rep.OK() {
			t.Fatalf("Verify passed a database with overwritten pages")
		}
		if err == nil {
			t.Logf("detected: %v", rep.FirstFailure())
		} else {
			t.Logf("detected: %v", err)
		}
	})
}
