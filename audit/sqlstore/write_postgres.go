package sqlstore

import (
	"context"
	"fmt"

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
	_, err := s.db.ExecContext(ctx, writePostgresSQL,
		origin, firstWrite,
		nonNil(recIdx), nonNil(recTime), nonNilB(recData), nonNilB(recLeaf),
		nonNil(inIdx), nonNil(inTime), nonNilB(inData),
		nonNil(opens), nonNil(deletes),
		b.HashIndex, nonNilB(hashes),
		cpSize, cpCreated, cpNote,
		keyID, keyV, keyAdded,
		headSize, headRoot, headMAC,
	)
	if err != nil {
		return fmt.Errorf("sqlstore write: %w", err)
	}
	return nil
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
