package broker

import (
	"context"
	"errors"
	"testing"
	"time"
)

// blockingExec waits for the call's context, then fails as an adapter does
// when its statement is cancelled.
type blockingExec struct{ Executor }

func (blockingExec) Execute(ctx context.Context, _ *Call) (*Result, error) {
	<-ctx.Done()
	return nil, errors.Join(ErrUnavailable, ctx.Err())
}

// failingExec fails at once.
type failingExec struct{ Executor }

func (failingExec) Execute(context.Context, *Call) (*Result, error) {
	return nil, ErrUnavailable
}

// TestExecuteMarksTimeouts: an error that comes with the call's own timeout
// expired is marked (the async consumer then gives the request a few
// attempts, not a day of them); a database that fails at once, or a caller
// that went away, is not a timeout.
func TestExecuteMarksTimeouts(t *testing.T) {
	_, err := execute(t.Context(), blockingExec{}, &Call{}, 20*time.Millisecond)
	if !errors.Is(err, errTimedOut) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("call past its timeout: err = %v, want errTimedOut and ErrUnavailable", err)
	}
	if code, _, _ := execError(err, 0); code != CodeUnavailable {
		t.Errorf("code of a timed-out call = %s, want %s", code, CodeUnavailable)
	}
	if _, err := execute(t.Context(), failingExec{}, &Call{}, time.Minute); err == nil || errors.Is(err, errTimedOut) {
		t.Errorf("database down: err = %v, want unavailable, not a timeout", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := execute(ctx, blockingExec{}, &Call{}, time.Minute); err == nil || errors.Is(err, errTimedOut) {
		t.Errorf("caller gone: err = %v, want an error that is not a timeout", err)
	}
}
