package audit_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// manyCheckpointsBundle writes a bundle of n heartbeat records with a
// signed checkpoint after every record (the shape of a log that signed a
// checkpoint per batch for a long time). It returns the bundle and the
// verifier key.
func manyCheckpointsBundle(t testing.TB, n int) ([]byte, string) {
	t.Helper()
	signer, vk := audittest.Key(t, origin, 1)
	tree, err := audit.NewTree(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cps, recs bytes.Buffer
	line := func(buf *bytes.Buffer, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		at := start.Add(time.Duration(i) * time.Second)
		r := &audit.Record{V: 1, Index: int64(i), Kind: audit.KindHeartbeat, Time: at, Origin: origin, Instance: "test"}
		data, err := r.MarshalCanonical()
		if err != nil {
			t.Fatal(err)
		}
		leaf := audit.LeafHash(data)
		tree.Append(leaf)
		fmt.Fprintf(&recs, `{"leaf":"%s","record":%s}`+"\n", base64.StdEncoding.EncodeToString(leaf[:]), data)
		root := tree.Root()
		text := origin + "\n" + strconv.Itoa(i+1) + "\n" + base64.StdEncoding.EncodeToString(root[:]) + "\ntime " + at.Format(time.RFC3339Nano) + "\n"
		msg, err := note.Sign(&note.Note{Text: text}, signer)
		if err != nil {
			t.Fatal(err)
		}
		line(&cps, map[string]string{"checkpoint": string(msg)})
	}
	var out bytes.Buffer
	line(&out, map[string]string{"format": audit.BundleFormat})
	line(&out, map[string]any{"key": audit.Key{Origin: origin, VerifierKey: vk}})
	line(&out, map[string]any{"origin": origin, "first": 0, "end": n, "frontier": []tlog.Hash{}})
	out.Write(cps.Bytes())
	out.Write(recs.Bytes())
	return out.Bytes(), vk
}

// liveHeap returns the live heap after a collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// heapProbe is a bundle that measures the live heap where the exporter or
// the verifier holds the most of what it read: at the last checkpoint of
// each pass over them, at each consistency proof asked for, and at the
// first record of each read of records. Where it measures does not depend
// on timing, only on the calls made.
type heapProbe struct {
	*audit.Bundle
	notes int // checkpoints the bundle lists
	peak  uint64
}

func (p *heapProbe) sample() { p.peak = max(p.peak, liveHeap()) }

func (p *heapProbe) Checkpoints(ctx context.Context, o string, fn func([]byte) error) error {
	k := 0
	return p.Bundle.Checkpoints(ctx, o, func(msg []byte) error {
		if err := fn(msg); err != nil {
			return err
		}
		if k++; k == p.notes {
			p.sample()
		}
		return nil
	})
}

func (p *heapProbe) TreeProof(ctx context.Context, o string, oldSize, newSize int64) (tlog.TreeProof, error) {
	p.sample()
	return p.Bundle.TreeProof(ctx, o, oldSize, newSize)
}

func (p *heapProbe) Records(ctx context.Context, o string, from, to int64, fn func(int64, []byte, *tlog.Hash) error) error {
	first := true
	return p.Bundle.Records(ctx, o, from, to, func(i int64, data []byte, leaf *tlog.Hash) error {
		if first {
			first = false
			p.sample()
		}
		return fn(i, data, leaf)
	})
}

// checkpointMemory returns, for a bundle of n checkpoints, the live heap
// the opened bundle holds, and the most the export of it (all of it, and
// the first half) and its verification hold beyond that.
func checkpointMemory(t *testing.T, n int) (open, export, verify uint64) {
	data, vk := manyCheckpointsBundle(t, n)
	base := liveHeap()
	b, err := audit.OpenBundle(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	opened := liveHeap()
	open = max(opened, base) - base

	p := &heapProbe{Bundle: b, notes: n}
	for _, opts := range []audit.BundleOptions{{}, {To: int64(n / 2)}} {
		if err := audit.WriteBundle(t.Context(), io.Discard, p, opts); err != nil {
			t.Fatal(err)
		}
	}
	export = max(p.peak, opened) - opened

	p.peak = 0
	rep, err := audit.Verify(t.Context(), p, audit.VerifyOptions{Keys: []string{vk}, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Origins[0].Checkpoints != n || rep.Records != int64(n) || rep.Origins[0].Latest.Size != int64(n) {
		t.Fatalf("Verify of the generated bundle: ok=%v failures=%v report=%+v", rep.OK(), rep.Failures, rep.Origins[0])
	}
	verify = max(p.peak, opened) - opened
	runtime.KeepAlive(data)
	runtime.KeepAlive(b)
	return open, export, verify
}

// Exporting and verifying a log do not hold its checkpoints: a log signs
// one per busy second and never prunes them, so memory that grew with
// them grew with the log's age (690 bytes per checkpoint in the export,
// 240 in verification: gigabytes after a year). The opened bundle keeps
// where its checkpoint lines are as runs of lines, the export reads the
// checkpoints twice (the range, then the lines), and verification keeps a
// window of them. Between 5,000 and 50,000 checkpoints, each further one
// may add at most a few bytes (the live heap after a collection, so the
// figures do not depend on timing). The bound is 10 bytes: the code that
// held the checkpoints added 19 (the opened bundle), 246 (the export) and
// 95 (Verify) per checkpoint, and the race detector's bookkeeping was seen
// to add 4.6 to a flat Verify (CI runs the tests with -race).
func TestCheckpointMemoryIsFlat(t *testing.T) {
	audit.UseVerifyWindow(t, audit.DefaultVerifyWindow)
	small, large := 5000, 50000
	if s := os.Getenv("SQLGATE_TEST_CHECKPOINTS"); s != "" { // a larger log for the figures in the docs
		large, _ = strconv.Atoi(s)
	}
	open1, export1, verify1 := checkpointMemory(t, small)
	open2, export2, verify2 := checkpointMemory(t, large)
	per := func(a, b uint64) float64 {
		if b < a {
			return 0
		}
		return float64(b-a) / float64(large-small)
	}
	t.Logf("%d checkpoints: the opened bundle holds %d bytes, the export %d more, Verify %d more; %d checkpoints: %d, %d, %d",
		small, open1, export1, verify1, large, open2, export2, verify2)
	const most = 10 // bytes per further checkpoint
	for _, c := range []struct {
		what string
		a, b uint64
	}{{"the opened bundle", open1, open2}, {"the export", export1, export2}, {"Verify", verify1, verify2}} {
		if g := per(c.a, c.b); g > most {
			t.Errorf("%s holds %.1f bytes more per further checkpoint (%d bytes at %d checkpoints, %d at %d), want at most %d",
				c.what, g, c.a, small, c.b, large, most)
		}
	}
}
