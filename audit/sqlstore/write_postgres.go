package sqlstore

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/sqlgate/sqlgate/audit"
)

// writePostgresSQL commits a whole batch in one statement (one round trip,
// implicitly one transaction): data-modifying CTEs with array parameters.
// The group committer waits for this write before acknowledging appends, so
// on PostgreSQL its latency is the audit log's latency; a transaction of
// eight statements cost eight round trips.
const writePostgresSQL = `WITH
o AS (INSERT INTO ` + tOrigins + ` (origin, first_index) SELECT $1, 0 WHERE $2::boolean),
r AS (INSERT INTO ` + tRecords + ` (origin, idx, rec_time, data, leaf)
  SELECT $1, u.idx, u.t, u.d, u.l FROM unnest($3::bigint[], $4::bigint[], $5::bytea[], $6::bytea[]) AS u(idx, t, d, l)),
i AS (INSERT INTO ` + tInputs + ` (origin, idx, rec_time, input)
  SELECT $1, u.idx, u.t, u.d FROM unnest($7::bigint[], $8::bigint[], $9::bytea[]) AS u(idx, t, d)),
oi AS (INSERT INTO ` + tOpenIntents + ` (origin, idx) SELECT $1, u.idx FROM unnest($10::bigint[]) AS u(idx)),
od AS (DELETE FROM ` + tOpenIntents + ` WHERE origin = $1 AND idx = ANY($11::bigint[])),
h AS (INSERT INTO ` + tHashes + ` (origin, id, hash)
  SELECT $1, $12::bigint + u.n - 1, u.h FROM unnest($13::bytea[]) WITH ORDINALITY AS u(h, n)),
c AS (INSERT INTO ` + tCheckpoints + ` (origin, tree_size, created, note)
  SELECT $1, $14::bigint, $15::bigint, $16::bytea WHERE $14::bigint IS NOT NULL),
k AS (INSERT INTO ` + tKeys + ` (origin, key_id, vkey, added)
  SELECT $1, $17::text, $18::text, $19::bigint WHERE $17::text IS NOT NULL),
hd AS (INSERT INTO ` + tHeads + ` (origin, tree_size, root, mac)
  SELECT $1, $20::bigint, $21::bytea, $22::bytea WHERE $20::bigint IS NOT NULL
  ON CONFLICT (origin) DO UPDATE SET tree_size = excluded.tree_size, root = excluded.root, mac = excluded.mac)
SELECT 1`

// writePostgres is Write for PostgreSQL. All CTEs of one statement see the
// same snapshot, so an intent and its outcome in the same batch are paired
// here rather than inserted and deleted.
func (s *Store) writePostgres(ctx context.Context, origin string, b *audit.Batch) error {
	n := len(b.Records)
	recIdx, recTime := make([]int64, 0, n), make([]int64, 0, n)
	recData, recLeaf := make([][]byte, 0, n), make([][]byte, 0, n)
	var inIdx, inTime []int64
	var inData [][]byte
	intents := map[int64]bool{}
	for i := range b.Records {
		if b.Records[i].Kind == audit.KindIntent {
			intents[b.Records[i].Index] = true
		}
	}
	var deletes []int64
	for i := range b.Records {
		r := &b.Records[i]
		recIdx, recTime = append(recIdx, r.Index), append(recTime, unixNano(r.Time))
		recData, recLeaf = append(recData, r.Data), append(recLeaf, r.Leaf[:])
		if r.Input != nil {
			inIdx, inTime, inData = append(inIdx, r.Index), append(inTime, unixNano(r.Time)), append(inData, r.Input)
		}
		if r.Kind == audit.KindOutcome && r.IntentIndex > 0 {
			if intents[r.IntentIndex] {
				delete(intents, r.IntentIndex) // paired within the batch: never open
			} else {
				deletes = append(deletes, r.IntentIndex)
			}
		}
	}
	opens := make([]int64, 0, len(intents))
	for i := range b.Records {
		if idx := b.Records[i].Index; intents[idx] {
			opens = append(opens, idx)
		}
	}
	hashes := make([][]byte, len(b.Hashes))
	for i := range b.Hashes {
		hashes[i] = b.Hashes[i][:]
	}
	var cpSize, cpCreated any
	var cpNote []byte
	if c := b.Checkpoint; c != nil {
		cpSize, cpCreated, cpNote = c.Size, unixNano(c.Time), c.Note
	}
	var keyID, keyV, keyAdded any
	if k := b.Key; k != nil {
		keyID, keyV, keyAdded = k.ID(), k.VerifierKey, unixNano(k.Added)
	}
	var headSize any
	var headRoot, headMAC []byte
	if h := b.Head; h != nil {
		headSize, headRoot, headMAC = h.Size, h.Root[:], h.MAC
	}
	firstWrite := n > 0 && b.Records[0].Index == 0
	args := []any{
		origin, firstWrite,
		nonNil(recIdx), nonNil(recTime), nonNilB(recData), nonNilB(recLeaf),
		nonNil(inIdx), nonNil(inTime), nonNilB(inData),
		nonNil(opens), nonNil(deletes),
		b.HashIndex, nonNilB(hashes),
		cpSize, cpCreated, cpNote,
		keyID, keyV, keyAdded,
		headSize, headRoot, headMAC,
	}
	if err := s.execWrite(ctx, args); err != nil {
		return fmt.Errorf("sqlstore write: %w", err)
	}
	return nil
}

// writeStatement names writePostgresSQL prepared on a pgx connection.
const writeStatement = "sqlgate_audit_write"

// errNotPgx: the connection is not pgx's (database/sql runs the write).
var errNotPgx = errors.New("not a pgx connection")

// writeBufs holds the parameter buffers of writes (encoded batches).
var writeBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledWrite bounds the buffer a write returns to writeBufs.
const maxPooledWrite = 4 << 20

// execWrite runs writePostgresSQL with args. On a pgx connection it encodes
// the parameters as pgx does (its type map, the same formats), but into one
// buffer reused across writes, then executes the prepared statement: pgx
// encodes into a buffer that starts at 256 bytes for every query and grows
// by doubling, which for a batch's arrays of records and inputs cost more
// than encoding them. Any other driver runs it through database/sql.
//
// Like database/sql, it runs the write again on another connection when the
// connection failed before the statement was sent (pgconn.SafeToRetry: the
// server never saw it), up to three attempts.
func (s *Store) execWrite(ctx context.Context, args []any) error {
	var err error
	for range 3 {
		if err = s.execWriteOnce(ctx, args); !errors.Is(err, driver.ErrBadConn) {
			return err
		}
	}
	return err
}

func (s *Store) execWriteOnce(ctx context.Context, args []any) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return errNotPgx
		}
		if c.Conn().IsClosed() {
			return driver.ErrBadConn
		}
		err := execWritePgx(ctx, c.Conn(), args)
		if err != nil && pgconn.SafeToRetry(err) {
			return driver.ErrBadConn // database/sql drops the connection
		}
		return err
	})
	if errors.Is(err, errNotPgx) {
		_, err = conn.ExecContext(ctx, writePostgresSQL, args...)
	}
	return err
}

func execWritePgx(ctx context.Context, c *pgx.Conn, args []any) error {
	err := execPreparedWrite(ctx, c, args)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "26000" || pe.Code == "0A000") && !c.IsClosed() && c.PgConn().TxStatus() == 'I' {
		// The server no longer has the statement (DEALLOCATE ALL, DISCARD
		// ALL) or its plan no longer fits the tables: it executed nothing.
		// Prepare it again and run it once more.
		if derr := c.Deallocate(ctx, writeStatement); derr != nil {
			return err
		}
		err = execPreparedWrite(ctx, c, args)
	}
	return err
}

func execPreparedWrite(ctx context.Context, c *pgx.Conn, args []any) error {
	sd, err := c.Prepare(ctx, writeStatement, writePostgresSQL)
	if err != nil {
		return err
	}
	if len(sd.ParamOIDs) != len(args) {
		return fmt.Errorf("the write statement takes %d parameters, not %d", len(sd.ParamOIDs), len(args))
	}
	bp := writeBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() {
		if cap(buf) <= maxPooledWrite {
			*bp = buf[:0]
			writeBufs.Put(bp)
		}
	}()
	m := c.TypeMap()
	values := make([][]byte, len(args))
	formats := make([]int16, len(args))
	for i, arg := range args {
		oid := sd.ParamOIDs[i]
		// The format pgx's extended protocol chooses (text for a Go string,
		// else the type's preferred one).
		format := m.FormatCodeForOID(oid)
		if _, ok := arg.(string); ok {
			format = pgx.TextFormatCode
		}
		start := len(buf)
		out, err := m.Encode(oid, format, arg, buf)
		if err != nil {
			return fmt.Errorf("parameter $%d: %w", i+1, err)
		}
		formats[i] = format
		if out == nil {
			continue // NULL
		}
		buf = out
		values[i] = buf[start:len(buf):len(buf)]
	}
	_, err = c.PgConn().ExecPrepared(ctx, sd.Name, values, formats, nil).Close()
	return err
}

// nonNil and nonNilB send empty arrays rather than NULL.
func nonNil(v []int64) []int64 {
	if v == nil {
		return []int64{}
	}
	return v
}

func nonNilB(v [][]byte) [][]byte {
	if v == nil {
		return [][]byte{}
	}
	return v
}
