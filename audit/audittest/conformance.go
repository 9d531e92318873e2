package audittest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
)

// StoreSource is what a complete audit store implements.
type StoreSource interface {
	audit.Store
	audit.Source
}

// RunStoreTests runs the audit.Store and audit.Source contract against
// stores made by newStore (each call must return an empty store).
func RunStoreTests(t *testing.T, newStore func(t *testing.T) StoreSource) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, newStore(t)) })
	t.Run("LogRoundTrip", func(t *testing.T) { testLogRoundTrip(t, newStore(t)) })
	t.Run("NoOverwrite", func(t *testing.T) { testNoOverwrite(t, newStore(t)) })
	t.Run("AtomicBatch", func(t *testing.T) { testAtomicBatch(t, newStore(t)) })
	t.Run("Prune", func(t *testing.T) { testPrune(t, newStore(t)) })
	t.Run("SeveralOrigins", func(t *testing.T) { testSeveralOrigins(t, newStore(t)) })
	t.Run("Head", func(t *testing.T) { testHead(t, newStore(t)) })
}

const confOrigin = "sqlgate.conformance/a"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func openConfLog(t *testing.T, s audit.Store, origin string, c *clock) *audit.Log {
	t.Helper()
	cfg := Config(t, origin)
	cfg.Now = c.now
	cfg.CheckpointInterval = time.Hour
	cfg.Heartbeat = time.Hour
	l, err := audit.Open(t.Context(), s, cfg)
	if err != nil {
		t.Fatalf("audit.Open = %v", err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func appendConf(t *testing.T, l *audit.Log, r *audit.Record, input []byte) int64 {
	t.Helper()
	var i int64
	var err error
	if input != nil {
		i, err = l.AppendWithInput(t.Context(), r, input)
	} else {
		i, err = l.Append(t.Context(), r)
	}
	if err != nil {
		t.Fatalf("Append = %v", err)
	}
	return i
}

func testEmpty(t *testing.T, s StoreSource) {
	ctx := t.Context()
	st, err := s.Load(ctx, confOrigin)
	if err != nil || st.Size != 0 || st.Latest != nil || len(st.Keys) != 0 || len(st.Frontier) != 0 {
		t.Fatalf("Load(new origin) = %+v, %v; want empty", st, err)
	}
	if o, err := s.Origins(ctx); err != nil || len(o) != 0 {
		t.Errorf("Origins = %v, %v; want none", o, err)
	}
	if _, _, err := s.Bounds(ctx, confOrigin); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("Bounds(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Record(ctx, confOrigin, 0); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("Record(0) = %v, want ErrNotFound", err)
	}
	if _, err := s.ReadHashes(ctx, confOrigin, []int64{0}); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("ReadHashes(0) = %v, want ErrNotFound", err)
	}
	if _, err := s.CheckpointAt(ctx, confOrigin, 0); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("CheckpointAt(0) = %v, want ErrNotFound", err)
	}
}

func testLogRoundTrip(t *testing.T, s StoreSource) {
	ctx := t.Context()
	c := &clock{t: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	l := openConfLog(t, s, confOrigin, c)
	for i := range 40 {
		corr := fmt.Sprint("c", i)
		var input []byte
		if i%3 == 0 {
			input = []byte(fmt.Sprintf(`{"n":%d}`, i))
		}
		in := appendConf(t, l, &audit.Record{Kind: audit.KindIntent, CorrelationID: corr}, input)
		if i%5 != 4 { // every fifth intent stays open
			appendConf(t, l, &audit.Record{
				Kind: audit.KindOutcome, CorrelationID: corr, IntentIndex: in,
				SQL: &audit.SQL{Outcome: "commit"}, Result: &audit.Result{Status: "ok"},
			}, nil)
		}
		if i%10 == 9 {
			if err := l.Sync(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	size := l.Size()

	st, err := s.Load(ctx, confOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != size || len(st.Keys) != 1 || st.Latest == nil {
		t.Fatalf("Load = size %d keys %d latest %v; want size %d, 1 key, a checkpoint", st.Size, len(st.Keys), st.Latest != nil, size)
	}
	verifiers, _ := audit.NewVerifiers(st.Keys[0].VerifierKey)
	latest, err := audit.OpenCheckpoint(st.Latest, verifiers)
	if err != nil {
		t.Fatal(err)
	}
	th, err := tlog.TreeHash(size, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return s.ReadHashes(ctx, confOrigin, ix) }))
	if err != nil || latest.Size != size || latest.Root != th {
		t.Fatalf("latest checkpoint %d/%v, tree hash %v, %v", latest.Size, latest.Root, th, err)
	}
	for _, i := range []int64{0, 1, size / 2, size - 1} {
		data, err := s.Record(ctx, confOrigin, i)
		if err != nil {
			t.Fatalf("Record(%d) = %v", i, err)
		}
		r, err := audit.DecodeRecord(data)
		if err != nil || r.Index != i {
			t.Fatalf("Record(%d) decodes to %v, %v", i, r, err)
		}
		h, err := s.ReadHashes(ctx, confOrigin, []int64{tlog.StoredHashIndex(0, i)})
		if err != nil || h[0] != audit.LeafHash(data) {
			t.Errorf("leaf hash of %d = %v, %v", i, h, err)
		}
	}
	// ReadHashes keeps the order asked, duplicates included.
	ix := []int64{5, 1, 5, 0}
	hs, err := s.ReadHashes(ctx, confOrigin, ix)
	if err != nil || len(hs) != 4 || hs[0] != hs[2] || hs[0] == hs[1] {
		t.Errorf("ReadHashes(%v) = %v, %v", ix, hs, err)
	}
	if note, err := s.CheckpointAt(ctx, confOrigin, 3); err != nil {
		t.Errorf("CheckpointAt(3) = %v", err)
	} else if c, err := audit.OpenCheckpoint(note, verifiers); err != nil || c.Size < 3 {
		t.Errorf("CheckpointAt(3) gave %+v, %v", c, err)
	}
	var sizes []int64
	err = s.Checkpoints(ctx, confOrigin, func(n []byte) error {
		c, err := audit.OpenCheckpoint(n, verifiers)
		if err != nil {
			return err
		}
		sizes = append(sizes, c.Size)
		return nil
	})
	if err != nil || len(sizes) < 5 || !slices.IsSorted(sizes) || sizes[len(sizes)-1] != size {
		t.Errorf("Checkpoints sizes = %v, %v", sizes, err)
	}
	// Consistency proofs between every pair of checkpoints.
	for i := 1; i < len(sizes); i++ {
		p, err := s.TreeProof(ctx, confOrigin, sizes[i-1], sizes[i])
		if err != nil {
			t.Fatal(err)
		}
		a, _ := s.Frontier(ctx, confOrigin, sizes[i-1])
		b, _ := s.Frontier(ctx, confOrigin, sizes[i])
		ra, rb := rootOf(t, sizes[i-1], a), rootOf(t, sizes[i], b)
		if err := tlog.CheckTree(p, sizes[i], rb, sizes[i-1], ra); err != nil {
			t.Errorf("TreeProof(%d, %d) does not check: %v", sizes[i-1], sizes[i], err)
		}
	}
	open, err := s.Unpaired(ctx, confOrigin)
	if err != nil || len(open) != 8 {
		t.Fatalf("Unpaired = %d, %v; want 8", len(open), err)
	}
	var prev int64 = -1
	for _, d := range open {
		r, _ := audit.DecodeRecord(d)
		if r.Kind != audit.KindIntent || r.Index <= prev {
			t.Errorf("Unpaired gave %+v out of order", r)
		}
		prev = r.Index
	}
	var inputs int
	err = s.Inputs(ctx, confOrigin, time.Time{}, func(rec, in []byte) error {
		r, err := audit.DecodeRecord(rec)
		if err != nil || !bytes.HasPrefix(in, []byte(`{"n":`)) || r.InputHMAC == "" {
			return fmt.Errorf("input %s for %s", in, rec)
		}
		inputs++
		return nil
	})
	if err != nil || inputs != 14 {
		t.Errorf("Inputs = %d, %v; want 14", inputs, err)
	}
	if i, err := s.IndexAt(ctx, confOrigin, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil || i != size {
		t.Errorf("IndexAt(future) = %d, %v; want %d", i, err, size)
	}
	if i, err := s.IndexAt(ctx, confOrigin, time.Time{}); err != nil || i != 0 {
		t.Errorf("IndexAt(zero) = %d, %v; want 0", i, err)
	}
	first, end, err := s.Bounds(ctx, confOrigin)
	if err != nil || first != 0 || end != size {
		t.Errorf("Bounds = %d, %d, %v", first, end, err)
	}
	var got []int64
	err = s.Records(ctx, confOrigin, 10, 20, func(i int64, data []byte, leaf *tlog.Hash) error {
		if leaf != nil && *leaf != audit.LeafHash(data) {
			return fmt.Errorf("leaf of %d wrong", i)
		}
		got = append(got, i)
		return nil
	})
	if err != nil || len(got) != 10 || got[0] != 10 || got[9] != 19 {
		t.Errorf("Records(10, 20) = %v, %v", got, err)
	}
	if o, err := s.Origins(ctx); err != nil || !slices.Equal(o, []string{confOrigin}) {
		t.Errorf("Origins = %v, %v", o, err)
	}
	rep, err := audit.Verify(ctx, s, audit.VerifyOptions{Keys: []string{st.Keys[0].VerifierKey}})
	if err != nil || !rep.OK() || rep.Records != size || rep.Origins[0].Unpaired != 8 {
		t.Errorf("Verify = %+v, %v", rep, err)
	}
}

func rootOf(t *testing.T, n int64, frontier []tlog.Hash) tlog.Hash {
	t.Helper()
	h, err := tlog.TreeHash(n, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
		if len(ix) != len(frontier) {
			return nil, fmt.Errorf("frontier of %d has %d hashes, want %d", n, len(frontier), len(ix))
		}
		return frontier, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// nextBatch builds a valid batch appending one admin record.
func nextBatch(t *testing.T, s StoreSource, origin string) *audit.Batch {
	t.Helper()
	ctx := t.Context()
	st, err := s.Load(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	r := &audit.Record{
		V: audit.SchemaVersion, Index: st.Size, Kind: audit.KindAdmin, Time: time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC),
		Origin: origin, Admin: &audit.Admin{Action: "conformance"},
	}
	data, err := r.MarshalCanonical()
	if err != nil {
		t.Fatal(err)
	}
	hashes, err := tlog.StoredHashes(st.Size, data, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return s.ReadHashes(ctx, origin, ix) }))
	if err != nil {
		t.Fatal(err)
	}
	return &audit.Batch{
		Records:   []audit.StoredRecord{{Index: r.Index, Kind: r.Kind, Time: r.Time, Data: data, Leaf: audit.LeafHash(data)}},
		HashIndex: tlog.StoredHashIndex(0, st.Size),
		Hashes:    hashes,
	}
}

func testNoOverwrite(t *testing.T, s StoreSource) {
	ctx := t.Context()
	c := &clock{t: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	l := openConfLog(t, s, confOrigin, c)
	appendConf(t, l, &audit.Record{Kind: audit.KindIntent}, nil)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b := nextBatch(t, s, confOrigin)
	// Rewind the batch onto index 1, which exists.
	b.Records[0].Index = 1
	b.HashIndex = tlog.StoredHashIndex(0, 1)
	if err := s.Write(ctx, confOrigin, b); err == nil {
		t.Error("Write over an existing record = nil error")
	}
	old, _ := s.Record(ctx, confOrigin, 1)
	if r, err := audit.DecodeRecord(old); err != nil || r.Kind != audit.KindIntent {
		t.Errorf("record 1 after a refused overwrite = %s, %v", old, err)
	}
	// A checkpoint of an existing size is refused too.
	st, _ := s.Load(ctx, confOrigin)
	if err := s.Write(ctx, confOrigin, &audit.Batch{Checkpoint: &audit.StoredCheckpoint{Size: st.Size, Time: c.now(), Note: []byte("x")}}); err == nil {
		t.Error("Write of a second checkpoint of the same size = nil error")
	}
	if st2, _ := s.Load(ctx, confOrigin); !bytes.Equal(st2.Latest, st.Latest) {
		t.Error("latest checkpoint changed after a refused write")
	}
}

func testAtomicBatch(t *testing.T, s StoreSource) {
	ctx := t.Context()
	c := &clock{t: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	l := openConfLog(t, s, confOrigin, c)
	appendConf(t, l, &audit.Record{Kind: audit.KindIntent}, []byte("in"))
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Load(ctx, confOrigin)
	b := nextBatch(t, s, confOrigin)
	b.Records[0].Input = []byte("sidecar")
	// The record part is valid, the checkpoint part collides: nothing may stay.
	b.Checkpoint = &audit.StoredCheckpoint{Size: before.Size, Time: c.now(), Note: []byte("collides")}
	if err := s.Write(ctx, confOrigin, b); err == nil {
		t.Fatal("Write with a colliding checkpoint = nil error")
	}
	after, err := s.Load(ctx, confOrigin)
	if err != nil || after.Size != before.Size {
		t.Fatalf("size after a failed batch = %d, %v; want %d", after.Size, err, before.Size)
	}
	if _, err := s.Record(ctx, confOrigin, before.Size); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("record of a failed batch is visible: %v", err)
	}
	// The same batch without the collision goes through.
	b.Checkpoint = nil
	if err := s.Write(ctx, confOrigin, b); err != nil {
		t.Fatalf("Write = %v", err)
	}
	if st, _ := s.Load(ctx, confOrigin); st.Size != before.Size+1 {
		t.Errorf("size = %d, want %d", st.Size, before.Size+1)
	}
}

func testPrune(t *testing.T, s StoreSource) {
	ctx := t.Context()
	c := &clock{t: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	l := openConfLog(t, s, confOrigin, c)
	var mid time.Time
	for i := range 20 {
		if i == 10 {
			mid = c.now()
		}
		appendConf(t, l, &audit.Record{Kind: audit.KindDecision}, []byte("x"))
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cut, err := s.IndexAt(ctx, confOrigin, mid)
	if err != nil || cut != 11 {
		t.Fatalf("IndexAt(mid) = %d, %v; want 11", cut, err)
	}
	n, err := s.PruneInputs(ctx, confOrigin, mid)
	if err != nil || n != 10 {
		t.Errorf("PruneInputs = %d, %v; want 10", n, err)
	}
	n, err = s.Prune(ctx, confOrigin, cut)
	if err != nil || n != 11 {
		t.Fatalf("Prune = %d, %v; want 11", n, err)
	}
	if _, err := s.Record(ctx, confOrigin, 5); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("Record(pruned) = %v", err)
	}
	first, end, err := s.Bounds(ctx, confOrigin)
	if err != nil || first != 11 || end != 21 {
		t.Errorf("Bounds after prune = %d, %d, %v; want 11, 21", first, end, err)
	}
	st, err := s.Load(ctx, confOrigin)
	if err != nil || st.Size != 21 {
		t.Fatalf("Load after prune = %+v, %v", st, err)
	}
	rep, err := audit.Verify(ctx, s, audit.VerifyOptions{Keys: []string{st.Keys[0].VerifierKey}})
	if err != nil || !rep.OK() || rep.Origins[0].Pruned != 11 || rep.Records != 10 {
		t.Errorf("Verify after prune: %+v %v", rep, err)
	}
	// The log goes on after pruning.
	l2 := openConfLog(t, s, confOrigin, c)
	if i := appendConf(t, l2, &audit.Record{Kind: audit.KindDecision}, nil); i != 21 {
		t.Errorf("next index after prune = %d, want 21", i)
	}
}

func testSeveralOrigins(t *testing.T, s StoreSource) {
	ctx := t.Context()
	c := &clock{t: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	a := openConfLog(t, s, "sqlgate.conformance/a", c)
	b := openConfLog(t, s, "sqlgate.conformance/b", c)
	for range 5 {
		appendConf(t, a, &audit.Record{Kind: audit.KindDecision}, nil)
		appendConf(t, b, &audit.Record{Kind: audit.KindDecision}, nil)
	}
	appendConf(t, b, &audit.Record{Kind: audit.KindDecision}, nil)
	_ = a.Close(ctx)
	_ = b.Close(ctx)
	if o, err := s.Origins(ctx); err != nil || !slices.Equal(o, []string{"sqlgate.conformance/a", "sqlgate.conformance/b"}) {
		t.Errorf("Origins = %v, %v", o, err)
	}
	keys, err := s.Keys(ctx)
	if err != nil || len(keys) != 2 || keys[0].Origin != "sqlgate.conformance/a" {
		t.Fatalf("Keys = %+v, %v", keys, err)
	}
	rep, err := audit.Verify(ctx, s, audit.VerifyOptions{Keys: []string{keys[0].VerifierKey, keys[1].VerifierKey}})
	if err != nil || !rep.OK() || rep.Records != 13 {
		t.Errorf("Verify = %+v, %v", rep, err)
	}
}

// testHead: Load returns the head of the latest batch that carried one
// (per origin); a batch without one leaves it; a log that crashed with
// records past its latest checkpoint reopens on it.
func testHead(t *testing.T, s StoreSource) {
	ctx := t.Context()
	c := &clock{t: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}
	const origin = "sqlgate.conformance/head"
	if st, err := s.Load(ctx, origin); err != nil || st.Head != nil {
		t.Fatalf("Load of a new origin: head %+v, %v", st.Head, err)
	}
	l := openConfLog(t, s, origin, c)
	for range 3 {
		appendConf(t, l, &audit.Record{Kind: audit.KindDecision}, nil)
	}
	st, err := s.Load(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Head == nil || st.Head.Size != 4 || st.Head.Root != rootOf(t, st.Size, st.Frontier) || len(st.Head.MAC) != 32 {
		t.Fatalf("head after 4 records = %+v (size %d)", st.Head, st.Size)
	}
	if err := l.Sync(ctx); err != nil { // a batch with a checkpoint only
		t.Fatal(err)
	}
	if st2, err := s.Load(ctx, origin); err != nil || st2.Head == nil || st2.Head.Size != 4 || st2.Head.Root != st.Head.Root {
		t.Fatalf("head after a checkpoint-only batch = %+v, %v", st2.Head, err)
	}
	if other, err := s.Load(ctx, "sqlgate.conformance/other"); err != nil || other.Head != nil {
		t.Fatalf("another origin's head = %+v, %v", other.Head, err)
	}
	appendConf(t, l, &audit.Record{Kind: audit.KindDecision}, nil)
	// Crash: no Close; the restart signs the record past the checkpoint.
	l2 := openConfLog(t, s, origin, c)
	if cp, err := l2.Latest(ctx); err != nil || cp.Size != 5 {
		t.Fatalf("checkpoint after the restart = %+v, %v; want size 5", cp, err)
	}
}
