package sqlstore_test

import (
	"bytes"
	"database/sql"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
)

// damagedLog writes 61 records (checkpoints of sizes 1, 5, 9, ..., 61) to
// a SQLite store and returns it with its database, for an insider with SQL
// access to edit.
func damagedLog(t *testing.T) (audit.Source, *sql.DB) {
	t.Helper()
	s, db, _ := newSQLite(t)
	l := openLog(t, s, &fakeClock{t: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)})
	writePairs(t, l, 0, 30, "c")
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if rep, err := audit.Verify(t.Context(), s, audit.VerifyOptions{Keys: keys(t)}); err != nil || !rep.OK() {
		t.Fatalf("before the edit: %v %v", err, rep.Failures)
	}
	return s, db
}

// TestSQLiteEditsAreNotOutages: what an insider edits in the control
// database is an integrity failure, never source_error (which the
// dashboard answers as an outage, 503 unavailable, the cause only in the
// sqlgated log): a hash the verifier needs deleted or cut short, a
// checkpoint row whose tree_size is not an integer or not its note's size,
// a record row moved to an index that is not an integer.
func TestSQLiteEditsAreNotOutages(t *testing.T) {
	for _, tc := range []struct {
		name      string
		edit      func(t *testing.T, s audit.Source, db *sql.DB)
		wantCode  audit.ProblemCode
		wantIndex int64 // -1: any
		wantSize  int64
	}{
		{"frontier_hash_deleted_after_prune", func(t *testing.T, s audit.Source, db *sql.DB) {
			if _, err := s.(audit.Store).Prune(t.Context(), origin, 29); err != nil {
				t.Fatal(err)
			}
			execSQL(t, db, "DELETE FROM sqlgate_audit_hashes WHERE origin = ? AND id = ?", origin, audit.FrontierIndexes(29)[0])
		}, audit.ProblemMissingRecord, 29, 0},
		{"frontier_hash_cut_short_after_prune", func(t *testing.T, s audit.Source, db *sql.DB) {
			if _, err := s.(audit.Store).Prune(t.Context(), origin, 29); err != nil {
				t.Fatal(err)
			}
			execSQL(t, db, "UPDATE sqlgate_audit_hashes SET hash = X'0102' WHERE origin = ? AND id = ?", origin, audit.FrontierIndexes(29)[0])
		}, audit.ProblemMissingRecord, 29, 0},
		{"checkpoint_size_not_an_integer", func(t *testing.T, _ audit.Source, db *sql.DB) {
			execSQL(t, db, "UPDATE sqlgate_audit_checkpoints SET tree_size = 'x' WHERE origin = ? AND tree_size = 25", origin)
		}, audit.ProblemBadCheckpoint, -1, 25},
		{"newest_checkpoint_size_not_an_integer", func(t *testing.T, _ audit.Source, db *sql.DB) {
			execSQL(t, db, "UPDATE sqlgate_audit_checkpoints SET tree_size = 'x' WHERE origin = ? AND tree_size = 61", origin)
		}, audit.ProblemBadCheckpoint, -1, 61},
		{"checkpoint_size_not_its_notes", func(t *testing.T, _ audit.Source, db *sql.DB) {
			execSQL(t, db, "UPDATE sqlgate_audit_checkpoints SET tree_size = 1000 WHERE origin = ? AND tree_size = 25", origin)
		}, audit.ProblemBadCheckpoint, -1, 25},
		{"record_index_not_an_integer", func(t *testing.T, _ audit.Source, db *sql.DB) {
			execSQL(t, db, "UPDATE sqlgate_audit_records SET idx = 25.5 WHERE origin = ? AND idx = 25", origin)
		}, audit.ProblemMissingRecord, 25, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, db := damagedLog(t)
			tc.edit(t, s, db)
			rep, err := audit.Verify(t.Context(), s, audit.VerifyOptions{Keys: keys(t)})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || rep.SourceFailed() {
				t.Fatalf("Verify of the edited store: OK %v, SourceFailed %v (%v); want an integrity failure", rep.OK(), rep.SourceFailed(), rep.Failures)
			}
			var found bool
			for _, p := range rep.Failures {
				found = found || p.Code == tc.wantCode && (tc.wantIndex < 0 || p.Index == tc.wantIndex) && p.Size == tc.wantSize
			}
			if !found {
				t.Errorf("failures %v, want %s at index %d (size %d)", rep.Failures, tc.wantCode, tc.wantIndex, tc.wantSize)
			}
			if tc.wantCode != audit.ProblemBadCheckpoint {
				return
			}
			// The export carries the edited row as such: a verification of
			// the bundle reports it too.
			var b bytes.Buffer
			if err := audit.WriteBundle(t.Context(), &b, s, audit.BundleOptions{}); err != nil {
				t.Fatal(err)
			}
			bundle, err := audit.OpenBundle(bytes.NewReader(b.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			brep, err := audit.Verify(t.Context(), bundle, audit.VerifyOptions{Keys: keys(t)})
			if err != nil {
				t.Fatal(err)
			}
			found = false
			for _, p := range brep.Failures {
				found = found || p.Code == audit.ProblemBadCheckpoint && p.Size == tc.wantSize
			}
			if brep.OK() || !found {
				t.Errorf("the bundle of the edited store: OK %v, failures %v; want bad_checkpoint of size %d", brep.OK(), brep.Failures, tc.wantSize)
			}
		})
	}
}
