package fifo_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/sqlgate/sqlgate/internal/fifo"
)

// TestGateAdmitsInArrivalOrder fills a gate of two, queues five callers one
// after another and frees one slot at a time: they enter in the order they
// asked.
func TestGateAdmitsInArrivalOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := fifo.NewGate(2)
		ctx := t.Context()
		for range 2 {
			if err := g.Enter(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var (
			mu      sync.Mutex
			entered []int
			wg      sync.WaitGroup
		)
		for i := range 5 {
			wg.Go(func() {
				if err := g.Enter(ctx); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				entered = append(entered, i)
				mu.Unlock()
			})
			synctest.Wait() // caller i is queued before caller i+1 starts
		}
		for range 5 {
			g.Leave()
			synctest.Wait()
		}
		wg.Wait()
		if want := []int{0, 1, 2, 3, 4}; !slices.Equal(entered, want) {
			t.Errorf("entered in order %v, want %v", entered, want)
		}
	})
}

// TestGateEnterCancelled: a caller whose context ends stops waiting, holds
// no slot, and the next in line gets the slot that frees.
func TestGateEnterCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := fifo.NewGate(1)
		if err := g.Enter(t.Context()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		gaveUp := make(chan error, 1)
		go func() { gaveUp <- g.Enter(ctx) }()
		synctest.Wait()
		entered := make(chan error, 1)
		go func() { entered <- g.Enter(t.Context()) }()
		synctest.Wait()
		cancel()
		if err := <-gaveUp; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Enter = %v, want context.Canceled", err)
		}
		select {
		case err := <-entered:
			t.Fatalf("second caller entered (%v) while the slot was still held", err)
		default:
		}
		g.Leave()
		if err := <-entered; err != nil {
			t.Fatal(err)
		}
		g.Leave()
		if err := g.Enter(t.Context()); err != nil { // the gate is free again
			t.Fatal(err)
		}
	})
}
