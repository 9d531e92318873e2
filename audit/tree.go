package audit

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// LeafHash returns the RFC 6962 leaf hash of a record's canonical encoding,
// SHA-256(0x00 || data); it equals tlog.RecordHash(data).
func LeafHash(data []byte) tlog.Hash { return tlog.RecordHash(data) }

// leafHasher computes leaf hashes reusing one SHA-256 state.
type leafHasher struct{ h hash.Hash }

func (l *leafHasher) sum(data []byte) tlog.Hash {
	if l.h == nil {
		l.h = sha256.New()
	}
	l.h.Reset()
	l.h.Write([]byte{0})
	l.h.Write(data)
	var out tlog.Hash
	l.h.Sum(out[:0])
	return out
}

// frontierIndexes returns the stored hash indexes (see tlog.StoredHashIndex)
// of the roots of the perfect subtrees that cover records [0, n), left to
// right: the tree's frontier. Their hashes determine the tree hash of size n
// and every later tree hash together with the later records.
func frontierIndexes(n int64) []int64 {
	var out []int64
	var lo int64
	for level := 62; level >= 0; level-- {
		if n&(1<<level) != 0 {
			out = append(out, tlog.StoredHashIndex(level, lo>>level))
			lo += 1 << level
		}
	}
	return out
}

// frontier is a compact Merkle tree: the size and the roots of the perfect
// subtrees covering [0, size), left to right. Appending a leaf and computing
// the root need no storage, which is what the verifier streams with.
type frontier struct {
	size   int64
	hashes []tlog.Hash
}

// newFrontier returns the frontier of a tree of size n from the hashes at
// [frontierIndexes](n).
func newFrontier(n int64, hashes []tlog.Hash) (*frontier, bool) {
	if n < 0 || bits.OnesCount64(uint64(n)) != len(hashes) {
		return nil, false
	}
	return &frontier{size: n, hashes: append([]tlog.Hash(nil), hashes...)}, true
}

func (f *frontier) append(leaf tlog.Hash) {
	f.hashes = append(f.hashes, leaf)
	for n := f.size; n&1 == 1; n >>= 1 {
		l := len(f.hashes)
		f.hashes[l-2] = tlog.NodeHash(f.hashes[l-2], f.hashes[l-1])
		f.hashes = f.hashes[:l-1]
	}
	f.size++
}

// appendStored appends leaf like append and also appends to out the hashes
// tlog.StoredHashes stores for the new record: the leaf, then the root of
// each subtree the leaf completes.
func (f *frontier) appendStored(leaf tlog.Hash, out []tlog.Hash) []tlog.Hash {
	out = append(out, leaf)
	f.hashes = append(f.hashes, leaf)
	for n := f.size; n&1 == 1; n >>= 1 {
		l := len(f.hashes)
		h := tlog.NodeHash(f.hashes[l-2], f.hashes[l-1])
		f.hashes[l-2] = h
		f.hashes = f.hashes[:l-1]
		out = append(out, h)
	}
	f.size++
	return out
}

func (f *frontier) clone() *frontier {
	return &frontier{size: f.size, hashes: append([]tlog.Hash(nil), f.hashes...)}
}

// root returns the tree hash (tlog.TreeHash) of the first size records.
func (f *frontier) root() tlog.Hash {
	if len(f.hashes) == 0 {
		return emptyTreeHash
	}
	h := f.hashes[len(f.hashes)-1]
	for i := len(f.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(f.hashes[i], h)
	}
	return h
}

// emptyTreeHash is the hash of the empty tree, SHA-256 of nothing.
var emptyTreeHash = tlog.Hash(sha256.Sum256(nil))

// rootOf returns the tree hash of size n given its frontier hashes.
func rootOf(n int64, hashes []tlog.Hash) (tlog.Hash, bool) {
	f, ok := newFrontier(n, hashes)
	if !ok {
		return tlog.Hash{}, false
	}
	return f.root(), true
}

// SizeForStoredHashCount returns the tree size n whose stored hash count
// (tlog.StoredHashCount(n)) is count, and false when no size has exactly that
// many stored hashes (a store that lost hashes). Stores use it to learn a
// log's size from its hashes, which pruning never removes.
func SizeForStoredHashCount(count int64) (int64, bool) { return storedCountToSize(count) }

// storedCountToSize implements [SizeForStoredHashCount].
func storedCountToSize(count int64) (int64, bool) {
	if count <= 0 {
		return 0, count == 0
	}
	// StoredHashCount(n) is between 2n-1-log n and 2n-1; search near count/2.
	lo, hi := int64(0), count
	for lo < hi {
		mid := lo + (hi-lo)/2
		if tlog.StoredHashCount(mid) < count {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, tlog.StoredHashCount(lo) == count
}

// Tree is a Merkle tree, as tlog hashes it, held as its frontier: the roots
// of the perfect subtrees covering its leaves. A reader who checked a
// [Source] once uses it to check what it reads again: from the frontier at
// one size and the leaves after it, the tree hash at a later size, to
// compare with a signed checkpoint. The zero value is not usable; see
// [NewTree].
type Tree struct{ f frontier }

// NewTree returns the tree of size n whose frontier hashes, at
// [FrontierIndexes](n), are hashes (none for n == 0).
func NewTree(n int64, hashes []tlog.Hash) (*Tree, error) {
	f, ok := newFrontier(n, hashes)
	if !ok {
		return nil, fmt.Errorf("a tree of size %d has %d frontier hashes, not %d", n, bits.OnesCount64(uint64(max(n, 0))), len(hashes))
	}
	return &Tree{f: *f}, nil
}

// Append adds the leaf hash ([LeafHash]) of the record at index Size.
func (t *Tree) Append(leaf tlog.Hash) { t.f.append(leaf) }

// Size is the number of leaves.
func (t *Tree) Size() int64 { return t.f.size }

// Root is the tree hash (tlog.TreeHash) of the Size leaves.
func (t *Tree) Root() tlog.Hash { return t.f.root() }

// Clone returns an independent copy.
func (t *Tree) Clone() *Tree { return &Tree{f: *t.f.clone()} }
