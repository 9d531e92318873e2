package sqlstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
)

// logBuffer collects a logger's output; safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// uniqueOrigin is an origin no other test (or test run on a shared server)
// uses.
func uniqueOrigin() string {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return "claim-test/" + hex.EncodeToString(rnd[:])
}

// samePostgres returns a store over the schema db uses, on a pool of its
// own: another process sharing the control database.
func samePostgres(t *testing.T, db *sql.DB) *sqlstore.Store {
	t.Helper()
	var schema string
	if err := db.QueryRowContext(t.Context(), "SELECT current_schema()").Scan(&schema); err != nil {
		t.Fatal(err)
	}
	dsn := os.Getenv("SQLGATE_TEST_POSTGRES_DSN")
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	if !strings.Contains(dsn, "://") {
		sep = " "
	}
	other, err := sql.Open("pgx", dsn+sep+"search_path="+schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	s, err := sqlstore.Open(t.Context(), other, sqlstore.Postgres)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claimBackend returns the PostgreSQL backend holding origin's claim in
// db's schema, 0 when none does.
func claimBackend(t *testing.T, db *sql.DB, origin string) int {
	t.Helper()
	var pid int
	err := db.QueryRowContext(t.Context(), `SELECT l.pid
FROM (SELECT hashtextextended('sqlgate-audit:' || current_schema() || ':' || $1, 0) AS k) h
JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
 AND l.classid = ((h.k >> 32) & 4294967295)::oid AND l.objid = (h.k & 4294967295)::oid`, origin).Scan(&pid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// endSession ends the backend holding origin's claim, as an
// idle_session_timeout, a restart or an administrator would, and waits
// until it is gone.
func endSession(t *testing.T, db *sql.DB, origin string) int {
	t.Helper()
	pid := claimBackend(t, db, origin)
	if pid == 0 {
		t.Fatal("no session holds the claim")
	}
	var ok bool
	// With a timeout, pg_terminate_backend waits for the backend to exit.
	if err := db.QueryRowContext(t.Context(), "SELECT pg_terminate_backend($1, 30000)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
	if got := claimBackend(t, db, origin); got == pid {
		t.Fatalf("after the session ended, its backend %d still holds the claim", got)
	}
	return pid
}

// openClaimedLog opens origin's log on s, as sqlgated does after its claim.
func openClaimedLog(t *testing.T, s audit.Store, origin string) *audit.Log {
	t.Helper()
	l, err := openCfg(t, s, audittest.Config(t, origin))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func appendOne(ctx context.Context, l *audit.Log) error {
	_, err := l.Append(ctx, &audit.Record{Kind: audit.KindDecision, Reasons: []string{"claim test"}})
	return err
}

// TestClaimPostgresRetakenAfterSessionEnds: the session holding the claim
// ends while the process runs; the claim takes the lock again on a new
// session, so a second process with the same origin is still refused and
// the log keeps appending.
func TestClaimPostgresRetakenAfterSessionEnds(t *testing.T) {
	s, db := newPostgresDB(t)
	other := samePostgres(t, db)
	origin := uniqueOrigin()
	var logs logBuffer
	claim, err := s.Claim(t.Context(), origin, sqlstore.ClaimOptions{Logger: logs.logger(), Interval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = claim.Release() }()
	l := openClaimedLog(t, s, origin)

	old := endSession(t, db, origin)
	if err := claim.Check(t.Context()); err != nil {
		t.Fatalf("Check after the session ended = %v, want the claim taken again", err)
	}
	if pid := claimBackend(t, db, origin); pid == 0 || pid == old {
		t.Fatalf("claim held by backend %d after the re-take (old backend %d)", pid, old)
	}
	if _, err := other.Claim(t.Context(), origin, sqlstore.ClaimOptions{Interval: -1}); !errors.Is(err, sqlstore.ErrOriginInUse) {
		t.Fatalf("second process's claim after the re-take: err = %v, want ErrOriginInUse", err)
	}
	if err := appendOne(t.Context(), l); err != nil {
		t.Fatalf("append after the re-take: %v", err)
	}
	for _, want := range []string{"audit origin claim lost", "audit origin claim taken again", origin} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, logs.String())
		}
	}
}

// TestClaimPostgresWatchesItsSession: without anyone calling Check, the
// claim notices its session ended and takes the lock again.
func TestClaimPostgresWatchesItsSession(t *testing.T) {
	s, db := newPostgresDB(t)
	origin := uniqueOrigin()
	retaken := make(chan struct{})
	var once sync.Once
	h := &funcHandler{fn: func(r slog.Record) {
		if r.Message == "audit origin claim taken again" {
			once.Do(func() { close(retaken) })
		}
	}}
	claim, err := s.Claim(t.Context(), origin, sqlstore.ClaimOptions{Logger: slog.New(h), Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = claim.Release() }()
	endSession(t, db, origin)
	// A bound for a broken build, not a timing the test relies on.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	select {
	case <-retaken:
	case <-ctx.Done():
		t.Fatal("the claim was not taken again")
	}
	if err := claim.Err(); err != nil {
		t.Fatalf("Err after the re-take = %v", err)
	}
	if claimBackend(t, db, origin) == 0 {
		t.Fatal("no session holds the claim after the re-take")
	}
}

// funcHandler hands each log record to fn.
type funcHandler struct{ fn func(slog.Record) }

func (h *funcHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *funcHandler) Handle(_ context.Context, r slog.Record) error {
	h.fn(r)
	return nil
}
func (h *funcHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *funcHandler) WithGroup(string) slog.Handler      { return h }

// TestClaimPostgresLostToAnotherFailsClosed: the session holding the claim
// ends and a second process with the same origin claims it first. The
// first must not race it: it refuses appends (not ready) and says who holds
// the origin, until it holds the claim again.
func TestClaimPostgresLostToAnotherFailsClosed(t *testing.T) {
	s, db := newPostgresDB(t)
	other := samePostgres(t, db)
	origin := uniqueOrigin()
	var logs logBuffer
	claim, err := s.Claim(t.Context(), origin, sqlstore.ClaimOptions{Logger: logs.logger(), Interval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = claim.Release() }()
	l := openClaimedLog(t, s, origin)
	if err := appendOne(t.Context(), l); err != nil {
		t.Fatal(err)
	}

	endSession(t, db, origin)
	dup, err := other.Claim(t.Context(), origin, sqlstore.ClaimOptions{Interval: -1})
	if err != nil {
		t.Fatalf("the second process's claim while the first's session is gone: %v", err)
	}
	dupPID := claimBackend(t, db, origin)
	err = claim.Check(t.Context())
	if !errors.Is(err, sqlstore.ErrOriginInUse) || !errors.Is(err, sqlstore.ErrClaimLost) {
		t.Fatalf("Check with another holder = %v, want ErrOriginInUse and ErrClaimLost", err)
	}
	for _, want := range []string{strconv.Quote(origin), "PostgreSQL backend pid " + strconv.Itoa(dupPID), "refuses audit appends"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("claim error %q does not say %q", err, want)
		}
	}
	if !strings.Contains(logs.String(), "audit origin claimed by another session") {
		t.Errorf("log does not report the other holder:\n%s", logs.String())
	}
	// Fail closed: every append is refused, before and after the log's
	// reload, and the log reports it (readiness).
	for i := range 2 {
		if err := appendOne(t.Context(), l); !errors.Is(err, sqlstore.ErrOriginInUse) {
			t.Fatalf("append %d while another process holds the origin: err = %v, want ErrOriginInUse", i, err)
		}
	}
	if err := l.WriteError(); !errors.Is(err, sqlstore.ErrOriginInUse) {
		t.Errorf("WriteError = %v, want ErrOriginInUse", err)
	}
	if _, err := s.Prune(t.Context(), origin, 1); !errors.Is(err, sqlstore.ErrOriginInUse) {
		t.Errorf("Prune while another process holds the origin: err = %v", err)
	}
	// Still refused at the next check while the other holds it.
	if err := claim.Check(t.Context()); !errors.Is(err, sqlstore.ErrOriginInUse) {
		t.Fatalf("second Check with another holder = %v", err)
	}

	// The duplicate stops (having written nothing): the claim is taken
	// again and the log appends again.
	if err := dup.Release(); err != nil {
		t.Fatal(err)
	}
	if err := claim.Check(t.Context()); err != nil {
		t.Fatalf("Check after the other holder left = %v", err)
	}
	if err := appendOne(t.Context(), l); err != nil {
		t.Fatalf("append after the claim was taken again: %v", err)
	}
	if err := l.WriteError(); err != nil {
		t.Errorf("WriteError after the claim was taken again = %v", err)
	}
}

// sqliteLockFile returns the lock file of the only claim of the SQLite
// database at path.
func sqliteLockFile(t *testing.T, path string) string {
	t.Helper()
	files, err := filepath.Glob(path + "-origin-*.lock")
	if err != nil || len(files) != 1 {
		t.Fatalf("lock files of %s: %v, %v", path, files, err)
	}
	return files[0]
}

// TestClaimSQLiteLockFileReplaced: a SQLite claim is a flock that lasts as
// long as the process, but a deleted lock file would let a second process
// lock a new one at the same path. The claim notices: it takes the new
// file when it is free, and fails closed when another process has it.
func TestClaimSQLiteLockFileReplaced(t *testing.T) {
	s, _, path := newSQLite(t)
	other, _ := openSQLite(t, path)
	origin := uniqueOrigin()
	var logs logBuffer
	claim, err := s.Claim(t.Context(), origin, sqlstore.ClaimOptions{Logger: logs.logger(), Interval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = claim.Release() }()
	l := openClaimedLog(t, s, origin)
	lock := sqliteLockFile(t, path)

	// Deleted, then noticed before anyone else came: taken again.
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	if err := claim.Check(t.Context()); err != nil {
		t.Fatalf("Check after the lock file was deleted = %v, want it taken again", err)
	}
	if _, err := other.Claim(t.Context(), origin, sqlstore.ClaimOptions{Interval: -1}); !errors.Is(err, sqlstore.ErrOriginInUse) {
		t.Fatalf("second claim after the re-take: err = %v, want ErrOriginInUse", err)
	}

	// Deleted, and another process locked a new file first: fail closed.
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	dup, err := other.Claim(t.Context(), origin, sqlstore.ClaimOptions{Interval: -1})
	if err != nil {
		t.Fatalf("second claim after the lock file was deleted: %v", err)
	}
	defer func() { _ = dup.Release() }()
	if err := claim.Check(t.Context()); !errors.Is(err, sqlstore.ErrOriginInUse) {
		t.Fatalf("Check with another holder = %v, want ErrOriginInUse", err)
	}
	if err := appendOne(t.Context(), l); !errors.Is(err, sqlstore.ErrOriginInUse) {
		t.Fatalf("append while another process holds the origin: err = %v, want ErrOriginInUse", err)
	}
	if !strings.Contains(logs.String(), "audit origin claimed by another session") {
		t.Errorf("log does not report the other holder:\n%s", logs.String())
	}
}
