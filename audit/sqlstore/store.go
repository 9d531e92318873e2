package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/internal/schemalock"
	"github.com/sqlgate/sqlgate/internal/sqliteuri"
)

// Store keeps audit logs in a SQL database. It implements [audit.Store] and
// [audit.Source]. Safe for concurrent use; it does not close the *sql.DB.
type Store struct {
	db *sql.DB
	d  *dialect
	q  *queries

	mu    sync.Mutex
	stmts map[string]*sql.Stmt

	// claims holds this store's claims by origin (*Claim): while one does
	// not hold its origin, the store refuses to load and write it.
	claims sync.Map
}

var (
	_ audit.Store  = (*Store)(nil)
	_ audit.Source = (*Store)(nil)
)

// SQLiteDSN returns a modernc.org/sqlite DSN for the file at path with the
// settings the audit log needs: WAL journal, synchronous=FULL (every commit
// is fsynced), a busy timeout for the other writers of a shared control
// database, and BEGIN IMMEDIATE transactions.
func SQLiteDSN(path string) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_busy_timeout", "10000")
	q.Set("_txlock", "immediate")
	return sqliteuri.File(path, q.Encode())
}

// Open prepares db (driver "sqlite" from modernc.org/sqlite, "pgx" from
// github.com/jackc/pgx/v5/stdlib, or "sqlserver" from go-mssqldb) for the
// audit log: it creates the sqlgate_audit_* tables when missing. dialect is
// "sqlite", "postgres" or "sqlserver". For SQLite it also switches the file to
// WAL and refuses connections whose synchronous setting is below FULL (open
// the database with [SQLiteDSN]).
func Open(ctx context.Context, db *sql.DB, dialect string) (*Store, error) {
	d, err := newDialect(dialect)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, d: d, q: newQueries(d), stmts: map[string]*sql.Stmt{}}
	if d.name == SQLite {
		if err := checkSQLite(ctx, db); err != nil {
			return nil, err
		}
	}
	if err := createSchema(ctx, db, d); err != nil {
		return nil, fmt.Errorf("sqlstore: create schema: %w", err)
	}
	return s, nil
}

// createSchema runs the dialect's idempotent DDL: on SQL Server and
// PostgreSQL in one transaction that takes the schema lock first
// ([schemalock.SQLServer], [schemalock.Postgres]); on SQLite, which runs one
// writer at a time, statement by statement.
func createSchema(ctx context.Context, db *sql.DB, d *dialect) error {
	var lock string
	switch d.name {
	case SQLServer:
		lock = schemalock.SQLServer
	case Postgres:
		lock = schemalock.Postgres
	default:
		for _, q := range d.schema {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // rollback after commit is a no-op
	if _, err := tx.ExecContext(ctx, lock); err != nil {
		return err
	}
	for _, q := range d.schema {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func checkSQLite(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: %w", err)
	}
	defer func() { _ = conn.Close() }() // returns it to the pool
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("sqlstore: set WAL: %w", err)
	}
	if !strings.EqualFold(mode, "wal") && !strings.EqualFold(mode, "memory") {
		return fmt.Errorf("sqlstore: journal mode is %q, want wal", mode)
	}
	var sync int
	if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return fmt.Errorf("sqlstore: read synchronous: %w", err)
	}
	if sync < 2 {
		return fmt.Errorf("sqlstore: SQLite synchronous is %d, want FULL (2) or EXTRA (3): open the database with sqlstore.SQLiteDSN", sync)
	}
	return nil
}

// stmt returns a prepared statement for q (already in dialect form).
func (s *Store) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stmts[q]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, q) //nolint:sqlclosecheck // cached for the store's life, closed by Close
	if err != nil {
		return nil, err
	}
	s.stmts[q] = st
	return st, nil
}

// unixNano is t.UnixNano clamped to the int64 range (schema v1 allows years
// 0-9999; UnixNano is undefined outside 1678-2262).
func unixNano(t time.Time) int64 {
	switch {
	case t.Year() < 1678:
		return math.MinInt64
	case t.Year() > 2261:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// Close releases the prepared statements (not the database).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for q, st := range s.stmts {
		errs = append(errs, st.Close())
		delete(s.stmts, q)
	}
	return errors.Join(errs...)
}

var (
	recordCols = []string{"origin", "idx", "rec_time", "data", "leaf"}
	inputCols  = []string{"origin", "idx", "rec_time", "input"}
	hashCols   = []string{"origin", "id", "hash"}
	openCols   = []string{"origin", "idx"}
)

// insertRows inserts n rows with multi-row INSERTs; row(i, args) appends the
// i-th row's values.
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, table string, cols []string, n int, row func(i int, args []any) []any) error {
	args := make([]any, 0, len(cols)*min(n, s.d.rowsPerStmt(len(cols))))
	i := 0
	for _, size := range chunks(n, s.d.rowsPerStmt(len(cols))) {
		st, err := s.stmt(ctx, s.d.insert(table, cols, size))
		if err != nil {
			return fmt.Errorf("prepare insert %s: %w", table, err)
		}
		args = args[:0]
		for range size {
			args = row(i, args)
			i++
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil { //nolint:sqlclosecheck // a transaction's statements close with it
			return fmt.Errorf("insert %s: %w", table, err)
		}
	}
	return nil
}

// Write implements [audit.Store]: one transaction for the whole batch. It
// refuses an origin this store claimed while the claim does not hold it
// ([Claim.Err]), as do Load, Prune and PruneInputs: another process may be
// writing it.
func (s *Store) Write(ctx context.Context, origin string, b *audit.Batch) (err error) {
	if err := s.claimError(origin); err != nil {
		return fmt.Errorf("sqlstore write: %w", err)
	}
	if s.d.name == Postgres {
		return s.writePostgres(ctx, origin, b)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore write: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := s.write(ctx, tx, origin, b); err != nil {
		return fmt.Errorf("sqlstore write: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore write: commit: %w", err)
	}
	return nil
}

func (s *Store) write(ctx context.Context, tx *sql.Tx, origin string, b *audit.Batch) error {
	recs := b.Records
	if len(recs) > 0 && recs[0].Index == 0 {
		if _, err := tx.ExecContext(ctx, s.q.insertOrigin, origin); err != nil {
			return fmt.Errorf("insert origin: %w", err)
		}
	}
	if len(recs) > 0 {
		err := s.insertRows(ctx, tx, tRecords, recordCols, len(recs), func(i int, a []any) []any {
			r := &recs[i]
			return append(a, origin, r.Index, unixNano(r.Time), r.Data, r.Leaf[:])
		})
		if err != nil {
			return err
		}
		var withInput []int
		var intents []int64
		var outcomes []int64
		for i := range recs {
			if recs[i].Input != nil {
				withInput = append(withInput, i)
			}
			switch recs[i].Kind {
			case audit.KindIntent:
				intents = append(intents, recs[i].Index)
			case audit.KindOutcome:
				if recs[i].IntentIndex > 0 {
					outcomes = append(outcomes, recs[i].IntentIndex)
				}
			}
		}
		if len(withInput) > 0 {
			err := s.insertRows(ctx, tx, tInputs, inputCols, len(withInput), func(i int, a []any) []any {
				r := &recs[withInput[i]]
				return append(a, origin, r.Index, unixNano(r.Time), r.Input)
			})
			if err != nil {
				return err
			}
		}
		if len(intents) > 0 {
			err := s.insertRows(ctx, tx, tOpenIntents, openCols, len(intents), func(i int, a []any) []any {
				return append(a, origin, intents[i])
			})
			if err != nil {
				return err
			}
		}
		if err := s.deleteOpen(ctx, tx, origin, outcomes); err != nil {
			return err
		}
		err = s.insertRows(ctx, tx, tHashes, hashCols, len(b.Hashes), func(i int, a []any) []any {
			return append(a, origin, b.HashIndex+int64(i), b.Hashes[i][:])
		})
		if err != nil {
			return err
		}
	}
	if c := b.Checkpoint; c != nil {
		if _, err := tx.ExecContext(ctx, s.q.insertCheckpoint, origin, c.Size, unixNano(c.Time), c.Note); err != nil {
			return fmt.Errorf("insert checkpoint: %w", err)
		}
	}
	if k := b.Key; k != nil {
		if _, err := tx.ExecContext(ctx, s.q.insertKey, origin, k.ID(), k.VerifierKey, unixNano(k.Added)); err != nil {
			return fmt.Errorf("insert key: %w", err)
		}
	}
	if h := b.Head; h != nil {
		st, err := s.stmt(ctx, s.q.upsertHead)
		if err != nil {
			return fmt.Errorf("prepare head: %w", err)
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, origin, h.Size, h.Root[:], h.MAC); err != nil { //nolint:sqlclosecheck // a transaction's statements close with it
			return fmt.Errorf("write head: %w", err)
		}
	}
	return nil
}

// deleteOpen removes paired intents from the open-intent table.
func (s *Store) deleteOpen(ctx context.Context, tx *sql.Tx, origin string, idx []int64) error {
	for len(idx) > 0 {
		n := chunks(len(idx), s.d.rowsPerStmt(1))[0]
		st, err := s.stmt(ctx, s.d.bind(deleteOpenSQL(n)))
		if err != nil {
			return fmt.Errorf("prepare delete open intents: %w", err)
		}
		args := make([]any, 0, n+1)
		args = append(args, origin)
		for _, x := range idx[:n] {
			args = append(args, x)
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil { //nolint:sqlclosecheck // a transaction's statements close with it
			return fmt.Errorf("delete open intents: %w", err)
		}
		idx = idx[n:]
	}
	return nil
}

// size returns the log size from its stored hashes. Stored hashes that
// describe no tree (an id that is not an integer, a count that fits no
// size) are an error wrapping [audit.ErrNotFound]: the hashes the log
// wrote are not all there, which verification reports as such.
func (s *Store) size(ctx context.Context, origin string) (int64, error) {
	var maxID any // SQLite keeps what an edit wrote, integer or not
	if err := s.db.QueryRowContext(ctx, s.q.maxHash, origin).Scan(&maxID); err != nil {
		return 0, fmt.Errorf("read log size: %w", err)
	}
	if maxID == nil {
		return 0, nil
	}
	id, ok := maxID.(int64)
	if !ok {
		return 0, fmt.Errorf("read log size: the largest stored hash id is %v, not an integer (edited): %w", maxID, audit.ErrNotFound)
	}
	n, ok := audit.SizeForStoredHashCount(id + 1)
	if !ok {
		return 0, fmt.Errorf("read log size: %d stored hashes fit no tree size (hashes lost): %w", id+1, audit.ErrNotFound)
	}
	return n, nil
}

// Load implements [audit.Store].
func (s *Store) Load(ctx context.Context, origin string) (*audit.State, error) {
	if err := s.claimError(origin); err != nil {
		return nil, fmt.Errorf("sqlstore load: %w", err)
	}
	n, err := s.size(ctx, origin)
	if err != nil {
		return nil, fmt.Errorf("sqlstore load: %w", err)
	}
	st := &audit.State{Size: n}
	if st.Frontier, err = s.ReadHashes(ctx, origin, audit.FrontierIndexes(n)); err != nil {
		return nil, fmt.Errorf("sqlstore load: %w", err)
	}
	var note []byte
	switch err := s.db.QueryRowContext(ctx, s.q.latestCheckpoint, origin).Scan(&note); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("sqlstore load: latest checkpoint: %w", err)
	default:
		st.Latest = note
	}
	keys, err := s.keys(ctx, origin)
	if err != nil {
		return nil, fmt.Errorf("sqlstore load: %w", err)
	}
	st.Keys = keys
	if st.Head, err = s.head(ctx, origin); err != nil {
		return nil, fmt.Errorf("sqlstore load: %w", err)
	}
	return st, nil
}

// head reads an origin's authenticated head, nil when it has none.
func (s *Store) head(ctx context.Context, origin string) (*audit.Head, error) {
	var h audit.Head
	var root []byte
	switch err := s.db.QueryRowContext(ctx, s.q.head, origin).Scan(&h.Size, &root, &h.MAC); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read head: %w", err)
	}
	// A root of the wrong length matches no tree.
	if len(root) == tlog.HashSize {
		h.Root = tlog.Hash(root)
	}
	return &h, nil
}

func (s *Store) keys(ctx context.Context, origin string) ([]audit.Key, error) {
	q, args := s.q.allKeys, []any(nil)
	if origin != "" {
		q, args = s.q.originKeys, []any{origin}
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err is checked below
	var out []audit.Key
	for rows.Next() {
		var k audit.Key
		var added any // SQLite keeps what an edit wrote, integer or not
		if err := rows.Scan(&k.Origin, &k.VerifierKey, &added); err != nil {
			return nil, fmt.Errorf("read keys: %w", err)
		}
		if ns, ok := added.(int64); ok { // else unknown (zero): nothing checks it
			k.Added = time.Unix(0, ns).UTC()
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	return out, nil
}

// ReadHashes implements [audit.Store] and [audit.Source]. A stored hash of
// the wrong length is not the hash the log wrote: an error wrapping
// [audit.ErrNotFound], as a missing one.
func (s *Store) ReadHashes(ctx context.Context, origin string, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	if len(indexes) == 0 {
		return out, nil
	}
	found := make(map[int64]tlog.Hash, len(indexes))
	uniq := slices.Clone(indexes)
	slices.Sort(uniq)
	uniq = slices.Compact(uniq)
	for len(uniq) > 0 {
		n := chunks(len(uniq), s.d.rowsPerStmt(1))[0]
		st, err := s.stmt(ctx, s.d.bind(readHashesSQL(n)))
		if err != nil {
			return nil, fmt.Errorf("read hashes: %w", err)
		}
		args := make([]any, 0, n+1)
		args = append(args, origin)
		for _, x := range uniq[:n] {
			args = append(args, x)
		}
		if err := scanHashes(ctx, st, args, found); err != nil {
			return nil, err
		}
		uniq = uniq[n:]
	}
	for i, x := range indexes {
		h, ok := found[x]
		if !ok {
			return nil, fmt.Errorf("read hash %d: %w", x, audit.ErrNotFound)
		}
		out[i] = h
	}
	return out, nil
}

func scanHashes(ctx context.Context, st *sql.Stmt, args []any, found map[int64]tlog.Hash) error {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("read hashes: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err is checked below
	for rows.Next() {
		var id int64
		var raw []byte
		if err := rows.Scan(&id, &raw); err != nil {
			return fmt.Errorf("read hashes: %w", err)
		}
		if len(raw) != tlog.HashSize {
			return fmt.Errorf("read hash %d: the stored hash has %d bytes, not %d (damaged): %w", id, len(raw), tlog.HashSize, audit.ErrNotFound)
		}
		found[id] = tlog.Hash(raw)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read hashes: %w", err)
	}
	return nil
}

// Record implements [audit.Store].
func (s *Store) Record(ctx context.Context, origin string, index int64) ([]byte, error) {
	var data []byte
	err := s.db.QueryRowContext(ctx, s.q.record, origin, index).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("record %d: %w", index, audit.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read record %d: %w", index, err)
	}
	return data, nil
}

// CheckpointAt implements [audit.Store].
func (s *Store) CheckpointAt(ctx context.Context, origin string, size int64) ([]byte, error) {
	var note []byte
	err := s.db.QueryRowContext(ctx, s.q.checkpointAt, origin, size).Scan(&note)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("checkpoint at %d: %w", size, audit.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint at %d: %w", size, err)
	}
	return note, nil
}

// Unpaired implements [audit.Store].
func (s *Store) Unpaired(ctx context.Context, origin string) ([][]byte, error) {
	rows, err := s.db.QueryContext(ctx, s.q.unpaired, origin)
	if err != nil {
		return nil, fmt.Errorf("read open intents: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err is checked below
	var out [][]byte
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("read open intents: %w", err)
		}
		out = append(out, data)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read open intents: %w", err)
	}
	return out, nil
}

// Inputs implements [audit.Store].
func (s *Store) Inputs(ctx context.Context, origin string, since time.Time, fn func(record, input []byte) error) error {
	return s.readInputs(ctx, fn, s.q.inputs, origin, unixNano(since))
}

var _ audit.InputsAfterStore = (*Store)(nil)

// InputsAfter implements [audit.InputsAfterStore].
func (s *Store) InputsAfter(ctx context.Context, origin string, since time.Time, after int64, limit int, fn func(record, input []byte) error) error {
	return s.readInputs(ctx, fn, s.q.inputsAfter, origin, unixNano(since), after, limit)
}

func (s *Store) readInputs(ctx context.Context, fn func(record, input []byte) error, q string, args ...any) error {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("read inputs: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err is checked below
	for rows.Next() {
		var data, input []byte
		if err := rows.Scan(&data, &input); err != nil {
			return fmt.Errorf("read inputs: %w", err)
		}
		if err := fn(data, input); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read inputs: %w", err)
	}
	return nil
}

// IndexAt implements [audit.Store].
func (s *Store) IndexAt(ctx context.Context, origin string, t time.Time) (int64, error) {
	var idx sql.NullInt64
	if err := s.db.QueryRowContext(ctx, s.q.indexAt, origin, unixNano(t)).Scan(&idx); err != nil {
		return 0, fmt.Errorf("find index at time: %w", err)
	}
	if idx.Valid {
		return idx.Int64, nil
	}
	return s.size(ctx, origin)
}

// Prune implements [audit.Store].
func (s *Store) Prune(ctx context.Context, origin string, before int64) (n int64, err error) {
	if err := s.claimError(origin); err != nil {
		return 0, fmt.Errorf("sqlstore prune: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlstore prune: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, s.q.pruneInputsIdx, origin, before); err != nil {
		return 0, fmt.Errorf("sqlstore prune inputs: %w", err)
	}
	res, err := tx.ExecContext(ctx, s.q.pruneRecords, origin, before)
	if err != nil {
		return 0, fmt.Errorf("sqlstore prune records: %w", err)
	}
	if n, err = res.RowsAffected(); err != nil {
		return 0, fmt.Errorf("sqlstore prune records: %w", err)
	}
	if _, err := tx.ExecContext(ctx, s.q.setFirst, before, origin, before); err != nil {
		return 0, fmt.Errorf("sqlstore prune: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlstore prune: commit: %w", err)
	}
	return n, nil
}

// PruneInputs implements [audit.Store].
func (s *Store) PruneInputs(ctx context.Context, origin string, before time.Time) (int64, error) {
	if err := s.claimError(origin); err != nil {
		return 0, fmt.Errorf("sqlstore prune inputs: %w", err)
	}
	res, err := s.db.ExecContext(ctx, s.q.pruneInputsTime, origin, unixNano(before))
	if err != nil {
		return 0, fmt.Errorf("sqlstore prune inputs: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlstore prune inputs: %w", err)
	}
	return n, nil
}

// Origins implements [audit.Source]: every origin that any table of the
// store names (its row in sqlgate_audit_origins, hashes, records,
// checkpoints or keys), so a log whose origin row was deleted is still
// listed and verified. It reads every table, as verification does.
func (s *Store) Origins(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, s.q.origins)
	if err != nil {
		return nil, fmt.Errorf("read origins: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err is checked below
	var out []string
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			return nil, fmt.Errorf("read origins: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read origins: %w", err)
	}
	return out, nil
}

// Keys implements [audit.Source].
func (s *Store) Keys(ctx context.Context) ([]audit.Key, error) { return s.keys(ctx, "") }

// checkpointsPage is how many checkpoints [Store.Checkpoints] reads at a
// time (a variable for the tests).
var checkpointsPage = 1000

// Checkpoints implements [audit.Source]. It reads a page of checkpoints at
// a time and holds no result set (no connection) while fn runs: the
// verifier reads the records between two checkpoints from fn, and the
// pages keep a log with millions of checkpoints out of memory.
//
// It lists them in the order of the tree_size column and pages by it, but
// passes each note through [audit.CheckpointRow]: a row whose tree_size is
// not the size its note states (or not an integer: SQLite keeps what an
// edit wrote) is an edited row, which the verifier reports as
// bad_checkpoint, not a failure to read the store.
func (s *Store) Checkpoints(ctx context.Context, origin string, fn func([]byte) error) error {
	var after any = int64(-1)
	for {
		notes, last, err := s.checkpointsAfter(ctx, origin, after)
		if err != nil {
			return fmt.Errorf("read checkpoints: %w", err)
		}
		for _, note := range notes {
			if err := fn(note); err != nil {
				return err
			}
		}
		if len(notes) < checkpointsPage {
			return nil
		}
		after = last
	}
}

// checkpointsAfter reads a page of the checkpoints of origin whose
// tree_size is after after, and the tree_size of the last as stored (the
// next page starts after it, whatever its type).
func (s *Store) checkpointsAfter(ctx context.Context, origin string, after any) (notes [][]byte, last any, err error) {
	rows, err := s.db.QueryContext(ctx, s.q.checkpoints, origin, after, checkpointsPage)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = rows.Close() }() // rows.Err is checked below
	for rows.Next() {
		var note []byte
		if err := rows.Scan(&last, &note); err != nil {
			return nil, nil, err
		}
		size, ok := last.(int64)
		notes = append(notes, audit.CheckpointRow(size, ok, note))
	}
	return notes, last, rows.Err()
}

// Bounds implements [audit.Source]: first is where retention cut the log,
// end the size its stored hashes describe. An origin whose row in
// sqlgate_audit_origins is gone but whose hashes, records, checkpoints or
// keys remain starts at 0: without the row nothing says records were
// pruned, so any missing one is reported. So does one whose first_index
// is not a non-negative integer (SQLite keeps what an edit wrote).
func (s *Store) Bounds(ctx context.Context, origin string) (int64, int64, error) {
	var stored any
	err := s.db.QueryRowContext(ctx, s.q.first, origin).Scan(&stored)
	noRow := errors.Is(err, sql.ErrNoRows)
	if err != nil && !noRow {
		return 0, 0, fmt.Errorf("read bounds: %w", err)
	}
	first, ok := stored.(int64)
	if !ok || first < 0 {
		first = 0
	}
	end, err := s.size(ctx, origin)
	if err != nil {
		return 0, 0, err
	}
	if noRow && end == 0 {
		var held int
		if err := s.db.QueryRowContext(ctx, s.q.held, origin, origin, origin).Scan(&held); err != nil {
			return 0, 0, fmt.Errorf("read bounds: %w", err)
		}
		if held == 0 {
			return 0, 0, fmt.Errorf("origin %q: %w", origin, audit.ErrNotFound)
		}
	}
	return first, end, nil
}

// Frontier implements [audit.Source].
func (s *Store) Frontier(ctx context.Context, origin string, size int64) ([]tlog.Hash, error) {
	return s.ReadHashes(ctx, origin, audit.FrontierIndexes(size))
}

// TreeProof implements [audit.Source].
func (s *Store) TreeProof(ctx context.Context, origin string, oldSize, newSize int64) (tlog.TreeProof, error) {
	p, err := tlog.ProveTree(newSize, oldSize, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		return s.ReadHashes(ctx, origin, ix)
	}))
	if err != nil {
		return nil, fmt.Errorf("tree proof %d -> %d: %w", oldSize, newSize, err)
	}
	return p, nil
}

// Records implements [audit.Source]. A row whose idx is not an integer
// (SQLite keeps what an edit wrote, e.g. 7.5) holds no record of the log,
// whose records are at integer indexes: it is left out, and a record it
// took the place of is missing to the verifier.
func (s *Store) Records(ctx context.Context, origin string, from, to int64, fn func(int64, []byte, *tlog.Hash) error) error {
	rows, err := s.db.QueryContext(ctx, s.q.records, origin, from, to)
	if err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	defer func() { _ = rows.Close() }() // rows.Err is checked below
	var (
		stored any
		data   sql.RawBytes
		raw    sql.RawBytes
		leaf   tlog.Hash
	)
	for rows.Next() {
		if err := rows.Scan(&stored, &data, &raw); err != nil {
			return fmt.Errorf("read records: %w", err)
		}
		idx, ok := stored.(int64)
		if !ok {
			continue
		}
		// A leaf of the wrong length compares unequal to every record.
		leaf = tlog.Hash{}
		if len(raw) == tlog.HashSize {
			copy(leaf[:], raw)
		}
		if err := fn(idx, data, &leaf); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	return nil
}
