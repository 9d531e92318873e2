package audit

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrUnauthenticated is returned (wrapped) by [Open] when the store holds
// records past the latest checkpoint that the log cannot authenticate as its
// own, and by appends after a failed write when the store's tree is neither
// the log's nor the one of the batch that failed: someone else wrote records
// (or removed them) under the log's origin. The log refuses to sign over
// them; see docs/audit.md ("Records past the latest checkpoint").
var ErrUnauthenticated = errors.New("audit store holds records this log did not write")

// Head is a log's authenticated head as a [Store] keeps it: the size and
// root hash of the tree after the latest batch, and an HMAC-SHA256 over
// them and the origin with a key derived from the log's signing key. The
// log writes it in the same transaction as every batch of records, so that
// records past the latest checkpoint (checkpoints are signed at most every
// CheckpointInterval, not per batch) can be told from records someone
// inserted with SQL access but without the key. Verifiers do not use it.
type Head struct {
	Size int64
	Root tlog.Hash
	MAC  []byte
}

// headKeyLabel separates the head MAC key from every other use of the
// signing key.
const headKeyLabel = "sqlgate audit head v1"

// headKey derives the head MAC key from the signer: HKDF-SHA256 over the
// signer's signature of a fixed message. The message ends without a
// newline, so it is never the text of a note (checkpoints and evidence
// manifests are signed as notes, whose text ends in a newline) and the
// signature never leaves the process. Ed25519 signatures are deterministic
// (RFC 8032); a signer whose signatures are not cannot key the head.
func headKey(s Signer, origin string) ([]byte, error) {
	msg := []byte(headKeyLabel + "\x00key\x00" + origin)
	a, err := s.Sign(msg)
	if err != nil {
		return nil, fmt.Errorf("derive audit head key: %w", err)
	}
	b, err := s.Sign(msg)
	if err != nil {
		return nil, fmt.Errorf("derive audit head key: %w", err)
	}
	if len(a) == 0 || !bytes.Equal(a, b) {
		return nil, errors.New("derive audit head key: the signer's signatures are not deterministic (use an Ed25519 key from audit.GenerateKey)")
	}
	key, err := hkdf.Key(sha256.New, a, nil, headKeyLabel+"\x00"+origin, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("derive audit head key: %w", err)
	}
	return key, nil
}

// headMAC returns the MAC of (origin, size, root), appended to dst:
// HMAC-SHA256 (m, keyed with the head key) over the label, the origin's
// length and bytes, the size and the root, in a fixed binary encoding. The
// message is built in *msg (kept for the next call), so that writing it
// allocates nothing.
func headMAC(m hash.Hash, dst []byte, msg *[]byte, origin string, size int64, root tlog.Hash) []byte {
	b := append((*msg)[:0], headKeyLabel+"\x00mac\x00"...)
	b = binary.BigEndian.AppendUint64(b, uint64(len(origin)))
	b = append(b, origin...)
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	b = append(b, root[:]...)
	*msg = b
	m.Reset()
	m.Write(b)
	return m.Sum(dst)
}

// treeHead is a size and root the log vouches for (published for readers
// outside the committer goroutine).
type treeHead struct {
	size int64
	root tlog.Hash
}
