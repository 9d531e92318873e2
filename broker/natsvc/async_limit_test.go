package natsvc_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// TestAsyncGivesUpPastDeliveryLimit: a message no delivery of which is
// settled (each instance it reaches dies on it; here, Admit refuses it)
// passes the consumer's delivery limit. It is given up: deleted from the
// stream, so that a recreated consumer does not deliver it again, counted
// gave_up, and answered internal on its reply subject.
func TestAsyncGivesUpPastDeliveryLimit(t *testing.T) {
	h := &recorder{seen: make(chan broker.Request, 1)}
	f := newAsyncFixture(t)
	var admit atomic.Bool
	f.start(t.Context(), t, h, func(c *natsvc.AsyncConfig) {
		// A delivery limit of 12 (backstopDeliveries), 300 ms apart.
		c.Workers, c.AckWait, c.MaxDeliver, c.MaxAge = 1, 300*time.Millisecond, 1, time.Nanosecond
		c.Admit = admit.Load
	})
	replies := collectEnvelopes(t, f.user, f.key)
	f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{"poison":1}`,
		map[string]string{natsvc.HeaderReplyTo: "p1", natsvc.HeaderCorrelationID: "corr-p1"})
	got := replies.wait(t, 1)
	envs := got[broker.ReplyPrefix(f.key)+".p1"]
	if len(envs) != 1 || envs[0].OK || envs[0].Error == nil || envs[0].Error.Code != broker.CodeInternal || envs[0].CorrelationID != "corr-p1" {
		t.Errorf("envelopes %+v, want one internal with the correlation id", got)
	}
	if left := f.settledMsgs(t, 0); left != 0 {
		t.Errorf("stream holds %d messages past the delivery limit, want it deleted", left)
	}
	if c := f.settledCounts(); c[natsvc.SettledGaveUp] != 1 {
		t.Errorf("settled %v, want one gave_up", c)
	}
	select {
	case r := <-h.seen:
		t.Errorf("handler saw %s", r.Payload)
	default:
	}
}

// TestAsyncLastDeliveryIsLastAttempt: an attempt on the consumer's last
// delivery is the last, whatever its answer: a request that meets an
// unavailable database then is answered unavailable and given up, rather
// than returned to a stream that would not deliver it again.
func TestAsyncLastDeliveryIsLastAttempt(t *testing.T) {
	var attempts atomic.Int64
	h := &recorder{reply: func(req *broker.Request) *broker.Reply {
		attempts.Add(1)
		return &broker.Reply{CorrelationID: req.CorrelationID, AuditIndex: -1, Error: &broker.ReplyError{Code: broker.CodeUnavailable}}
	}}
	f := newAsyncFixture(t)
	f.start(t.Context(), t, h, func(c *natsvc.AsyncConfig) {
		// A delivery limit of 12; the clock never lets the message reach
		// MaxAge.
		c.MaxDeliver, c.MaxAge = 1, time.Minute-time.Nanosecond
		natsvc.SetAsyncClock(c, func() time.Time { return time.Time{} }, func(uint64) time.Duration { return 10 * time.Millisecond })
	})
	replies := collectEnvelopes(t, f.user, f.key)
	ack := f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{}`, map[string]string{natsvc.HeaderReplyTo: "l1"})
	got := replies.wait(t, 1)
	f.settled(t, ack.Sequence)
	envs := got[broker.ReplyPrefix(f.key)+".l1"]
	if len(envs) != 1 || envs[0].Error == nil || envs[0].Error.Code != broker.CodeUnavailable {
		t.Errorf("envelopes %+v, want one unavailable", got)
	}
	if c := f.settledCounts(); c[natsvc.SettledGaveUp] != 1 || c[natsvc.SettledRetry] != 11 || attempts.Load() != 12 {
		t.Errorf("settled %v after %d attempts, want 11 retries and one gave_up", c, attempts.Load())
	}
}
