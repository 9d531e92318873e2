package natsvc_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// gate is an Admit hook that counts the messages it is asked about.
type gate struct {
	open  atomic.Bool
	asked atomic.Int64
}

func (g *gate) admit() bool {
	g.asked.Add(1)
	return g.open.Load()
}

// TestAdmitRefusedRequestIsNotHandled: a request Admit refuses (sqlgated's
// gate while its NATS server is unchecked or too old) reaches no handler
// and gets no answer, not even a refusal; once Admit lets requests
// through, they are served.
func TestAdmitRefusedRequestIsNotHandled(t *testing.T) {
	t.Parallel()
	g := &gate{}
	h := &recorder{}
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.get"}, Admit: g.admit}, h)
	u := f.env.MintUser(t, "alice", []string{"orders.v1.get"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	if m, err := nc.Request("orders.v1.get", []byte(`{}`), 500*time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("a request Admit refused was answered: %v %v", m, err)
	}
	if g.asked.Load() != 1 {
		t.Fatalf("Admit was asked %d times, want once", g.asked.Load())
	}
	g.open.Store(true)
	m, err := nc.Request("orders.v1.get", []byte(`{}`), 5*time.Second)
	if err != nil {
		t.Fatalf("a request Admit lets through: %v", err)
	}
	if env := decode(t, m); !env.OK {
		t.Errorf("reply %s", m.Data)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reqs) != 1 {
		t.Errorf("the handler saw %d requests, want only the admitted one", len(h.reqs))
	}
}

// TestAsyncAdmitRefusedMessageWaits: an async request Admit refuses is
// neither handled nor settled (no answer, no acknowledgement): the stream
// delivers it again after the ack wait, and once Admit lets it through it
// is handled and acknowledged.
func TestAsyncAdmitRefusedMessageWaits(t *testing.T) {
	t.Parallel()
	g := &gate{}
	h := &recorder{seen: make(chan broker.Request, 4)}
	f := newAsyncFixture(t)
	f.start(t.Context(), t, h, func(c *natsvc.AsyncConfig) { c.Admit, c.AckWait = g.admit, 2*time.Second })
	ack := f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{"customer":"ACME"}`, nil)
	// Delivered twice: the first delivery was not settled.
	for deadline := time.Now().Add(30 * time.Second); g.asked.Load() < 2; {
		select {
		case req := <-h.seen:
			t.Fatalf("a message Admit refused was handled: %+v", req)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the message was delivered %d times, want it delivered again after the ack wait", g.asked.Load())
		}
	}
	if n := f.streamMsgs(t); n != 1 {
		t.Fatalf("the stream holds %d messages after the refused delivery, want it kept", n)
	}
	if got := f.settledCounts(); len(got) != 0 {
		t.Errorf("a refused delivery was settled: %v", got)
	}
	g.open.Store(true)
	select {
	case req := <-h.seen:
		if string(req.Payload) != `{"customer":"ACME"}` {
			t.Errorf("handled %q", req.Payload)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the message was not delivered again once admitted")
	}
	f.settled(t, ack.Sequence)
}
