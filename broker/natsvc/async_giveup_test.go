package natsvc_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// pastLimitSubject is the subject of the server's advisories of the
// consumer's messages past its delivery limit.
const pastLimitSubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + natsvc.DefaultAsyncStream + "." + natsvc.DefaultAsyncDurable

// poisonConfig is an instance on nc whose deliveries are never settled
// (Admit refuses them, as when every instance a message reaches dies on
// it): a delivery limit of 12, 300 ms apart. onGaveUp runs when it has
// given up a message.
func poisonConfig(f *asyncFixture, onGaveUp func()) natsvc.AsyncConfig {
	return natsvc.AsyncConfig{
		Subjects: []string{"orders.v1.import"}, UsersAccount: f.env.Keys.Public().Users,
		Workers: 2, AckWait: 300 * time.Millisecond, MaxDeliver: 1, MaxAge: time.Nanosecond,
		Admit: func() bool { return false },
		OnSettle: func(how string) {
			if how == natsvc.SettledGaveUp {
				onGaveUp()
			}
		},
	}
}

// stopWhileGivingUp stops a while the handler of an advisory is blocked
// in onGaveUp: it releases the handler once Stop is draining the
// advisories (which it does until the handler returns), or else once Stop
// has returned, and returns when Stop returned.
func stopWhileGivingUp(t *testing.T, a *natsvc.Async, release chan struct{}) {
	t.Helper()
	stopped := make(chan struct{})
	go func() { _ = a.Stop(); close(stopped) }()
	for !a.AdvisoriesDraining() {
		select {
		case <-stopped:
			close(release)
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(60 * time.Second):
		t.Fatal("Stop did not return")
	}
}

// wantGivenUp checks that every reply subject of tokens got one internal
// envelope and that the stream is empty.
func wantGivenUp(t *testing.T, f *asyncFixture, replies *envelopes, tokens ...string) {
	t.Helper()
	got := replies.wait(t, len(tokens))
	for _, token := range tokens {
		envs := got[broker.ReplyPrefix(f.key)+"."+token]
		if len(envs) != 1 || envs[0].OK || envs[0].Error == nil || envs[0].Error.Code != broker.CodeInternal {
			t.Errorf("envelopes on %s: %+v, want one internal", token, envs)
		}
	}
	if left := f.settledMsgs(t, 0); left != 0 {
		t.Errorf("stream holds %d messages past the delivery limit, unanswered; want them given up", left)
	}
}

// TestAsyncStopHandlesReceivedAdvisories: the server advises a message
// past the delivery limit once, to one instance. When that instance stops
// while the advisory waits behind another in its subscription, it still
// gives the message up before Stop returns: a stop does not leave it in
// the stream, never delivered again and never answered.
func TestAsyncStopHandlesReceivedAdvisories(t *testing.T) {
	f := newAsyncFixture(t)
	nc := f.env.BrokerConn(t)
	// A subscription of the test on the instance's connection sees each
	// advisory next to the instance's.
	advisories, err := nc.SubscribeSync(pastLimitSubject)
	if err != nil {
		t.Fatal(err)
	}
	inHandler, release := make(chan struct{}), make(chan struct{})
	var first sync.Once
	cfg := poisonConfig(f, func() { first.Do(func() { close(inHandler); <-release }) })
	a, err := natsvc.StartAsync(t.Context(), nc, cfg, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	replies := collectEnvelopes(t, f.user, f.key)
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	f.publish(t, subject, `{"poison":1}`, map[string]string{natsvc.HeaderReplyTo: "p1"})
	f.publish(t, subject, `{"poison":2}`, map[string]string{natsvc.HeaderReplyTo: "p2"})
	for range 2 {
		if _, err := advisories.NextMsg(time.Minute); err != nil {
			t.Fatalf("advisory: %v", err)
		}
	}
	// The server sent the connection both advisories before the flush's
	// answer: the instance's subscription has received them, the first
	// is being handled and the second waits.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	<-inHandler
	stopWhileGivingUp(t, a, release)
	wantGivenUp(t, f, replies, "p1", "p2")
}

// TestAsyncStopWaitsForAdvisoryHandler: Stop returns only after the
// handler of an advisory it received has finished, so that sqlgated,
// which closes its connections next, does not cut it short: the message
// is answered and deleted.
func TestAsyncStopWaitsForAdvisoryHandler(t *testing.T) {
	f := newAsyncFixture(t)
	nc := f.env.BrokerConn(t)
	inHandler, release := make(chan struct{}), make(chan struct{})
	var returned atomic.Bool
	cfg := poisonConfig(f, func() {
		close(inHandler)
		<-release
		returned.Store(true)
	})
	cfg.Workers = 1
	a, err := natsvc.StartAsync(t.Context(), nc, cfg, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	replies := collectEnvelopes(t, f.user, f.key)
	f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{"poison":1}`, map[string]string{natsvc.HeaderReplyTo: "p1"})
	select {
	case <-inHandler:
	case <-time.After(time.Minute):
		t.Fatal("the message was not given up")
	}
	stopWhileGivingUp(t, a, release)
	if !returned.Load() {
		t.Error("Stop returned while an advisory was being handled")
	}
	nc.Close() // as sqlgated's shutdown does once the transports stopped
	wantGivenUp(t, f, replies, "p1")
}

// TestAsyncStreamCheckGivesUpUnadvisedMessage: a message that passed the
// delivery limit while no instance was subscribed to the advisories (here,
// while none ran; also when the stream did not answer the instance that got
// the advisory) stays in the work-queue stream, below the consumer's ack
// floor, never delivered again. A stream check gives it up: deleted,
// answered internal, counted gave_up, never run.
func TestAsyncStreamCheckGivesUpUnadvisedMessage(t *testing.T) {
	f := newAsyncFixture(t)
	tune := func(c *natsvc.AsyncConfig) {
		c.AckWait, c.MaxDeliver, c.MaxAge, c.StreamCheckInterval = 300*time.Millisecond, 1, time.Nanosecond, 100*time.Millisecond
		natsvc.SetSweepAfter(c, 500*time.Millisecond)
	}
	ctx, cancel := context.WithCancel(t.Context())
	a := f.start(ctx, t, &recorder{}, tune) // creates the stream and the consumer
	cancel()
	_ = a.Stop()
	ack := f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{"poison":1}`, map[string]string{natsvc.HeaderReplyTo: "p1"})
	// The server's side: the consumer delivers the message until its limit
	// and then no longer counts it pending, while the work queue keeps it.
	cons, err := f.js.Consumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for ci := f.consumerInfo(t); ci.Delivered.Stream < ack.Sequence || ci.NumAckPending != 0; ci = f.consumerInfo(t) {
		if time.Now().After(deadline) {
			t.Fatalf("the consumer did not pass its delivery limit: %+v", ci)
		}
		msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for range msgs.Messages() { // not settled
		}
	}
	if ci := f.consumerInfo(t); ci.Delivered.Consumer != 12 || ci.NumPending != 0 || f.streamMsgs(t) != 1 {
		t.Fatalf("past the delivery limit: %d deliveries, %d waiting, the stream holds %d; want 12, 0, 1", ci.Delivered.Consumer, ci.NumPending, f.streamMsgs(t))
	}
	replies := collectEnvelopes(t, f.user, f.key)
	h := &recorder{seen: make(chan broker.Request, 1)}
	f.start(t.Context(), t, h, tune)
	wantGivenUp(t, f, replies, "p1")
	if c := f.settledCounts(); c[natsvc.SettledGaveUp] != 1 {
		t.Errorf("settled %v, want one gave_up", c)
	}
	select {
	case r := <-h.seen:
		t.Errorf("handler saw %s", r.Payload)
	default:
	}
}
