package sqlstore_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
)

// An insider with SQL access to the control database but without the
// signing key appends records past the latest checkpoint, or edits records
// the log reads back; the log must neither sign over them nor act on them.

// backend is a store under test and SQL in its placeholder form.
type backend struct {
	name string
	open func(t *testing.T) (*sqlstore.Store, *sql.DB)
	pg   bool
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T) (*sqlstore.Store, *sql.DB) { s, db, _ := newSQLite(t); return s, db }, false},
		{"postgres", func(t *testing.T) (*sqlstore.Store, *sql.DB) { return newPostgresDB(t) }, true},
	}
}

// exec runs q ('?' placeholders) as the insider would.
func (b backend) exec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if b.pg {
		n := 0
		var out strings.Builder
		for _, c := range q {
			if c == '?' {
				n++
				fmt.Fprintf(&out, "$%d", n)
				continue
			}
			out.WriteRune(c)
		}
		q = out.String()
	}
	if _, err := db.ExecContext(t.Context(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (b backend) query(t *testing.T, db *sql.DB, q string, args []any, dest ...any) {
	t.Helper()
	if b.pg {
		q = strings.ReplaceAll(q, "origin = ?", "origin = $1")
		q = strings.ReplaceAll(q, "idx = ?", "idx = $2")
	}
	if err := db.QueryRowContext(t.Context(), q, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// forgeNext inserts a canonical record at the log's next index with its leaf
// and every tree hash it completes: the store is then self-consistent.
func (b backend) forgeNext(t *testing.T, db *sql.DB, s audit.Store, rec *audit.Record) int64 {
	t.Helper()
	st, err := s.Load(t.Context(), origin)
	if err != nil {
		t.Fatal(err)
	}
	n := st.Size
	rec.V, rec.Index, rec.Origin, rec.Instance = audit.SchemaVersion, n, origin, "test"
	data, err := rec.MarshalCanonical()
	if err != nil {
		t.Fatal(err)
	}
	leaf := audit.LeafHash(data)
	hashes, err := tlog.StoredHashes(n, data, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		return s.ReadHashes(t.Context(), origin, ix)
	}))
	if err != nil {
		t.Fatal(err)
	}
	b.exec(t, db, "INSERT INTO sqlgate_audit_records (origin, idx, rec_time, data, leaf) VALUES (?, ?, ?, ?, ?)", origin, n, rec.Time.UnixNano(), data, leaf[:])
	for i, h := range hashes {
		b.exec(t, db, "INSERT INTO sqlgate_audit_hashes (origin, id, hash) VALUES (?, ?, ?)", origin, tlog.StoredHashIndex(0, n)+int64(i), h[:])
	}
	return n
}

// unforge deletes what forgeNext inserted at index n.
func (b backend) unforge(t *testing.T, db *sql.DB, n int64) {
	t.Helper()
	b.exec(t, db, "DELETE FROM sqlgate_audit_records WHERE origin = ? AND idx >= ?", origin, n)
	b.exec(t, db, "DELETE FROM sqlgate_audit_hashes WHERE origin = ? AND id >= ?", origin, tlog.StoredHashIndex(0, n))
}

func forgedRecord() *audit.Record {
	allow := true
	return &audit.Record{
		Kind: audit.KindAdmin, Time: time.Date(2026, 4, 1, 0, 0, 1, 0, time.UTC),
		Actor: &audit.Actor{Subject: "ceo", Transport: "system"}, Allow: &allow,
		Admin: &audit.Admin{Action: "config_change", Detail: "FORGED-BY-DBA"},
	}
}

// openCfg opens the log of origin with cfg (hour-long checkpoint interval
// and heartbeat: checkpoints come from Open, Sync and Close only).
func openCfg(t *testing.T, s audit.Store, cfg audit.Config) (*audit.Log, error) {
	t.Helper()
	cfg.Now = (&fakeClock{t: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}).Now
	cfg.CheckpointInterval, cfg.Heartbeat = time.Hour, time.Hour
	l, err := audit.Open(t.Context(), s, cfg)
	if err == nil {
		t.Cleanup(func() { _ = l.Close(context.Background()) })
	}
	return l, err
}

// appendN appends n decisions; none is covered by a checkpoint until the
// next Sync or Close.
func appendN(t *testing.T, l *audit.Log, n int, tag string) {
	t.Helper()
	for i := range n {
		if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindDecision, Reasons: []string{fmt.Sprint(tag, i)}}); err != nil {
			t.Fatal(err)
		}
	}
}

// signedSize returns the size the latest stored checkpoint covers.
func signedSize(t *testing.T, s audit.Store) int64 {
	t.Helper()
	st, err := s.Load(t.Context(), origin)
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.ParseCheckpoint(st.Latest)
	if err != nil {
		t.Fatal(err)
	}
	return c.Size
}

func wantUnauthenticated(t *testing.T, err error, mentions ...string) {
	t.Helper()
	if !errors.Is(err, audit.ErrUnauthenticated) {
		t.Fatalf("error = %v, want ErrUnauthenticated", err)
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

// TestForgedTailRefusedAtRestart: the insider appends a self-consistent
// record while sqlgated is stopped; the restart refuses to open instead of
// signing a checkpoint over it.
func TestForgedTailRefusedAtRestart(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s, db := b.open(t)
			l, err := openCfg(t, s, audittest.Config(t, origin))
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 5, "d")
			if err := l.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			n := b.forgeNext(t, db, s, forgedRecord())
			_, err = openCfg(t, s, audittest.Config(t, origin))
			wantUnauthenticated(t, err, origin, fmt.Sprintf("record %d (past the latest checkpoint", n), "docs/audit.md")
			if got := signedSize(t, s); got != n {
				t.Errorf("latest checkpoint covers %d records, want %d (not the forged one)", got, n)
			}
			// Once the insider's rows are gone the log opens again.
			b.unforge(t, db, n)
			if _, err := openCfg(t, s, audittest.Config(t, origin)); err != nil {
				t.Fatalf("Open after the forged record was removed = %v", err)
			}
		})
	}
}

// TestForgedTailRefusedAfterFailedWrite: the insider takes the next index
// while the log runs; the next batch fails on the primary key and the
// reload must not adopt the insider's record: appends fail (the broker
// refuses calls) until the store is back to the log's tree.
func TestForgedTailRefusedAfterFailedWrite(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s, db := b.open(t)
			l, err := openCfg(t, s, audittest.Config(t, origin))
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 3, "d")
			n := b.forgeNext(t, db, s, forgedRecord())
			if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindDecision, Reasons: []string{"x"}}); err == nil {
				t.Fatal("append onto the insider's index succeeded")
			}
			_, err = l.Append(t.Context(), &audit.Record{Kind: audit.KindDecision, Reasons: []string{"y"}})
			wantUnauthenticated(t, err, fmt.Sprintf("tree of %d records", n+1))
			if !errors.Is(l.WriteError(), audit.ErrUnauthenticated) {
				t.Errorf("WriteError = %v, want ErrUnauthenticated (readiness fails)", l.WriteError())
			}
			if err := l.Sync(t.Context()); !errors.Is(err, audit.ErrUnauthenticated) {
				t.Errorf("Sync = %v, want ErrUnauthenticated", err)
			}
			if got := signedSize(t, s); got > n {
				t.Fatalf("a checkpoint covers %d records, the forged record %d among them", got, n)
			}
			b.unforge(t, db, n)
			idx, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindDecision, Reasons: []string{"z"}})
			if err != nil || idx != n {
				t.Fatalf("append after the forged record was removed = %d, %v; want %d, nil", idx, err, n)
			}
			if err := l.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			rep, err := audit.Verify(t.Context(), s, audit.VerifyOptions{Keys: keys(t)})
			if err != nil || !rep.OK() || rep.Origins[0].Uncovered != 0 {
				t.Fatalf("Verify = %v, %v", rep.FirstFailure(), err)
			}
		})
	}
}

// failOnce makes the next Write fail after it committed: the batch is
// durable but the log is told it failed.
type failOnce struct {
	*sqlstore.Store
	armed bool
}

func (f *failOnce) Write(ctx context.Context, origin string, b *audit.Batch) error {
	err := f.Store.Write(ctx, origin, b)
	if err == nil && f.armed {
		f.armed = false
		return errors.New("connection reset while reading the commit answer")
	}
	return err
}

// TestReloadAcceptsOwnBatch: a write that committed but reported an error
// leaves the store at the failed batch's tree, which the reload accepts.
func TestReloadAcceptsOwnBatch(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s, _ := b.open(t)
			f := &failOnce{Store: s}
			l, err := openCfg(t, f, audittest.Config(t, origin))
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 2, "d")
			f.armed = true
			if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindDecision}); err == nil {
				t.Fatal("append whose answer was lost succeeded")
			}
			idx, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindDecision})
			if err != nil || idx != 4 {
				t.Fatalf("append after the lost answer = %d, %v; want 4 (after the committed batch), nil", idx, err)
			}
		})
	}
}

// TestCrashTailAcceptedAtRestart: records past the latest checkpoint that
// the log itself wrote before a crash are authenticated by the head and
// signed at restart; each origin sharing the database has its own head.
func TestCrashTailAcceptedAtRestart(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s, _ := b.open(t)
			other := audittest.Config(t, "sqlgate.test/other")
			lo, err := openCfg(t, s, other)
			if err != nil {
				t.Fatal(err)
			}
			l, err := openCfg(t, s, audittest.Config(t, origin))
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 4, "d")
			appendN(t, lo, 3, "o")
			// Crash: neither log is closed, no final checkpoint.
			if got := signedSize(t, s); got != 1 {
				t.Fatalf("before the crash the checkpoint covers %d, want 1 (log_start; a tail of 4)", got)
			}
			l2, err := openCfg(t, s, audittest.Config(t, origin))
			if err != nil {
				t.Fatalf("restart after a crash = %v", err)
			}
			if got := signedSize(t, s); got != 5 {
				t.Errorf("after the restart the checkpoint covers %d, want 5", got)
			}
			if _, err := openCfg(t, s, other); err != nil {
				t.Fatalf("restart of the other origin = %v", err)
			}
			if err := l2.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestKeyRotationHead: a clean stop covers the tail with a final
// checkpoint, so the next start may use a new key; after a crash the tail's
// head is keyed by the old key, so the new key refuses it until the old
// key has run once and stopped cleanly.
func TestKeyRotationHead(t *testing.T) {
	s, _, _ := newSQLite(t)
	oldCfg := audittest.Config(t, origin)
	newCfg := audittest.Config(t, origin)
	_, oldV := audittest.Key(t, origin, 1)
	newCfg.Signer, _ = audittest.Key(t, origin, 3)
	newCfg.PreviousKeys = []string{oldV}

	l, err := openCfg(t, s, oldCfg)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 3, "d") // crash: no Close
	_, err = openCfg(t, s, newCfg)
	wantUnauthenticated(t, err, "previous signing key", "records 1 to 3")

	l, err = openCfg(t, s, oldCfg)
	if err != nil {
		t.Fatalf("restart with the old key = %v", err)
	}
	appendN(t, l, 2, "e")
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	l, err = openCfg(t, s, newCfg)
	if err != nil {
		t.Fatalf("first start with the new key after a clean stop = %v", err)
	}
	appendN(t, l, 2, "f") // crash under the new key
	if _, err := openCfg(t, s, newCfg); err != nil {
		t.Fatalf("restart with the new key after a crash = %v", err)
	}
}

// TestUpgradeFromStoreWithoutHeads: a store written by a version without
// heads (simulated by dropping the table; Open creates it again) opens when
// its latest checkpoint covers every record (a clean stop), and is refused
// when it has an uncheckpointed tail (nothing tells it from forged records).
func TestUpgradeFromStoreWithoutHeads(t *testing.T) {
	for _, tc := range []struct {
		name  string
		clean bool
	}{{"clean_stop", true}, {"crash_tail", false}} {
		t.Run(tc.name, func(t *testing.T) {
			s, db, path := newSQLite(t)
			l, err := openCfg(t, s, audittest.Config(t, origin))
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 3, "d")
			if tc.clean {
				if err := l.Close(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.ExecContext(t.Context(), "DROP TABLE sqlgate_audit_heads"); err != nil {
				t.Fatal(err)
			}
			s2, db2 := openSQLite(t, path) // the new version's migration
			var n int
			if err := db2.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM sqlgate_audit_heads").Scan(&n); err != nil || n != 0 {
				t.Fatalf("heads table after migration: %d rows, %v", n, err)
			}
			_, err = openCfg(t, s2, audittest.Config(t, origin))
			if tc.clean {
				if err != nil {
					t.Fatalf("Open after upgrade = %v", err)
				}
				return
			}
			wantUnauthenticated(t, err, "no authenticated head", "records 1 to 3")
		})
	}
}

// TestTamperedUnpairedIntent: after a crash the insider edits an unpaired
// intent's idempotency key and correlation id; Log.Unpaired must refuse it
// rather than hand recovery the edited values (recovery would write a signed
// outcome from them, then the insider restores the intent).
func TestTamperedUnpairedIntent(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, withLeaf := range []bool{false, true} {
				t.Run(fmt.Sprint("leaf_rewritten=", withLeaf), func(t *testing.T) {
					s, db := b.open(t)
					l, err := openCfg(t, s, audittest.Config(t, origin))
					if err != nil {
						t.Fatal(err)
					}
					appendN(t, l, 2, "d")
					in, err := l.Append(t.Context(), &audit.Record{
						Kind: audit.KindIntent, CorrelationID: "corr-victim", Actor: &audit.Actor{Subject: "alice"},
						Route: "orders.v1.create", IdempotencyKey: "idem-victim", SQL: &audit.SQL{Server: "srv", Database: "db"},
					})
					if err != nil {
						t.Fatal(err)
					}
					if err := l.Close(t.Context()); err != nil {
						t.Fatal(err)
					}
					l2, err := openCfg(t, s, audittest.Config(t, origin))
					if err != nil {
						t.Fatal(err)
					}
					if open, err := l2.Unpaired(t.Context()); err != nil || len(open) != 1 || open[0].IdempotencyKey != "idem-victim" {
						t.Fatalf("Unpaired before the edit = %+v, %v", open, err)
					}
					var data []byte
					b.query(t, db, "SELECT data FROM sqlgate_audit_records WHERE origin = ? AND idx = ?", []any{origin, in}, &data)
					edited := bytes.Replace(data, []byte("idem-victim"), []byte("idem-other!"), 1)
					edited = bytes.Replace(edited, []byte("corr-victim"), []byte("corr-other!"), 1)
					leaf := audit.LeafHash(edited)
					b.exec(t, db, "UPDATE sqlgate_audit_records SET data = ?, leaf = ? WHERE origin = ? AND idx = ?", edited, leaf[:], origin, in)
					if withLeaf {
						// The level-0 tree hash too: only the path to the root
						// (which the log holds in memory) can tell.
						b.exec(t, db, "UPDATE sqlgate_audit_hashes SET hash = ? WHERE origin = ? AND id = ?", leaf[:], origin, tlog.StoredHashIndex(0, in))
					}
					open, err := l2.Unpaired(t.Context())
					if !errors.Is(err, audit.ErrRecordAltered) || !strings.Contains(err.Error(), fmt.Sprintf("record %d", in)) {
						t.Fatalf("Unpaired after the edit = %+v, %v; want ErrRecordAltered naming record %d", open, err, in)
					}
					before := l2.Size()
					if _, err := l2.Prune(t.Context(), time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)); !errors.Is(err, audit.ErrRecordAltered) {
						t.Errorf("Prune with an altered open intent = %v, want ErrRecordAltered", err)
					}
					if l2.Size() != before {
						t.Errorf("log grew from %d to %d", before, l2.Size())
					}
				})
			}
		})
	}
}

// TestTamperedInputRecord: policy replay (Log.Inputs) refuses a record
// whose stored bytes were edited, before handing any record out.
func TestTamperedInputRecord(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			s, db := b.open(t)
			l, err := openCfg(t, s, audittest.Config(t, origin))
			if err != nil {
				t.Fatal(err)
			}
			var last int64
			for i := range 3 {
				last, err = l.AppendWithInput(t.Context(), &audit.Record{Kind: audit.KindDecision, Reasons: []string{fmt.Sprint("r", i)}}, []byte(`{"i":1}`))
				if err != nil {
					t.Fatal(err)
				}
			}
			count := func() (int, error) {
				n := 0
				err := l.Inputs(t.Context(), time.Time{}, func(audit.Record, []byte) error { n++; return nil })
				return n, err
			}
			if n, err := count(); err != nil || n != 3 {
				t.Fatalf("Inputs before the edit = %d, %v", n, err)
			}
			var data []byte
			b.query(t, db, "SELECT data FROM sqlgate_audit_records WHERE origin = ? AND idx = ?", []any{origin, last}, &data)
			b.exec(t, db, "UPDATE sqlgate_audit_records SET data = ? WHERE origin = ? AND idx = ?", bytes.Replace(data, []byte(`"r2"`), []byte(`"rX"`), 1), origin, last)
			n, err := count()
			if !errors.Is(err, audit.ErrRecordAltered) || n != 0 {
				t.Fatalf("Inputs after the edit handed out %d records, err %v; want none and ErrRecordAltered", n, err)
			}
		})
	}
}
