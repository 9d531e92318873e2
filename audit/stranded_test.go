package audit_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// lostAnswerStore stores the next batch while loseNext is set and then
// reports the write failed, as a commit whose answer the connection lost.
type lostAnswerStore struct {
	*audittest.Store
	loseNext atomic.Bool
}

var errLostAnswer = errors.New("bad connection")

func (s *lostAnswerStore) Write(ctx context.Context, origin string, b *audit.Batch) error {
	if err := s.Store.Write(ctx, origin, b); err != nil {
		return err
	}
	if s.loseNext.CompareAndSwap(true, false) {
		return errLostAnswer
	}
	return nil
}

// enqueueOutcome enqueues the outcome of intent in and returns the error
// its callback got.
func enqueueOutcome(t *testing.T, l *audit.Log, corr string, in int64) error {
	t.Helper()
	done := make(chan error, 1)
	if err := l.Enqueue(t.Context(), outcome(corr, in), func(_ int64, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	return <-done
}

// recovered is the outcome recovery writes for intent in.
func recovered(in audit.Record) *audit.Record {
	return &audit.Record{
		Kind: audit.KindOutcome, CorrelationID: in.CorrelationID, IntentIndex: in.Index, Route: in.Route, Actor: in.Actor,
		SQL: &audit.SQL{Outcome: "commit"}, Result: &audit.Result{Status: "ok", Recovered: true},
	}
}

func strandedIndexes(t *testing.T, l *audit.Log) []int64 {
	t.Helper()
	got, err := l.Stranded(t.Context())
	if err != nil {
		t.Fatalf("Stranded = %v", err)
	}
	var idx []int64
	for _, r := range got {
		idx = append(idx, r.Index)
	}
	return idx
}

// requirePaired checks that every intent has exactly one outcome: no
// unpaired intent and no outcome naming an intent already paired.
func requirePaired(t *testing.T, store audit.Source) {
	t.Helper()
	rep := verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}})
	requireOK(t, rep)
	if rep.Origins[0].Unpaired != 0 || len(rep.Exceptions) != 0 {
		t.Errorf("verify: %d unpaired, exceptions %v; want every intent paired once", rep.Origins[0].Unpaired, rep.Exceptions)
	}
}

// TestStrandedOutcomeRecoveredWhileRunning: an outcome whose write failed
// leaves its intent stranded; once the store takes writes again the log
// hands it out (and no intent whose call still runs), and once its
// recovered outcome is stored, never again.
func TestStrandedOutcomeRecoveredWhileRunning(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	a := mustAppend(t, l, intent("a"))
	store.FailWrites(errors.New("sqlstore write: timeout"))
	if err := enqueueOutcome(t, l, "a", a); err == nil {
		t.Fatal("outcome stored by a failing store")
	}
	if n := l.Stats().Stranded; n != 1 {
		t.Errorf("Stats().Stranded = %d, want 1", n)
	}
	if got := strandedIndexes(t, l); len(got) != 0 {
		t.Errorf("Stranded before the log read the store again = %v, want none (the failed write may be stored)", got)
	}
	store.FailWrites(nil)
	b := mustAppend(t, l, intent("b")) // its call runs
	if got := strandedIndexes(t, l); len(got) != 1 || got[0] != a {
		t.Fatalf("Stranded once the store takes writes = %v, want [%d]", got, a)
	}
	open, _ := l.Stranded(t.Context())
	mustAppend(t, l, recovered(open[0]))
	if got := strandedIndexes(t, l); len(got) != 0 || l.Stats().Stranded != 0 {
		t.Errorf("Stranded after the recovered outcome = %v (%d kept), want none", got, l.Stats().Stranded)
	}
	mustAppend(t, l, outcome("b", b))
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	requirePaired(t, store)
}

// TestStrandedOutcomeStoredAfterAll: an outcome reported failed although it
// was stored is not handed out: a second outcome would pair nothing.
func TestStrandedOutcomeStoredAfterAll(t *testing.T) {
	store := &lostAnswerStore{Store: audittest.NewStore()}
	l := openLog(t, store, nil)
	a := mustAppend(t, l, intent("a"))
	store.loseNext.Store(true)
	if err := enqueueOutcome(t, l, "a", a); !errors.Is(err, errLostAnswer) {
		t.Fatalf("outcome whose answer was lost = %v, want %v", err, errLostAnswer)
	}
	mustAppend(t, l, &audit.Record{Kind: audit.KindDecision}) // the log reads the store again
	if got := strandedIndexes(t, l); len(got) != 0 || l.Stats().Stranded != 0 {
		t.Errorf("Stranded with the outcome stored after all = %v (%d kept), want none", got, l.Stats().Stranded)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	requirePaired(t, store.Store)
}

// TestStrandedIntentStoredAfterAll: an intent whose append was reported
// failed (its call refused, so nobody writes its outcome) but was stored
// is handed out.
func TestStrandedIntentStoredAfterAll(t *testing.T) {
	store := &lostAnswerStore{Store: audittest.NewStore()}
	l := openLog(t, store, nil)
	store.loseNext.Store(true)
	if _, err := l.Append(t.Context(), intent("a")); !errors.Is(err, errLostAnswer) {
		t.Fatalf("intent whose answer was lost = %v, want %v", err, errLostAnswer)
	}
	mustAppend(t, l, &audit.Record{Kind: audit.KindDecision}) // the log reads the store again
	open, err := l.Stranded(t.Context())
	if err != nil || len(open) != 1 || open[0].CorrelationID != "a" {
		t.Fatalf("Stranded = %+v, %v; want the intent stored after all", open, err)
	}
	mustAppend(t, l, recovered(open[0]))
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	requirePaired(t, store.Store)
}

// TestStrandedIntentWhoseCallerGaveUp: an intent stored after its caller
// stopped waiting (told the append failed, it runs nothing) is handed out.
func TestStrandedIntentWhoseCallerGaveUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &holdingStore{Store: audittest.NewStore()}
		l, err := audit.Open(t.Context(), store, audittest.Config(t, origin))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close(context.Background()) }()
		store.hold()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := l.Append(ctx, intent("a")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Append held past its caller's deadline = %v", err)
		}
		store.release()
		synctest.Wait()
		open, err := l.Stranded(t.Context())
		if err != nil || len(open) != 1 || open[0].CorrelationID != "a" {
			t.Fatalf("Stranded = %+v, %v; want the intent stored after its caller gave up", open, err)
		}
	})
}

// TestStrandedWhileItsOutcomeIsUnderWay: while an outcome append whose
// waiter gave up may still be stored, its intent is not handed out; once
// it is stored, the intent is settled.
func TestStrandedWhileItsOutcomeIsUnderWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &holdingStore{Store: audittest.NewStore()}
		l, err := audit.Open(t.Context(), store, audittest.Config(t, origin))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close(context.Background()) }()
		a := mustAppend(t, l, intent("a"))
		store.FailWrites(errors.New("sqlstore write: timeout"))
		if err := enqueueOutcome(t, l, "a", a); err == nil {
			t.Fatal("outcome stored by a failing store")
		}
		store.FailWrites(nil)
		mustAppend(t, l, &audit.Record{Kind: audit.KindDecision}) // the log reads the store again
		open, err := l.Stranded(t.Context())
		if err != nil || len(open) != 1 {
			t.Fatalf("Stranded = %+v, %v; want intent %d", open, err, a)
		}
		store.hold()
		actx, acancel := context.WithTimeout(t.Context(), time.Second)
		defer acancel()
		if _, err := l.Append(actx, recovered(open[0])); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("recovered outcome held past its deadline = %v", err)
		}
		if got := strandedIndexes(t, l); len(got) != 0 {
			t.Errorf("Stranded while its outcome may still be stored = %v, want none", got)
		}
		store.release()
		synctest.Wait()
		if got := strandedIndexes(t, l); len(got) != 0 || l.Stats().Stranded != 0 {
			t.Errorf("Stranded once its outcome is stored = %v (%d kept), want none", got, l.Stats().Stranded)
		}
	})
}

// logLines records the lines of a log.
type logLines struct {
	mu    sync.Mutex
	lines []slog.Record
}

func (h *logLines) Enabled(context.Context, slog.Level) bool { return true }

func (h *logLines) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, r.Clone())
	return nil
}

func (h *logLines) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logLines) WithGroup(string) slog.Handler      { return h }

// with returns, of each line with message msg, its attributes named keys.
func (h *logLines) with(msg string, keys ...string) []map[string]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]int64
	for _, r := range h.lines {
		if r.Message != msg {
			continue
		}
		m := map[string]int64{}
		r.Attrs(func(a slog.Attr) bool {
			if slices.Contains(keys, a.Key) {
				m[a.Key] = a.Value.Int64()
			}
			return true
		})
		out = append(out, m)
	}
	return out
}

// TestStrandedBeyondTheBound: past the bound on the intents kept, each
// further one is counted, and logged at most once every 10 s with the
// number dropped in between, not once per intent.
func TestStrandedBeyondTheBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const msg = "audit intents without an outcome not kept for recovery while running; the next start recovers them"
		store := audittest.NewStore()
		logs := &logLines{}
		cfg := audittest.Config(t, origin)
		cfg.Logger = slog.New(logs)
		l, err := audit.Open(t.Context(), store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close(context.Background()) }()
		audit.SetStrandedLimit(l, 2)
		var in []int64
		for _, corr := range []string{"a", "b", "c", "d", "e", "f"} {
			in = append(in, mustAppend(t, l, intent(corr)))
		}
		store.FailWrites(errors.New("sqlstore write: timeout"))
		for i, corr := range []string{"a", "b", "c", "d", "e"} {
			if err := enqueueOutcome(t, l, corr, in[i]); err == nil {
				t.Fatal("outcome stored by a failing store")
			}
		}
		time.Sleep(10 * time.Second)
		if err := enqueueOutcome(t, l, "f", in[5]); err == nil {
			t.Fatal("outcome stored by a failing store")
		}
		store.FailWrites(nil)

		got := logs.with(msg, "kept", "dropped", "suppressed")
		want := []map[string]int64{
			{"kept": 2, "dropped": 1, "suppressed": 0},
			{"kept": 2, "dropped": 4, "suppressed": 2},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("log lines %q (-want +got):\n%s", msg, diff)
		}
		if st := l.Stats(); st.Stranded != 2 || st.StrandedDropped != 4 {
			t.Errorf("Stats() stranded %d, dropped %d; want 2 (the bound) and 4", st.Stranded, st.StrandedDropped)
		}
	})
}
