package audit_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	_ "modernc.org/sqlite"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
)

// legacyOrigin is the origin of the log in testdata/legacy_e8247d9: a
// SQLite store written by commit e8247d9, the release before this version
// (testdata/legacy_e8247d9/generate_test.go made it). Under key A (seed 1)
// records 0-3 (log_start at 0), under key B (seed 2) records 4-7
// (key_rotation at 4), then under key A again records 8-10: e8247d9 wrote no
// record for going back to a key already in the key history, so the
// checkpoints of sizes 9, 10 and 11 are signed by A after the record that
// names B.
const legacyOrigin = "sqlgate.test/legacy"

// legacyKey returns the signer and verifier key of the legacy log's key of
// seed (1: A, 2: B, 3: C, never used by e8247d9).
func legacyKey(t *testing.T, seed byte) (audit.Signer, string) {
	t.Helper()
	return audittest.Key(t, legacyOrigin, seed)
}

// legacyStore loads the e8247d9 store into a new SQLite file and opens it
// with this version's sqlstore.
func legacyStore(t *testing.T) (*sqlstore.Store, *sql.DB) {
	t.Helper()
	dump, err := os.ReadFile(filepath.Join("testdata", "legacy_e8247d9", "store.sql"))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(t.TempDir(), "legacy.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.ExecContext(t.Context(), string(dump)); err != nil {
		t.Fatalf("load the e8247d9 store: %v", err)
	}
	s, err := sqlstore.Open(t.Context(), db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

// openLegacy opens the legacy log with the key of seed, trusting the
// verifier keys of prev.
func openLegacy(t *testing.T, store audit.Store, seed byte, prev ...byte) (*audit.Log, error) {
	t.Helper()
	cfg := audittest.Config(t, legacyOrigin)
	cfg.Signer, _ = legacyKey(t, seed)
	for _, p := range prev {
		if p == seed {
			continue
		}
		_, v := legacyKey(t, p)
		cfg.PreviousKeys = append(cfg.PreviousKeys, v)
	}
	cfg.CheckpointInterval = time.Hour
	return audit.Open(t.Context(), store, cfg)
}

// legacySession opens the legacy log with the key of seed, appends n
// intents and closes it.
func legacySession(t *testing.T, store audit.Store, seed byte, n int, prev ...byte) {
	t.Helper()
	l, err := openLegacy(t, store, seed, prev...)
	if err != nil {
		t.Fatalf("Open with key %d = %v", seed, err)
	}
	for i := range n {
		if _, err := l.Append(t.Context(), intent(fmt.Sprintf("k%d-%d", seed, i))); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// legacyKeys returns the verifier keys of seeds.
func legacyKeys(t *testing.T, seeds ...byte) audit.VerifyOptions {
	t.Helper()
	var opts audit.VerifyOptions
	for _, s := range seeds {
		_, v := legacyKey(t, s)
		opts.Keys = append(opts.Keys, v)
	}
	return opts
}

// legacyRecord returns record index of the legacy log.
func legacyRecord(t *testing.T, store audit.Store, index int64) *audit.Record {
	t.Helper()
	data, err := store.Record(t.Context(), legacyOrigin, index)
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.DecodeRecord(data)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// requireEvidence writes the evidence of every record of the legacy log,
// which needs a passing verification (the dashboard's evidence too).
func requireEvidence(t *testing.T, store audit.Source, keys audit.VerifyOptions) {
	t.Helper()
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	_, err := evidence.Write(t.Context(), io.Discard, store, evidence.Options{
		From: from, To: time.Now().Add(time.Hour), Verify: keys, Generator: "legacy test", TempDir: t.TempDir(),
	})
	if err != nil {
		t.Fatalf("evidence of the log: %v", err)
	}
}

// TestLegacyLogVerifies: a log e8247d9 wrote, which went back to an
// earlier key without a record, verifies as a whole and from any index.
func TestLegacyLogVerifies(t *testing.T) {
	store, _ := legacyStore(t)
	keys := legacyKeys(t, 1, 2)
	rep := verify(t, store, keys)
	requireOK(t, rep)
	if rep.Records != 11 || rep.Origins[0].Checkpoints != 11 || rep.Origins[0].Uncovered != 0 {
		t.Errorf("Verify = %d records, %d checkpoints, %d uncovered; want 11, 11, 0", rep.Records, rep.Origins[0].Checkpoints, rep.Origins[0].Uncovered)
	}
	for from := int64(1); from < 11; from++ {
		requireOK(t, verify(t, store, audit.VerifyOptions{Keys: keys.Keys, From: from}))
	}
	requireEvidence(t, store, keys)
}

// TestLegacyLogUpgrade: the e8247d9 log opens with this version under the
// key it was left with, under the key it had left, and under a new key; it
// appends, verifies and replays, also after later rotations.
func TestLegacyLogUpgrade(t *testing.T) {
	t.Run("same_key", func(t *testing.T) {
		store, _ := legacyStore(t)
		legacySession(t, store, 1, 2, 2)
		requireOK(t, verify(t, store, legacyKeys(t, 1, 2)))
		requireEvidence(t, store, legacyKeys(t, 1, 2))
		if r := legacyRecord(t, store, 11); r.Kind != audit.KindIntent {
			t.Errorf("record 11 = %s %v, want the first intent: the key did not change", r.Kind, r.Admin)
		}
		l, err := openLegacy(t, store, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close(context.Background()) }()
		n := 0
		if err := l.Inputs(t.Context(), time.Time{}, func(r audit.Record, input []byte) error {
			if r.InputSHA256 == "" || len(input) == 0 {
				return fmt.Errorf("record %d: input_sha256 %q, %d input bytes", r.Index, r.InputSHA256, len(input))
			}
			n++
			return nil
		}); err != nil || n != 3 {
			t.Errorf("Inputs of the e8247d9 records = %d, %v; want the 3 inputs checked against input_sha256", n, err)
		}
	})
	for _, tc := range []struct {
		name string
		seed byte
		prev []byte
	}{
		{"key_it_had_left", 2, []byte{1}},
		{"new_key", 3, []byte{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, _ := legacyStore(t)
			legacySession(t, store, tc.seed, 2, tc.prev...)
			requireOK(t, verify(t, store, legacyKeys(t, 1, 2, 3)))
			requireEvidence(t, store, legacyKeys(t, 1, 2, 3))
			_, v := legacyKey(t, tc.seed)
			if r := legacyRecord(t, store, 11); r.Admin == nil || r.Admin.Action != audit.AdminKeyRotation || r.Admin.Detail != v {
				t.Errorf("record 11 = %s %v, want key_rotation naming key %d", r.Kind, r.Admin, tc.seed)
			}
		})
	}
	t.Run("rotations_after", func(t *testing.T) {
		store, _ := legacyStore(t)
		legacySession(t, store, 1, 1, 2)
		legacySession(t, store, 3, 1, 1, 2)
		legacySession(t, store, 2, 1, 1, 3)
		legacySession(t, store, 1, 1, 2, 3)
		legacySession(t, store, 3, 1, 1, 2)
		keys := legacyKeys(t, 1, 2, 3)
		rep := verify(t, store, keys)
		requireOK(t, rep)
		for from := int64(1); from < rep.Origins[0].End; from++ {
			requireOK(t, verify(t, store, audit.VerifyOptions{Keys: keys.Keys, From: from}))
		}
	})
}

// replaceCheckpoint replaces the stored checkpoint of size with one
// signed by s over the same tree, as a holder of s who can write the store
// would.
func replaceCheckpoint(t *testing.T, db *sql.DB, s note.Signer, size int64) {
	t.Helper()
	ctx := t.Context()
	rows, err := db.QueryContext(ctx, "SELECT leaf FROM sqlgate_audit_records WHERE origin = ? AND idx < ? ORDER BY idx", legacyOrigin, size)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	tree, err := audit.NewTree(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var leaf []byte
		if err := rows.Scan(&leaf); err != nil {
			t.Fatal(err)
		}
		tree.Append(tlog.Hash(leaf))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	root := tree.Root()
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	text := fmt.Sprintf("%s\n%d\n%s\ntime %s\n", legacyOrigin, size, base64.StdEncoding.EncodeToString(root[:]), at.Format(time.RFC3339Nano))
	msg, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.ExecContext(ctx, "UPDATE sqlgate_audit_checkpoints SET note = ? WHERE origin = ? AND tree_size = ?", msg, legacyOrigin, size)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("replace the checkpoint of size %d: %v (%d rows)", size, err, n)
	}
}

// TestLegacyLogRetiredKeyAfterUpgrade: from the first checkpoint this
// version signs on the e8247d9 log, a checkpoint must be signed by the key
// the log names (a key_rotation record, or that first checkpoint's key):
// a holder of another trusted key who re-signs what the log wrote after
// the upgrade is caught by Verify and refused by Open.
func TestLegacyLogRetiredKeyAfterUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name      string
		seed      byte   // the key the upgraded log signs with
		prev      []byte // its previous keys
		retired   byte   // the key that re-signs
		wantIndex int64  // the record or checkpoint size the failure names
	}{
		// Same key A: the upgrade's first checkpoint (size 12) names A;
		// B, which e8247d9 had left without a record, is retired from it.
		{"same_key", 1, []byte{2}, 2, 12},
		// New key C: its key_rotation record 11 retires A and B.
		{"new_key", 3, []byte{1, 2}, 1, 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, db := legacyStore(t)
			legacySession(t, store, tc.seed, 3, tc.prev...)
			keys := legacyKeys(t, 1, 2, 3)
			requireOK(t, verify(t, store, keys))
			end := verify(t, store, keys).Origins[0].End
			retired, _ := legacyKey(t, tc.retired)
			replaceCheckpoint(t, db, retired, end)
			rep := verify(t, store, keys)
			f := rep.FirstFailure()
			if rep.OK() || f.Code != audit.ProblemRetiredKey || f.Size != end || f.Index != tc.wantIndex {
				t.Fatalf("Verify after key %d re-signed the latest checkpoint: %v; want retired_key at %d, size %d", tc.retired, rep.Failures, tc.wantIndex, end)
			}
			// Checked from after the upgrade, the checkpoint before the
			// range stands for the key.
			rep = verify(t, store, audit.VerifyOptions{Keys: keys.Keys, From: end - 1})
			if f := rep.FirstFailure(); rep.OK() || f.Code != audit.ProblemRetiredKey {
				t.Errorf("Verify from %d: %v, want retired_key", end-1, rep.Failures)
			}
			for _, seed := range []byte{tc.seed, 3, 2} {
				if seed == tc.retired {
					continue
				}
				_, err := openLegacy(t, store, seed, 1, 2, 3)
				if !errors.Is(err, audit.ErrRollback) || !strings.Contains(err.Error(), "retired") {
					t.Errorf("Open with key %d over a latest checkpoint of key %d = %v, want ErrRollback (retired key)", seed, tc.retired, err)
				}
			}
		})
	}
}
