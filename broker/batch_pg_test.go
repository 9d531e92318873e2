package broker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/identity"
)

// pgBatchSchema is the schema of the batch tests on PostgreSQL. add_job
// inserts a job; the job named "holder" first waits for the advisory lock
// 7001, which the test holds until it releases the call, and the job named
// "slow" sleeps far longer than the route's timeout.
const pgBatchSchema = `
CREATE TABLE jobs (name text PRIMARY KEY);
CREATE FUNCTION add_job(name text) RETURNS TABLE (job text) LANGUAGE plpgsql AS $$
BEGIN
  IF add_job.name = 'holder' THEN PERFORM pg_advisory_xact_lock(7001); END IF;
  IF add_job.name = 'slow' THEN PERFORM pg_sleep(60); END IF;
  INSERT INTO jobs (name) VALUES (add_job.name);
  RETURN QUERY SELECT add_job.name;
END $$;
`

// pgBatchDB creates a database for one test on the server of
// SQLGATE_TEST_POSTGRES_DSN (skipping the test when it is unset), applies
// schema, and returns the database's DSN and a connection to it. The
// database is dropped when the test ends.
func pgBatchDB(t *testing.T, schema string) (string, *pgx.Conn) {
	t.Helper()
	dsn := os.Getenv("SQLGATE_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("SQLGATE_TEST_POSTGRES_DSN is not set: PostgreSQL tests skipped")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "sqlgate_batchtest_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		_ = admin.Close(ctx)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
		_ = admin.Close(ctx)
	})
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = name
	db := "host=" + cfg.Host + " port=" + strconv.Itoa(int(cfg.Port)) + " user=" + cfg.User + " dbname=" + name + " sslmode=disable"
	if cfg.Password != "" {
		db += " password=" + cfg.Password
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(ctx) })
	if _, err := conn.Exec(ctx, schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	return db, conn
}

// openPG opens the executor of the test database dsn.
func openPG(t *testing.T, dsn string) *postgres.Executor {
	t.Helper()
	e, err := postgres.Open(t.Context(), postgres.Config{Name: "jobs", DSN: dsn, MaxConns: 8, CreateIdempotencyTable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// holdLock takes the advisory lock key on conn and returns the started and
// release functions of queueBehind: started waits until a call waits for
// the lock, release unlocks it.
func holdLock(t *testing.T, conn *pgx.Conn, key int64) (started, release func()) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), "SELECT pg_advisory_lock($1)", key); err != nil {
		t.Fatal(err)
	}
	started = func() {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			var waiting int
			err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1`, key).Scan(&waiting)
			if err != nil {
				t.Error(err)
				return
			}
			if waiting > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Error("no call waits for the advisory lock")
				return
			}
		}
	}
	release = func() {
		if _, err := conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", key); err != nil {
			t.Error(err)
		}
	}
	return started, release
}

// jobNames returns the names in the table jobs, sorted.
func jobNames(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT name FROM jobs ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestBatchSlowCallPostgres is TestBatchSlowCallFailsAlone on PostgreSQL
// with a statement that is slow for real (pg_sleep): a call that queued
// with it in a batch commits, and only the slow call times out.
func TestBatchSlowCallPostgres(t *testing.T) {
	dsn, conn := pgBatchDB(t, pgBatchSchema)
	e := openPG(t, dsn)
	var (
		mu      sync.Mutex
		batches []int
	)
	s := batchService(t, `routes:
  - subject: jobs.add
    procedure: add_job
    database: jobs
    batch: 16
    timeout: 2s
    params: {type: object, properties: {name: {type: string}}, required: [name]}
`, map[string]broker.Executor{"jobs": e}, func(c *broker.Config) {
		c.OnBatch = func(_ string, calls int, fellBack bool) {
			mu.Lock()
			defer mu.Unlock()
			if fellBack {
				calls = -calls
			}
			batches = append(batches, calls)
		}
	})
	started, release := holdLock(t, conn, 7001)
	replies := queueBehind(t, s, "jobs.add", nil, started, release, "holder", "g1", "slow", "g2", "g3")
	for _, name := range []string{"holder", "g1", "g2", "g3"} {
		if rep := replies[name]; !rep.OK || rep.Replayed {
			t.Errorf("%s: ok %v replayed %v error %+v; want committed", name, rep.OK, rep.Replayed, rep.Error)
		}
	}
	if rep := replies["slow"]; rep.OK || rep.Error.Code != broker.CodeUnavailable || !rep.TimedOut {
		t.Errorf("slow: ok %v error %+v timed out %v; want unavailable, timed out", rep.OK, rep.Error, rep.TimedOut)
	}
	if got, want := jobNames(t, conn), []string{"g1", "g2", "g3", "holder"}; !slices.Equal(got, want) {
		t.Errorf("jobs %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{1, -4}; !slices.Equal(batches, want) {
		t.Errorf("batches %v, want %v (holder alone, then the four in one batch that fell back)", batches, want)
	}
}

// TestBatchSessionContextAtCommit pins what the session context is in a
// batch on PostgreSQL (docs/postgres.md): each call's column defaults and
// ordinary triggers see its own sqlgate.principal, but what runs at COMMIT
// (a deferred constraint trigger) sees the context of the batch's last call,
// for every call of the batch: set_config(..., true) lasts until the shared
// transaction ends.
func TestBatchSessionContextAtCommit(t *testing.T) {
	dsn, conn := pgBatchDB(t, pgBatchSchema+`
ALTER TABLE jobs ADD COLUMN by_default text DEFAULT current_setting('sqlgate.principal', true);
CREATE TABLE seen (name text, kind text, principal text);
CREATE FUNCTION note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO seen VALUES (NEW.name, TG_ARGV[0], current_setting('sqlgate.principal', true));
  RETURN NULL;
END $$;
CREATE TRIGGER jobs_after AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION note('after');
CREATE CONSTRAINT TRIGGER jobs_at_commit AFTER INSERT ON jobs DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION note('at_commit');
`)
	e := openPG(t, dsn)
	var (
		mu      sync.Mutex
		batches []int
	)
	s := batchService(t, `routes:
  - subject: jobs.add
    procedure: add_job
    database: jobs
    batch: 16
    params: {type: object, properties: {name: {type: string}}, required: [name]}
`, map[string]broker.Executor{"jobs": e}, func(c *broker.Config) {
		c.OnBatch = func(_ string, calls int, _ bool) {
			mu.Lock()
			defer mu.Unlock()
			batches = append(batches, calls)
		}
	})
	started, release := holdLock(t, conn, 7001)
	who := map[string]identity.Principal{"holder": alice, "a": alice, "b": bob, "c": carol}
	replies := queueBehind(t, s, "jobs.add", who, started, release, "holder", "a", "b", "c")
	for name, rep := range replies {
		if !rep.OK {
			t.Fatalf("%s: %+v", name, rep.Error)
		}
	}
	mu.Lock()
	if want := []int{1, 3}; !slices.Equal(batches, want) {
		t.Errorf("batches %v, want %v (holder alone, then a, b and c in one)", batches, want)
	}
	mu.Unlock()
	if replies["a"].SQLTransactionID != replies["c"].SQLTransactionID {
		t.Errorf("a and c in transactions %s and %s, want one", replies["a"].SQLTransactionID, replies["c"].SQLTransactionID)
	}
	rows, err := conn.Query(t.Context(), `SELECT j.name, j.by_default, a.principal, d.principal
		FROM jobs j JOIN seen a ON a.name = j.name AND a.kind = 'after' JOIN seen d ON d.name = j.name AND d.kind = 'at_commit'`)
	if err != nil {
		t.Fatal(err)
	}
	type seenBy struct{ byDefault, after, atCommit string }
	got := map[string]seenBy{}
	for rows.Next() {
		var name string
		var s seenBy
		if err := rows.Scan(&name, &s.byDefault, &s.after, &s.atCommit); err != nil {
			t.Fatal(err)
		}
		got[name] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	last := carol.Display()
	want := map[string]seenBy{
		"holder": {alice.Display(), alice.Display(), alice.Display()}, // alone
		"a":      {alice.Display(), alice.Display(), last},
		"b":      {bob.Display(), bob.Display(), last},
		"c":      {last, last, last},
	}
	if !maps.Equal(got, want) {
		t.Errorf("principal seen by default, AFTER trigger, deferred trigger: %+v, want %+v", got, want)
	}
}

// TestBatchUnsupportedPostgres: on PostgreSQL only functions batch. A
// route with batch to a statement gets no batcher, and the start logs that
// its batch is ignored; one to a procedure learns it at its first batch,
// which is no fallback (sqlgate_batch_fallbacks_total stays), logs it once,
// and its calls run alone from then on without waiting for each other.
func TestBatchUnsupportedPostgres(t *testing.T) {
	dsn, conn := pgBatchDB(t, pgBatchSchema+`
CREATE PROCEDURE add_job_proc(name text) LANGUAGE plpgsql AS $$
BEGIN
  IF add_job_proc.name LIKE 'holder%' THEN PERFORM pg_advisory_xact_lock(7001); END IF;
  INSERT INTO jobs (name) VALUES (add_job_proc.name);
END $$;
`)
	e := openPG(t, dsn)
	var (
		mu      sync.Mutex
		batches []int
		logged  strings.Builder
	)
	s := batchService(t, `routes:
  - subject: jobs.proc
    procedure: add_job_proc
    database: jobs
    batch: 16
    params: {type: object, properties: {name: {type: string}}, required: [name]}
  - subject: jobs.stmt
    statement: {name: add, sql: "INSERT INTO jobs (name) VALUES (:name)"}
    database: jobs
    batch: 16
    params: {type: object, properties: {name: {type: string}}, required: [name]}
`, map[string]broker.Executor{"jobs": e}, func(c *broker.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&syncWriter{mu: &mu, w: &logged}, nil))
		c.OnBatch = func(_ string, calls int, fellBack bool) {
			mu.Lock()
			defer mu.Unlock()
			if fellBack {
				calls = -calls
			}
			batches = append(batches, calls)
		}
	})
	ignored := func(subject string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, line := range strings.Split(logged.String(), "\n") {
			if strings.Contains(line, "route batch ignored") && strings.Contains(line, "route="+subject+" ") {
				n++
			}
		}
		return n
	}
	if broker.Batches(s, "jobs.stmt") || ignored("jobs.stmt") != 1 || !broker.Batches(s, "jobs.proc") || ignored("jobs.proc") != 0 {
		t.Fatalf("at start: statement batches %v, procedure batches %v; log %q; want the statement's batch ignored and logged",
			broker.Batches(s, "jobs.stmt"), broker.Batches(s, "jobs.proc"), logged.String())
	}

	started, release := holdLock(t, conn, 7001)
	replies := queueBehind(t, s, "jobs.proc", nil, started, release, "holder1", "p1", "p2", "p3")
	for name, rep := range replies {
		if !rep.OK {
			t.Errorf("%s: %+v", name, rep.Error)
		}
	}
	mu.Lock()
	if want := []int{1, 1, 1, 1}; !slices.Equal(batches, want) {
		t.Errorf("batches %v, want %v: each call alone, none a fallback", batches, want)
	}
	mu.Unlock()
	if broker.Batches(s, "jobs.proc") || ignored("jobs.proc") != 1 {
		t.Errorf("after the first batch: procedure batches %v, log %q; want its batch ignored and logged once", broker.Batches(s, "jobs.proc"), logged.String())
	}

	// A call no longer waits for the one ahead: it commits while the
	// holder still waits for the lock.
	started, release = holdLock(t, conn, 7001)
	held := make(chan *broker.Reply, 1)
	go func() { held <- batchCall(context.Background(), s, "jobs.proc", alice, "holder2") }()
	started()
	if rep := batchCall(t.Context(), s, "jobs.proc", alice, "p4"); !rep.OK {
		t.Errorf("p4 while holder2 runs: %+v", rep.Error)
	}
	release()
	if rep := <-held; !rep.OK {
		t.Errorf("holder2: %+v", rep.Error)
	}
	if got, want := jobNames(t, conn), []string{"holder1", "holder2", "p1", "p2", "p3", "p4"}; !slices.Equal(got, want) {
		t.Errorf("jobs %v, want %v", got, want)
	}
	if ignored("jobs.proc") != 1 {
		t.Errorf("log %q; want the procedure's batch ignored once", logged.String())
	}
}

// syncWriter serializes writes to w under mu.
type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
