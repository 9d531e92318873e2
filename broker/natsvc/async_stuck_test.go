package natsvc_test

import (
	"context"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// stuck is a handler whose calls never return until release is closed: a
// driver that ignores its context, past every timeout.
type stuck struct {
	started chan string
	release chan struct{}
}

func (h *stuck) Handle(_ context.Context, req *broker.Request) *broker.Reply {
	h.started <- string(req.Payload)
	<-h.release
	return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, AuditIndex: -1}
}

// TestAsyncStuckCallNotRenewedForever: an instance renews the ack wait of
// a message while its call runs and while it waits for a worker, but not
// for ever. With its only worker stuck in a call, the message it runs and
// the one waiting behind it reach another instance: StuckAfter plus the ack
// wait later, and StuckAfter later.
func TestAsyncStuckCallNotRenewedForever(t *testing.T) {
	f := newAsyncFixture(t)
	h := &stuck{started: make(chan string, 4), release: make(chan struct{})}
	tune := func(c *natsvc.AsyncConfig) { c.Workers, c.AckWait, c.StuckAfter = 1, 500*time.Millisecond, time.Second }
	f.start(t.Context(), t, h, tune)
	t.Cleanup(func() { close(h.release) }) // before the instance's Stop, which waits for the call
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	f.publish(t, subject, `{"m":1}`, nil)
	select {
	case <-h.started:
	case <-time.After(30 * time.Second):
		t.Fatal("the call did not start")
	}
	f.publish(t, subject, `{"m":2}`, nil)
	deadline := time.Now().Add(30 * time.Second)
	for ci := f.consumerInfo(t); ci.NumAckPending != 2; ci = f.consumerInfo(t) {
		if time.Now().After(deadline) {
			t.Fatalf("the stuck instance holds %d messages, want 2", ci.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := &recorder{seen: make(chan broker.Request, 4)}
	f.start(t.Context(), t, r, tune)
	want := map[string]bool{`{"m":1}`: true, `{"m":2}`: true}
	timeout := time.After(time.Minute)
	for len(want) > 0 {
		select {
		case req := <-r.seen:
			delete(want, string(req.Payload))
		case <-timeout:
			t.Fatalf("the other instance never got %v from the stuck one", want)
		}
	}
}
