package main

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/broker/sqlite"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// storeFailsAtCommit is a target database whose calls, as they commit,
// find the audit store refusing writes: the control database's sessions
// were terminated, or a lock holds the audit table past the write timeout.
// The call's intent is durable, its outcome is not.
type storeFailsAtCommit struct {
	*sqlite.Executor
	store *audittest.Store
}

func (e storeFailsAtCommit) Execute(ctx context.Context, c *broker.Call) (*broker.Result, error) {
	res, err := e.Executor.Execute(ctx, c)
	e.store.FailWrites(errors.New("sqlstore write: timeout"))
	return res, err
}

// strandedEnv is a broker whose one call commits while the audit store
// refuses writes, and the app around its audit log that recovers stranded
// outcomes.
type strandedEnv struct {
	store *audittest.Store
	log   *audit.Log
	app   *app
	rep   *broker.Reply // the committed call whose outcome was not written
}

func newStrandedEnv(t *testing.T) *strandedEnv {
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
	store := audittest.NewStore()
	log, err := audit.Open(ctx, store, audittest.Config(t, "test/stranded"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(dir, "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
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
	svc, err := broker.New(broker.Config{
		Catalog: catalog, Databases: map[string]broker.Executor{"orders": storeFailsAtCommit{ex, store}},
		Authorizer: engine, Recorder: log, Registry: registry,
		UsersAccount: "AUSERS", SigningKeys: []string{"ASIGNER"},
	})
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	key, _ := kp.PublicKey()
	alice := identity.Principal{Issuer: "https://idp", Subject: "alice", Groups: []string{"sales"}}
	if err := registry.Put(ctx, broker.Issuance{
		UserKey: key, Principal: alice, SigningKey: "ASIGNER", Account: "AUSERS",
		IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	a := &app{
		cfg: runtimeConfig{Executors: map[string]broker.Executor{"orders": ex}},
		log: slog.New(slog.DiscardHandler), audit: log, boundary: log.Size(),
	}
	rep := svc.Handle(ctx, &broker.Request{
		Subject: "orders.v1.create", Payload: []byte(`{"customer":"ACME","amount":5}`),
		Caller: broker.Caller{Transport: "nats", Attested: true, UserKey: key, IssuerKey: "ASIGNER", Account: "AUSERS"},
	})
	if !rep.OK {
		t.Fatalf("create: %s", rep.AppendJSON(nil))
	}
	if err := svc.Drain(ctx); err != nil { // its outcome's append has failed
		t.Fatal(err)
	}
	if open, err := log.Unpaired(ctx); err != nil || len(open) != 1 || open[0].Index != rep.AuditIndex {
		t.Fatalf("after the outcome's append failed, unpaired = %+v, %v; want the call's intent", open, err)
	}
	store.FailWrites(nil) // the store is back
	return &strandedEnv{store: store, log: log, app: a, rep: rep}
}

// outcomesOf returns the outcomes stored for the call's intent.
func (e *strandedEnv) outcomesOf(t *testing.T) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	if err := e.store.Records(t.Context(), e.log.Origin(), 0, e.log.Size(), func(_ int64, data []byte, _ *tlog.Hash) error {
		r, err := audit.DecodeRecord(data)
		if err == nil && r.Kind == audit.KindOutcome && r.IntentIndex == e.rep.AuditIndex {
			out = append(out, r)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// requireRecoveredOnce checks that the call's outcome is stored exactly
// once, recovered from the idempotency record as its commit, and that the
// log verifies without an unpaired intent.
func (e *strandedEnv) requireRecoveredOnce(t *testing.T) {
	t.Helper()
	got := e.outcomesOf(t)
	if len(got) != 1 {
		t.Fatalf("%d outcomes of the committed call, want exactly 1", len(got))
	}
	if o := got[0]; !o.Result.Recovered || o.SQL.Outcome != "commit" || o.SQL.TransactionID != e.rep.SQLTransactionID {
		t.Errorf("outcome of the committed call = %+v %+v, want its commit, recovered", o.SQL, o.Result)
	}
	if err := e.log.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(t.Context(), e.store, audit.VerifyOptions{})
	if err != nil || !rep.OK() || rep.Origins[0].Unpaired != 0 || len(rep.Exceptions) != 0 {
		t.Errorf("verify = %v, %+v; want OK, no unpaired intent, no exception", err, rep)
	}
}

// TestStrandedOutcomeRecoveredWhileRunning: a committed call whose outcome
// the audit store refused gets its outcome written while the instance runs,
// without a restart, once the store takes writes again: recovered from the
// idempotency record, and exactly once.
func TestStrandedOutcomeRecoveredWhileRunning(t *testing.T) {
	env := newStrandedEnv(t)
	// The loop's waits, driven by the test: each close of gate runs a pass.
	waits := make(chan chan struct{})
	wait := func(ctx context.Context, _ time.Duration) error {
		gate := make(chan struct{})
		select {
		case waits <- gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		env.app.recoverStrandedLoop(ctx, wait)
	}()
	defer func() { stop(); <-done }()
	gate := <-waits
	pass := func() { close(gate); gate = <-waits }

	// The log reads the store again after a failed write (its own retry
	// does within 5 s, or the next call): only then is it known that the
	// failed outcome was not stored after all.
	if err := env.log.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	pass()
	env.requireRecoveredOnce(t)
	size := env.log.Size()
	pass()
	pass()
	if got := env.log.Size(); got != size {
		t.Errorf("later passes appended %d records, want none", got-size)
	}
	env.requireRecoveredOnce(t)
}

// TestStrandedOutcomeRecoveredAtStop: an instance that stops (scaled down
// for good, no next start) writes the outcome its call could not append.
func TestStrandedOutcomeRecoveredAtStop(t *testing.T) {
	env := newStrandedEnv(t)
	env.app.stopStranded = func() {}
	env.app.recoverStrandedAtStop(t.Context())
	env.requireRecoveredOnce(t)
}
