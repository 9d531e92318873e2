package audit

import (
	"context"
	"errors"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrNotFound is returned (wrapped) when a record, checkpoint, hash or proof
// does not exist or was pruned.
var ErrNotFound = errors.New("not found")

// Store persists audit logs: one log per origin, several origins per store
// (several sqlgated instances may share one control database). The Log is
// the only writer of its origin. Implementations must be safe for
// concurrent use.
//
// The contract every implementation keeps (audit/audittest.RunStoreTests
// checks it):
//   - Write is atomic and durable: when it returns nil, every record, hash,
//     checkpoint and key of the batch survives a crash; when it returns an
//     error, none of them may be visible later unless the error was about
//     the commit itself (then the Log reloads its state and carries on from
//     whatever is there).
//   - Write never overwrites: a record index, hash index, checkpoint size or
//     key id that already exists makes it fail. The head is the exception:
//     there is one per origin, and each Write that carries one replaces it.
//   - Slices passed to Write are only valid during the call.
//   - Record bodies and inputs may be pruned; hashes, checkpoints and keys
//     never are.
type Store interface {
	// Load returns what the Log needs to continue origin's log: its size,
	// frontier, latest checkpoint and key history. A new origin has size 0.
	Load(ctx context.Context, origin string) (*State, error)
	// Write commits a batch for origin in one transaction.
	Write(ctx context.Context, origin string, b *Batch) error
	// ReadHashes returns the stored tree hashes at the given stored hash
	// indexes (tlog.StoredHashIndex), in the order asked. A missing hash is
	// an error wrapping [ErrNotFound].
	ReadHashes(ctx context.Context, origin string, indexes []int64) ([]tlog.Hash, error)
	// Record returns the canonical bytes of one record, [ErrNotFound] when it
	// does not exist or was pruned.
	Record(ctx context.Context, origin string, index int64) ([]byte, error)
	// CheckpointAt returns the signed note of the smallest checkpoint whose
	// size is at least size, [ErrNotFound] when there is none.
	CheckpointAt(ctx context.Context, origin string, size int64) ([]byte, error)
	// Unpaired returns the canonical bytes of the intents that no written
	// outcome names as its IntentIndex, in index order.
	Unpaired(ctx context.Context, origin string) ([][]byte, error)
	// Inputs calls fn, in index order, for each record with a stored input
	// whose time is at or after since.
	Inputs(ctx context.Context, origin string, since time.Time, fn func(record, input []byte) error) error
	// IndexAt returns the smallest index of a retained record whose time is
	// at or after t, or the log size when there is none.
	IndexAt(ctx context.Context, origin string, t time.Time) (int64, error)
	// Prune deletes the bodies and inputs of records with index < before and
	// returns how many records it deleted.
	Prune(ctx context.Context, origin string, before int64) (int64, error)
	// PruneInputs deletes the inputs of records older than before and
	// returns how many it deleted.
	PruneInputs(ctx context.Context, origin string, before time.Time) (int64, error)
}

// State is a log's persisted state as [Store.Load] returns it.
type State struct {
	// Size is the number of records ever appended (pruned ones included).
	Size int64
	// Frontier holds the hashes at the stored hash indexes of the tree's
	// frontier for Size (see [FrontierIndexes]).
	Frontier []tlog.Hash
	// Latest is the newest checkpoint's signed note, nil when none.
	Latest []byte
	// Keys is the origin's signing key history, oldest first.
	Keys []Key
	// Head is the origin's authenticated head (the latest one a Write
	// stored), nil when none was ever written.
	Head *Head
}

// InputsAfterStore is implemented by a [Store] that can resume
// [Store.Inputs] after an index, so that [Log.Inputs] reads a long log a
// page at a time without starting over.
type InputsAfterStore interface {
	// InputsAfter is Inputs restricted to the first limit records with
	// index > after.
	InputsAfter(ctx context.Context, origin string, since time.Time, after int64, limit int, fn func(record, input []byte) error) error
}

// Key is an entry of a log's signing key history.
type Key struct {
	// Origin is the log the key signs for (also the key's name).
	Origin string `json:"origin"`
	// VerifierKey is the public key in note format.
	VerifierKey string `json:"vkey"`
	// Added is when the log started using the key.
	Added time.Time `json:"added"`
}

// ID returns "<name>+<hex key hash>", the key id that appears in signatures.
func (k Key) ID() string { return keyID(k.VerifierKey) }

// Batch is what one [Store.Write] commits.
type Batch struct {
	// Records continue the log: Records[0].Index is the current size and
	// indexes are contiguous.
	Records []StoredRecord
	// HashIndex is the stored hash index of Hashes[0]; Hashes are the tree
	// hashes the records complete (tlog.StoredHashes for each record, in
	// order), contiguous in stored-hash-index space.
	HashIndex int64
	Hashes    []tlog.Hash
	// Checkpoint, when set, is a signed checkpoint to store; its size is at
	// most the log size after this batch.
	Checkpoint *StoredCheckpoint
	// Key, when set, is a new signing key to add to the key history.
	Key *Key
	// Head, when set, replaces the origin's authenticated head (the log sets
	// it on every batch with records: the tree after the batch).
	Head *Head
}

// StoredRecord is one record as a [Store] keeps it.
type StoredRecord struct {
	Index int64
	Kind  Kind
	// IntentIndex is set for outcomes (see [Record.IntentIndex]).
	IntentIndex int64
	Time        time.Time
	// Data is the canonical encoding; Leaf its [LeafHash].
	Data []byte
	Leaf tlog.Hash
	// Input is the optional decision-input sidecar (not part of the leaf).
	Input []byte
}

// StoredCheckpoint is a signed checkpoint as a [Store] keeps it.
type StoredCheckpoint struct {
	Size int64
	Time time.Time
	Note []byte
}

// FrontierIndexes returns the stored hash indexes (tlog.StoredHashIndex) of
// the roots of the perfect subtrees that cover records [0, n), left to
// right. Their hashes and the records from n on determine every later tree
// hash, which is why pruning keeps them.
func FrontierIndexes(n int64) []int64 { return frontierIndexes(n) }

// hashReader adapts a Store to tlog.HashReader for one origin.
func hashReader(ctx context.Context, s interface {
	ReadHashes(context.Context, string, []int64) ([]tlog.Hash, error)
}, origin string,
) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return s.ReadHashes(ctx, origin, indexes)
	})
}
