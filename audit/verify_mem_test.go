package audit_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
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

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// atFirstRecords measures the live heap when Verify starts reading records:
// every checkpoint is loaded by then.
type atFirstRecords struct {
	*audit.Bundle
	heap uint64
}

func (s *atFirstRecords) Records(ctx context.Context, o string, from, to int64, fn func(int64, []byte, *tlog.Hash) error) error {
	if s.heap == 0 {
		s.heap = heapInUse()
	}
	return s.Bundle.Records(ctx, o, from, to, fn)
}

// checkpointMemory returns the heap an opened bundle of n checkpoints
// holds, and the heap Verify holds once every checkpoint is loaded.
func checkpointMemory(t testing.TB, n int) (open, verify uint64) {
	data, vk := manyCheckpointsBundle(t, n)
	base := heapInUse()
	b, err := audit.OpenBundle(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	opened := heapInUse()
	src := &atFirstRecords{Bundle: b}
	rep, err := audit.Verify(t.Context(), src, audit.VerifyOptions{Keys: []string{vk}, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Origins[0].Checkpoints != n || rep.Records != int64(n) || rep.Origins[0].Latest.Size != int64(n) {
		t.Fatalf("Verify of the generated bundle: ok=%v failures=%v report=%+v", rep.OK(), rep.Failures, rep.Origins[0])
	}
	runtime.KeepAlive(data)
	return max(opened, base) - base, max(src.heap, opened) - opened
}

// Verification holds, per checkpoint, its size, root and time (the note
// is read again from the bundle file, and only the newest note is kept),
// not every note several times: a log with a checkpoint per batch for
// years must verify in bounded memory. The figures are the heap a further
// checkpoint adds (two sizes, so that fixed buffers cancel out).
func TestVerifyMemoryPerCheckpoint(t *testing.T) {
	n := 2000
	if s := os.Getenv("SQLGATE_TEST_CHECKPOINTS"); s != "" { // 60000 for the figure in the report
		n, _ = strconv.Atoi(s)
	}
	open1, verify1 := checkpointMemory(t, n)
	open2, verify2 := checkpointMemory(t, 2*n)
	per := func(a, b uint64) float64 {
		if b < a {
			return 0
		}
		return float64(b-a) / float64(n)
	}
	open, verify := per(open1, open2), per(verify1, verify2)
	t.Logf("%d checkpoints: the opened bundle holds %d bytes, Verify %d more while scanning; each further checkpoint adds %.0f and %.0f bytes",
		2*n, open2, verify2, open, verify)
	if open > 48 {
		t.Errorf("the opened bundle holds %.0f bytes per checkpoint, want at most 48 (file offsets, not notes)", open)
	}
	if verify > 128 {
		t.Errorf("Verify holds %.0f bytes per checkpoint, want at most 128 (size, root, time)", verify)
	}
}
