package audit_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

const origin = "sqlgate.test/a"

func openLog(t *testing.T, store audit.Store, mutate func(*audit.Config)) *audit.Log {
	t.Helper()
	cfg := audittest.Config(t, origin)
	if mutate != nil {
		mutate(&cfg)
	}
	l, err := audit.Open(t.Context(), store, cfg)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

func vkey(t *testing.T, seed byte) string {
	_, v := audittest.Key(t, origin, seed)
	return v
}

func intent(corr string) *audit.Record {
	allow := true
	return &audit.Record{
		Kind: audit.KindIntent, CorrelationID: corr, Route: "orders.v1.create",
		Actor: &audit.Actor{Issuer: "https://idp.test", Subject: "alice", MFA: true}, Allow: &allow,
	}
}

func outcome(corr string, intentIndex int64) *audit.Record {
	return &audit.Record{
		Kind: audit.KindOutcome, CorrelationID: corr, IntentIndex: intentIndex, Route: "orders.v1.create",
		SQL: &audit.SQL{Outcome: "commit", Rows: 1}, Result: &audit.Result{Status: "ok", DurationUS: 100},
	}
}

func mustAppend(t *testing.T, l *audit.Log, r *audit.Record) int64 {
	t.Helper()
	i, err := l.Append(t.Context(), r)
	if err != nil {
		t.Fatalf("Append = %v", err)
	}
	return i
}

func verify(t *testing.T, src audit.Source, opts audit.VerifyOptions) *audit.Report {
	t.Helper()
	rep, err := audit.Verify(t.Context(), src, opts)
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	return rep
}

func requireOK(t *testing.T, rep *audit.Report) {
	t.Helper()
	if !rep.OK() {
		t.Fatalf("Verify failed: %v", rep.Failures)
	}
}

func TestLogAppendPairsAndVerifies(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	for i := range 10 {
		corr := fmt.Sprintf("c%d", i)
		in := mustAppend(t, l, intent(corr))
		out := mustAppend(t, l, outcome(corr, in))
		if out != in+1 {
			t.Fatalf("outcome index %d, want %d", out, in+1)
		}
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatalf("Close = %v", err)
	}
	rep := verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}})
	requireOK(t, rep)
	if rep.Records != 21 || rep.Origins[0].Unpaired != 0 || len(rep.Exceptions) != 0 {
		t.Errorf("report: %d records, %d unpaired, exceptions %v; want 21, 0, none", rep.Records, rep.Origins[0].Unpaired, rep.Exceptions)
	}
	if got := rep.Origins[0].Latest.Size; got != 21 {
		t.Errorf("latest checkpoint size %d, want 21 (Close writes a final checkpoint)", got)
	}
	// Index 0 is the log_start record naming the key.
	data, err := store.Record(t.Context(), origin, 0)
	if err != nil {
		t.Fatal(err)
	}
	r0, err := audit.DecodeRecord(data)
	if err != nil {
		t.Fatal(err)
	}
	if r0.Kind != audit.KindAdmin || r0.Admin.Action != "log_start" || r0.Admin.Detail != vkey(t, 1) || r0.Instance != "test" {
		t.Errorf("record 0 = %+v", r0)
	}
}

func TestAppendFillsFields(t *testing.T) {
	store := audittest.NewStore()
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l := openLog(t, store, func(c *audit.Config) { c.Now = func() time.Time { return fixed } })
	r := &audit.Record{Kind: audit.KindDecision, V: 7, Origin: "forged", Instance: "forged", Index: 99}
	i := mustAppend(t, l, r)
	if i != 1 || r.Index != 1 || r.V != audit.SchemaVersion || r.Origin != origin || r.Instance != "test" || !r.Time.Equal(fixed) {
		t.Errorf("after Append: index %d, record %+v", i, r)
	}
	given := time.Date(2020, 5, 5, 5, 5, 5, 5, time.FixedZone("x", 7200))
	r2 := &audit.Record{Kind: audit.KindDecision, Time: given}
	mustAppend(t, l, r2)
	if !r2.Time.Equal(given) || r2.Time.Location() != time.UTC {
		t.Errorf("caller time %v became %v, want the same instant in UTC", given, r2.Time)
	}
}

func TestConcurrentAppendsAreContiguous(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, func(c *audit.Config) { c.MaxBatch = 16 })
	const workers, each = 32, 50
	var mu sync.Mutex
	var got []int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				idx, err := l.Append(context.Background(), intent(fmt.Sprintf("w%d-%d", w, i)))
				if err != nil {
					t.Errorf("Append = %v", err)
					return
				}
				mu.Lock()
				got = append(got, idx)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(got)
	for i, idx := range got {
		if idx != int64(i+1) {
			t.Fatalf("indexes not contiguous: position %d has %d", i, idx)
		}
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.Records != workers*each+1 || st.Size != workers*each+1 {
		t.Errorf("stats %+v", st)
	}
	rep := verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}})
	requireOK(t, rep)
	if rep.Origins[0].Unpaired != workers*each {
		t.Errorf("unpaired = %d, want %d (intents without outcomes are exceptions)", rep.Origins[0].Unpaired, workers*each)
	}
}

func TestAppendFailsClosedAndRecovers(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	mustAppend(t, l, intent("a"))
	boom := errors.New("disk full")
	store.FailWrites(boom)
	r := intent("b")
	if i, err := l.Append(t.Context(), r); !errors.Is(err, boom) || i != -1 {
		t.Fatalf("Append with a failing store = %d, %v; want -1, %v", i, err, boom)
	}
	if l.Stats().WriteErrors != 1 {
		t.Errorf("WriteErrors = %d, want 1", l.Stats().WriteErrors)
	}
	store.FailWrites(nil)
	if i := mustAppend(t, l, intent("c")); i != 2 {
		t.Errorf("index after recovery = %d, want 2 (the failed record took no index)", i)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireOK(t, verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}}))
}

func TestAppendRejectsInvalidRecordAlone(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	if _, err := l.Append(t.Context(), &audit.Record{Kind: "bogus"}); err == nil {
		t.Error("Append(kind bogus) = nil error")
	}
	if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindAdmin, Admin: &audit.Admin{Action: "x", Detail: "\xff"}}); err == nil {
		t.Error("Append(invalid UTF-8) = nil error")
	}
	if i := mustAppend(t, l, intent("ok")); i != 1 {
		t.Errorf("next index = %d, want 1", i)
	}
}

func TestAppendAfterClose(t *testing.T) {
	l := openLog(t, audittest.NewStore(), nil)
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), intent("x")); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestKeyRotationKeepsOldCheckpointsVerifiable(t *testing.T) {
	store := audittest.NewStore()
	l1 := openLog(t, store, nil)
	mustAppend(t, l1, intent("a"))
	if err := l1.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	s2, v2 := audittest.Key(t, origin, 2)
	// The new key alone cannot vouch for the checkpoints of the old one.
	if _, err := audit.Open(t.Context(), store, func() audit.Config { c := audittest.Config(t, origin); c.Signer = s2; return c }()); !errors.Is(err, audit.ErrRollback) || !strings.Contains(err.Error(), "previous key") {
		t.Fatalf("Open with a new key and no previous keys = %v, want a refusal that asks for the old verifier key", err)
	}
	l2 := openLog(t, store, func(c *audit.Config) { c.Signer, c.PreviousKeys = s2, []string{vkey(t, 1)} })
	mustAppend(t, l2, intent("b"))
	if err := l2.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	data, _ := store.Record(t.Context(), origin, 2)
	rot, _ := audit.DecodeRecord(data)
	if rot.Admin == nil || rot.Admin.Action != "key_rotation" || rot.Admin.Detail != v2 {
		t.Fatalf("record 2 = %s, want admin key_rotation naming the new key", data)
	}
	keys, _ := store.Keys(t.Context())
	if len(keys) != 2 || keys[0].VerifierKey != vkey(t, 1) || keys[1].VerifierKey != v2 {
		t.Errorf("key history = %+v", keys)
	}
	rep := verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1), v2}})
	requireOK(t, rep)
	if len(rep.Origins[0].KeyIDs) != 2 {
		t.Errorf("KeyIDs = %v, want both keys", rep.Origins[0].KeyIDs)
	}
	// Trusting only the new key leaves the old checkpoints unverifiable.
	rep = verify(t, store, audit.VerifyOptions{Keys: []string{v2}})
	if rep.OK() || rep.FirstFailure().Code != audit.ProblemBadCheckpoint {
		t.Errorf("verify with the new key only: %v", rep.Failures)
	}
	// Without trusted keys the stored key history is used, and the report says so.
	rep = verify(t, store, audit.VerifyOptions{})
	requireOK(t, rep)
	if !rep.KeysFromSource {
		t.Error("KeysFromSource = false without trusted keys")
	}
}

func TestOpenRejectsWrongSignerName(t *testing.T) {
	s, _ := audittest.Key(t, "other", 1)
	cfg := audittest.Config(t, origin)
	cfg.Signer = s
	if _, err := audit.Open(t.Context(), audittest.NewStore(), cfg); err == nil {
		t.Error("Open with a signer named for another origin = nil error")
	}
	cfg = audittest.Config(t, origin)
	cfg.ParamKey = audit.ParamKey{}
	if _, err := audit.Open(t.Context(), audittest.NewStore(), cfg); err == nil {
		t.Error("Open without a param key = nil error")
	}
}

func TestOpenDetectsRollback(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	for i := range 5 {
		mustAppend(t, l, intent(fmt.Sprint(i)))
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	// An edit of the latest record's body does not matter to Open (it keeps
	// hashes), but losing records that a checkpoint covers does.
	store.Tamper(origin, func(recs [][]byte, leaves []tlogHash, cps [][]byte) ([][]byte, []tlogHash, [][]byte) {
		return recs[:4], leaves[:4], cps
	})
	_, err := audit.Open(t.Context(), store, audittest.Config(t, origin))
	if !errors.Is(err, audit.ErrRollback) {
		t.Errorf("Open after truncation = %v, want ErrRollback", err)
	}
}

func TestUnpairedAndRecovery(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	a := mustAppend(t, l, intent("a"))
	b := mustAppend(t, l, intent("b"))
	mustAppend(t, l, outcome("a", a))
	// Simulate a crash: the log is dropped without Close.
	l2 := openLog(t, store, nil)
	open, err := l2.Unpaired(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || open[0].Index != b || open[0].CorrelationID != "b" {
		t.Fatalf("Unpaired = %+v, want intent b", open)
	}
	rec := outcome("b", b)
	rec.Result.Recovered = true
	mustAppend(t, l2, rec)
	if open, _ := l2.Unpaired(t.Context()); len(open) != 0 {
		t.Errorf("Unpaired after recovery = %+v", open)
	}
	if err := l2.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}})
	requireOK(t, rep)
	if rep.Origins[0].Unpaired != 0 || rep.ExceptionCounts[audit.ProblemOrphanOutcome] != 0 {
		t.Errorf("exceptions after recovery: %v", rep.Exceptions)
	}
}

func TestInputsSidecar(t *testing.T) {
	store := audittest.NewStore()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := openLog(t, store, func(c *audit.Config) { c.Now = clock })
	input := []byte(`{"principal":{"subject":"alice"},"params":{"amount":10}}`)
	r := intent("a")
	i, err := l.AppendWithInput(t.Context(), r, input)
	if err != nil {
		t.Fatal(err)
	}
	if r.InputSHA256 != "" || r.InputHMAC != audit.HashInput(audittest.ParamKey(), input) {
		t.Errorf("InputSHA256 = %q, InputHMAC = %q; want only the keyed hash", r.InputSHA256, r.InputHMAC)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	mustAppend(t, l, intent("no input"))
	var seen []int64
	err = l.Inputs(t.Context(), time.Time{}, func(rec audit.Record, in []byte) error {
		if string(in) != string(input) || rec.InputHMAC != r.InputHMAC {
			t.Errorf("Inputs gave %s for %+v", in, rec)
		}
		seen = append(seen, rec.Index)
		return nil
	})
	if err != nil || !slices.Equal(seen, []int64{i}) {
		t.Fatalf("Inputs = %v, %v; want [%d]", seen, err, i)
	}
	if n, err := l.PruneInputs(t.Context(), now); err != nil || n != 1 {
		t.Fatalf("PruneInputs = %d, %v; want 1", n, err)
	}
	seen = nil
	_ = l.Inputs(t.Context(), time.Time{}, func(rec audit.Record, _ []byte) error { seen = append(seen, rec.Index); return nil })
	if len(seen) != 0 {
		t.Errorf("Inputs after prune = %v", seen)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireOK(t, verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}}))
}

func TestCheckpointIntervalAndHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := audittest.NewStore()
		cfg := audittest.Config(t, origin)
		cfg.CheckpointInterval = time.Second
		cfg.Heartbeat = 5 * time.Minute
		l, err := audit.Open(t.Context(), store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close(context.Background()) }()
		cp, _ := l.Latest(t.Context())
		if cp.Size != 1 {
			t.Fatalf("checkpoint after Open covers %d, want 1 (log_start)", cp.Size)
		}
		mustAppend(t, l, intent("a"))
		synctest.Wait()
		if cp, _ := l.Latest(t.Context()); cp.Size != 1 {
			t.Fatalf("checkpoint right after an append covers %d; the interval has not passed", cp.Size)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if cp, _ := l.Latest(t.Context()); cp.Size != 2 {
			t.Fatalf("checkpoint one interval after the append covers %d, want 2", cp.Size)
		}
		// Idle: a heartbeat record and a checkpoint 5 minutes after the last
		// record, and every 5 minutes after that.
		time.Sleep(5*time.Minute - 2*time.Second)
		synctest.Wait()
		if l.Size() != 2 {
			t.Fatalf("size %d before the heartbeat is due", l.Size())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		cp, _ = l.Latest(t.Context())
		if l.Size() != 3 || cp.Size != 3 {
			t.Fatalf("after 5 idle minutes: size %d, checkpoint %d; want a heartbeat and its checkpoint", l.Size(), cp.Size)
		}
		data, _ := store.Record(t.Context(), origin, 2)
		if hb, _ := audit.DecodeRecord(data); hb == nil || hb.Kind != audit.KindHeartbeat {
			t.Errorf("record 2 = %s, want a heartbeat", data)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if l.Size() != 5 {
			t.Errorf("after 10 more idle minutes size = %d, want 5", l.Size())
		}
		if err := l.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		rep := verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}, MaxGap: 6 * time.Minute})
		requireOK(t, rep)
		if rep.ExceptionCounts[audit.ProblemHeartbeatGap] != 0 {
			t.Errorf("heartbeat gaps reported: %v", rep.Exceptions)
		}
		rep = verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}, MaxGap: 4 * time.Minute})
		if rep.ExceptionCounts[audit.ProblemHeartbeatGap] != 3 {
			t.Errorf("with MaxGap 4m: %d gaps, want 3 (%v)", rep.ExceptionCounts[audit.ProblemHeartbeatGap], rep.Exceptions)
		}
	})
}

func TestProofReceipt(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, func(c *audit.Config) { c.CheckpointInterval = time.Hour })
	var last int64
	for i := range 40 {
		last = mustAppend(t, l, intent(fmt.Sprint(i)))
	}
	verifiers, _ := audit.NewVerifiers(vkey(t, 1))
	for _, idx := range []int64{0, 1, 17, last} {
		p, err := l.Proof(t.Context(), idx)
		if err != nil {
			t.Fatalf("Proof(%d) = %v", idx, err)
		}
		if err := audit.VerifyProof(p, verifiers); err != nil {
			t.Errorf("VerifyProof(%d) = %v", idx, err)
		}
	}
	if _, err := l.Proof(t.Context(), last+1); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("Proof(beyond) = %v, want ErrNotFound", err)
	}
	p, _ := l.Proof(t.Context(), 17)
	bad := *p
	bad.Record = append([]byte(nil), p.Record...)
	bad.Record[len(bad.Record)-3] ^= 1
	if err := audit.VerifyProof(&bad, verifiers); err == nil {
		t.Error("VerifyProof(edited record) = nil")
	}
	bad = *p
	bad.Index = 18
	if err := audit.VerifyProof(&bad, verifiers); !errors.Is(err, audit.ErrBadProof) {
		t.Errorf("VerifyProof(wrong index) = %v", err)
	}
	bad = *p
	bad.Inclusion = bad.Inclusion[1:]
	if err := audit.VerifyProof(&bad, verifiers); !errors.Is(err, audit.ErrBadProof) {
		t.Errorf("VerifyProof(short path) = %v", err)
	}
	other, _ := audit.NewVerifiers(vkey(t, 2))
	if err := audit.VerifyProof(p, other); !errors.Is(err, audit.ErrUnknownKey) {
		t.Errorf("VerifyProof(other key) = %v, want ErrUnknownKey", err)
	}
}

func TestDirSinkExportsWriteOnceCopies(t *testing.T) {
	dir := t.TempDir()
	sink, err := audit.NewDirSink(dir)
	if err != nil {
		t.Fatal(err)
	}
	store := audittest.NewStore()
	l := openLog(t, store, func(c *audit.Config) { c.Sink = sink; c.SinkInterval = time.Nanosecond })
	for i := range 3 {
		mustAppend(t, l, intent(fmt.Sprint(i)))
		if err := l.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	cps, err := audit.LoadCheckpoints(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The sink may coalesce checkpoints that arrive faster than it exports;
	// the final one is always exported.
	if len(cps) < 1 {
		t.Fatalf("exported %d checkpoints", len(cps))
	}
	latest, _ := l.Latest(t.Context())
	path := sink.Path(origin, latest.Size)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("final checkpoint not exported: %v", err)
	}
	if info.Mode().Perm() != 0o444 {
		t.Errorf("mode %v, want 0444", info.Mode().Perm())
	}
	// Idempotent for the same bytes, refuses different bytes.
	if err := sink.Export(t.Context(), latest); err != nil {
		t.Errorf("re-export = %v", err)
	}
	forged := *latest
	forged.Note = append([]byte(nil), latest.Note...)
	forged.Note[0] ^= 1
	if err := sink.Export(t.Context(), &forged); !errors.Is(err, audit.ErrCheckpointConflict) {
		t.Errorf("export of a different checkpoint of the same size = %v, want ErrCheckpointConflict", err)
	}
	// The origin is escaped into one directory level.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "sqlgate.test%2Fa" {
		t.Errorf("sink layout %v", entries)
	}
	rep := verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}, Trusted: cps})
	requireOK(t, rep)
	if rep.Origins[0].Trusted != len(cps) {
		t.Errorf("trusted checked %d, want %d", rep.Origins[0].Trusted, len(cps))
	}
	one, err := audit.LoadCheckpoints(path)
	if err != nil || len(one) != 1 {
		t.Errorf("LoadCheckpoints(file) = %d, %v", len(one), err)
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(p) != audit.CheckpointExt {
			t.Errorf("stray file %s", p)
		}
		return nil
	})
}

func TestPruneKeepsVerification(t *testing.T) {
	store := audittest.NewStore()
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tick := func() { mu.Lock(); now = now.Add(time.Minute); mu.Unlock() }
	l := openLog(t, store, func(c *audit.Config) { c.Now = clock })
	var open int64
	for i := range 30 {
		tick()
		idx := mustAppend(t, l, intent(fmt.Sprint(i)))
		if i == 20 {
			open = idx // stays without outcome
			continue
		}
		mustAppend(t, l, outcome(fmt.Sprint(i), idx))
		if i%7 == 0 {
			if err := l.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Prune everything older than 25 minutes in: stops at the open intent.
	cutTime := time.Date(2026, 1, 1, 0, 25, 0, 0, time.UTC)
	n, err := l.Prune(t.Context(), cutTime)
	if err != nil {
		t.Fatal(err)
	}
	if n != open {
		t.Errorf("Prune pruned %d records, want %d (up to the open intent)", n, open)
	}
	if _, err := l.Proof(t.Context(), 3); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("Proof(pruned) = %v, want ErrNotFound", err)
	}
	mustAppend(t, l, outcome("20", open))
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep := verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}})
	requireOK(t, rep)
	o := rep.Origins[0]
	if o.Pruned != open || o.First != open || o.Unpaired != 0 {
		t.Errorf("report after prune: %+v", o)
	}
	// Pruning again up to now removes more, still verifiable.
	tick()
	if _, err := l.Prune(t.Context(), clock()); err != nil {
		t.Fatal(err)
	}
	requireOK(t, verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}}))
}

func TestRetentionPrunesHourly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := audittest.NewStore()
		cfg := audittest.Config(t, origin)
		cfg.Retention = 24 * time.Hour
		cfg.InputRetention = time.Hour
		l, err := audit.Open(t.Context(), store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close(context.Background()) }()
		for range 5 {
			if _, err := l.AppendWithInput(t.Context(), &audit.Record{Kind: audit.KindDecision}, []byte("{}")); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Hour)
		synctest.Wait()
		n := 0
		_ = l.Inputs(t.Context(), time.Time{}, func(audit.Record, []byte) error { n++; return nil })
		if n != 0 {
			t.Errorf("inputs after 2h with a 1h input retention: %d", n)
		}
		if first, _, _ := store.Bounds(t.Context(), origin); first != 0 {
			t.Errorf("records pruned after 2h with a 24h retention: first = %d", first)
		}
		time.Sleep(23 * time.Hour)
		synctest.Wait()
		first, end, _ := store.Bounds(t.Context(), origin)
		if first < 6 || end <= first {
			t.Errorf("after 25h: bounds [%d, %d), want the first 6 records pruned", first, end)
		}
		if err := l.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		requireOK(t, verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}}))
	})
}

// TestOpenRefusesStoreWithoutCheckpoints: whoever can write the store must
// not get the log to sign on from records no checkpoint vouches for; if the
// checkpoints are deleted, Open refuses.
func TestOpenRefusesStoreWithoutCheckpoints(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	for i := range 3 {
		mustAppend(t, l, intent(fmt.Sprint(i)))
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	store.Tamper(origin, func(recs [][]byte, leaves []tlogHash, _ [][]byte) ([][]byte, []tlogHash, [][]byte) {
		return recs, leaves, nil
	})
	_, err := audit.Open(t.Context(), store, audittest.Config(t, origin))
	if !errors.Is(err, audit.ErrRollback) || !strings.Contains(err.Error(), "no checkpoint") {
		t.Errorf("Open after the checkpoints were deleted = %v, want ErrRollback", err)
	}
}

// TestOpenRefusesStoreBehindSinkCopy: a store rolled back to an older
// checkpoint (its own history consistent) is refused because the sink holds
// a newer copy.
func TestOpenRefusesStoreBehindSinkCopy(t *testing.T) {
	store := audittest.NewStore()
	sink, err := audit.NewDirSink(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	withSink := func(c *audit.Config) { c.Sink = sink }
	l := openLog(t, store, withSink)
	if err := l.Close(t.Context()); err != nil { // exports the checkpoint of the log's start
		t.Fatal(err)
	}
	rolledBack := audittest.NewStore()
	rolledBack.CopyFrom(store, origin) // the backup an attacker (or a careless restore) brings back
	l = openLog(t, store, withSink)
	for i := range 3 {
		mustAppend(t, l, intent(fmt.Sprint(i)))
	}
	if err := l.Close(t.Context()); err != nil { // exports the newer checkpoint
		t.Fatal(err)
	}
	cfg := audittest.Config(t, origin)
	withSink(&cfg)
	if _, err := audit.Open(t.Context(), rolledBack, cfg); !errors.Is(err, audit.ErrRollback) || !strings.Contains(err.Error(), "sink") {
		t.Errorf("Open of a store behind the sink's copy = %v, want ErrRollback", err)
	}
	if l, err := audit.Open(t.Context(), store, cfg); err != nil {
		t.Errorf("Open of the store the sink's copy covers = %v", err)
	} else {
		_ = l.Close(t.Context())
	}
}

// TestReloadNeverGoesBack: after a failed write the log reads the store
// again; a store rolled back behind the checkpoint this process signed (its
// own history consistent) is refused, so the log does not sign on from it.
func TestReloadNeverGoesBack(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	backup := audittest.NewStore()
	backup.CopyFrom(store, origin) // the log's start and its checkpoint
	for i := range 3 {
		mustAppend(t, l, intent(fmt.Sprint(i)))
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	store.CopyFrom(backup, origin) // rolled back under the running log
	store.FailWrites(errors.New("injected"))
	if _, err := l.Append(t.Context(), intent("x")); err == nil {
		t.Fatal("append with failing writes succeeded")
	}
	store.FailWrites(nil)
	if _, err := l.Append(t.Context(), intent("y")); !errors.Is(err, audit.ErrRollback) {
		t.Fatalf("append after the store went back = %v, want ErrRollback", err)
	}
	if st, err := store.Load(t.Context(), origin); err != nil || st.Size != 1 {
		t.Errorf("the rolled-back store holds %+v, %v; want its one record and nothing signed on", st, err)
	}
}

// TestWriteErrorWhileStoreRefuses: while the store refuses writes the log
// says so (readiness reports it), and once a write succeeds it does not.
func TestWriteErrorWhileStoreRefuses(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	if err := l.WriteError(); err != nil {
		t.Fatalf("WriteError of a healthy log = %v", err)
	}
	store.FailWrites(errors.New("disk full"))
	if _, err := l.Append(t.Context(), intent("a")); err == nil {
		t.Fatal("append to a refusing store succeeded")
	}
	if err := l.WriteError(); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("WriteError while the store refuses = %v", err)
	}
	store.FailWrites(nil)
	mustAppend(t, l, intent("b"))
	if err := l.WriteError(); err != nil {
		t.Errorf("WriteError after a successful write = %v", err)
	}
}

// TestWriteErrorClearsWithoutCalls: after a failed write the log probes the
// store with a heartbeat soon, so an idle instance is ready again shortly
// after the store recovers, not a whole heartbeat period later.
func TestWriteErrorClearsWithoutCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := audittest.NewStore()
		cfg := audittest.Config(t, origin)
		cfg.Heartbeat = time.Hour
		l, err := audit.Open(t.Context(), store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close(context.Background()) }()
		store.FailWrites(errors.New("failover"))
		if _, err := l.Append(t.Context(), intent("a")); err == nil {
			t.Fatal("append to a refusing store succeeded")
		}
		store.FailWrites(nil)
		if l.WriteError() == nil {
			t.Fatal("no write error after a failed write")
		}
		time.Sleep(time.Minute) // far less than the heartbeat period
		synctest.Wait()
		if err := l.WriteError(); err != nil {
			t.Errorf("WriteError a minute after the store recovered, with no calls = %v", err)
		}
	})
}

// burstSink records the sizes of the checkpoints exported to it.
type burstSink struct {
	mu    sync.Mutex
	sizes []int64
}

func (s *burstSink) Export(_ context.Context, cp *audit.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sizes = append(s.sizes, cp.Size)
	return nil
}

func (s *burstSink) newest() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sizes) == 0 {
		return 0
	}
	return s.sizes[len(s.sizes)-1]
}

// TestSinkGetsTheNewestCheckpointOfABurst: checkpoints signed within one
// SinkInterval of the last export are held back, and the newest of them
// goes to the sink when the interval ends, without waiting for more
// activity or the heartbeat.
func TestSinkGetsTheNewestCheckpointOfABurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := audittest.NewStore()
		sink := &burstSink{}
		cfg := audittest.Config(t, origin)
		cfg.Sink, cfg.SinkInterval, cfg.Heartbeat = sink, 300*time.Millisecond, time.Hour
		l, err := audit.Open(t.Context(), store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close(context.Background()) }()
		synctest.Wait()
		if got := sink.newest(); got != 1 {
			t.Fatalf("sink after Open holds %d, want the checkpoint of log_start", got)
		}
		for i := range 3 {
			mustAppend(t, l, intent(fmt.Sprint("c", i)))
			if err := l.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if got := sink.newest(); got != 1 {
			t.Fatalf("sink holds %d within the sink interval, want 1 (at most one export per interval)", got)
		}
		time.Sleep(2 * time.Second) // idle, long before the heartbeat
		synctest.Wait()
		if got, want := sink.newest(), l.Size(); got != want {
			t.Fatalf("sink holds the checkpoint of %d records after an idle interval; the log has %d, all covered by its latest checkpoint", got, want)
		}
		sink.mu.Lock()
		n := len(sink.sizes)
		sink.mu.Unlock()
		if n != 2 {
			t.Errorf("exports %v, want two: log_start's and the burst's newest", sink.sizes)
		}
	})
}
