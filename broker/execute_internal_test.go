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

// lookupExec blocks its calls until their timeout, and answers lookups
// (nothing committed) or fails them (the database stopped answering).
type lookupExec struct {
	blockingExec
	down bool
}

func (x lookupExec) Lookup(context.Context, string) (*Result, bool, error) {
	if x.down {
		return nil, false, ErrUnavailable
	}
	return nil, false, nil
}

// TestTimedOutIsASlowCall: a call that ran into its timeout while the
// database still answers is TimedOut (the async consumer gives it a few
// attempts); a database that stopped answering makes every call run into
// the timeout too, but its lookup fails as well: that is an outage, retried
// until the request is old.
func TestTimedOutIsASlowCall(t *testing.T) {
	s := &Service{}
	for _, tc := range []struct {
		down bool
		want bool
	}{{false, true}, {true, false}} {
		ex := lookupExec{down: tc.down}
		_, err := execute(t.Context(), ex, &Call{IdempotencyKey: "k"}, 20*time.Millisecond)
		_, unknown, err := s.settle(t.Context(), ex, &Call{IdempotencyKey: "k"}, err)
		if got := timedOut(err, unknown); got != tc.want {
			t.Errorf("database answering lookups %v: timedOut = %v (err %v, unknown %v), want %v", !tc.down, got, err, unknown, tc.want)
		}
	}
}

// deadConnsExec fails its first lookups as a pool does whose connections
// the database closed (a restart, a failover), then answers with the
// call's committed record.
type deadConnsExec struct {
	blockingExec
	dead     int
	attempts *int
	record   *Result
}

func (x deadConnsExec) Lookup(context.Context, string) (*Result, bool, error) {
	*x.attempts++
	if *x.attempts <= x.dead {
		return nil, false, errors.Join(ErrUnavailable, errors.New("connection reset by peer"))
	}
	return x.record, true, nil
}

// TestSettleAsksAgainAfterDeadConnections: a call whose connection the
// database closed asks whether it committed; the first attempts land on
// pooled connections that died too. The lookup is asked again within its
// bound, so the call settles as committed (its own record) instead of an
// unknown outcome, which stays in the audit log for good.
func TestSettleAsksAgainAfterDeadConnections(t *testing.T) {
	call := &Call{IdempotencyKey: "k", RequestHash: "h", DecisionID: "d1"}
	attempts := 0
	ex := deadConnsExec{dead: 3, attempts: &attempts, record: &Result{RequestHash: "h", DecisionID: "d1", TransactionID: "42"}}
	res, unknown, err := (&Service{}).settle(t.Context(), ex, call, errors.Join(ErrUnavailable, errors.New("connection reset")))
	if err != nil || unknown || res == nil || res.TransactionID != "42" || res.Replayed {
		t.Errorf("settle after 3 dead connections = %+v, unknown %v, err %v; want the call's own commit (transaction 42)", res, unknown, err)
	}
	if attempts != 4 {
		t.Errorf("lookup attempts = %d, want 4", attempts)
	}
}
