package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/sqlite"
)

// openAuditStore opens a SQLite control database in dir and its audit store.
func openAuditStore(t *testing.T, dir string) *sqlstore.Store {
	t.Helper()
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(dir, "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := sqlstore.Open(t.Context(), db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// recoveredOutcomes returns the outcome records of the log by intent index.
func recoveredOutcomes(t *testing.T, store *sqlstore.Store, log *audit.Log) map[int64]*audit.Record {
	t.Helper()
	out := map[int64]*audit.Record{}
	if err := store.Records(t.Context(), log.Origin(), 0, log.Size(), func(_ int64, data []byte, _ *tlog.Hash) error {
		r, err := audit.DecodeRecord(data)
		if err == nil && r.Kind == audit.KindOutcome {
			out[r.IntentIndex] = r
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRecoverIntentsNeedsTheParameterKeyOfTheirSealedKey: an intent whose
// idempotency key is sealed under a parameter key the instance does not
// hold cannot be looked up: recovery fails the start, naming the key id and
// recording nothing (an unknown outcome would be final), and once the key
// is configured (audit.previousParamKeyFiles) it looks the call up. An
// intent whose database is not configured is recorded unknown either way.
func TestRecoverIntentsNeedsTheParameterKeyOfTheirSealedKey(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	if err := createDemoDB(ctx, filepath.Join(dir, "orders.db")); err != nil {
		t.Fatal(err)
	}
	ex, err := sqlite.Open(ctx, sqlite.Config{Name: "orders", Path: filepath.Join(dir, "orders.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ex.Close() })
	executors := map[string]broker.Executor{"orders": ex}
	store := openAuditStore(t, dir)
	cfg := audittest.Config(t, "sqlgate.test/recovery-keys")
	retired := audit.ParamKey{ID: "k20260401000000-0a1b2c3d", Secret: bytes.Repeat([]byte{7}, 32)}
	log, err := audit.Open(ctx, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := ex.Describe()
	here, err := log.Append(ctx, &audit.Record{
		Kind: audit.KindIntent, CorrelationID: "sealed-under-retired", Route: "orders.v1.create",
		IdempotencyKey: audit.SealKey(retired, "never-ran"), SQL: &audit.SQL{Server: d.Server, Database: d.Database, Outcome: "pending"},
	})
	if err != nil {
		t.Fatal(err)
	}
	elsewhere, err := log.Append(ctx, &audit.Record{
		Kind: audit.KindIntent, CorrelationID: "on-a-database-gone", Route: "orders.v1.create",
		IdempotencyKey: audit.SealKey(retired, "other"), SQL: &audit.SQL{Server: "gone.example", Database: "gone", Outcome: "pending"},
	})
	if err != nil {
		t.Fatal(err)
	}
	size := log.Size()
	err = recoverIntents(ctx, log, executors, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), retired.ID) || !strings.Contains(err.Error(), "audit.previousParamKeyFiles") {
		t.Fatalf("recovery of an intent sealed under a key the instance lacks = %v, want the start refused naming %s and audit.previousParamKeyFiles", err, retired.ID)
	}
	if unpaired, err := log.Unpaired(ctx); err != nil || len(unpaired) != 2 || log.Size() != size {
		t.Fatalf("after the refused recovery: %d unpaired (%v), size %d (was %d); want nothing recorded", len(unpaired), err, log.Size(), size)
	}
	if err := log.Close(ctx); err != nil {
		t.Fatal(err)
	}

	cfg.PreviousParamKeys = []audit.ParamKey{retired}
	log, err = audit.Open(ctx, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	if err := recoverIntents(ctx, log, executors, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("recovery with the key configured: %v", err)
	}
	outcomes := recoveredOutcomes(t, store, log)
	if o := outcomes[here]; o == nil || !o.Result.Recovered || o.SQL.Outcome != "rollback" || o.Result.Status != broker.CodeUnavailable {
		t.Errorf("recovered outcome of the call looked up = %+v, want it did not commit (rollback, unavailable)", o)
	}
	if o := outcomes[elsewhere]; o == nil || !o.Result.Recovered || o.SQL.Outcome != "unknown" {
		t.Errorf("recovered outcome of the call on a database not configured = %+v, want unknown", o)
	}
}

// TestDashboardEvidenceCoversAnEndedPeriod: on an idle log the newest
// checkpoint is the last heartbeat's, minutes old; the dashboard's
// evidence of a period that ended since signs a checkpoint first, so the
// archive covers the period instead of saying period_not_covered.
func TestDashboardEvidenceCoversAnEndedPeriod(t *testing.T) {
	ctx := t.Context()
	store := openAuditStore(t, t.TempDir())
	const origin = "sqlgate.test/dashboard-idle"
	clk := audittest.NewClock(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC))
	cfg := audittest.Config(t, origin)
	cfg.Now = clk.Now
	cfg.Heartbeat = time.Hour
	log, err := audit.Open(ctx, store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	clk.Add(time.Minute)
	if _, err := log.Append(ctx, &audit.Record{Kind: audit.KindDecision, CorrelationID: "c1", Reasons: []string{"denied"}}); err != nil {
		t.Fatal(err)
	}
	if err := log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Add(4 * time.Minute) // idle since: the period below has ended
	s := &auditService{log: log, store: store, signer: cfg.Signer}
	var buf bytes.Buffer
	if err := s.Evidence(ctx, &buf, time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC), time.Date(2026, 4, 1, 9, 4, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	var m evidence.Manifest
	if err := json.Unmarshal(audittest.Unzip(t, buf.Bytes())["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Incomplete) != 0 || m.Verification.ExceptionCount[string(evidence.ExceptionNotCovered)] != 0 {
		t.Errorf("dashboard evidence of a period that ended on an idle log: incomplete %q", m.Incomplete)
	}
}

// TestParamKeyIDsDiffer: a parameter key created soon after the one before
// (its file removed to rotate it) gets another id: records name their key
// by its id, and two keys of one id are refused.
func TestParamKeyIDsDiffer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit-param.key")
	first, err := loadParamKey(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	second, err := loadParamKey(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID == second.ID {
		t.Errorf("two parameter keys created in a row have the same id %q", first.ID)
	}
	if _, _, err := auditParamKeys(AuditConfig{ParamKeyFile: path, PreviousParamKeyFiles: []string{path}}); err == nil {
		t.Error("auditParamKeys accepted the current key as a previous one")
	}
	var previous []string
	for i := range 2 {
		f := filepath.Join(t.TempDir(), "previous.key")
		secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{byte(i + 1)}, 32))
		if err := os.WriteFile(f, []byte("k20260401:"+secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		previous = append(previous, f)
	}
	if _, _, err := auditParamKeys(AuditConfig{ParamKeyFile: path, PreviousParamKeyFiles: previous}); err == nil || !strings.Contains(err.Error(), `key id "k20260401" is also the id of audit.previousParamKeyFiles[0]`) {
		t.Errorf("auditParamKeys with two previous keys of one id = %v, want them refused", err)
	}
}
