package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/broker/sqlite"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/policy/rules"
	"github.com/sqlgate/sqlgate/web/api"
)

// The bench routes: one insert per request, the same SQL on both paths.
const (
	benchSQLiteSchema = `CREATE TABLE IF NOT EXISTS orders (
  id INTEGER PRIMARY KEY AUTOINCREMENT, customer TEXT NOT NULL, amount NUMERIC NOT NULL, note TEXT,
  status TEXT NOT NULL DEFAULT 'open', created_by TEXT, correlation_id TEXT)`
	benchSQLiteInsert = `INSERT INTO orders (customer, amount, note) VALUES (:customer, :amount, :note) RETURNING id`
	benchPGSchema     = `CREATE TABLE IF NOT EXISTS orders (
  id bigserial PRIMARY KEY, customer text NOT NULL, amount numeric(12,2) NOT NULL, note text,
  status text NOT NULL DEFAULT 'open', created_by text, correlation_id text);
CREATE OR REPLACE FUNCTION create_order(customer text, amount numeric, note text DEFAULT NULL)
RETURNS TABLE (id bigint) LANGUAGE sql AS $$
  INSERT INTO orders (customer, amount, note, created_by, correlation_id)
  VALUES (customer, amount, note, current_setting('sqlgate.principal', true), current_setting('sqlgate.correlation_id', true))
  RETURNING orders.id $$;`
	benchParams = `
    params:
      type: object
      properties:
        customer: {type: string, maxLength: 200}
        amount: {type: number, exclusiveMinimum: 0}
        note: {type: [string, "null"]}
      required: [customer, amount]`
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr, "sqlgated bench [--duration D] [--rounds N] [--concurrency 1,16,64] [--rate 500] [--durable 1,64] [--sync-batch 32] [--postgres DSN]")
	duration := fs.Duration("duration", 5*time.Second, "measurement time per cell")
	rounds := fs.Int("rounds", 2, "interleaved rounds (bare, sqlgate, bare, sqlgate, ...)")
	levels := fs.String("concurrency", "1,16,64", "client concurrency levels (closed loop)")
	durable := fs.String("durable", "", "client concurrency levels for the durable path (async route: JetStream -> SQL -> answer; closed loop); empty: none")
	rates := fs.String("rate", "", "offered rates in requests per second, comma separated (open loop, at most 64 in flight); empty: none")
	pgDSN := fs.String("postgres", os.Getenv("SQLGATE_TEST_POSTGRES_DSN"), "PostgreSQL server for the PostgreSQL rows (a throwaway database is created); empty: SQLite only")
	workers := fs.Int("workers", 16, "worker pool of both responders")
	batch := fs.Int("batch", 16, "batch of the durable path's async route: calls that may share a transaction (1: each alone)")
	syncBatch := fs.Int("sync-batch", 32, "batch of the sync route of the sqlgate+batch path (group commit of request/reply calls)")
	backendsFlag := fs.String("backends", "sqlite,postgres", "backends to measure (postgres needs a DSN)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run here")
	pathsFlag := fs.String("paths", "bare,sqlgate,sqlgate+batch", "paths to measure (profile one path alone with --paths sqlgate); sqlgate+batch is the request path only")
	controlFlag := fs.String("control", "same", "control database (audit log, registry) for the PostgreSQL rows: same (a PostgreSQL database on the same server) or sqlite (a local file)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var cells []benchCell
	for f := range strings.SplitSeq(*levels, ",") {
		if *levels == "" {
			break // open-loop cells only
		}
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return &usageError{msg: "--concurrency: positive integers, comma separated"}
		}
		cells = append(cells, benchCell{conc: n})
	}
	if *rates != "" {
		for f := range strings.SplitSeq(*rates, ",") {
			r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || r < 1 || r > 1e6 {
				return &usageError{msg: "--rate: requests per second from 1 to 1000000, comma separated"}
			}
			cells = append(cells, benchCell{offered: r})
		}
	}
	if *durable != "" {
		for f := range strings.SplitSeq(*durable, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return &usageError{msg: "--durable: positive integers, comma separated"}
			}
			cells = append(cells, benchCell{conc: n, durable: true})
		}
	}
	if len(cells) == 0 {
		return &usageError{msg: "nothing to measure: give --concurrency, --rate or --durable"}
	}
	if *batch < 1 || *batch > route.MaxBatch || *syncBatch < 1 || *syncBatch > route.MaxBatch {
		return &usageError{msg: fmt.Sprintf("--batch and --sync-batch: 1 to %d", route.MaxBatch)}
	}
	for p := range strings.SplitSeq(*pathsFlag, ",") {
		if !slices.Contains(benchPaths, p) {
			return &usageError{msg: "--paths: " + strings.Join(benchPaths, ", ")}
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	fmt.Fprintf(stdout, "sqlgate bench: %s per cell, %d interleaved rounds, GOMAXPROCS %d\n", *duration, *rounds, runtime.GOMAXPROCS(0))

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var backends []string
	for name := range strings.SplitSeq(*backendsFlag, ",") {
		switch name = strings.TrimSpace(name); {
		case name == "postgres" && *pgDSN == "":
			fmt.Fprintln(stdout, "PostgreSQL rows skipped: set SQLGATE_TEST_POSTGRES_DSN (or --postgres DSN)")
		case name == "sqlite" || name == "postgres":
			backends = append(backends, name)
		default:
			return &usageError{msg: "--backends: sqlite and/or postgres"}
		}
	}
	// A run stopped by a signal prints nothing: the cells cut short would
	// show wrong rates and ratios (and a target verdict) as if measured.
	interrupted := func() error {
		return fmt.Errorf("bench interrupted: no figures are printed for a run cut short: %w", ctx.Err())
	}
	var all []benchRow
	for _, backend := range backends {
		b, err := newBenchEnv(ctx, backend, *pgDSN, *workers, benchBatches{async: *batch, sync: *syncBatch}, *controlFlag == "sqlite", logger)
		switch {
		case err != nil && ctx.Err() != nil:
			return interrupted()
		case err != nil:
			return fmt.Errorf("%s bench setup: %w", backend, err)
		}
		rows, err := b.measure(ctx, cells, *rounds, *duration, strings.Split(*pathsFlag, ","))
		b.close()
		switch {
		case ctx.Err() != nil:
			return interrupted()
		case err != nil:
			return err
		}
		all = append(all, rows...)
	}
	printBenchTable(stdout, all)
	return nil
}

// benchEnv holds both paths for one backend.
type benchEnv struct {
	backend  string
	dir      string
	cleanup  []func()
	bareConn *nats.Conn
	bareSub  *nats.Subscription
	users    []*nats.Conn // sqlgate-path client connections
	userKeys []string     // their user public keys
	bareCli  []*nats.Conn
	app      *app
	rejects  atomic.Int64
}

func (b *benchEnv) close() {
	for _, c := range b.users {
		c.Close()
	}
	for _, c := range b.bareCli {
		c.Close()
	}
	for i := len(b.cleanup) - 1; i >= 0; i-- {
		b.cleanup[i]()
	}
	_ = os.RemoveAll(b.dir) // temporary bench state
}

// benchBatches are the bench routes' batches: the async route's (durable
// path) and the batched sync route's (the sqlgate+batch path).
type benchBatches struct{ async, sync int }

// benchPaths are the paths `--paths` may name.
var benchPaths = []string{"bare", "sqlgate", "sqlgate+batch"}

// onBenchStarted, when set (by a test), runs once the daemon assembly of a
// bench environment has started: the setup steps after it must still undo
// everything when they fail.
var onBenchStarted func()

// benchEvalTimeout, when set (by a test), bounds the bench daemon's policy
// evaluations instead of the default (100 ms), which the race detector on a
// loaded host can exceed: a timed-out decision fails the request closed,
// and the test wants every request answered.
var benchEvalTimeout time.Duration

// newBenchEnv sets up both paths for backend. On an error it undoes what it
// set up; b is a local variable, not the result, so that the cleanup
// functions, which refer to b, still see it after `return nil, err`.
func newBenchEnv(ctx context.Context, backend, pgDSN string, workers int, batch benchBatches, sqliteControl bool, logger *slog.Logger) (_ *benchEnv, err error) {
	dir, err := os.MkdirTemp("", "sqlgate-bench-")
	if err != nil {
		return nil, err
	}
	b := &benchEnv{backend: backend, dir: dir}
	defer func() {
		if err != nil {
			b.close()
		}
	}()

	// Target database and the bare responder's handle on it.
	var routesYAML string
	executors := map[string]broker.Executor{}
	var insert bareExec
	var controlDB *sql.DB
	controlDialect := sqlstore.SQLite
	switch backend {
	case "sqlite":
		path := filepath.Join(dir, "orders.db")
		db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(path))
		if err != nil {
			return nil, err
		}
		if _, err := db.ExecContext(ctx, benchSQLiteSchema); err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(1) // one writer, as the adapter does
		b.cleanup = append(b.cleanup, func() { _ = db.Close() })
		stmt := strings.NewReplacer(":customer", "?", ":amount", "?", ":note", "?").Replace(benchSQLiteInsert)
		insert = func(ctx context.Context, customer string, amount json.Number, note *string) (int64, error) {
			var id int64
			err := db.QueryRowContext(ctx, stmt, customer, string(amount), note).Scan(&id)
			return id, err
		}
		ex, err := sqlite.Open(ctx, sqlite.Config{Name: "orders", Path: path})
		if err != nil {
			return nil, err
		}
		executors["orders"] = ex
		routesYAML = benchRoutes(batch, func(name string) string {
			return "statement:\n      name: " + name + "\n      sql: \"" + benchSQLiteInsert + "\""
		})
		if controlDB, err = sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(dir, "control.db"))); err != nil {
			return nil, err
		}
	case "postgres":
		target, dropTarget, err := throwawayDB(ctx, pgDSN, "sqlgate_bench")
		if err != nil {
			return nil, err
		}
		b.cleanup = append(b.cleanup, dropTarget)
		pool, err := pgxpool.New(ctx, target+poolSuffix(target, 16))
		if err != nil {
			return nil, err
		}
		b.cleanup = append(b.cleanup, pool.Close)
		if _, err := pool.Exec(ctx, benchPGSchema); err != nil {
			return nil, err
		}
		insert = func(ctx context.Context, customer string, amount json.Number, note *string) (int64, error) {
			var id int64
			err := pool.QueryRow(ctx, `SELECT id FROM create_order($1, $2, $3)`, customer, string(amount), note).Scan(&id)
			return id, err
		}
		ex, err := postgres.Open(ctx, postgres.Config{Name: "orders", DSN: target, MaxConns: 16, CreateIdempotencyTable: true})
		if err != nil {
			return nil, err
		}
		executors["orders"] = ex
		routesYAML = benchRoutes(batch, func(string) string {
			return "procedure: create_order\n    sqlTypes: {amount: \"decimal(12,2)\"}"
		})
		if sqliteControl {
			if controlDB, err = sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(dir, "control.db"))); err != nil {
				return nil, err
			}
			break
		}
		control, dropControl, err := throwawayDB(ctx, pgDSN, "sqlgate_bench_control")
		if err != nil {
			return nil, err
		}
		b.cleanup = append(b.cleanup, dropControl)
		if controlDB, err = sql.Open("pgx", control); err != nil {
			return nil, err
		}
		controlDialect = sqlstore.Postgres
	default:
		return nil, fmt.Errorf("unknown backend %q", backend)
	}
	catalog, err := route.Parse([]byte(routesYAML))
	if err != nil {
		return nil, err
	}

	// Bare path: a plain NATS server and a plain responder with a worker pool.
	bare, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: filepath.Join(dir, "bare-js"),
	})
	if err != nil {
		return nil, err
	}
	go bare.Start()
	if !bare.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("bare nats server did not start")
	}
	b.cleanup = append(b.cleanup, bare.Shutdown)
	if b.bareConn, err = nats.Connect(bare.ClientURL()); err != nil {
		return nil, err
	}
	b.cleanup = append(b.cleanup, b.bareConn.Close)
	if err := startBareResponder(b.bareConn, workers, insert); err != nil {
		return nil, err
	}
	stopConsumer, err := startBareConsumer(ctx, b.bareConn, workers, insert)
	if err != nil {
		return nil, err
	}
	b.cleanup = append(b.cleanup, stopConsumer)

	// sqlgate path: the real daemon assembly over an operator-mode server.
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		return nil, err
	}
	ns, err := startEmbeddedNATS(keys, "127.0.0.1", -1, filepath.Join(dir, "nats"), catalog)
	if err != nil {
		return nil, err
	}
	b.cleanup = append(b.cleanup, ns.Shutdown)
	policyDir := filepath.Join(dir, "policy")
	if err := os.CopyFS(policyDir, rules.FS); err != nil {
		return nil, err
	}
	if err := grantBenchRoute(policyDir); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	issuer := "http://" + ln.Addr().String() + "/idp"
	idp, err := devidp.New(devidp.WithIssuer(issuer), devidp.WithUsers(devidp.User{Username: "bench", Password: randomSecret(12), Groups: []string{"sales"}}))
	if err != nil {
		return nil, err
	}
	skey, _, err := audit.GenerateKey(rand.Reader, "sqlgate-bench/"+backend)
	if err != nil {
		return nil, err
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	b.app, err = start(ctx, runtimeConfig{
		Instance: "bench", Logger: logger, Listener: ln, Mounts: map[string]http.Handler{"/idp/": idp},
		AuditorGroups: []string{"auditors"}, Catalog: catalog, Executors: executors,
		ControlDB: controlDB, ControlDialect: controlDialect,
		Audit: audit.Config{
			Origin: "sqlgate-bench/" + backend, Instance: "bench", Signer: signer,
			ParamKey: audit.ParamKey{ID: "bench", Secret: []byte(randomSecret(32))},
		},
		PolicyDir: policyDir, EvalTimout: benchEvalTimeout,
		Identity: oidc.Config{Issuers: []oidc.IssuerConfig{{Name: "dev", Issuer: issuer, Audiences: []string{"sqlgate"}}}},
		NATSKeys: keys, NATSURL: ns.ClientURL(), Discovery: api.Discovery{NATSURL: ns.ClientURL()},
	})
	if err != nil {
		return nil, err
	}
	b.cleanup = append(b.cleanup, func() { b.app.shutdown(context.Background()) })
	if onBenchStarted != nil {
		onBenchStarted()
	}
	b.users, b.userKeys, err = benchUsers(ctx, b.app, ns.ClientURL(), issuer, 8)
	if err != nil {
		return nil, err
	}
	for range 8 {
		c, err := nats.Connect(bare.ClientURL())
		if err != nil {
			return nil, err
		}
		b.bareCli = append(b.bareCli, c)
	}
	return b, nil
}

// benchRoutes is the bench catalog: the same target (the YAML of target)
// as a sync route, as a sync route with batch and as an async (durable)
// one.
func benchRoutes(batch benchBatches, target func(name string) string) string {
	var b strings.Builder
	b.WriteString("routes:\n")
	for _, r := range []struct{ subject, mode, name string }{
		{benchSubject, "sync", "create_order"},
		{benchBatchSubject, "sync\n    batch: " + strconv.Itoa(batch.sync), "create_order_batched"},
		{benchAsyncSubject, "async\n    batch: " + strconv.Itoa(batch.async), "import_order"},
	} {
		fmt.Fprintf(&b, "  - subject: %s\n    database: orders\n    mode: %s\n    %s%s\n", r.subject, r.mode, target(r.name), benchParams)
	}
	return b.String()
}

// grantBenchRoute grants the bench routes to sales with a data file that
// OPA merges into the demo configuration (data.sqlgate.config.routes).
func grantBenchRoute(dir string) error {
	grant := `{"sqlgate":{"config":{"routes":{"` + benchSubject + `":{"groups":["sales"]},"` + benchBatchSubject + `":{"groups":["sales"]},"` + benchAsyncSubject + `":{"groups":["sales"]}}}}}`
	return os.WriteFile(filepath.Join(dir, "bench.json"), []byte(grant), 0o600)
}

// benchUsers mints n NATS credentials for the bench user through the
// broker and connects with them; it returns the connections and their user
// keys.
func benchUsers(ctx context.Context, a *app, natsURL, issuer string, n int) ([]*nats.Conn, []string, error) {
	p := identity.Principal{Issuer: issuer, Subject: "bench", Email: "bench@example.com", Groups: []string{"sales"}, Expiry: time.Now().Add(time.Hour)}
	var (
		conns []*nats.Conn
		keys  []string
	)
	for range n {
		kp, err := nkeys.CreateUser()
		if err != nil {
			return conns, nil, err
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		cred, err := a.service.IssueNATS(ctx, broker.NATSRequest{Principal: p, UserKey: pub, Via: "creds"})
		if err != nil {
			return conns, nil, err
		}
		nc, err := nats.Connect(natsURL, nats.UserJWTAndSeed(cred.JWT, string(seed)), nats.CustomInboxPrefix(cred.InboxPrefix))
		if err != nil {
			return conns, nil, err
		}
		conns = append(conns, nc)
		keys = append(keys, pub)
	}
	return conns, keys, nil
}

// startBareResponder is the bare path: decode, run the statement, reply.
func startBareResponder(nc *nats.Conn, workers int, exec bareExec) error {
	msgs := make(chan *nats.Msg, 1024)
	if _, err := nc.QueueSubscribe(benchSubject, "bare", func(m *nats.Msg) { msgs <- m }); err != nil {
		return err
	}
	for range workers {
		go func() {
			for m := range msgs {
				id, err := exec.insert(context.Background(), m.Data)
				if err != nil {
					_ = m.Respond([]byte(`{"ok":false}`))
					continue
				}
				_ = m.Respond([]byte(`{"ok":true,"result":{"rows":[{"id":` + strconv.FormatInt(id, 10) + `}]}}`))
			}
		}()
	}
	return nc.Flush()
}

// bareExec runs the bench insert on the bare paths and returns the new id.
type bareExec func(ctx context.Context, customer string, amount json.Number, note *string) (int64, error)

// insert decodes a bench payload and runs the insert.
func (exec bareExec) insert(ctx context.Context, payload []byte) (int64, error) {
	var p struct {
		Customer string      `json:"customer"`
		Amount   json.Number `json:"amount"`
		Note     *string     `json:"note"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return 0, err
	}
	return exec(ctx, p.Customer, p.Amount, p.Note)
}

type benchRow struct {
	backend, path string
	conc          int     // closed-loop clients; 0 for an open-loop row
	offered       float64 // open loop: offered requests per second; 0 for a closed-loop row
	durable       bool    // the durable (async) path, closed loop
	reqs          int64
	rate          float64
	p50, p99      time.Duration
	errors        int64
	firstErr      error         // the first failed request's error, when errors > 0
	cpu           time.Duration // process CPU per request
	dbCPU         time.Duration // PostgreSQL server CPU per request
	txs           int           // distinct SQL transactions of the replies (sqlgate paths; 0 for bare)
}

// benchCell is one load shape: c closed-loop clients, or an offered rate
// (open loop, at most openMaxInFlight outstanding); durable cells are
// closed loop over the durable (async) path.
type benchCell struct {
	conc    int
	offered float64
	durable bool
}

// openMaxInFlight caps the outstanding requests of an open-loop cell: the
// highest concurrency of the closed-loop cells.
const openMaxInFlight = 64

func (c benchCell) String() string {
	switch {
	case c.offered > 0:
		return strconv.FormatFloat(c.offered, 'f', -1, 64) + "rps"
	case c.durable:
		return "d" + strconv.Itoa(c.conc)
	}
	return strconv.Itoa(c.conc)
}

// run loads one path with one cell's shape.
func (b *benchEnv) run(ctx context.Context, cell benchCell, path string, d time.Duration, tag string, txs *txSet) ([]time.Duration, cellErrors, error) {
	if cell.durable {
		return b.loadDurable(ctx, path, cell.conc, d, tag)
	}
	conns, subject := b.bareCli, benchSubject
	switch path {
	case "sqlgate":
		conns = b.users
	case "sqlgate+batch":
		conns, subject = b.users, benchBatchSubject
	}
	do := func(i int, n int64) error {
		tx, err := benchRequest(conns[i%len(conns)], subject, tag, n)
		if err == nil && tx != "" {
			txs.add(tx)
		}
		return err
	}
	if cell.offered > 0 {
		return loadOpen(ctx, cell.offered, openMaxInFlight, d, tag, do)
	}
	return load(ctx, cell.conc, d, tag, do)
}

// txSet collects the distinct SQL transaction ids of a path's replies.
type txSet struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

func (s *txSet) add(id string) {
	s.mu.Lock()
	s.ids[id] = struct{}{}
	s.mu.Unlock()
}

// cellPaths are the paths measured for a cell: sqlgate+batch is a request
// path (the durable path has its own batch).
func cellPaths(cell benchCell, paths []string) []string {
	if !cell.durable {
		return paths
	}
	return slices.DeleteFunc(slices.Clone(paths), func(p string) bool { return p == "sqlgate+batch" })
}

func (b *benchEnv) measure(ctx context.Context, cells []benchCell, rounds int, d time.Duration, paths []string) ([]benchRow, error) {
	agg := map[string]*benchAgg{}
	for r := range rounds {
		for _, cell := range cells {
			for _, path := range cellPaths(cell, paths) {
				k := path + "/" + cell.String()
				if agg[k] == nil {
					agg[k] = &benchAgg{txs: txSet{ids: map[string]struct{}{}}}
				}
				cpu0, db0 := processCPU(), postgresCPU()
				lat, errs, err := b.run(ctx, cell, path, d, fmt.Sprintf("%s-%d-%s", path, r, cell), &agg[k].txs)
				cpu, dbCPU := processCPU()-cpu0, postgresCPU()-db0
				if err != nil {
					return nil, err
				}
				agg[k].lat = append(agg[k].lat, lat...)
				agg[k].errs.add(errs)
				agg[k].dur += d
				agg[k].cpu += cpu
				agg[k].dbCPU += dbCPU
			}
		}
	}
	var out []benchRow
	for _, cell := range cells {
		for _, path := range benchPaths {
			a := agg[path+"/"+cell.String()]
			switch {
			case a != nil:
			case path == "sqlgate+batch":
				continue // not requested, or not a request path cell
			default:
				a = &benchAgg{dur: 1} // bare and sqlgate always have a row
			}
			slices.Sort(a.lat)
			out = append(out, benchRow{
				backend: b.backend, path: path, conc: cell.conc, offered: cell.offered, durable: cell.durable, reqs: int64(len(a.lat)),
				rate: float64(len(a.lat)) / a.dur.Seconds(), p50: pct(a.lat, 0.50), p99: pct(a.lat, 0.99), errors: a.errs.n, firstErr: a.errs.first,
				cpu: a.cpu / time.Duration(max(len(a.lat), 1)), dbCPU: a.dbCPU / time.Duration(max(len(a.lat), 1)),
				txs: len(a.txs.ids),
			})
		}
	}
	return out, nil
}

type benchAgg struct {
	lat  []time.Duration
	errs cellErrors
	dur  time.Duration
	cpu  time.Duration
	txs  txSet // the SQL transactions the sqlgate paths' replies named
	// dbCPU is the PostgreSQL server processes' CPU time (Linux /proc; 0
	// elsewhere or for SQLite, which runs in this process).
	dbCPU time.Duration
}

// postgresCPU sums the CPU time of the machine's postgres processes (the
// server under test runs here); 0 when /proc is not readable.
func postgresCPU() time.Duration {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks int64
	for _, d := range dirs {
		if d.Name()[0] < '0' || d.Name()[0] > '9' {
			continue
		}
		comm, err := os.ReadFile("/proc/" + d.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		stat, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: utime, stime, cutime and
		// cstime are the 12th to 15th. The children's times count the
		// backends that exited (the postmaster reaps them): without them,
		// a connection closed during a cell would take its CPU time along.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 14 {
			for _, v := range f[11:15] {
				n, _ := strconv.ParseInt(v, 10, 64)
				ticks += n
			}
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// processCPU is this process's user+system CPU time: the client, both NATS
// servers and the responders all run here, so per request it shows what
// each path costs apart from the database server.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// load runs c closed-loop clients for d and returns the latency of every
// successful request. Client i sends its requests with do(i, n), n
// numbering the cell's requests.
func load(ctx context.Context, c int, d time.Duration, tag string, do func(i int, n int64) error) ([]time.Duration, cellErrors, error) {
	var (
		mu   sync.Mutex
		all  []time.Duration
		errs benchErrors
		wg   sync.WaitGroup
		seq  atomic.Int64
	)
	deadline := time.Now().Add(d)
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if !errs.check(do(i, seq.Add(1))) {
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errs.result(tag, all)
}

// loadOpen offers rate requests per second for d, open loop: request i is
// due at start + i/rate and is sent then (with do(i, i)) whether or not the
// earlier ones were answered, with at most maxInFlight outstanding. Latency
// is measured from the due time, so a path that falls behind shows its
// queueing instead of hiding it (no coordinated omission).
func loadOpen(ctx context.Context, rate float64, maxInFlight int, d time.Duration, tag string, do func(i int, n int64) error) ([]time.Duration, cellErrors, error) {
	var (
		mu   sync.Mutex
		all  []time.Duration
		errs benchErrors
		wg   sync.WaitGroup
	)
	slots := make(chan struct{}, maxInFlight)
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := int64(0); ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(due))
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			if !errs.check(do(int(i), i)) {
				return
			}
			el := time.Since(due)
			mu.Lock()
			all = append(all, el)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errs.result(tag, all)
}

// benchRequest sends request n of a cell (its own customer and
// Idempotency-Key) and checks that the reply is a success.
func benchRequest(nc *nats.Conn, subject, tag string, n int64) (txid string, err error) {
	m := nats.NewMsg(subject)
	m.Data = []byte(`{"customer":"` + tag + `-` + strconv.FormatInt(n, 10) + `","amount":10.50}`)
	m.Header.Set("Idempotency-Key", tag+"-"+strconv.FormatInt(n, 10))
	reply, err := nc.RequestMsg(m, 10*time.Second)
	switch {
	case err != nil:
		return "", err
	case len(reply.Data) < 10 || string(reply.Data[:10]) != `{"ok":true`:
		return "", errors.New(string(reply.Data))
	}
	const key = `"sql_transaction_id":"`
	if i := bytes.Index(reply.Data, []byte(key)); i >= 0 {
		rest := reply.Data[i+len(key):]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			txid = string(rest[:j])
		}
	}
	return txid, nil
}

// benchErrors counts the failed requests of a cell and keeps the first.
type benchErrors struct {
	n     atomic.Int64
	first atomic.Value
}

// check records err and reports whether the request succeeded.
func (e *benchErrors) check(err error) bool {
	if err == nil {
		return true
	}
	if e.n.Add(1) == 1 {
		e.first.Store(err)
	}
	return false
}

// result returns a cell's latencies and errors; a cell in which every
// request failed is an error.
func (e *benchErrors) result(tag string, lat []time.Duration) ([]time.Duration, cellErrors, error) {
	ce := cellErrors{n: e.n.Load()}
	if first, ok := e.first.Load().(error); ok {
		ce.first = first
	}
	if ce.n > 0 && len(lat) == 0 {
		return nil, ce, fmt.Errorf("%s: every request failed: %w", tag, ce.first)
	}
	return lat, ce, nil
}

// cellErrors are the failed requests of a cell: how many, and the first.
type cellErrors struct {
	n     int64
	first error
}

// add counts o's errors in e, keeping e's first error if it has one.
func (e *cellErrors) add(o cellErrors) {
	e.n += o.n
	if e.first == nil {
		e.first = o.first
	}
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func printBenchTable(w io.Writer, rows []benchRow) {
	var closed, open, durable []benchRow
	for _, r := range rows {
		switch {
		case r.offered > 0:
			open = append(open, r)
		case r.durable:
			durable = append(durable, r)
		default:
			closed = append(closed, r)
		}
	}
	printRows(w, "request path: NATS request -> SQL insert -> reply (closed loop; bare = plain nats.go responder on a plain server; sqlgate+batch = the same sync route with batch)", closed)
	printRows(w, fmt.Sprintf("request path at an offered rate (open loop, at most %d in flight; latency from each request's due time)", openMaxInFlight), open)
	printRows(w, "durable path: JetStream publish -> consumer -> SQL insert -> answer, acked after commit (closed loop; bare = plain JetStream pull consumer)", durable)
	printGroupCommit(w, rows)
	printErrors(w, rows)
	for _, line := range benchTarget(closed) {
		fmt.Fprintln(w, line)
	}
}

// printRows prints rows (bare, then the sqlgate paths of the same cell)
// under a title, with each sqlgate path's added latency against the bare
// row before it and, closed loop, its ratio of throughput. Open-loop rows
// (all of one kind) name their offered rate instead of their concurrency,
// and have no ratio: every path is offered the same rate.
func printRows(w io.Writer, title string, rows []benchRow) {
	if len(rows) == 0 {
		return
	}
	open := rows[0].offered > 0
	fmt.Fprintln(w, "\n"+title)
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', tabwriter.AlignRight)
	if open {
		fmt.Fprintln(tw, "backend\toffered req/s\tpath\treq/s\tp50\tp99\tcpu/req\tdb cpu/req\terrors\tadded p50\tadded p99\t")
	} else {
		fmt.Fprintln(tw, "backend\tconc\tpath\treq/s\tp50\tp99\tcpu/req\tdb cpu/req\terrors\tratio req/s\tadded p50\tadded p99\t")
	}
	var bare benchRow
	for _, r := range rows {
		cell, cmp := strconv.Itoa(r.conc), ""
		if open {
			cell = strconv.FormatFloat(r.offered, 'f', 0, 64)
		}
		switch {
		case r.path == "bare":
			bare = r
			cmp = "\t\t"
			if !open {
				cmp += "\t"
			}
		case open:
			cmp = us(r.p50-bare.p50) + "\t" + us(r.p99-bare.p99)
		default:
			ratio := 0.0
			if bare.rate > 0 {
				ratio = r.rate / bare.rate
			}
			cmp = fmt.Sprintf("%.2f\t%s\t%s", ratio, us(r.p50-bare.p50), us(r.p99-bare.p99))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%d\t%s\t\n", r.backend, cell, r.path, r.rate, us(r.p50), us(r.p99), us(r.cpu), us(r.dbCPU), r.errors, cmp)
	}
	_ = tw.Flush() // terminal output
}

// printErrors names, for each row with failed requests, the first error, so
// that an error count in a table has a cause next to it.
func printErrors(w io.Writer, rows []benchRow) {
	first := true
	for _, r := range rows {
		if r.errors == 0 || r.firstErr == nil {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nfailed requests (the first error of each row):")
			first = false
		}
		shape := "request path c=" + strconv.Itoa(r.conc)
		switch {
		case r.offered > 0:
			shape = "request path " + strconv.FormatFloat(r.offered, 'f', -1, 64) + " req/s"
		case r.durable:
			shape = "durable path c=" + strconv.Itoa(r.conc)
		}
		fmt.Fprintf(w, "  %s %s %s: %d failed; first: %v\n", r.backend, r.path, shape, r.errors, r.firstErr)
	}
}

// printGroupCommit prints how many calls each SQL transaction of the
// sqlgate paths held, from the transaction ids of the replies: 1 where
// every call has its own, more where calls shared (batch).
func printGroupCommit(w io.Writer, rows []benchRow) {
	var parts []string
	for _, r := range rows {
		if r.path == "bare" || r.txs == 0 || r.durable {
			continue
		}
		cell := "c=" + strconv.Itoa(r.conc)
		if r.offered > 0 {
			cell = strconv.FormatFloat(r.offered, 'f', -1, 64) + "rps"
		}
		parts = append(parts, fmt.Sprintf("%s %s %s %.2f", r.backend, r.path, cell, float64(r.reqs)/float64(r.txs)))
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "\ncalls per SQL transaction (request path, from the replies' transaction ids): %s\n", strings.Join(parts, "; "))
	}
}

// Target of the request path (docs/performance.md): on PostgreSQL at
// concurrency 64, sqlgate at least 70 % of the bare throughput with less
// than 2 ms added at p99.
const (
	targetRatio    = 0.70
	targetAddedP99 = 2 * time.Millisecond
)

// benchTarget reports each sqlgate path's figures against the target, or
// nothing when the run did not measure PostgreSQL at concurrency 64 with
// the bare path and that sqlgate path.
func benchTarget(rows []benchRow) []string {
	var out []string
	var bare benchRow
	for _, r := range rows {
		if r.backend != "postgres" || r.conc != 64 {
			continue
		}
		if r.path == "bare" {
			bare = r
			continue
		}
		if bare.rate == 0 || r.rate == 0 {
			continue
		}
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			return "MISSED"
		}
		ratio, added := r.rate/bare.rate, r.p99-bare.p99
		out = append(out, fmt.Sprintf("target (PostgreSQL, concurrency 64, %s): ratio >= %.2f: %.2f, %s; added p99 < %s: %s, %s",
			r.path, targetRatio, ratio, verdict(ratio >= targetRatio), us(targetAddedP99), us(added), verdict(added < targetAddedP99)))
	}
	return out
}

func us(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond || d <= -10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}

// throwawayDB creates a fresh database on the server of dsn and returns
// its DSN and a function that drops it.
func throwawayDB(ctx context.Context, dsn, prefix string) (string, func(), error) {
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close()
		return "", nil, err
	}
	drop := func() {
		_, _ = admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		_ = admin.Close()
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		drop()
		return "", nil, errors.New("the PostgreSQL DSN must be a postgres:// URL")
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

func poolSuffix(dsn string, n int) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return fmt.Sprintf("%spool_max_conns=%d&pool_min_conns=%d", sep, n, n)
}
