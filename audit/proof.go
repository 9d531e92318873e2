package audit

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrBadProof is wrapped by [VerifyProof] when a proof does not hold.
var ErrBadProof = errors.New("invalid audit proof")

// Proof is a receipt for one record: its canonical bytes, an RFC 6962
// inclusion proof and a signed checkpoint whose tree contains it. Anyone
// holding the log's public key can check it offline with [VerifyProof]. Its
// JSON form (record bytes in base64, hashes in base64, checkpoint note as a
// string) is what GET /api/v1/audit/proof returns.
type Proof struct {
	Origin string `json:"origin"`
	Index  int64  `json:"index"`
	// Record is the record's canonical encoding (the leaf data).
	Record []byte `json:"record"`
	// Inclusion is the audit path from the leaf to the checkpoint's root.
	Inclusion []tlog.Hash `json:"inclusion"`
	// Checkpoint is the covering signed checkpoint note.
	Checkpoint string `json:"checkpoint"`
}

// Proof returns a receipt for the record at index, covered by the latest
// checkpoint (written now if the record is newer). It fails with
// [ErrNotFound] for an index the log does not hold or has pruned.
func (l *Log) Proof(ctx context.Context, index int64) (*Proof, error) {
	if index < 0 || index >= l.Size() {
		return nil, fmt.Errorf("audit proof %d: %w", index, ErrNotFound)
	}
	cp, err := l.Latest(ctx)
	if err != nil || cp.Size <= index {
		if err := l.Sync(ctx); err != nil {
			return nil, fmt.Errorf("audit proof %d: %w", index, err)
		}
		if cp, err = l.Latest(ctx); err != nil {
			return nil, fmt.Errorf("audit proof %d: %w", index, err)
		}
	}
	data, err := l.store.Record(ctx, l.cfg.Origin, index)
	if err != nil {
		return nil, fmt.Errorf("audit proof %d: %w", index, err)
	}
	inc, err := tlog.ProveRecord(cp.Size, index, hashReader(ctx, l.store, l.cfg.Origin))
	if err != nil {
		return nil, fmt.Errorf("audit proof %d: %w", index, err)
	}
	return &Proof{Origin: l.cfg.Origin, Index: index, Record: data, Inclusion: inc, Checkpoint: string(cp.Note)}, nil
}

// VerifyProof checks a receipt offline: the checkpoint is signed by a key in
// verifiers named for the proof's origin, the record is canonical and names
// the proof's origin and index, and the inclusion proof leads from the
// record's leaf hash to the checkpoint's root. Errors wrap [ErrBadProof] or
// one of the checkpoint errors ([ErrUnknownKey], [ErrBadSignature],
// [ErrMalformedCheckpoint]).
func VerifyProof(p *Proof, verifiers note.Verifiers) error {
	if p == nil {
		return fmt.Errorf("%w: no proof", ErrBadProof)
	}
	cp, err := OpenCheckpoint([]byte(p.Checkpoint), verifiers)
	if err != nil {
		return fmt.Errorf("verify proof: %w", err)
	}
	if cp.Origin != p.Origin {
		return fmt.Errorf("%w: checkpoint is for origin %q, proof for %q", ErrBadProof, cp.Origin, p.Origin)
	}
	if p.Index < 0 || p.Index >= cp.Size {
		return fmt.Errorf("%w: index %d outside the checkpoint's %d records", ErrBadProof, p.Index, cp.Size)
	}
	rec, err := DecodeRecord(p.Record)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	if rec.Index != p.Index || rec.Origin != p.Origin {
		return fmt.Errorf("%w: record says origin %q index %d", ErrBadProof, rec.Origin, rec.Index)
	}
	if err := tlog.CheckRecord(p.Inclusion, cp.Size, cp.Root, p.Index, LeafHash(p.Record)); err != nil {
		return fmt.Errorf("%w: record %d is not in the tree of checkpoint %d", ErrBadProof, p.Index, cp.Size)
	}
	return nil
}
