package natsvc_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// slowCalls takes d per call and counts the calls per payload.
type slowCalls struct {
	d     time.Duration
	mu    sync.Mutex
	calls map[string]int
}

func (s *slowCalls) Handle(_ context.Context, req *broker.Request) *broker.Reply {
	s.mu.Lock()
	s.calls[string(req.Payload)]++
	s.mu.Unlock()
	time.Sleep(s.d) // a call that takes its time, not a synchronization
	return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, AuditIndex: -1}
}

func (s *slowCalls) count(p string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[p]
}

// TestAsyncMessageWaitingForAWorkerIsNotDeliveredAgain: messages an
// instance fetched while its workers are busy wait, and the calls before
// them take most of the ack wait each. The instance renews their ack wait
// while they wait and while they run, so JetStream does not deliver them
// again meanwhile: each runs once and gets one envelope.
func TestAsyncMessageWaitingForAWorkerIsNotDeliveredAgain(t *testing.T) {
	h := &slowCalls{d: 1500 * time.Millisecond, calls: map[string]int{}}
	f := newAsyncFixture(t)
	// The ack wait exceeds a call (1.5 s), as sqlgated sizes it, but not
	// the wait behind two calls.
	tune := func(c *natsvc.AsyncConfig) { c.Workers, c.AckWait = 1, 2500*time.Millisecond }
	a1 := f.start(t.Context(), t, h, tune)
	a2 := f.start(t.Context(), t, h, tune)
	replies := collectEnvelopes(t, f.user, f.key)
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	const n = 6
	var last uint64
	for i := range n {
		last = f.publish(t, subject, `{"i":`+strconv.Itoa(i)+`}`, map[string]string{
			natsvc.HeaderIdempotencyKey: "k" + strconv.Itoa(i), natsvc.HeaderReplyTo: "t" + strconv.Itoa(i),
		}).Sequence
	}
	f.done(t, last)
	// Every delivery has been settled (a copy delivered again would still
	// run, late, in the instance that held it), then the envelopes sent.
	f.everyDeliverySettled(t)
	for _, a := range []*natsvc.Async{a1, a2} {
		if err := a.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.user.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if p := `{"i":` + strconv.Itoa(i) + `}`; h.count(p) != 1 {
			t.Errorf("request %s handled %d times, want once", p, h.count(p))
		}
	}
	got := replies.wait(t, n)
	for s, envs := range got {
		if len(envs) != 1 {
			t.Errorf("%d envelopes on %s, want one", len(envs), s)
		}
	}
	if c := f.settledCounts(); c[natsvc.SettledOK] != n {
		t.Errorf("settled %v, want %d ok", c, n)
	}
}

// everyDeliverySettled waits until the instances settled as many
// deliveries as the consumer made.
func (f *asyncFixture) everyDeliverySettled(t *testing.T) {
	t.Helper()
	c, err := f.js.Consumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ci, err := c.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		settled := 0
		for _, n := range f.settledCounts() {
			settled += n
		}
		if uint64(settled) >= ci.Delivered.Consumer {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries settled of %d made", settled, ci.Delivered.Consumer)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
