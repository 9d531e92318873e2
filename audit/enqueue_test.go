package audit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// TestEnqueue checks the asynchronous append: every queued record gets its
// callback with a distinct index once durable, Close commits what is
// queued, and a failing store reports the error to the callback.
func TestEnqueue(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	const n = 200
	var mu sync.Mutex
	got := map[int64]bool{}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		if err := l.Enqueue(t.Context(), &audit.Record{Kind: audit.KindOutcome, CorrelationID: "c"}, func(index int64, err error) {
			defer wg.Done()
			if err != nil {
				t.Errorf("enqueue callback: %v", err)
				return
			}
			mu.Lock()
			got[index] = true
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("%d distinct indexes for %d records", len(got), n)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Enqueue(t.Context(), &audit.Record{Kind: audit.KindOutcome}, nil); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}

	// A store that fails: the callback gets the error.
	bad := audittest.NewStore()
	l2 := openLog(t, bad, nil)
	bad.FailWrites(errors.New("disk full"))
	done := make(chan error, 1)
	if err := l2.Enqueue(t.Context(), &audit.Record{Kind: audit.KindOutcome}, func(index int64, err error) {
		if index != -1 {
			t.Errorf("failed enqueue index = %d, want -1", index)
		}
		done <- err
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Error("a failed write reported success")
	}
}

// batchSizes records how many records each store write carried.
type batchSizes struct {
	*audittest.Store
	mu    sync.Mutex
	sizes []int
}

func (s *batchSizes) Write(ctx context.Context, origin string, b *audit.Batch) error {
	if len(b.Records) > 0 {
		s.mu.Lock()
		s.sizes = append(s.sizes, len(b.Records))
		s.mu.Unlock()
	}
	return s.Store.Write(ctx, origin, b)
}

func (s *batchSizes) get() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.sizes...)
}

// An enqueued record (an outcome) waits for the next record to share its
// commit, so the next call's intent is not queued behind a commit of the
// outcome alone; a record with a waiter is committed at once; a lingering
// record is committed by Close.
func TestEnqueueLinger(t *testing.T) {
	store := &batchSizes{Store: audittest.NewStore()}
	l := openLog(t, store, func(c *audit.Config) { c.EnqueueLinger = time.Hour })
	if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindDecision, CorrelationID: "before"}); err != nil {
		t.Fatal(err)
	}
	base := len(store.get()) // the key history's admin record and the decision
	durable := make(chan int64, 2)
	keep := func(index int64, err error) {
		if err != nil {
			t.Errorf("enqueue callback: %v", err)
		}
		durable <- index
	}
	if err := l.Enqueue(t.Context(), &audit.Record{Kind: audit.KindOutcome, CorrelationID: "first"}, keep); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), &audit.Record{Kind: audit.KindIntent, CorrelationID: "second"}); err != nil {
		t.Fatal(err)
	}
	if got := <-durable; got < 0 {
		t.Fatalf("outcome index %d", got)
	}
	if got := store.get()[base:]; len(got) != 1 || got[0] != 2 {
		t.Errorf("record writes = %v, want one write of the outcome and the intent together", got)
	}

	if err := l.Enqueue(t.Context(), &audit.Record{Kind: audit.KindOutcome, CorrelationID: "last"}, keep); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-durable:
		if got < 0 {
			t.Fatalf("last outcome index %d", got)
		}
	default:
		t.Fatal("Close returned before the lingering record was committed")
	}
	if got := store.get()[base:]; len(got) != 2 || got[1] != 1 {
		t.Errorf("record writes = %v, want the lingering record written at Close", got)
	}

	// Without a next record the linger ends on its own.
	short := openLog(t, audittest.NewStore(), func(c *audit.Config) { c.EnqueueLinger = time.Millisecond })
	if err := short.Enqueue(t.Context(), &audit.Record{Kind: audit.KindOutcome, CorrelationID: "alone"}, keep); err != nil {
		t.Fatal(err)
	}
	if got := <-durable; got < 0 {
		t.Fatalf("lone outcome index %d", got)
	}
}
