package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// fakeClock moves only when the test ticks it, so two runs with the same
// appends produce identical records and checkpoints whatever the goroutine
// interleaving.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
}

// buildLog writes pairs intent/outcome pairs (correlation ids prefix+i;
// pair i is at indexes 1+2i and 2+2i) and writes a checkpoint after every
// syncEvery pairs, so checkpoint sizes are 1 + 2*syncEvery*m (plus the final
// one at Close).
func buildLog(t *testing.T, store audit.Store, pairs, syncEvery int, prefix string, sink audit.Sink, clock *fakeClock) *audit.Log {
	t.Helper()
	if clock == nil {
		clock = newFakeClock()
	}
	l := openLog(t, store, func(c *audit.Config) {
		c.Now = clock.Now
		c.CheckpointInterval = time.Hour
		c.Heartbeat = time.Hour
		c.Sink = sink
		c.SinkInterval = time.Nanosecond
	})
	clocks.Store(l, clock)
	appendPairs(t, l, 0, pairs, syncEvery, prefix)
	return l
}

// clocks maps each log built by buildLog to its clock.
var clocks sync.Map

func appendPairs(t *testing.T, l *audit.Log, from, to, syncEvery int, prefix string) {
	t.Helper()
	clock, _ := clocks.Load(l)
	for i := from; i < to; i++ {
		if c, ok := clock.(*fakeClock); ok {
			c.tick()
		}
		corr := fmt.Sprintf("%s%d", prefix, i)
		in := mustAppend(t, l, intent(corr))
		mustAppend(t, l, outcome(corr, in))
		if syncEvery > 0 && (i+1)%syncEvery == 0 {
			if err := l.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func sinkDir(t *testing.T) (*audit.DirSink, func() [][]byte) {
	dir := t.TempDir()
	s, err := audit.NewDirSink(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, func() [][]byte {
		cps, err := audit.LoadCheckpoints(dir)
		if err != nil {
			t.Fatal(err)
		}
		return cps
	}
}

func resign(t *testing.T, msg []byte, s note.Signer) []byte {
	t.Helper()
	i := bytes.LastIndex(msg, []byte("\n\n"))
	out, err := note.Sign(&note.Note{Text: string(msg[:i+1])}, s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkpointSize(t *testing.T, msg []byte) int64 {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	c, err := audit.ParseCheckpoint(msg[:i+1])
	if err != nil {
		t.Fatal(err)
	}
	return c.Size
}

// TestVerifyDetectsAttacks is the attack table: each case tampers with the
// stored log and expects Verify to fail naming the right index.
func TestVerifyDetectsAttacks(t *testing.T) {
	type tamperFunc = func(recs [][]byte, leaves []tlog.Hash, cps [][]byte) ([][]byte, []tlog.Hash, [][]byte)
	other, _ := audittest.Key(t, origin, 2)
	tests := []struct {
		name      string
		tamper    func(t *testing.T) tamperFunc
		trusted   bool
		wantCode  audit.ProblemCode
		wantIndex int64
	}{
		{"flip_byte_in_string", func(t *testing.T) tamperFunc {
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				r[37] = bytes.Replace(r[37], []byte(`"c18"`), []byte(`"c19"`), 1)
				return r, l, c
			}
		}, false, audit.ProblemLeafMismatch, 37},
		{"flip_byte_breaking_json", func(t *testing.T) tamperFunc {
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				r[40] = bytes.Clone(r[40])
				r[40][10] ^= 0x20
				return r, l, c
			}
		}, false, audit.ProblemBadRecord, 40},
		{"edit_record_and_its_leaf", func(t *testing.T) tamperFunc {
			// A careful attacker also fixes the stored leaf; the signed root
			// still catches it, naming the first index after the last good
			// checkpoint (checkpoints at 1, 5, 9, ..., 37, 41, ...).
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				r[39] = bytes.Replace(r[39], []byte(`"c19"`), []byte(`"c20"`), 1)
				l[39] = audit.LeafHash(r[39])
				return r, l, c
			}
		}, false, audit.ProblemRootMismatch, 37},
		{"delete_middle", func(t *testing.T) tamperFunc {
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				r[25] = nil
				return r, l, c
			}
		}, false, audit.ProblemMissingRecord, 25},
		{"delete_and_renumber", func(t *testing.T) tamperFunc {
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				return append(r[:25:25], r[26:]...), append(l[:25:25], l[26:]...), c
			}
		}, false, audit.ProblemIndexMismatch, 25},
		{"swap_two_records", func(t *testing.T) tamperFunc {
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				r[30], r[31] = r[31], r[30]
				l[30], l[31] = l[31], l[30]
				return r, l, c
			}
		}, false, audit.ProblemIndexMismatch, 30},
		{"swap_bodies_only", func(t *testing.T) tamperFunc {
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				r[30], r[31] = r[31], r[30]
				return r, l, c
			}
		}, false, audit.ProblemLeafMismatch, 30},
		{"delete_last_records_with_their_checkpoints", func(t *testing.T) tamperFunc {
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				var keep [][]byte
				for _, cp := range c {
					if checkpointSize(t, cp) <= 49 {
						keep = append(keep, cp)
					}
				}
				return r[:49], l[:49], keep
			}
		}, true, audit.ProblemTruncated, 49},
		{"delete_last_records_keep_checkpoints", func(t *testing.T) tamperFunc {
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				return r[:50], l[:50], c
			}
		}, false, audit.ProblemTruncated, 50},
		{"checkpoint_signed_by_another_key", func(t *testing.T) tamperFunc {
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				for i, cp := range c {
					if checkpointSize(t, cp) == 25 {
						c[i] = resign(t, cp, other)
					}
				}
				return r, l, c
			}
		}, false, audit.ProblemBadCheckpoint, 21},
		{"checkpoint_signature_flipped", func(t *testing.T) tamperFunc {
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				for i, cp := range c {
					if checkpointSize(t, cp) == 25 {
						c[i] = bytes.Clone(cp)
						c[i][len(cp)-5] ^= 1
					}
				}
				return r, l, c
			}
		}, false, audit.ProblemBadCheckpoint, 21},
		{"checkpoint_deleted_then_records_edited", func(t *testing.T) tamperFunc {
			// Removing the checkpoints does not help: the next one still signs
			// the tree over the edited records.
			return func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
				var keep [][]byte
				for _, cp := range c {
					if s := checkpointSize(t, cp); s < 12 || s > 30 {
						keep = append(keep, cp)
					}
				}
				r[13] = bytes.Replace(r[13], []byte(`"c6"`), []byte(`"c7"`), 1)
				l[13] = audit.LeafHash(r[13])
				return r, l, keep
			}
		}, false, audit.ProblemRootMismatch, 9},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := audittest.NewStore()
			sink, trusted := sinkDir(t)
			l := buildLog(t, store, 30, 2, "c", sink, nil)
			if err := l.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			opts := audit.VerifyOptions{Keys: []string{vkey(t, 1)}}
			requireOK(t, verify(t, store, opts))
			store.Tamper(origin, tc.tamper(t))
			if tc.trusted {
				if rep := verify(t, store, opts); !rep.OK() {
					t.Logf("(also detected without trusted checkpoints: %v)", rep.Failures)
				}
				opts.Trusted = trusted()
			}
			rep := verify(t, store, opts)
			if rep.OK() {
				t.Fatalf("Verify passed a tampered log")
			}
			first := rep.FirstFailure()
			if first.Code != tc.wantCode || first.Index != tc.wantIndex {
				t.Errorf("first failure = %s at %d (%s), want %s at %d\nall: %v", first.Code, first.Index, first.Message, tc.wantCode, tc.wantIndex, rep.Failures)
			}
			if rep.Origins[0].FirstBad != tc.wantIndex {
				t.Errorf("FirstBad = %d, want %d", rep.Origins[0].FirstBad, tc.wantIndex)
			}
		})
	}
}

// TestVerifyDetectsFork replays the same log into two stores; the second
// diverges at record 31. Checkpoints the auditor saved from the first one
// expose it.
func TestVerifyDetectsFork(t *testing.T) {
	honest, forked := audittest.NewStore(), audittest.NewStore()
	a := buildLog(t, honest, 15, 1, "c", nil, nil)
	b := buildLog(t, forked, 15, 1, "c", nil, nil) // identical so far: same clock, same key
	appendPairs(t, a, 15, 30, 1, "c")
	appendPairs(t, b, 15, 30, 1, "forged-")
	for _, l := range []*audit.Log{a, b} {
		if err := l.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	opts := audit.VerifyOptions{Keys: []string{vkey(t, 1)}}
	requireOK(t, verify(t, forked, opts)) // self-consistent: same key signed it
	_ = honest.Checkpoints(t.Context(), origin, func(msg []byte) error {
		opts.Trusted = append(opts.Trusted, bytes.Clone(msg))
		return nil
	})
	requireOK(t, verify(t, honest, opts))
	rep := verify(t, forked, opts)
	if rep.OK() {
		t.Fatal("Verify accepted a fork of a trusted checkpoint")
	}
	if f := rep.FirstFailure(); f.Code != audit.ProblemFork || f.Index != 31 {
		t.Errorf("first failure = %s at %d (%s), want fork at 31", f.Code, f.Index, f.Message)
	}
	// Trusted checkpoints of an origin the source lacks: the whole log is gone.
	rep = verify(t, audittest.NewStore(), opts)
	if f := rep.FirstFailure(); rep.OK() || f.Code != audit.ProblemOriginMissing {
		t.Errorf("empty source with trusted checkpoints: %v", rep.Failures)
	}
}

func TestVerifyRanges(t *testing.T) {
	store := audittest.NewStore()
	clock := newFakeClock()
	l := buildLog(t, store, 50, 10, "c", nil, clock)
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	keys := []string{vkey(t, 1)}
	rep := verify(t, store, audit.VerifyOptions{Keys: keys, From: 26, To: 60})
	requireOK(t, rep)
	o := rep.Origins[0]
	if o.First != 26 || o.End != 60 || o.Records != 34 {
		t.Errorf("range [26,60): %+v", o)
	}
	// The outcome at 26 names intent 25 (before the range): not an orphan.
	if rep.ExceptionCounts[audit.ProblemOrphanOutcome] != 0 {
		t.Errorf("orphans: %v", rep.Exceptions)
	}
	// Intent 59 has its outcome at 60, outside the range: reported unpaired.
	if o.Unpaired != 1 {
		t.Errorf("unpaired = %d, want 1", o.Unpaired)
	}
	// Time range snaps to checkpoints.
	var c21, c41 *audit.Checkpoint
	verifiers, _ := audit.NewVerifiers(keys...)
	_ = store.Checkpoints(t.Context(), origin, func(msg []byte) error {
		c, err := audit.OpenCheckpoint(msg, verifiers)
		if err != nil {
			t.Fatal(err)
		}
		switch c.Size {
		case 21:
			c21 = c
		case 41:
			c41 = c
		}
		return nil
	})
	rep = verify(t, store, audit.VerifyOptions{Keys: keys, FromTime: c21.Time.Add(time.Microsecond), ToTime: c41.Time.Add(-time.Microsecond)})
	requireOK(t, rep)
	if o := rep.Origins[0]; o.First != 21 || o.End != 41 {
		t.Errorf("time range: [%d,%d), want [21,41)", o.First, o.End)
	}
	// A tampered record outside the range is not read.
	store.Tamper(origin, func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		r[5] = bytes.Replace(r[5], []byte(`"c2"`), []byte(`"c3"`), 1)
		return r, l, c
	})
	requireOK(t, verify(t, store, audit.VerifyOptions{Keys: keys, From: 26}))
	if rep := verify(t, store, audit.VerifyOptions{Keys: keys}); rep.OK() {
		t.Error("full verify passed after tampering record 5")
	}
}

func TestVerifySeveralOrigins(t *testing.T) {
	store := audittest.NewStore()
	cfgA := audittest.Config(t, "sqlgate.test/a")
	cfgB := audittest.Config(t, "sqlgate.test/b")
	la, err := audit.Open(t.Context(), store, cfgA)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := audit.Open(t.Context(), store, cfgB)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		mustAppend(t, la, intent(fmt.Sprint(i)))
		mustAppend(t, lb, intent(fmt.Sprint(i)))
	}
	_ = la.Close(t.Context())
	_ = lb.Close(t.Context())
	_, vb := audittest.Key(t, "sqlgate.test/b", 1)
	keys := []string{cfgA.Signer.VerifierKey(), vb}
	rep := verify(t, store, audit.VerifyOptions{Keys: keys})
	requireOK(t, rep)
	if len(rep.Origins) != 2 || rep.Records != 22 {
		t.Errorf("origins %d records %d", len(rep.Origins), rep.Records)
	}
	store.Tamper("sqlgate.test/b", func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		r[4] = nil
		return r, l, c
	})
	rep = verify(t, store, audit.VerifyOptions{Keys: keys})
	if rep.OK() || len(rep.Failures) != 1 || rep.Failures[0].Origin != "sqlgate.test/b" || rep.Failures[0].Index != 4 {
		t.Errorf("failures = %v, want one in origin b at 4", rep.Failures)
	}
	rep = verify(t, store, audit.VerifyOptions{Keys: keys, Origin: "sqlgate.test/a"})
	if !rep.OK() || len(rep.Origins) != 1 {
		t.Errorf("origin a only: %v", rep.Failures)
	}
}

func TestReportOutput(t *testing.T) {
	store := audittest.NewStore()
	l := buildLog(t, store, 5, 0, "c", nil, nil)
	mustAppend(t, l, intent("open"))
	_ = l.Close(t.Context())
	keys := []string{vkey(t, 1)}
	rep := verify(t, store, audit.VerifyOptions{Keys: keys})
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"audit log verification: OK (12 records, 1 origin,", "origin sqlgate.test/a", "records checked: 12 (indexes 0 to 11)", "unpaired intents: 1", "unpaired_intent: 1", "index 11: intent has no outcome"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	store.Tamper(origin, func(r [][]byte, l []tlog.Hash, c [][]byte) ([][]byte, []tlog.Hash, [][]byte) {
		r[3] = nil
		return r, l, c
	})
	rep = verify(t, store, audit.VerifyOptions{Keys: keys})
	text.Reset()
	_ = rep.WriteText(&text)
	if !strings.Contains(text.String(), "FAILED") || !strings.Contains(text.String(), "first bad record: origin sqlgate.test/a index 3: record 3 is missing") {
		t.Errorf("failure text:\n%s", text.String())
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		OK       bool            `json:"ok"`
		Failures []audit.Problem `json:"failures"`
		Origins  []struct {
			FirstBad int64 `json:"first_bad"`
		} `json:"origins"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.OK || len(back.Failures) != 1 || back.Failures[0].Code != audit.ProblemMissingRecord || back.Origins[0].FirstBad != 3 {
		t.Errorf("JSON report = %s", b)
	}
}

func writeBundle(t testing.TB, src audit.Source, opts audit.BundleOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := audit.WriteBundle(context.Background(), &buf, src, opts); err != nil {
		t.Fatalf("WriteBundle = %v", err)
	}
	return buf.Bytes()
}

func openBundle(t testing.TB, b []byte) *audit.Bundle {
	t.Helper()
	bundle, err := audit.OpenBundle(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("OpenBundle = %v", err)
	}
	return bundle
}

func TestBundleRoundTrip(t *testing.T) {
	store := audittest.NewStore()
	sink, trusted := sinkDir(t)
	l := buildLog(t, store, 40, 8, "c", sink, nil) // checkpoints 1, 17, 33, 49, 65, 81
	_ = l.Close(t.Context())
	keys := []string{vkey(t, 1)}
	b := writeBundle(t, store, audit.BundleOptions{})
	if again := writeBundle(t, store, audit.BundleOptions{}); !bytes.Equal(b, again) {
		t.Error("WriteBundle is not deterministic")
	}
	path := filepath.Join(t.TempDir(), "audit.bundle")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	bundle, err := audit.OpenBundle(f)
	if err != nil {
		t.Fatal(err)
	}
	rep := verify(t, bundle, audit.VerifyOptions{Keys: keys, Trusted: trusted()})
	requireOK(t, rep)
	if rep.Records != 81 || rep.Origins[0].Checkpoints == 0 {
		t.Errorf("bundle report: %d records, %d checkpoints", rep.Records, rep.Origins[0].Checkpoints)
	}
	direct := verify(t, store, audit.VerifyOptions{Keys: keys})
	if direct.Records != rep.Records || direct.Origins[0].Checkpoints != rep.Origins[0].Checkpoints {
		t.Errorf("bundle and store reports differ: %+v vs %+v", rep.Origins[0], direct.Origins[0])
	}

	// A partial export from index 30 carries the frontier and a proof for the
	// checkpoint before it; trusted checkpoints before 30 are checked through it.
	part := openBundle(t, writeBundle(t, store, audit.BundleOptions{From: 30, To: 70}))
	rep = verify(t, part, audit.VerifyOptions{Keys: keys})
	requireOK(t, rep)
	if o := rep.Origins[0]; o.First != 30 || o.End != 65 || o.Records != 35 {
		t.Errorf("partial bundle: %+v (To snaps down to checkpoint 65)", o)
	}
	var saved [][]byte // the auditor saved every checkpoint: 1, 17, 33, 49, 65, 81
	_ = store.Checkpoints(t.Context(), origin, func(msg []byte) error { saved = append(saved, bytes.Clone(msg)); return nil })
	// 17 is checked through the bundle's proof 17 -> 30; 1 cannot be, and
	// a trusted copy nothing checks is a failure.
	rep = verify(t, part, audit.VerifyOptions{Keys: keys, Trusted: saved, To: 65})
	if f := rep.FirstFailure(); rep.OK() || len(rep.Failures) != 1 || f.Code != audit.ProblemUncheckedTrusted || f.Size != 1 {
		t.Errorf("a trusted copy before the bundle without a proof: %v", rep.Failures)
	}
	// Exported with the trusted copies' sizes, the bundle proves it too.
	sizes := make([]int64, len(saved))
	for i, msg := range saved {
		sizes[i] = checkpointSize(t, msg)
	}
	proven := openBundle(t, writeBundle(t, store, audit.BundleOptions{From: 30, To: 70, ProofSizes: sizes}))
	rep = verify(t, proven, audit.VerifyOptions{Keys: keys, Trusted: saved, To: 65})
	requireOK(t, rep)
	// 1 and 17 by proof, 33, 49 and 65 in the records; 81 is past To.
	if o := rep.Origins[0]; o.Trusted != 5 || rep.ExceptionCounts[audit.ProblemUnchecked] != 0 {
		t.Errorf("trusted copies checked: %d, want 5; exceptions %v", o.Trusted, rep.Exceptions)
	}
	// Without To, a trusted checkpoint beyond the bundle's end is a truncation.
	if rep := verify(t, part, audit.VerifyOptions{Keys: keys, Trusted: saved}); rep.OK() || rep.FirstFailure().Code != audit.ProblemTruncated {
		t.Errorf("partial bundle against later trusted checkpoints: %v", rep.Failures)
	}

	// One flipped byte in the bundle names its record.
	bad := bytes.Replace(b, []byte(`"correlation_id":"c17"`), []byte(`"correlation_id":"c71"`), 1)
	rep = verify(t, openBundle(t, bad), audit.VerifyOptions{Keys: keys})
	if f := rep.FirstFailure(); rep.OK() || f.Index != 35 {
		t.Errorf("flipped bundle: %v, want failure at 35", rep.Failures)
	}
	bad = bytes.Replace(b, []byte(`{"leaf":"`), []byte(`{"leaf":"!`), 20)
	rep = verify(t, openBundle(t, bad), audit.VerifyOptions{Keys: keys})
	if f := rep.FirstFailure(); rep.OK() || f.Index != 0 || f.Code != audit.ProblemBadRecord {
		t.Errorf("malformed record line: %v", rep.Failures)
	}
	for _, broken := range [][]byte{nil, []byte("{}\n"), []byte(`{"format":"other"}` + "\n"), append(bytes.Clone(b[:bytes.IndexByte(b, '\n')+1]), `{"leaf":"x","record":{}}`+"\n"...)} {
		if _, err := audit.OpenBundle(bytes.NewReader(broken)); err == nil {
			t.Errorf("OpenBundle(%.40q) = nil error", broken)
		}
	}
}

// FuzzVerifyBundle mutates a bundle: Verify must never panic, and whenever
// it passes (against the trusted final checkpoint) every record it read must
// be byte for byte the original.
func FuzzVerifyBundle(f *testing.F) {
	store := audittest.NewStore()
	cfg := audittest.Config(f, origin)
	cfg.Now = newFakeClock().Now
	cfg.CheckpointInterval = time.Hour
	l, err := audit.Open(context.Background(), store, cfg)
	if err != nil {
		f.Fatal(err)
	}
	for i := range 6 {
		in, _ := l.Append(context.Background(), intent(fmt.Sprint(i)))
		_, _ = l.Append(context.Background(), outcome(fmt.Sprint(i), in))
		if i%2 == 0 {
			_ = l.Sync(context.Background())
		}
	}
	_ = l.Close(context.Background())
	latest, _ := l.Latest(context.Background())
	var originals [][]byte
	_ = store.Records(context.Background(), origin, 0, 1<<20, func(_ int64, data []byte, _ *tlog.Hash) error {
		originals = append(originals, bytes.Clone(data))
		return nil
	})
	good := writeBundle(f, store, audit.BundleOptions{})
	f.Add(good)
	f.Add(bytes.Replace(good, []byte(`"c3"`), []byte(`"c4"`), 1))
	f.Add(good[:len(good)/2])
	_, vk := audittest.Key(f, origin, 1)
	opts := audit.VerifyOptions{Keys: []string{vk}, Trusted: [][]byte{latest.Note}, Workers: 1}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := audit.OpenBundle(bytes.NewReader(data))
		if err != nil {
			return
		}
		rep, err := audit.Verify(context.Background(), b, opts)
		if err != nil || !rep.OK() {
			return
		}
		n := 0
		err = b.Records(context.Background(), origin, 0, 1<<20, func(i int64, data []byte, _ *tlog.Hash) error {
			if i >= int64(len(originals)) || !bytes.Equal(data, originals[i]) {
				return fmt.Errorf("record %d differs from the original: %q", i, data)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatalf("Verify passed a mutated bundle: %v", err)
		}
		if n != len(originals) {
			t.Fatalf("Verify passed a bundle with %d of %d records", n, len(originals))
		}
	})
}

// TestBundleRefusesRecordsPastItsEnd: a record line after the last one the
// origin's header gives (here a copy of the last record) is not ignored.
func TestBundleRefusesRecordsPastItsEnd(t *testing.T) {
	store := audittest.NewStore()
	l := buildLog(t, store, 5, 0, "c", nil, nil)
	_ = l.Close(t.Context())
	keys := []string{vkey(t, 1)}
	b := writeBundle(t, store, audit.BundleOptions{})
	requireOK(t, verify(t, openBundle(t, b), audit.VerifyOptions{Keys: keys}))
	lines := bytes.SplitAfter(b, []byte("\n"))
	last := lines[len(lines)-2] // the final element is empty
	dup := append(bytes.Clone(b), last...)
	rep := verify(t, openBundle(t, dup), audit.VerifyOptions{Keys: keys})
	f := rep.FirstFailure()
	if rep.OK() || f.Code != audit.ProblemIndexMismatch || f.Index != 11 || !strings.Contains(f.Message, fmt.Sprintf("line %d", len(lines))) {
		t.Fatalf("bundle with a repeated last record: %v, want index_mismatch at 11 naming line %d", rep.Failures, len(lines))
	}
	// Also when only part of the log is checked.
	if rep := verify(t, openBundle(t, dup), audit.VerifyOptions{Keys: keys, To: 5}); rep.OK() {
		t.Error("a partial check ignored the extra record line")
	}
}
