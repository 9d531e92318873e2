package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func BenchmarkMarshalCanonical(b *testing.B) {
	r := sampleRecords()[0]
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = r.AppendCanonical(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeRecord(b *testing.B) {
	data, _ := sampleRecords()[0].MarshalCanonical()
	d := recordDecoder{spare: &spare{}}
	var r Record
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := d.decode(&r, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHashParams(b *testing.B) {
	params := map[string]any{"customer": "c-42", "amount": 10.5, "note": "hello"}
	b.ReportAllocs()
	for b.Loop() {
		_ = HashParams(testParamKey, params, []string{"note"})
	}
}

// BenchmarkLogHashParams is HashParams as a log computes it for each call
// (reusing HMAC states).
func BenchmarkLogHashParams(b *testing.B) {
	params := map[string]any{"customer": "c-42", "amount": 10.5, "note": "hello"}
	h := paramHasher{key: testParamKey}
	b.ReportAllocs()
	for b.Loop() {
		_ = h.params(params, []string{"note"})
	}
}

// genSource is a Source that computes a synthetic log of n records on the
// fly (nothing stored), with a checkpoint every cpEvery records.
type genSource struct {
	origin string
	n      int64
	keys   []Key
	notes  [][]byte
}

func (g *genSource) record(i int64, buf []byte) []byte {
	allow := true
	r := Record{
		V: 1, Index: i, Time: time.Unix(1_780_000_000, 0).Add(time.Duration(i) * time.Millisecond).UTC(),
		Origin: g.origin, Instance: "bench-host",
	}
	switch {
	case i == 0:
		r.Kind, r.Admin = KindAdmin, &Admin{Action: "log_start", Detail: g.keys[0].VerifierKey}
	case i%2 == 1:
		r.Kind = KindIntent
		r.CorrelationID = fmt.Sprintf("0193b1f2-7c4e-7a00-8d3b-%012d", i)
		r.Actor = &Actor{Issuer: "https://login.microsoftonline.com/tenant/v2.0", Subject: "alice-subject-123", Email: "alice@example.com", MFA: true, NATSUserKey: "UABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUV", Transport: "nats"}
		r.DecisionID = fmt.Sprintf("0193b1f2-7c4e-7a00-9d3b-%012d", i)
		r.Entry, r.PolicyRevision, r.Allow = "call", "3f2a9c4e8b1d7f6a5e4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e", &allow
		r.Route, r.TargetKind, r.Target = "orders.v1.create", "statement", "orders_create"
		r.Params = map[string]string{"amount": "hmac-sha256:k1:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "customer": "hmac-sha256:k1:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"}
		r.IdempotencyKey = fmt.Sprintf("idem-%d", i)
		r.SQL = &SQL{Server: "sql1", Database: "orders", Outcome: "pending"}
	default:
		r.Kind, r.IntentIndex = KindOutcome, i-1
		r.CorrelationID = fmt.Sprintf("0193b1f2-7c4e-7a00-8d3b-%012d", i-1)
		r.Route, r.TargetKind, r.Target = "orders.v1.create", "statement", "orders_create"
		r.IdempotencyKey = fmt.Sprintf("idem-%d", i-1)
		r.SQL = &SQL{Server: "sql1", Database: "orders", TransactionID: fmt.Sprint(9_000_000 + i), Outcome: "commit", Rows: 1, RowsAffected: 1}
		r.Result = &Result{Status: "ok", DurationUS: 1834}
	}
	out, err := r.AppendCanonical(buf[:0])
	if err != nil {
		panic(err)
	}
	return out
}

func newGenSource(tb testing.TB, n, cpEvery int64) *genSource {
	origin := "sqlgate.bench/verify"
	skey, vkey, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{5}, 64)), origin)
	if err != nil {
		tb.Fatal(err)
	}
	signer, _ := NewSigner(skey)
	g := &genSource{origin: origin, n: n, keys: []Key{{Origin: origin, VerifierKey: vkey, Added: time.Unix(1_780_000_000, 0).UTC()}}}
	f := &frontier{}
	var buf []byte
	for i := int64(0); i < n; i++ {
		buf = g.record(i, buf)
		f.append(LeafHash(buf))
		if f.size%cpEvery == 0 || f.size == n {
			msg, err := note.Sign(&note.Note{Text: string(checkpointBody(origin, f.size, f.root(), time.Unix(1_780_000_000, 0).UTC().Add(time.Duration(i)*time.Millisecond)))}, signer)
			if err != nil {
				tb.Fatal(err)
			}
			g.notes = append(g.notes, msg)
		}
	}
	return g
}

func (g *genSource) Origins(context.Context) ([]string, error) { return []string{g.origin}, nil }
func (g *genSource) Keys(context.Context) ([]Key, error)       { return g.keys, nil }
func (g *genSource) Checkpoints(_ context.Context, _ string, fn func([]byte) error) error {
	for _, n := range g.notes {
		if err := fn(n); err != nil {
			return err
		}
	}
	return nil
}
func (g *genSource) Bounds(context.Context, string) (int64, int64, error) { return 0, g.n, nil }
func (g *genSource) Frontier(_ context.Context, _ string, size int64) ([]tlog.Hash, error) {
	if size != 0 {
		return nil, ErrNotFound
	}
	return nil, nil
}

func (g *genSource) TreeProof(context.Context, string, int64, int64) (tlog.TreeProof, error) {
	return nil, ErrNotFound
}

func (g *genSource) Records(ctx context.Context, _ string, from, to int64, fn func(int64, []byte, *tlog.Hash) error) error {
	var buf []byte
	for i := from; i < min(to, g.n); i++ {
		buf = g.record(i, buf)
		if err := fn(i, buf, nil); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkVerifyBundle1M verifies a 1,000,000-record bundle file (built
// once, outside the timed part) the way `sqlgate audit verify --bundle` does.
func BenchmarkVerifyBundle1M(b *testing.B) {
	const n = 1_000_000
	g := newGenSource(b, n, 14_000)
	path := filepath.Join(b.TempDir(), "audit.bundle")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := WriteBundle(context.Background(), f, g, BundleOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(info.Size())
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		bundle, err := OpenBundle(f)
		if err != nil {
			b.Fatal(err)
		}
		rep, err := Verify(context.Background(), bundle, VerifyOptions{Keys: []string{g.keys[0].VerifierKey}})
		_ = f.Close() // read-only
		if err != nil || !rep.OK() || rep.Records != n {
			b.Fatalf("Verify = %v %v", rep.Failures, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	// CPU per record says what the machine can do when it is not shared.
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/1000/float64(n*b.N), "cpu-µs/record")
}

// BenchmarkVerifyStream1M verifies a synthetic 1,000,000-record log produced
// on the fly: the verifier's own cost without file I/O.
func BenchmarkVerifyStream1M(b *testing.B) {
	const n = 1_000_000
	g := newGenSource(b, n, 14_000)
	b.ReportAllocs()
	for b.Loop() {
		rep, err := Verify(context.Background(), g, VerifyOptions{Keys: []string{g.keys[0].VerifierKey}})
		if err != nil || !rep.OK() || rep.Records != n {
			b.Fatalf("Verify = %v %v", rep.Failures, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// memBenchStore is a minimal in-memory Store for measuring the log itself.
type memBenchStore struct {
	mu     sync.Mutex
	hashes []tlog.Hash
	size   int64
	notes  [][]byte
}

func (m *memBenchStore) Load(context.Context, string) (*State, error) { return &State{}, nil }
func (m *memBenchStore) Write(_ context.Context, _ string, b *Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hashes = append(m.hashes, b.Hashes...)
	m.size += int64(len(b.Records))
	if b.Checkpoint != nil {
		m.notes = append(m.notes, b.Checkpoint.Note)
	}
	return nil
}

func (m *memBenchStore) ReadHashes(_ context.Context, _ string, ix []int64) ([]tlog.Hash, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]tlog.Hash, len(ix))
	for i, x := range ix {
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memBenchStore) Record(context.Context, string, int64) ([]byte, error) {
	return nil, ErrNotFound
}

func (m *memBenchStore) CheckpointAt(context.Context, string, int64) ([]byte, error) {
	return nil, ErrNotFound
}
func (m *memBenchStore) Unpaired(context.Context, string) ([][]byte, error) { return nil, nil }
func (m *memBenchStore) Inputs(context.Context, string, time.Time, func([]byte, []byte) error) error {
	return nil
}
func (m *memBenchStore) IndexAt(context.Context, string, time.Time) (int64, error) { return 0, nil }
func (m *memBenchStore) Prune(context.Context, string, int64) (int64, error)       { return 0, nil }
func (m *memBenchStore) PruneInputs(context.Context, string, time.Time) (int64, error) {
	return 0, nil
}

var _ Store = (*memBenchStore)(nil)

// BenchmarkLogAppendNoIO measures the log's own cost per append (encode,
// hash, group commit hand-off) over a store that does no I/O.
func BenchmarkLogAppendNoIO(b *testing.B) {
	s, _ := testKey(b, "sqlgate.bench/a", 1)
	l, err := Open(context.Background(), &memBenchStore{}, Config{Origin: "sqlgate.bench/a", Instance: "h", Signer: s, ParamKey: testParamKey})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = l.Close(context.Background()) }()
	tmpl := sampleRecords()[0]
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := *tmpl
			if _, err := l.Append(context.Background(), &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	st := l.Stats()
	b.ReportMetric(float64(st.Records)/float64(st.Batches), "records/batch")
}
