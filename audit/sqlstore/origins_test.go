package sqlstore_test

import (
	"bytes"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

// deleteOrigin deletes the origin's rows from the named tables, as an
// operator with SQL access could.
func deleteOrigin(t *testing.T, db *sql.DB, tables ...string) {
	t.Helper()
	for _, table := range tables {
		execSQL(t, db, "DELETE FROM sqlgate_audit_"+table+" WHERE origin = ?", origin)
	}
}

// TestSQLiteOriginRowDeleted: deleting the origin's row in
// sqlgate_audit_origins must not hide its log. The log is still listed and
// verified record by record, and deleting the whole log fails verification
// with the log's pinned key.
func TestSQLiteOriginRowDeleted(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tables   []string
		wantOK   bool
		wantCode audit.ProblemCode
	}{
		{"origin_row", []string{"origins"}, true, ""},
		{"origin_row_and_a_record", nil, false, audit.ProblemMissingRecord},
		{"all_but_the_keys", []string{"origins", "records", "hashes", "checkpoints"}, false, audit.ProblemNoCheckpoint},
		{"everything", []string{"origins", "records", "hashes", "checkpoints", "keys"}, false, audit.ProblemOriginMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, db, _ := newSQLite(t)
			l := openLog(t, s, &fakeClock{t: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)})
			writePairs(t, l, 0, 10, "c")
			if err := l.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			if tc.tables == nil {
				deleteOrigin(t, db, "origins")
				execSQL(t, db, "DELETE FROM sqlgate_audit_records WHERE origin = ? AND idx = 7", origin)
			}
			deleteOrigin(t, db, tc.tables...)
			rep, err := audit.Verify(t.Context(), s, audit.VerifyOptions{Keys: keys(t)})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() != tc.wantOK {
				t.Fatalf("Verify OK = %v (origins %d, records %d, failures %v), want %v", rep.OK(), len(rep.Origins), rep.Records, rep.Failures, tc.wantOK)
			}
			if tc.wantOK {
				if len(rep.Origins) != 1 || rep.Records != 21 {
					t.Errorf("Verify checked %d origins and %d records, want the 21 records of %s", len(rep.Origins), rep.Records, origin)
				}
				return
			}
			if f := rep.FirstFailure(); f.Code != tc.wantCode || f.Origin != origin {
				t.Errorf("first failure = %+v, want %s of %s", f, tc.wantCode, origin)
			}
		})
	}
}

// TestSQLiteDashboardEvidenceAfterOriginRowDeleted follows the dashboard's
// evidence path (keys from the log's own history, manifest signed with the
// log's key) after the origin's row was deleted: the archive still holds
// the log; with the log deleted no archive is written.
func TestSQLiteDashboardEvidenceAfterOriginRowDeleted(t *testing.T) {
	s, db, _ := newSQLite(t)
	l := openLog(t, s, &fakeClock{t: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)})
	writePairs(t, l, 0, 10, "c")
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	signer, _ := audittest.Key(t, origin, 1)
	dashboard := func() (*evidence.Manifest, []byte, error) {
		hist, err := s.Keys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ks := []string{}
		for _, k := range hist {
			ks = append(ks, k.VerifierKey)
		}
		var buf bytes.Buffer
		m, err := evidence.Write(t.Context(), &buf, s, evidence.Options{
			From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
			Verify: audit.VerifyOptions{Keys: ks}, Generator: "dashboard", Signer: signer,
		})
		return m, buf.Bytes(), err
	}

	deleteOrigin(t, db, "origins")
	m, archive, err := dashboard()
	if err != nil {
		t.Fatalf("evidence.Write = %v", err)
	}
	if len(m.Origins) != 1 || m.Origins[0].Origin != origin || m.Verification.Records != 21 {
		t.Errorf("manifest: %d origins, %d records verified; want %s with 21 records", len(m.Origins), m.Verification.Records, origin)
	}
	if _, err := evidence.Check(bytes.NewReader(archive), int64(len(archive)), evidence.CheckOptions{Keys: keys(t), RequireSignature: true}); err != nil {
		t.Errorf("check-evidence: %v", err)
	}

	deleteOrigin(t, db, "records", "hashes", "checkpoints")
	if _, archive, err := dashboard(); !errors.Is(err, evidence.ErrNotVerified) || len(archive) != 0 || !strings.Contains(err.Error(), "no checkpoint") {
		t.Errorf("log deleted but its keys: err = %v, %d bytes written; want ErrNotVerified (no checkpoint), nothing", err, len(archive))
	}
	deleteOrigin(t, db, "keys")
	if _, archive, err := dashboard(); err == nil || len(archive) != 0 {
		t.Errorf("log and keys deleted: err = %v, %d bytes written; want an error, nothing", err, len(archive))
	}
}
