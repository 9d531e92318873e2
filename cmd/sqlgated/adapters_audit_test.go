package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/web"
)

// dashboardAudit opens a SQLite control database, writes a small log and
// returns the dashboard's audit service over it (as app.go builds it) and
// the database, for an insider with SQL access to edit.
func dashboardAudit(t *testing.T) (*auditService, *sql.DB) {
	t.Helper()
	ctx := t.Context()
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(t.TempDir(), "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := sqlstore.Open(ctx, db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	const origin = "sqlgate.test/dashboard"
	clk := audittest.NewClock(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC))
	cfg := audittest.Config(t, origin)
	cfg.Signer, _ = audittest.Key(t, origin, 1)
	cfg.Now = clk.Now
	log, err := audit.Open(ctx, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	for _, corr := range []string{"c1", "c2", "c3"} {
		clk.Add(time.Minute)
		if _, err := log.Append(ctx, &audit.Record{Kind: audit.KindDecision, CorrelationID: corr, Reasons: []string{"denied"}}); err != nil {
			t.Fatal(err)
		}
		if err := log.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return &auditService{log: log, store: store, signer: cfg.Signer}, db
}

func execSQL(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// The dashboard's verification trusts the instance's configured key, not
// the key table in the database: a record edited with its hashes
// recomputed and every checkpoint deleted is a failure (no_checkpoint),
// not an OK with an uncovered tail.
func TestDashboardVerifyTrustsConfiguredKeysOnly(t *testing.T) {
	s, db := dashboardAudit(t)
	ctx := t.Context()
	if rep, err := s.Verify(ctx, 0, 0); err != nil || !rep.OK {
		t.Fatalf("the intact log: %+v, %v", rep, err)
	}
	origin := s.log.Origin()
	var data []byte
	if err := db.QueryRowContext(ctx, "SELECT data FROM sqlgate_audit_records WHERE origin = ? AND idx = 2", origin).Scan(&data); err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(data, []byte(`"c2"`), []byte(`"cX"`), 1)
	leaf := audit.LeafHash(edited)
	execSQL(t, db, "UPDATE sqlgate_audit_records SET data = ?, leaf = ? WHERE origin = ? AND idx = 2", edited, leaf[:], origin)
	var recs [][]byte
	if err := s.store.Records(ctx, origin, 0, 1<<40, func(_ int64, d []byte, _ *tlog.Hash) error { recs = append(recs, bytes.Clone(d)); return nil }); err != nil {
		t.Fatal(err)
	}
	execSQL(t, db, "DELETE FROM sqlgate_audit_hashes WHERE origin = ?", origin)
	for i, r := range recs {
		hs, err := tlog.StoredHashes(int64(i), r, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return s.store.ReadHashes(ctx, origin, ix) }))
		if err != nil {
			t.Fatal(err)
		}
		for k, h := range hs {
			execSQL(t, db, "INSERT INTO sqlgate_audit_hashes (origin, id, hash) VALUES (?, ?, ?)", origin, tlog.StoredHashIndex(0, int64(i))+int64(k), h[:])
		}
	}
	execSQL(t, db, "DELETE FROM sqlgate_audit_checkpoints WHERE origin = ?", origin)

	rep, err := s.Verify(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || !strings.Contains(string(rep.JSON), `"code":"no_checkpoint"`) || !strings.Contains(string(rep.JSON), `"keys_from_source":false`) {
		t.Errorf("dashboard verify of an edited log without checkpoints: OK=%v\n%s", rep.OK, rep.Text)
	}
}

// The dashboard's evidence is refused when the checkpoints are signed by a
// key only the database names: it never signs evidence (with the log's own
// key) over a log an insider re-signed.
func TestDashboardEvidenceRefusesKeysOnlyInTheStore(t *testing.T) {
	s, db := dashboardAudit(t)
	ctx := t.Context()
	from, to := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 9, 30, 0, 0, time.UTC)
	var ok bytes.Buffer
	if err := s.Evidence(ctx, &ok, from, to); err != nil {
		t.Fatalf("evidence of the intact log: %v", err)
	}
	origin := s.log.Origin()
	insider, insiderKey := audittest.Key(t, origin, 2)
	var notes [][]byte
	if err := s.store.Checkpoints(ctx, origin, func(n []byte) error { notes = append(notes, bytes.Clone(n)); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, n := range notes {
		c, err := audit.ParseCheckpoint(n)
		if err != nil {
			t.Fatal(err)
		}
		forged, err := note.Sign(&note.Note{Text: string(n[:bytes.LastIndex(n, []byte("\n\n"))+1])}, insider)
		if err != nil {
			t.Fatal(err)
		}
		execSQL(t, db, "UPDATE sqlgate_audit_checkpoints SET note = ? WHERE origin = ? AND tree_size = ?", forged, origin, c.Size)
	}
	execSQL(t, db, "INSERT INTO sqlgate_audit_keys (origin, key_id, vkey, added) VALUES (?, ?, ?, ?)", origin, "insider", insiderKey, time.Now().UnixNano())

	var buf bytes.Buffer
	err := s.Evidence(ctx, &buf, from, to)
	var he *web.HTTPError
	if !errors.As(err, &he) || !strings.Contains(he.Msg, "not signed by a trusted key") {
		t.Errorf("dashboard evidence over checkpoints signed by a key only the store names: %v (%d bytes); want refused, telling the auditor why", err, buf.Len())
	}
	if rep, err := s.Verify(ctx, 0, 0); err != nil || rep.OK {
		t.Errorf("dashboard verify of the re-signed log: OK=%v, %v", rep.OK, err)
	}
}

// TestDashboardAuditAfterRotation: after a key rotation, an instance whose
// configuration dropped the old key from audit.previousVerifierKeys still
// starts, but the dashboard (which trusts configured keys only) would fail
// the old key's checkpoints: untrustedKeys names the old key so that the
// start warns, and with the key configured again there is nothing to warn
// about and the dashboard's verification passes.
func TestDashboardAuditAfterRotation(t *testing.T) {
	ctx := t.Context()
	as, db := dashboardAudit(t)
	_, oldKey := audittest.Key(t, as.log.Origin(), 1)
	if err := as.log.Close(ctx); err != nil {
		t.Fatal(err)
	}
	store, err := sqlstore.Open(ctx, db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	cfg := audittest.Config(t, as.log.Origin())
	cfg.Signer, _ = audittest.Key(t, as.log.Origin(), 2)
	cfg.PreviousKeys = []string{oldKey}
	log, err := audit.Open(ctx, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	if _, err := log.Append(ctx, &audit.Record{Kind: audit.KindDecision, CorrelationID: "after", Reasons: []string{"denied"}}); err != nil {
		t.Fatal(err)
	}
	if err := log.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	dropped := &auditService{log: log, store: store, signer: cfg.Signer}
	missing, err := dropped.untrustedKeys(ctx)
	if err != nil || len(missing) != 1 || missing[0] != oldKey {
		t.Errorf("untrustedKeys without the old key configured = %v, %v; want [%s]", missing, err, oldKey)
	}
	if rep, err := dropped.Verify(ctx, 0, 0); err != nil || rep.OK {
		t.Errorf("dashboard verify without the old key = %v, %v; want failed checkpoints (what the warning is for)", rep, err)
	}

	kept := &auditService{log: log, store: store, signer: cfg.Signer, previousKeys: []string{oldKey}}
	if missing, err := kept.untrustedKeys(ctx); err != nil || len(missing) != 0 {
		t.Errorf("untrustedKeys with the old key configured = %v, %v; want none", missing, err)
	}
	if rep, err := kept.Verify(ctx, 0, 0); err != nil || !rep.OK {
		t.Errorf("dashboard verify with the old key = %v, %v; want OK", rep, err)
	}
}
