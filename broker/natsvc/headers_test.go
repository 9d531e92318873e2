package natsvc_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// TestRepeatedHeaderNeverPickedAtRandom: a header given in several case
// variants, or several times, with different values is never chosen between
// at random. Two idempotency keys (or two break-glass reasons) make the
// request invalid before anything runs, every time it is sent; two
// correlation ids or traceparents count as none; one value given twice is
// that value.
func TestRepeatedHeaderNeverPickedAtRandom(t *testing.T) {
	t.Parallel()
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, &recorder{})
	u := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	send := func(t *testing.T, hdr nats.Header) *nats.Msg {
		t.Helper()
		msg := &nats.Msg{Subject: "orders.v1.create", Data: []byte(`{"amount":10}`), Header: hdr}
		resp, err := nc.RequestMsg(msg, 5*time.Second)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		return resp
	}
	handled := func() int {
		f.h.mu.Lock()
		defer f.h.mu.Unlock()
		return len(f.h.reqs)
	}

	for _, tc := range []struct {
		name, header string
		hdr          nats.Header
	}{
		{"case variants", "Idempotency-Key", nats.Header{"idempotency-key": {"caseA"}, "IDEMPOTENCY-KEY": {"caseB"}}},
		{"exact name twice", "Idempotency-Key", nats.Header{"Idempotency-Key": {"dupA", "dupB"}}},
		{"exact and variant", "Idempotency-Key", nats.Header{"Idempotency-Key": {"k"}, "idempotency-key": {"k", "other"}}},
		{"msg id as the key", "Nats-Msg-Id", nats.Header{"Nats-Msg-Id": {"m1"}, "nats-msg-id": {"m2"}}},
		{"reason", "Sqlgate-Reason", nats.Header{"Idempotency-Key": {"k"}, "Sqlgate-Reason": {"INC-1"}, "sqlgate-reason": {"INC-2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := handled()
			for range 20 { // a random choice would let some through
				hdr := nats.Header{"Correlation-Id": {"corr-dup"}}
				for k, v := range tc.hdr {
					hdr[k] = v
				}
				resp := send(t, hdr)
				env := decode(t, resp)
				if env.OK || env.Error == nil || env.Error.Code != broker.CodeInvalidRequest ||
					!strings.Contains(env.Error.Message, tc.header+" given more than once") || env.CorrelationID != "corr-dup" {
					t.Fatalf("reply = %s, want invalid_request naming %s", resp.Data, tc.header)
				}
				if got := resp.Header.Get(micro.ErrorCodeHeader); got != "400" {
					t.Fatalf("%s = %q, want 400", micro.ErrorCodeHeader, got)
				}
			}
			if n := handled() - before; n != 0 {
				t.Errorf("the handler ran %d of 20 requests, want none", n)
			}
		})
	}

	// One value in several places is that value; Nats-Msg-Id is not the key
	// when Idempotency-Key is given, so its values do not matter then.
	send(t, nats.Header{
		"Idempotency-Key": {"same", "same"}, "IDEMPOTENCY-KEY": {"same"},
		"Nats-Msg-Id": {"m1"}, "nats-msg-id": {"m2"},
		"Sqlgate-Reason": {"INC-7"}, "sqlgate-reason": {"INC-7"},
	})
	if req := f.h.last(t); req.IdempotencyKey != "same" || req.Reason != "INC-7" {
		t.Errorf("key %q, reason %q; want same, INC-7", req.IdempotencyKey, req.Reason)
	}

	// Two correlation ids (or traceparents) are as none: the transport
	// generates one, whichever order the header map yields them in.
	for range 20 {
		resp := send(t, nats.Header{
			"Idempotency-Key": {"k-corr"}, "Correlation-Id": {"corrA"}, "correlation-id": {"corrB"},
			"traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, "Traceparent": {"00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		})
		req, env := f.h.last(t), decode(t, resp)
		if req.CorrelationID == "corrA" || req.CorrelationID == "corrB" || !broker.ValidCorrelationID(req.CorrelationID) ||
			env.CorrelationID != req.CorrelationID || req.Traceparent != "" {
			t.Fatalf("handler saw correlation id %q, traceparent %q; reply %s", req.CorrelationID, req.Traceparent, resp.Data)
		}
	}
}

// TestAsyncRepeatedIdempotencyKeyIsInvalid: on the async stream too, a
// message with two different idempotency keys is answered invalid_request
// and settled without running; its answer goes to its one reply token.
func TestAsyncRepeatedIdempotencyKeyIsInvalid(t *testing.T) {
	h := &recorder{seen: make(chan broker.Request, 4)}
	f := startAsync(t, h)
	replies, err := f.user.SubscribeSync(broker.ReplyPrefix(f.key) + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.user.Flush(); err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: broker.AsyncPrefix(f.key) + ".orders.v1.import", Data: []byte(`{}`), Header: nats.Header{
		"idempotency-key": {"caseA"}, "IDEMPOTENCY-KEY": {"caseB"},
		natsvc.HeaderReplyTo: {"job-1"}, "sqlgate-reply-to": {"job-1"}, natsvc.HeaderCorrelationID: {"corr-a"},
	}}
	resp, err := f.user.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ack jetstream.PubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil || ack.Stream != natsvc.DefaultAsyncStream {
		t.Fatalf("publish ack %q: %v", resp.Data, err)
	}
	r, err := replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	env := decode(t, r)
	if r.Subject != broker.ReplyPrefix(f.key)+".job-1" || env.OK || env.Error == nil || env.Error.Code != broker.CodeInvalidRequest ||
		!strings.Contains(env.Error.Message, "Idempotency-Key given more than once") || env.CorrelationID != "corr-a" {
		t.Errorf("reply on %s = %s", r.Subject, r.Data)
	}
	f.settled(t, ack.Sequence)
	select {
	case req := <-h.seen:
		t.Errorf("the handler ran the request under key %q", req.IdempotencyKey)
	default:
	}
	if got := f.settledCounts()[natsvc.SettledFinal]; got != 1 {
		t.Errorf("settled final %d times, want 1 (%v)", got, f.settledCounts())
	}
}

// TestSyncMsgIDThatIsNoKey: a sync request whose only key is a Nats-Msg-Id
// that cannot be an Idempotency-Key (a space, too long) runs under a key
// derived from it, the same each time, as an async one does; a valid one is
// the key as it is.
func TestSyncMsgIDThatIsNoKey(t *testing.T) {
	t.Parallel()
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, &recorder{})
	u := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	keyOf := func(msgID string) string {
		t.Helper()
		msg := &nats.Msg{Subject: "orders.v1.create", Data: []byte(`{"amount":10}`), Header: nats.Header{"Nats-Msg-Id": {msgID}}}
		resp, err := nc.RequestMsg(msg, 5*time.Second)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		if env := decode(t, resp); !env.OK {
			t.Fatalf("Nats-Msg-Id %.40q: reply = %s, want it run", msgID, resp.Data)
		}
		f.h.mu.Lock()
		defer f.h.mu.Unlock()
		return f.h.reqs[len(f.h.reqs)-1].IdempotencyKey
	}
	if k := keyOf("job-7"); k != "job-7" {
		t.Errorf("valid Nats-Msg-Id: key %q, want it as it is", k)
	}
	for _, id := range []string{"import job 7", strings.Repeat("m", 300)} {
		k1, k2 := keyOf(id), keyOf(id)
		if k1 != k2 || !strings.HasPrefix(k1, "nats-msg-id-sha256-") {
			t.Errorf("Nats-Msg-Id %.40q: keys %q and %q, want one derived key", id, k1, k2)
		}
	}
}
