package audit

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// memHashes is a tlog.HashReader over a slice of stored hashes.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x >= int64(len(m)) {
			return nil, fmt.Errorf("hash %d not stored", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

// TestFrontierMatchesTlog checks the frontier against x/mod/sumdb/tlog:
// the same stored hashes (StoredHashes), the same tree hashes (TreeHash),
// and a frontier rebuilt from stored hashes at any size continues
// identically.
func TestFrontierMatchesTlog(t *testing.T) {
	const n = 1100
	var stored memHashes
	f := &frontier{}
	var hasher leafHasher
	for i := int64(0); i < n; i++ {
		data := []byte(fmt.Sprintf("record %d", i))
		if hasher.sum(data) != tlog.RecordHash(data) || LeafHash(data) != tlog.RecordHash(data) {
			t.Fatalf("leaf hash of %d differs from tlog.RecordHash", i)
		}
		want, err := tlog.StoredHashes(i, data, stored)
		if err != nil {
			t.Fatal(err)
		}
		got := f.appendStored(hasher.sum(data), nil)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("appendStored(%d) = %v, want %v", i, got, want)
		}
		stored = append(stored, want...)
		if int64(len(stored)) != tlog.StoredHashCount(i+1) {
			t.Fatalf("stored %d hashes after %d records, want %d", len(stored), i+1, tlog.StoredHashCount(i+1))
		}
		th, err := tlog.TreeHash(i+1, stored)
		if err != nil {
			t.Fatal(err)
		}
		if f.root() != th {
			t.Fatalf("root(%d) = %v, want %v", i+1, f.root(), th)
		}
		// Rebuild from the stored frontier hashes.
		fh, err := stored.ReadHashes(frontierIndexes(i + 1))
		if err != nil {
			t.Fatal(err)
		}
		r, ok := rootOf(i+1, fh)
		if !ok || r != th {
			t.Fatalf("rootOf(%d) = %v %v, want %v", i+1, r, ok, th)
		}
		if size, ok := storedCountToSize(int64(len(stored))); !ok || size != i+1 {
			t.Fatalf("storedCountToSize(%d) = %d %v, want %d", len(stored), size, ok, i+1)
		}
	}
	if f.size != n {
		t.Errorf("size = %d, want %d", f.size, n)
	}
	if (&frontier{}).root() != tlog.Hash(sha256.Sum256(nil)) {
		t.Error("empty root is not SHA-256 of nothing")
	}
	if _, ok := storedCountToSize(2); ok {
		t.Error("storedCountToSize(2) = ok, want false (no tree has 2 stored hashes)")
	}
	if _, ok := newFrontier(3, make([]tlog.Hash, 1)); ok {
		t.Error("newFrontier(3, 1 hash) = ok, want false")
	}
}

// TestTreeFromFrontier: a Tree started from the stored frontier at any size
// and fed the later leaves has tlog's tree hash at every later size.
func TestTreeFromFrontier(t *testing.T) {
	const n = 70
	var stored memHashes
	for i := range int64(n) {
		hs, err := tlog.StoredHashes(i, []byte(fmt.Sprint(i)), stored)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, hs...)
	}
	for start := int64(0); start <= n; start += 7 {
		hashes, err := stored.ReadHashes(FrontierIndexes(start))
		if err != nil {
			t.Fatal(err)
		}
		tree, err := NewTree(start, hashes)
		if err != nil {
			t.Fatalf("NewTree(%d) = %v", start, err)
		}
		for i := start; i < n; i++ {
			tree.Append(LeafHash([]byte(fmt.Sprint(i))))
			want, err := tlog.TreeHash(i+1, stored)
			if err != nil {
				t.Fatal(err)
			}
			if got := tree.Root(); got != want || tree.Size() != i+1 {
				t.Fatalf("from %d: Root at %d = %v (size %d), want %v", start, i+1, got, tree.Size(), want)
			}
		}
		if _, err := NewTree(start+1, hashes); start+1 <= n && len(FrontierIndexes(start+1)) != len(hashes) && err == nil {
			t.Errorf("NewTree(%d) accepted the %d hashes of size %d", start+1, len(hashes), start)
		}
	}
}
