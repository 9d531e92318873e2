package audittest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
)

// Store is an in-memory audit store. It keeps the audit.Store contract
// (atomic batches, no overwrites) but is not durable. Safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	logs     map[string]*memLog
	writeErr error
}

var (
	_ audit.Store  = (*Store)(nil)
	_ audit.Source = (*Store)(nil)
)

type memLog struct {
	first   int64
	records []*memRecord // by index; nil when pruned
	hashes  []tlog.Hash
	cps     []audit.StoredCheckpoint
	keys    []audit.Key
	open    map[int64]bool // intents without outcome
	head    *audit.Head
}

type memRecord struct {
	data  []byte
	leaf  tlog.Hash
	time  time.Time
	input []byte
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{logs: map[string]*memLog{}} }

// FailWrites makes every following Write fail with err (nil restores).
func (s *Store) FailWrites(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeErr = err
}

func (s *Store) log(origin string) *memLog {
	l := s.logs[origin]
	if l == nil {
		l = &memLog{open: map[int64]bool{}}
		s.logs[origin] = l
	}
	return l
}

func (l *memLog) size() int64 { return int64(len(l.records)) }

// Load implements audit.Store.
func (s *Store) Load(_ context.Context, origin string) (*audit.State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[origin]
	if l == nil {
		return &audit.State{}, nil
	}
	st := &audit.State{Size: l.size(), Keys: slices.Clone(l.keys)}
	for _, i := range audit.FrontierIndexes(st.Size) {
		if i >= int64(len(l.hashes)) {
			return nil, fmt.Errorf("load: hash %d missing", i)
		}
		st.Frontier = append(st.Frontier, l.hashes[i])
	}
	if n := len(l.cps); n > 0 {
		st.Latest = bytes.Clone(l.cps[n-1].Note)
	}
	if l.head != nil {
		h := *l.head
		h.MAC = bytes.Clone(h.MAC)
		st.Head = &h
	}
	return st, nil
}

// Write implements audit.Store.
func (s *Store) Write(_ context.Context, origin string, b *audit.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return s.writeErr
	}
	l := s.log(origin)
	size := l.size()
	for i, r := range b.Records {
		if r.Index != size+int64(i) {
			return fmt.Errorf("write: record index %d, want %d", r.Index, size+int64(i))
		}
	}
	if len(b.Records) > 0 && b.HashIndex != int64(len(l.hashes)) {
		return fmt.Errorf("write: hash index %d, want %d", b.HashIndex, len(l.hashes))
	}
	newSize := size + int64(len(b.Records))
	if c := b.Checkpoint; c != nil {
		if c.Size > newSize || len(l.cps) > 0 && c.Size <= l.cps[len(l.cps)-1].Size {
			return fmt.Errorf("write: checkpoint size %d not after the latest and within %d", c.Size, newSize)
		}
	}
	if k := b.Key; k != nil {
		for _, old := range l.keys {
			if old.ID() == k.ID() {
				return fmt.Errorf("write: key %s exists", k.ID())
			}
		}
	}
	for _, r := range b.Records {
		l.records = append(l.records, &memRecord{data: bytes.Clone(r.Data), leaf: r.Leaf, time: r.Time, input: bytes.Clone(r.Input)})
		switch r.Kind {
		case audit.KindIntent:
			l.open[r.Index] = true
		case audit.KindOutcome:
			delete(l.open, r.IntentIndex)
		}
	}
	if len(b.Records) > 0 {
		l.hashes = append(l.hashes, b.Hashes...)
	}
	if c := b.Checkpoint; c != nil {
		l.cps = append(l.cps, audit.StoredCheckpoint{Size: c.Size, Time: c.Time, Note: bytes.Clone(c.Note)})
	}
	if k := b.Key; k != nil {
		l.keys = append(l.keys, *k)
	}
	if h := b.Head; h != nil {
		l.head = &audit.Head{Size: h.Size, Root: h.Root, MAC: bytes.Clone(h.MAC)}
	}
	return nil
}

// ReadHashes implements audit.Store and audit.Source.
func (s *Store) ReadHashes(_ context.Context, origin string, indexes []int64) ([]tlog.Hash, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.log(origin)
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(l.hashes)) {
			return nil, fmt.Errorf("read hash %d: %w", x, audit.ErrNotFound)
		}
		out[i] = l.hashes[x]
	}
	return out, nil
}

// Record implements audit.Store.
func (s *Store) Record(_ context.Context, origin string, index int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.log(origin)
	if index < 0 || index >= l.size() || l.records[index] == nil {
		return nil, fmt.Errorf("record %d: %w", index, audit.ErrNotFound)
	}
	return bytes.Clone(l.records[index].data), nil
}

// CheckpointAt implements audit.Store.
func (s *Store) CheckpointAt(_ context.Context, origin string, size int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.log(origin)
	i := sort.Search(len(l.cps), func(i int) bool { return l.cps[i].Size >= size })
	if i == len(l.cps) {
		return nil, fmt.Errorf("checkpoint at %d: %w", size, audit.ErrNotFound)
	}
	return bytes.Clone(l.cps[i].Note), nil
}

// Unpaired implements audit.Store.
func (s *Store) Unpaired(_ context.Context, origin string) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.log(origin)
	var idx []int64
	for i := range l.open {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	var out [][]byte
	for _, i := range idx {
		if r := l.records[i]; r != nil {
			out = append(out, bytes.Clone(r.data))
		}
	}
	return out, nil
}

// Inputs implements audit.Store.
func (s *Store) Inputs(_ context.Context, origin string, since time.Time, fn func(record, input []byte) error) error {
	s.mu.Lock()
	l := s.log(origin)
	type pair struct{ data, input []byte }
	var list []pair
	for _, r := range l.records {
		if r != nil && r.input != nil && !r.time.Before(since) {
			list = append(list, pair{bytes.Clone(r.data), bytes.Clone(r.input)})
		}
	}
	s.mu.Unlock()
	for _, p := range list {
		if err := fn(p.data, p.input); err != nil {
			return err
		}
	}
	return nil
}

// IndexAt implements audit.Store.
func (s *Store) IndexAt(_ context.Context, origin string, t time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.log(origin)
	for i, r := range l.records {
		if r != nil && !r.time.Before(t) {
			return int64(i), nil
		}
	}
	return l.size(), nil
}

// Prune implements audit.Store.
func (s *Store) Prune(_ context.Context, origin string, before int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.log(origin)
	var n int64
	before = min(before, l.size())
	for i := l.first; i < before; i++ {
		if l.records[i] != nil {
			l.records[i] = nil
			n++
		}
	}
	l.first = max(l.first, before)
	return n, nil
}

// PruneInputs implements audit.Store.
func (s *Store) PruneInputs(_ context.Context, origin string, before time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, r := range s.log(origin).records {
		if r != nil && r.input != nil && r.time.Before(before) {
			r.input = nil
			n++
		}
	}
	return n, nil
}

// Origins implements audit.Source.
func (s *Store) Origins(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for o, l := range s.logs {
		if len(l.records) > 0 || len(l.cps) > 0 {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Keys implements audit.Source.
func (s *Store) Keys(context.Context) ([]audit.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []audit.Key
	for _, l := range s.logs {
		out = append(out, l.keys...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Origin != out[j].Origin {
			return out[i].Origin < out[j].Origin
		}
		return out[i].Added.Before(out[j].Added)
	})
	return out, nil
}

// Checkpoints implements audit.Source.
func (s *Store) Checkpoints(_ context.Context, origin string, fn func([]byte) error) error {
	s.mu.Lock()
	var notes [][]byte
	for _, c := range s.log(origin).cps {
		notes = append(notes, bytes.Clone(c.Note))
	}
	s.mu.Unlock()
	for _, n := range notes {
		if err := fn(n); err != nil {
			return err
		}
	}
	return nil
}

// Bounds implements audit.Source.
func (s *Store) Bounds(_ context.Context, origin string) (int64, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[origin]
	if l == nil || len(l.records) == 0 && len(l.cps) == 0 {
		return 0, 0, fmt.Errorf("origin %q: %w", origin, audit.ErrNotFound)
	}
	return l.first, l.size(), nil
}

// Frontier implements audit.Source.
func (s *Store) Frontier(ctx context.Context, origin string, size int64) ([]tlog.Hash, error) {
	return s.ReadHashes(ctx, origin, audit.FrontierIndexes(size))
}

// TreeProof implements audit.Source.
func (s *Store) TreeProof(ctx context.Context, origin string, oldSize, newSize int64) (tlog.TreeProof, error) {
	p, err := tlog.ProveTree(newSize, oldSize, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		return s.ReadHashes(ctx, origin, ix)
	}))
	if err != nil {
		return nil, fmt.Errorf("tree proof %d -> %d: %w", oldSize, newSize, err)
	}
	return p, nil
}

// Records implements audit.Source.
func (s *Store) Records(ctx context.Context, origin string, from, to int64, fn func(int64, []byte, *tlog.Hash) error) error {
	s.mu.Lock()
	l := s.log(origin)
	type rec struct {
		i    int64
		data []byte
		leaf tlog.Hash
	}
	var list []rec
	for i := max(from, 0); i < min(to, l.size()); i++ {
		if r := l.records[i]; r != nil {
			list = append(list, rec{i, r.data, r.leaf})
		}
	}
	s.mu.Unlock()
	for _, r := range list {
		if err := fn(r.i, r.data, &r.leaf); err != nil {
			return err
		}
	}
	return nil
}

// Tamper calls fn with the origin's stored record bodies (by index, nil
// when pruned) and checkpoint notes, which fn may change in place or
// replace, to simulate an attacker with write access to the store. Leaves
// and hashes are left as they were unless fn also edits them through
// leaves.
func (s *Store) Tamper(origin string, fn func(records [][]byte, leaves []tlog.Hash, checkpoints [][]byte) ([][]byte, []tlog.Hash, [][]byte)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.log(origin)
	recs := make([][]byte, len(l.records))
	leaves := make([]tlog.Hash, len(l.records))
	for i, r := range l.records {
		if r != nil {
			recs[i] = r.data
			leaves[i] = r.leaf
		}
	}
	cps := make([][]byte, len(l.cps))
	for i, c := range l.cps {
		cps[i] = c.Note
	}
	recs, leaves, cps = fn(recs, leaves, cps)
	old := l.records
	l.records = make([]*memRecord, len(recs))
	for i, d := range recs {
		if d == nil {
			continue
		}
		r := &memRecord{data: d, leaf: leaves[i]}
		if i < len(old) && old[i] != nil {
			r.time, r.input = old[i].time, old[i].input
		}
		l.records[i] = r
	}
	newCps := make([]audit.StoredCheckpoint, len(cps))
	for i, n := range cps {
		newCps[i].Note = n
		if c, err := audit.ParseCheckpoint(noteText(n)); err == nil {
			newCps[i].Size, newCps[i].Time = c.Size, c.Time
		}
	}
	l.cps = newCps
}

// CopyFrom replaces this store's log of origin with a copy of src's, as a
// backup restored later would be.
func (s *Store) CopyFrom(src *Store, origin string) {
	src.mu.Lock()
	from := src.log(origin)
	l := &memLog{
		first: from.first, hashes: slices.Clone(from.hashes), cps: slices.Clone(from.cps),
		keys: slices.Clone(from.keys), open: maps.Clone(from.open),
	}
	for _, r := range from.records {
		if r != nil {
			c := *r
			r = &c
		}
		l.records = append(l.records, r)
	}
	src.mu.Unlock()
	s.mu.Lock()
	s.logs[origin] = l
	s.mu.Unlock()
}

func noteText(msg []byte) []byte {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return msg
	}
	return msg[:i+1]
}
