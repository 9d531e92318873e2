package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/internal/testnet"
)

// lookupFails is an executor whose lookups fail with *err when set; it has
// no Close, so closing it leaves the database it wraps open.
type lookupFails struct {
	broker.Executor
	err *error
}

func (e lookupFails) Lookup(ctx context.Context, key string) (*broker.Result, bool, error) {
	if *e.err != nil {
		return nil, false, *e.err
	}
	return e.Executor.Lookup(ctx, key)
}

// movedServer describes another server than the executor it wraps.
type movedServer struct{ broker.Executor }

func (e movedServer) Describe() broker.DatabaseInfo {
	d := e.Executor.Describe()
	d.Server = "elsewhere"
	return d
}

// stubExecutor answers every call with an empty result.
type stubExecutor struct{ info broker.DatabaseInfo }

func (stubExecutor) Execute(context.Context, *broker.Call) (*broker.Result, error) {
	return &broker.Result{}, nil
}

func (stubExecutor) Lookup(context.Context, string) (*broker.Result, bool, error) {
	return nil, false, nil
}

func (s stubExecutor) Describe() broker.DatabaseInfo { return s.info }

// demoCatalog is the demo route catalog.
func demoCatalog(t *testing.T) *route.Catalog {
	t.Helper()
	c, err := route.Parse(demoRoutes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// outcomesOf returns the outcome records of log by intent index.
func outcomesOf(t *testing.T, env *callEnv) map[int64]*audit.Record {
	t.Helper()
	if err := env.log.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	out := map[int64]*audit.Record{}
	if err := env.store.Records(t.Context(), env.log.Origin(), 0, env.log.Size(), func(_ int64, data []byte, _ *tlog.Hash) error {
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

// TestLazyDBRecovery: the crash recovery of a database unreachable at start
// is deferred, not skipped. The start's recovery leaves its intents without
// an outcome (it failed the start, or would have recorded them as unknown);
// its calls are refused as unavailable until it opened and its own recovery
// wrote the outcomes; a recovery that fails leaves it pending (fail
// closed); intents of this run are the calls' own and are left alone.
func TestLazyDBRecovery(t *testing.T) {
	ctx := t.Context()
	env := newCallEnv(t, true)
	crashed := env.create(t, "crash") // committed; its outcome was lost
	reachable, moved := false, false
	var lookupErr error
	l := newLazyDB("orders", env.ex.Describe(), func(context.Context) (*openedDB, error) {
		switch {
		case !reachable:
			return nil, fmt.Errorf("%w: connection refused", broker.ErrUnavailable)
		case moved:
			return newOpenedDB(movedServer{lookupFails{env.ex, &lookupErr}}, nil), nil
		}
		return newOpenedDB(lookupFails{env.ex, &lookupErr}, nil), nil
	}, fmt.Errorf("%w: connection refused", broker.ErrUnavailable))
	ex := l.executor(true)
	execs := map[string]broker.Executor{"orders": ex}
	quiet := slog.New(slog.DiscardHandler)

	if err := recoverIntents(ctx, env.log, execs, quiet); err != nil {
		t.Fatalf("the start's recovery with a pending database: %v", err)
	}
	if o := outcomesOf(t, env)[crashed.AuditIndex]; o != nil {
		t.Fatalf("the start's recovery wrote an outcome for the pending database's intent: %+v", o)
	}
	// A call of this run, still running when the database opens: its
	// outcome is its own to write.
	running, err := env.log.Append(ctx, &audit.Record{
		Kind: audit.KindIntent, CorrelationID: "running", IdempotencyKey: "running-key", Route: "orders.v1.create",
		SQL: &audit.SQL{Server: ex.Describe().Server, Database: ex.Describe().Database, Outcome: "pending"},
	})
	if err != nil {
		t.Fatal(err)
	}
	lenv := lazyEnv{audit: env.log, executors: execs, catalog: demoCatalog(t), boundary: running, log: quiet}

	refused := func(when string) {
		t.Helper()
		if _, err := ex.Execute(ctx, &broker.Call{}); !errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("%s: Execute = %v, want unavailable", when, err)
		}
		if _, err := ex.(broker.BatchExecutor).ExecuteBatch(ctx, []*broker.Call{{}}); !errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("%s: ExecuteBatch = %v, want unavailable", when, err)
		}
		if _, err := ex.(broker.Pruner).Prune(ctx, time.Now()); !errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("%s: Prune = %v, want unavailable", when, err)
		}
	}
	refused("pending")
	if err := l.attempt(ctx, lenv); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("attempt while unreachable = %v", err)
	}
	refused("still unreachable")

	reachable, moved = true, true
	if err := l.attempt(ctx, lenv); err == nil || !strings.Contains(err.Error(), "restart sqlgated") {
		t.Fatalf("attempt on another server = %v, want refused", err)
	}
	refused("on another server")

	moved, lookupErr = false, errors.New("lookup failed")
	if err := l.attempt(ctx, lenv); err == nil || !strings.Contains(err.Error(), "lookup failed") {
		t.Fatalf("attempt whose recovery fails = %v", err)
	}
	refused("recovery failed")
	if o := outcomesOf(t, env)[crashed.AuditIndex]; o != nil {
		t.Fatalf("a failed recovery wrote an outcome: %+v", o)
	}

	lookupErr = nil
	if err := l.attempt(ctx, lenv); err != nil {
		t.Fatalf("attempt: %v", err)
	}
	outcomes := outcomesOf(t, env)
	o := outcomes[crashed.AuditIndex]
	if o == nil || !o.Result.Recovered || o.SQL.Outcome != "commit" || o.SQL.TransactionID != crashed.SQLTransactionID {
		t.Fatalf("recovered outcome of the crashed call = %+v, want its commit", o)
	}
	if o := outcomes[running]; o != nil {
		t.Errorf("the recovery wrote an outcome for a call of this run: %+v", o)
	}
	key, err := env.log.OpenIdempotencyKey(o.IdempotencyKey) // sealed in the record
	if err != nil {
		t.Fatal(err)
	}
	if _, found, err := ex.Lookup(ctx, key); err != nil || !found {
		t.Errorf("Lookup once open = %v, %v, want the database's record", found, err)
	}
	if _, err := ex.(broker.Pruner).Prune(ctx, time.Now().Add(-time.Hour)); err != nil {
		t.Errorf("Prune once open: %v", err)
	}
	if rep, err := audit.Verify(ctx, env.store, audit.VerifyOptions{}); err != nil || !rep.OK() {
		t.Errorf("verify after recovery: %v %v", err, rep)
	}
}

// TestLazyDBRetries: the background loop waits 1s, then twice as long
// after each failed attempt up to 30s, and stops once the database opened.
func TestLazyDBRetries(t *testing.T) {
	fails := 8
	info := broker.DatabaseInfo{Dialect: "postgres", Server: "db", Database: "later"}
	l := newLazyDB("later", info, func(context.Context) (*openedDB, error) {
		if fails > 0 {
			fails--
			return nil, fmt.Errorf("%w: attempt %d", broker.ErrUnavailable, fails)
		}
		return newOpenedDB(stubExecutor{info}, nil), nil
	}, nil)
	var waits []time.Duration
	env := lazyEnv{
		audit: newCallEnv(t, false).log, executors: map[string]broker.Executor{"later": l}, catalog: demoCatalog(t), log: slog.New(slog.DiscardHandler),
		wait: func(_ context.Context, d time.Duration) error {
			waits = append(waits, d)
			return nil
		},
	}
	l.run(t.Context(), env)
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("waits = %v, want %v", waits, want)
	}
	if l.pending() {
		t.Error("still pending after a successful attempt")
	}
}

// fakeIssuer records the logins it was asked to revoke.
type fakeIssuer struct{ revoked []string }

func (f *fakeIssuer) CreateLogin(context.Context, broker.LoginSpec) error { return nil }
func (f *fakeIssuer) RenewLogin(context.Context, broker.LoginSpec) error  { return nil }
func (f *fakeIssuer) RevokeLogin(_ context.Context, s broker.LoginSpec) error {
	f.revoked = append(f.revoked, s.Username)
	return nil
}
func (f *fakeIssuer) ClientDSN(u string) string { return "postgres://" + u + "@db/app" }

// TestLazyIssuer: SQL logins on a pending database are refused as
// unavailable; the undo of a refused creation has nothing to remove (the
// lease ends failed, not revoking), while any other revocation waits for
// the database. Once open, the database's issuer answers.
func TestLazyIssuer(t *testing.T) {
	ctx := t.Context()
	l := newLazyDB("app", broker.DatabaseInfo{Dialect: "postgres", Server: "db", Database: "app"}, nil, nil)
	iss := lazyIssuer{l}
	if err := iss.CreateLogin(ctx, broker.LoginSpec{Username: "u_new"}); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("CreateLogin while pending = %v", err)
	}
	if err := iss.RenewLogin(ctx, broker.LoginSpec{Username: "u_old"}); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("RenewLogin while pending = %v", err)
	}
	if err := iss.RevokeLogin(ctx, broker.LoginSpec{Username: "u_new"}); err != nil {
		t.Errorf("undo of a refused creation = %v, want nothing to remove", err)
	}
	if err := iss.RevokeLogin(ctx, broker.LoginSpec{Username: "u_old"}); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("RevokeLogin of another login while pending = %v, want unavailable", err)
	}
	if err := iss.RevokeLogin(ctx, broker.LoginSpec{Username: "u_new"}); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("a second RevokeLogin of the refused login = %v, want unavailable (only its undo is spared)", err)
	}
	inner := &fakeIssuer{}
	l.cur.Store(newOpenedDB(stubExecutor{}, inner))
	if err := iss.RevokeLogin(ctx, broker.LoginSpec{Username: "u_old"}); err != nil || len(inner.revoked) != 1 {
		t.Errorf("RevokeLogin once open = %v, revoked %v", err, inner.revoked)
	}
	if got := iss.ClientDSN("u_x"); got != "postgres://u_x@db/app" {
		t.Errorf("ClientDSN once open = %q", got)
	}
}

// TestDatabaseOpenMetric: sqlgate_database_open is 0 for a pending
// database and 1 for the others.
func TestDatabaseOpenMetric(t *testing.T) {
	pending := newLazyDB("later", broker.DatabaseInfo{}, nil, nil)
	opened := newLazyDB("back", broker.DatabaseInfo{}, nil, nil)
	opened.cur.Store(newOpenedDB(stubExecutor{}, nil))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(databaseCollector{map[string]broker.Executor{"later": pending.executor(true), "back": opened, "orders": stubExecutor{}}})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got[f.GetName()+"/"+m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"sqlgate_database_open/later": 0, "sqlgate_database_open/back": 1, "sqlgate_database_open/orders": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("metrics = %v, want %v", got, want)
	}
}

// ledgerRoute is a route on the PostgreSQL database ledger.
const ledgerRoute = `
  - subject: ledger.v1.next
    description: The number after n.
    database: ledger
    statement:
      name: next
      sql: SELECT CAST(:n AS integer) + 1 AS next
    timeout: 5s
    params:
      type: object
      properties:
        n: {type: integer, minimum: 0, maximum: 1000}
      required: [n]
`

// TestServeDatabaseUnreachableAtStart: serve starts while one of its
// databases (PostgreSQL, behind a port nothing listens on yet) cannot be
// reached: /readyz is ready, a call to that database answers unavailable, a
// call to the other (SQLite) works; once the database can be reached its
// calls succeed without a restart. It exited at start instead, taking every
// route of every database down with it.
func TestServeDatabaseUnreachableAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("serve end to end: skipped with -short")
	}
	admin := os.Getenv("SQLGATE_TEST_POSTGRES_DSN")
	if admin == "" {
		t.Skip("SQLGATE_TEST_POSTGRES_DSN is not set: PostgreSQL tests skipped (set it to a server where the user may create databases)")
	}
	ctx := t.Context()
	base, err := pgconn.ParseConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	dbName := "sqlgate_lazy_" + hex.EncodeToString(b)
	ac, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Exec(ctx, "CREATE DATABASE "+dbName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = ac.Exec(context.Background(), "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
		_ = ac.Close(context.Background())
	})
	// The database is reached through a port nothing listens on until the
	// test starts a proxy there.
	proxyAddr := testnet.FreeAddr(t)
	host, port, _ := net.SplitHostPort(proxyAddr)
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "ledger.dsn")
	dsn := fmt.Sprintf("host=%s port=%s dbname=%s user=%s password='%s' sslmode=disable", host, port, dbName, base.User, base.Password)
	if err := os.WriteFile(dsnFile, []byte(dsn), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := createDemoDB(ctx, filepath.Join(dir, "orders.db")); err != nil {
		t.Fatal(err)
	}
	databases := fmt.Sprintf(`  - sqlite:
      name: orders
      path: %[1]s/orders.db
  - postgres:
      name: ledger
      dsnFile: %[2]s
      createIdempotencyTable: true
      maxConns: 4`, dir, dsnFile)
	allowLedger := func(data string) string {
		return strings.Replace(data, "    routes:\n", "    routes:\n      ledger.v1.next:\n        groups: [sales]\n", 1)
	}
	st := startServe(t, append(append([]byte{}, demoRoutes...), ledgerRoute...), databases, allowLedger)
	alice, _ := st.s.login(t, "alice")
	nc, _, _ := st.s.natsUser(t, alice, 0)

	if env, _ := request(t, nc, "ledger.v1.next", `{"n":1}`, nil); env.OK || env.Error == nil || env.Error.Code != broker.CodeUnavailable {
		t.Fatalf("call to the unreachable database: %+v, want unavailable", env)
	}
	if env, _ := request(t, nc, "orders.v1.create", `{"customer":"other db","amount":5}`, nil); !env.OK {
		t.Fatalf("call to the other database: %+v", env)
	}
	if got := databaseOpen(t, st.base, "ledger"); got != "0" {
		t.Errorf("sqlgate_database_open{database=ledger} = %s while unreachable, want 0", got)
	}

	proxy(t, proxyAddr, net.JoinHostPort(base.Host, fmt.Sprint(base.Port)))
	deadline := time.Now().Add(2 * openBackoffLast)
	for {
		env, _ := request(t, nc, "ledger.v1.next", `{"n":1}`, nil)
		if env.OK {
			if r := rows(t, env); len(r) != 1 || fmt.Sprint(r[0]["next"]) != "2" {
				t.Errorf("ledger.v1.next = %v", r)
			}
			break
		}
		if env.Error == nil || env.Error.Code != broker.CodeUnavailable {
			t.Fatalf("call while the database opens: %+v, want unavailable until it is open", env)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database did not open once reachable: %+v", env)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := databaseOpen(t, st.base, "ledger"); got != "1" {
		t.Errorf("sqlgate_database_open{database=ledger} = %s once open, want 1", got)
	}
}

// databaseOpen returns the value of sqlgate_database_open for database on
// the instance's /metrics.
func databaseOpen(t *testing.T, base, database string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	prefix := `sqlgate_database_open{database="` + database + `"} `
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	return "(missing)"
}

// proxy forwards the connections made to addr to target until the test
// ends.
func proxy(t *testing.T, addr, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() {
					_, _ = io.Copy(u, c)
					u.Close()
				}()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
}

// TestLazyDBCloseStopsRetries: closing a pending database (the shutdown,
// or a start that failed later) ends its retry loop.
func TestLazyDBCloseStopsRetries(t *testing.T) {
	l := newLazyDB("later", broker.DatabaseInfo{}, func(context.Context) (*openedDB, error) {
		return nil, fmt.Errorf("%w: connection refused", broker.ErrUnavailable)
	}, nil)
	waits := 0
	l.run(t.Context(), lazyEnv{log: slog.New(slog.DiscardHandler), wait: func(ctx context.Context, _ time.Duration) error {
		waits++
		switch waits {
		case 2:
			_ = l.Close()
		case 10:
			return errors.New("still retrying after Close")
		}
		return ctx.Err()
	}})
	if waits != 2 {
		t.Errorf("the loop waited %d times, want 2 (it ends once closed)", waits)
	}
}

// TestPendingPostgresBatchesOnlyWhatItCan: a PostgreSQL database that is
// unreachable at start tells the broker, as an open one does, that it never
// batches statement routes, so such a route gets no batcher (its calls would
// queue behind each other for nothing).
func TestPendingPostgresBatchesOnlyWhatItCan(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now: the database is pending
	t.Setenv("SQLGATE_TEST_PENDING_DSN", "postgres://broker@"+addr+"/orders?sslmode=disable&connect_timeout=1")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, ex, _, err := openDatabase(ctx, DatabaseConfig{Postgres: &postgres.Config{Name: "orders", DSNEnv: "SQLGATE_TEST_PENDING_DSN"}}, "sg_", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("openDatabase: %v (want the database pending)", err)
	}
	lz := lazyOf(ex)
	if lz == nil {
		t.Fatalf("executor %T is not pending", ex)
	}
	defer lz.Close()
	if _, ok := ex.(broker.BatchExecutor); !ok {
		t.Fatal("a pending PostgreSQL database does not batch at all")
	}
	rb, ok := ex.(broker.RouteBatcher)
	if !ok {
		t.Fatal("a pending PostgreSQL database cannot tell which routes it batches")
	}
	if rb.BatchesRoute(&route.Route{Kind: route.StatementKind}) {
		t.Error("a statement route would be batched: PostgreSQL never batches statements")
	}
	if !rb.BatchesRoute(&route.Route{Kind: route.Procedure}) {
		t.Error("a procedure route would not be batched")
	}
}
