package audit_test

import (
	"context"
	"errors"
	"sync"
	"testing"

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
