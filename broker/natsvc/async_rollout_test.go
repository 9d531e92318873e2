package natsvc_test

import (
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// envelopes collects the reply envelopes a user receives under its reply
// prefix, by subject.
type envelopes struct {
	mu  sync.Mutex
	got map[string][]envelope
}

// collectEnvelopes subscribes nc to the reply subjects of key.
func collectEnvelopes(t *testing.T, nc *nats.Conn, key string) *envelopes {
	t.Helper()
	e := &envelopes{got: map[string][]envelope{}}
	sub, err := nc.Subscribe(broker.ReplyPrefix(key)+".>", func(m *nats.Msg) {
		var env envelope
		if err := json.Unmarshal(m.Data, &env); err != nil {
			env.Error = &broker.ReplyError{Code: "undecodable: " + err.Error()}
		}
		e.mu.Lock()
		e.got[m.Subject] = append(e.got[m.Subject], env)
		e.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return e
}

// snapshot returns the envelopes received so far, by subject.
func (e *envelopes) snapshot() map[string][]envelope {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string][]envelope, len(e.got))
	for s, envs := range e.got {
		out[s] = append([]envelope(nil), envs...)
	}
	return out
}

// wait waits until envelopes arrived on n subjects and returns them.
func (e *envelopes) wait(t *testing.T, n int) map[string][]envelope {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := e.snapshot()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("reply envelopes arrived on %d subjects, want %d", len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAsyncRouteOfANewerCatalogWaitsForItsInstance: during a rolling
// deploy that adds an async route, an instance still on the old catalog
// fetches requests for it from the consumer it shares with the new
// instances. It returns them to the stream for an instance that serves
// the route, instead of dropping them: every request runs once and gets
// its envelope.
func TestAsyncRouteOfANewerCatalogWaitsForItsInstance(t *testing.T) {
	ran := &ranSet{ran: map[string]int{}}
	h := ran.holding()
	close(h.release)
	f := newAsyncFixture(t)
	f.start(t.Context(), t, h, func(c *natsvc.AsyncConfig) { c.Subjects = []string{"orders.v1.import", "orders.v1.new"} })
	f.start(t.Context(), t, h, func(c *natsvc.AsyncConfig) {
		// Shorter than in production (otherRouteDelay), to keep the test short.
		natsvc.SetOtherRouteDelay(c, func(uint64) time.Duration { return 100 * time.Millisecond })
	})
	replies := collectEnvelopes(t, f.user, f.key)
	const n = 20
	var last uint64
	for i := range n {
		last = f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.new", `{"i":`+strconv.Itoa(i)+`}`,
			map[string]string{natsvc.HeaderReplyTo: "r" + strconv.Itoa(i)}).Sequence
	}
	f.done(t, last)
	for i := range n {
		if p := `{"i":` + strconv.Itoa(i) + `}`; ran.count(p) != 1 {
			t.Errorf("request %s ran %d times, want once", p, ran.count(p))
		}
	}
	got := replies.wait(t, n)
	for s, envs := range got {
		if len(envs) != 1 || !envs[0].OK {
			t.Errorf("envelopes on %s: %+v, want one ok", s, envs)
		}
	}
	if c := f.settledCounts(); c[natsvc.SettledOK] != n || c[natsvc.SettledDropped] != 0 || c[natsvc.SettledGaveUp] != 0 {
		t.Errorf("settled %v, want %d ok and none dropped or given up", c, n)
	}
	if left := f.settledMsgs(t, 0); left != 0 {
		t.Errorf("stream holds %d messages, want none", left)
	}
}

// TestAsyncRouteNoInstanceServesGivenUpAtMaxAge: a request for a route
// no instance serves (removed from the catalog, or not rolled out) waits
// in the stream, unhandled, until it is MaxAge old; then it is answered
// not_found and given up.
func TestAsyncRouteNoInstanceServesGivenUpAtMaxAge(t *testing.T) {
	h := &recorder{seen: make(chan broker.Request, 1)}
	clock := &fakeClock{}
	f := newAsyncFixture(t)
	f.start(t.Context(), t, h, func(c *natsvc.AsyncConfig) {
		c.MaxAge = time.Hour
		clock.tune(c)
		natsvc.SetOtherRouteDelay(c, func(uint64) time.Duration { return 50 * time.Millisecond })
	})
	replies := collectEnvelopes(t, f.user, f.key)
	ack := f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.gone", `{}`,
		map[string]string{natsvc.HeaderReplyTo: "gone-1", natsvc.HeaderCorrelationID: "corr-gone"})
	for deadline := time.Now().Add(30 * time.Second); f.settledCounts()[natsvc.SettledReturned] < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("settled %v, want the message returned to the stream again and again", f.settledCounts())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.streamMsgs(t); n != 1 || len(replies.snapshot()) != 0 {
		t.Fatalf("before MaxAge: stream holds %d messages, envelopes %v; want it waiting, unanswered", n, replies.snapshot())
	}
	clock.advance(time.Hour)
	f.settled(t, ack.Sequence)
	got := replies.wait(t, 1)
	envs := got[broker.ReplyPrefix(f.key)+".gone-1"]
	if len(envs) != 1 || envs[0].OK || envs[0].Error == nil || envs[0].Error.Code != broker.CodeNotFound || envs[0].CorrelationID != "corr-gone" {
		t.Errorf("envelopes %+v, want one not_found with the correlation id", got)
	}
	if c := f.settledCounts(); c[natsvc.SettledGaveUp] != 1 || c[natsvc.SettledDropped] != 0 {
		t.Errorf("settled %v, want it given up once, never dropped", c)
	}
	select {
	case r := <-h.seen:
		t.Errorf("handler saw %s", r.Subject)
	default:
	}
}

// TestAsyncDropsNonAsyncSubjects: a message whose subject is no async
// subject (no user key) never reaches the handler and leaves the work
// queue at once.
func TestAsyncDropsNonAsyncSubjects(t *testing.T) {
	h := &recorder{seen: make(chan broker.Request, 1)}
	f := startAsync(t, h)
	ack := f.publish(t, broker.AsyncSubjectPrefix+"NOTAKEY.orders.v1.import", `{}`, nil)
	f.settled(t, ack.Sequence)
	select {
	case r := <-h.seen:
		t.Errorf("handler saw %s", r.Subject)
	default:
	}
	if got := f.settledCounts(); got[natsvc.SettledDropped] != 1 {
		t.Errorf("settled = %v, want one dropped", got)
	}
}

// TestOtherRouteDelay: a message for a route the instance does not serve
// comes again after a few seconds, not at once, for about a minute (a
// rolling deploy), then backs off to a minute apart, so that MaxAge takes
// fewer deliveries than the consumer's limit.
func TestOtherRouteDelay(t *testing.T) {
	var total time.Duration
	for delivered := uint64(1); delivered <= 30; delivered++ {
		d := natsvc.OtherRouteDelay(delivered)
		if d < 3750*time.Millisecond || d > natsvc.MaxRetryDelay {
			t.Errorf("OtherRouteDelay(%d) = %s, want 3.75s to %s", delivered, d, natsvc.MaxRetryDelay)
		}
		if delivered <= 12 && d > 5*time.Second {
			t.Errorf("OtherRouteDelay(%d) = %s, want at most 5s for the first 12 deliveries", delivered, d)
		}
		if delivered >= 20 && d < natsvc.MaxRetryDelay*3/4 {
			t.Errorf("OtherRouteDelay(%d) = %s, want at least three quarters of %s", delivered, d, natsvc.MaxRetryDelay)
		}
		total += d
	}
	if total < 10*time.Minute {
		t.Errorf("30 deliveries take %s, want them backing off", total)
	}
}
