package natsvc_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// keyedRuns records the calls by payload and replays a call whose
// idempotency key already ran, as the target database's idempotency record
// does: a request whose key collides with an earlier one does not run.
type keyedRuns struct {
	mu   sync.Mutex
	keys map[string]bool
	ran  map[string]string // payload -> idempotency key of its run
}

func newKeyedRuns() *keyedRuns {
	return &keyedRuns{keys: map[string]bool{}, ran: map[string]string{}}
}

func (k *keyedRuns) Handle(_ context.Context, req *broker.Request) *broker.Reply {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.keys[req.IdempotencyKey] {
		k.keys[req.IdempotencyKey] = true
		k.ran[string(req.Payload)] = req.IdempotencyKey
	}
	return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, AuditIndex: -1}
}

// waitRan waits (at most 15 s) until the call with payload has run and
// returns its idempotency key.
func (k *keyedRuns) waitRan(t *testing.T, payload string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		k.mu.Lock()
		key, ok := k.ran[payload]
		k.mu.Unlock()
		if ok {
			return key
		}
		if time.Now().After(deadline) {
			t.Fatalf("the request %s did not run", payload)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitHealthy waits (at most 15 s) until every instance's last check
// reported the stream and the consumer healthy.
func waitHealthy(t *testing.T, as ...*natsvc.Async) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, a := range as {
		for a.StreamError() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("stream health still reports %v", a.StreamError())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// publishEventually publishes until the stream acknowledges it (at most
// 15 s): while the stream is gone, the publish gets no responder.
func (f *asyncFixture) publishEventually(t *testing.T, subject, payload string) jetstream.PubAck {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		reply, err := f.user.Request(subject, []byte(payload), time.Second)
		var ack jetstream.PubAck
		if err == nil && json.Unmarshal(reply.Data, &ack) == nil && ack.Stream == natsvc.DefaultAsyncStream {
			return ack
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish %s: not stored (last error %v)", subject, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fastChecks(c *natsvc.AsyncConfig) { c.StreamCheckInterval = 50 * time.Millisecond }

// TestAsyncConsumerRecreated: an operator deletes the durable consumer while
// sqlgated runs; the next check recreates it and fetches from it again, so a
// request published then runs, and the health returns to ok.
func TestAsyncConsumerRecreated(t *testing.T) {
	f := newAsyncFixture(t)
	runs := newKeyedRuns()
	a := f.start(t.Context(), t, runs, fastChecks)
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	f.publish(t, subject, `{"i":"before"}`, nil)
	runs.waitRan(t, `{"i":"before"}`)

	if err := f.js.DeleteConsumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable); err != nil {
		t.Fatal(err)
	}
	ack := f.publish(t, subject, `{"i":"after"}`, nil)
	runs.waitRan(t, `{"i":"after"}`)
	f.settled(t, ack.Sequence)
	waitHealthy(t, a)
	if err := a.CheckStream(t.Context()); err != nil {
		t.Fatalf("CheckStream after the consumer was recreated: %v", err)
	}
	ci, err := f.js.Consumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable)
	if err != nil {
		t.Fatal(err)
	}
	if got := ci.CachedInfo().Config.AckPolicy; got != jetstream.AckExplicitPolicy {
		t.Errorf("recreated consumer's ack policy = %v, want explicit", got)
	}
}

// TestAsyncStreamRecreated: an operator deletes the whole stream; the check
// creates it again with its consumer, a request published then runs, and a
// request without an idempotency key at the same stream sequence as one of
// the old stream gets a key of its own (it runs rather than replaying the
// old one's result).
func TestAsyncStreamRecreated(t *testing.T) {
	f := newAsyncFixture(t)
	runs := newKeyedRuns()
	a := f.start(t.Context(), t, runs, fastChecks)
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	old := f.publish(t, subject, `{"i":"old"}`, nil)
	oldKey := runs.waitRan(t, `{"i":"old"}`)
	f.settled(t, old.Sequence)
	want := f.streamConfig(t)

	if err := f.js.DeleteStream(t.Context(), natsvc.DefaultAsyncStream); err != nil {
		t.Fatal(err)
	}
	ack := f.publishEventually(t, subject, `{"i":"new"}`)
	if ack.Sequence != old.Sequence {
		t.Fatalf("sequence in the recreated stream = %d, want %d (a new stream starts again)", ack.Sequence, old.Sequence)
	}
	newKey := runs.waitRan(t, `{"i":"new"}`)
	if newKey == oldKey {
		t.Errorf("the request in the recreated stream got the old stream's key %q", oldKey)
	}
	f.settled(t, ack.Sequence)
	waitHealthy(t, a)
	got := f.streamConfig(t)
	if got.Retention != want.Retention || got.MaxMsgsPerSubject != want.MaxMsgsPerSubject || got.Discard != want.Discard ||
		got.MaxBytes != want.MaxBytes || got.Duplicates != want.Duplicates {
		t.Errorf("recreated stream config = %+v, want %+v", got, want)
	}
}

// TestAsyncConsumerRecreatedByTwoInstances: two instances share the durable
// consumer; after it is deleted both recreate it (or find it recreated by
// the other) and both fetch from it again.
func TestAsyncConsumerRecreatedByTwoInstances(t *testing.T) {
	f := newAsyncFixture(t)
	runs := newKeyedRuns()
	a1 := f.start(t.Context(), t, runs, fastChecks)
	a2 := f.start(t.Context(), t, runs, fastChecks)
	if err := f.js.DeleteConsumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable); err != nil {
		t.Fatal(err)
	}
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	ack := f.publish(t, subject, `{"i":"after"}`, nil)
	runs.waitRan(t, `{"i":"after"}`)
	f.settled(t, ack.Sequence)
	waitHealthy(t, a1, a2)
	// Both instances have a pull request waiting on the one consumer.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := f.js.Consumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable)
		if err == nil && c.CachedInfo().NumWaiting >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not both instances fetch from the recreated consumer (%v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAsyncPausedDoesNotRecreate: a paused instance does not recreate the
// deleted consumer (the check reports it gone); after Resume it does, and
// the request waiting meanwhile runs.
func TestAsyncPausedDoesNotRecreate(t *testing.T) {
	f := newAsyncFixture(t)
	runs := newKeyedRuns()
	a := f.start(t.Context(), t, runs, fastChecks)
	if err := a.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := f.js.DeleteConsumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckStream(t.Context()); err == nil {
		t.Fatal("CheckStream while paused: nil, want the consumer reported gone")
	}
	if _, err := f.js.Consumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable); err == nil {
		t.Fatal("a paused instance recreated the consumer")
	}
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	ack := f.publish(t, subject, `{"i":"waiting"}`, nil)
	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	runs.waitRan(t, `{"i":"waiting"}`)
	f.settled(t, ack.Sequence)
	waitHealthy(t, a)
}
