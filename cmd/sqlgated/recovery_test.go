package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/broker/sqlite"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// crashingRecorder loses every outcome, as a process killed right after the
// SQL commit would.
type crashingRecorder struct{ *audit.Log }

func (crashingRecorder) Enqueue(_ context.Context, _ *audit.Record, then func(int64, error)) error {
	then(-1, nil)
	return nil
}

// callEnv is a broker on a SQLite database with an audit log in a SQLite
// control database, and alice (sales) registered as a NATS user.
type callEnv struct {
	ex    *sqlite.Executor
	log   *audit.Log
	store *sqlstore.Store
	svc   *broker.Service
	key   string // alice's NATS user key
}

// newCallEnv builds a callEnv; with loseOutcomes every outcome record is
// lost, as when the process is killed right after the SQL commit.
func newCallEnv(t *testing.T, loseOutcomes bool) *callEnv {
	t.Helper()
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
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(dir, "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := sqlstore.Open(ctx, db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	skey, _, _ := audit.GenerateKey(rand.Reader, "test/recovery")
	signer, _ := audit.NewSigner(skey)
	log, err := audit.Open(ctx, store, audit.Config{
		Origin: "test/recovery", Instance: "t", Signer: signer,
		ParamKey: audit.ParamKey{ID: "k", Secret: make([]byte, 32)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close(context.Background()) })
	cdb, err := control.Open(ctx, db, control.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	registry := control.NewRegistry(cdb, 0, nil)
	engine, err := opa.Open(ctx, opa.Config{FS: rules.FS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	catalog, err := route.Parse(demoRoutes)
	if err != nil {
		t.Fatal(err)
	}
	var recorder broker.Recorder = log
	if loseOutcomes {
		recorder = crashingRecorder{log}
	}
	svc, err := broker.New(broker.Config{
		Catalog: catalog, Databases: map[string]broker.Executor{"orders": ex},
		Authorizer: engine, Recorder: recorder, Registry: registry,
		UsersAccount: "AUSERS", SigningKeys: []string{"ASIGNER"},
	})
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	key, _ := kp.PublicKey()
	alice := identity.Principal{Issuer: "https://idp", Subject: "alice", Email: "alice@example.com", Groups: []string{"sales"}}
	if err := registry.Put(ctx, broker.Issuance{
		UserKey: key, Principal: alice, SigningKey: "ASIGNER", Account: "AUSERS",
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	return &callEnv{ex: ex, log: log, store: store, svc: svc, key: key}
}

// create calls orders.v1.create as alice and fails the test unless it
// succeeds.
func (e *callEnv) create(t *testing.T, customer string) *broker.Reply {
	t.Helper()
	rep := e.svc.Handle(t.Context(), &broker.Request{
		Subject: "orders.v1.create", Payload: []byte(`{"customer":"` + customer + `","amount":5}`),
		Caller: broker.Caller{Transport: "nats", Attested: true, UserKey: e.key, IssuerKey: "ASIGNER", Account: "AUSERS"},
	})
	if !rep.OK {
		t.Fatalf("create: %s", rep.AppendJSON(nil))
	}
	return rep
}

// TestRecoverIntents is the crash between SQL commit and outcome record: at
// the next start, the missing outcome is written from the idempotency record
// in the target database (committed), or as not committed when the database
// has no record of the call.
func TestRecoverIntents(t *testing.T) {
	ctx := t.Context()
	env := newCallEnv(t, true)
	ex, log, store := env.ex, env.log, env.store
	rep := env.create(t, "crash")
	// A second intent whose call never reached the database.
	lost, err := log.Append(ctx, &audit.Record{
		Kind: audit.KindIntent, CorrelationID: "never-ran", IdempotencyKey: "no-such-key",
		Route: "orders.v1.create", SQL: &audit.SQL{Server: ex.Describe().Server, Database: ex.Describe().Database, Outcome: "pending"},
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := recoverIntents(ctx, log, map[string]broker.Executor{"orders": ex}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	unpaired, err := log.Unpaired(ctx)
	if err != nil || len(unpaired) != 0 {
		t.Fatalf("after recovery %d intents are unpaired (%v)", len(unpaired), err)
	}
	if err := log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	outcomes := map[int64]*audit.Record{}
	if err := store.Records(ctx, log.Origin(), 0, log.Size(), func(_ int64, data []byte, _ *tlog.Hash) error {
		r, err := audit.DecodeRecord(data)
		if err == nil && r.Kind == audit.KindOutcome {
			outcomes[r.IntentIndex] = r
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := outcomes[rep.AuditIndex]
	if done == nil || !done.Result.Recovered || done.SQL.Outcome != "commit" || done.SQL.TransactionID != rep.SQLTransactionID {
		t.Errorf("recovered outcome of the committed call = %+v", done)
	}
	never := outcomes[lost]
	if never == nil || !never.Result.Recovered || never.SQL.Outcome == "commit" {
		t.Errorf("recovered outcome of the call that never ran = %+v", never)
	}
	// And the log still verifies.
	rep2, err := audit.Verify(ctx, store, audit.VerifyOptions{})
	if err != nil || !rep2.OK() {
		t.Errorf("verify after recovery: %v %v", err, rep2)
	}
}

// TestRecoverIntentsOfReplays: a replay and a conflict whose outcomes a
// crash lost ran nothing: recovery records them as such, not as second
// commits of the first call's transaction.
func TestRecoverIntentsOfReplays(t *testing.T) {
	ctx := t.Context()
	env := newCallEnv(t, true)
	call := func(payload string) *broker.Reply {
		return env.svc.Handle(ctx, &broker.Request{
			Subject: "orders.v1.create", Payload: []byte(payload), IdempotencyKey: "k-1",
			Caller: broker.Caller{Transport: "nats", Attested: true, UserKey: env.key, IssuerKey: "ASIGNER", Account: "AUSERS"},
		})
	}
	first := call(`{"customer":"ACME","amount":5}`)
	replay := call(`{"customer":"ACME","amount":5}`)
	conflict := call(`{"customer":"ACME","amount":6}`)
	if !first.OK || !replay.OK || !replay.Replayed || conflict.OK {
		t.Fatalf("first %s, replay %s, conflict %s", first.AppendJSON(nil), replay.AppendJSON(nil), conflict.AppendJSON(nil))
	}
	if err := recoverIntents(ctx, env.log, map[string]broker.Executor{"orders": env.ex}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if err := env.log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	outcomes := map[int64]*audit.Record{}
	if err := env.store.Records(ctx, env.log.Origin(), 0, env.log.Size(), func(_ int64, data []byte, _ *tlog.Hash) error {
		r, err := audit.DecodeRecord(data)
		if err == nil && r.Kind == audit.KindOutcome {
			outcomes[r.IntentIndex] = r
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if o := outcomes[first.AuditIndex]; o == nil || o.SQL.Outcome != "commit" || o.SQL.TransactionID != first.SQLTransactionID {
		t.Errorf("recovered outcome of the first call = %+v, want its commit", o)
	}
	for name, rep := range map[string]*broker.Reply{"replay": replay, "conflict": conflict} {
		o := outcomes[rep.AuditIndex]
		if o == nil || !o.Result.Recovered || o.SQL.Outcome != "none" || o.SQL.TransactionID != "" || o.Result.Status != recoveredNotRun {
			t.Errorf("recovered outcome of the %s = %+v, want outcome none without a transaction", name, o)
		}
	}
	if rep, err := audit.Verify(ctx, env.store, audit.VerifyOptions{}); err != nil || !rep.OK() {
		t.Errorf("verify after recovery: %v %v", err, rep)
	}
}

// TestPruneIdempotency: records older than the retention are deleted, except
// those recovery may still need (committed at or after an intent without an
// outcome), and a retention of 0 keeps everything.
func TestPruneIdempotency(t *testing.T) {
	ctx := t.Context()
	env := newCallEnv(t, false)
	execs := map[string]broker.Executor{"orders": env.ex}
	quiet := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	metrics := newPruneMetrics(reg)
	old := env.create(t, "old")
	// An intent whose outcome was lost: the process died after its commit.
	open, err := env.log.Append(ctx, &audit.Record{
		Kind: audit.KindIntent, CorrelationID: "lost-outcome", IdempotencyKey: "lost-key", Route: "orders.v1.create",
		SQL: &audit.SQL{Server: env.ex.Describe().Server, Database: env.ex.Describe().Database, Outcome: "pending"},
	})
	if err != nil {
		t.Fatal(err)
	}
	recent := env.create(t, "recent")
	keyOf := func(rep *broker.Reply) string {
		t.Helper()
		var rec *audit.Record
		if err := env.log.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if err := env.store.Records(ctx, env.log.Origin(), rep.AuditIndex, rep.AuditIndex+1, func(_ int64, data []byte, _ *tlog.Hash) error {
			rec, err = audit.DecodeRecord(data)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		key, err := env.log.OpenIdempotencyKey(rec.IdempotencyKey) // sealed in the record
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	kept := func(rep *broker.Reply) bool {
		t.Helper()
		_, found, err := env.ex.Lookup(ctx, keyOf(rep))
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	later := time.Now().Add(8 * 24 * time.Hour)

	pruneIdempotency(ctx, env.log, execs, map[string]time.Duration{"orders": 0}, later, quiet, metrics)
	if !kept(old) || !kept(recent) {
		t.Fatal("retention 0 pruned records")
	}
	pruneIdempotency(ctx, env.log, execs, nil, time.Now(), quiet, metrics)
	if !kept(old) || !kept(recent) {
		t.Fatal("records younger than the default retention were pruned")
	}
	pruneIdempotency(ctx, env.log, execs, nil, later, quiet, metrics)
	if kept(old) {
		t.Error("a record older than the retention, committed before every open intent, was kept")
	}
	if !kept(recent) {
		t.Fatal("a record committed after an intent without outcome was pruned; recovery may need it")
	}
	if _, err := env.log.Append(ctx, &audit.Record{
		Kind: audit.KindOutcome, CorrelationID: "lost-outcome", IntentIndex: open, IdempotencyKey: "lost-key",
		Route: "orders.v1.create", SQL: &audit.SQL{Outcome: "rollback"}, Result: &audit.Result{Status: "unavailable", Recovered: true},
	}); err != nil {
		t.Fatal(err)
	}
	pruneIdempotency(ctx, env.log, execs, map[string]time.Duration{"orders": defaultIdempotencyRetention}, later, quiet, metrics)
	if kept(recent) {
		t.Error("once the intent had its outcome, the old record was still kept")
	}
	if got := testutil.ToFloat64(metrics.pruned.WithLabelValues("orders")); got != 2 {
		t.Errorf("sqlgate_idempotency_pruned_total{database=orders} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(metrics.errors.WithLabelValues("orders")); got != 0 {
		t.Errorf("sqlgate_idempotency_prune_errors_total{database=orders} = %v, want 0", got)
	}
}
