package natsvc_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// invoices answers invoices.v1.list with a row and invoices.v1.void with an
// ok reply and its follow-up event on invoices.v1.voided, as the broker does.
func invoices() *recorder {
	return &recorder{reply: func(req *broker.Request) *broker.Reply {
		rep := &broker.Reply{OK: true, CorrelationID: req.CorrelationID, AuditIndex: 11, Result: json.RawMessage(`{"rows":[{"id":2,"status":"void"}]}`)}
		if req.Subject == "invoices.v1.void" {
			rep.Emit = &broker.Event{
				Subject: "invoices.v1.voided", Route: "invoices.v1.void", ID: "decision-void-1", CorrelationID: req.CorrelationID,
				Data: []byte(`{"route":"invoices.v1.void"}`),
			}
		}
		return rep
	}}
}

// isEvent is the check docs/nats.md asks of a consumer of route's emit
// subject: the Sqlgate-Event header names the route.
func isEvent(m *nats.Msg, route string) bool {
	return m.Header.Get(natsvc.HeaderEvent) == route
}

// TestForgedReplyOnEmitSubjectIsNoEvent: NATS checks the permission of the
// subject a client publishes to, not of the reply subject it names, so bob,
// who may only call invoices.v1.list, has sqlgated's reply published on the
// emit subject invoices.v1.voided, where a consumer of the voided events
// receives it. That forged message carries no Sqlgate-Event header, even
// when bob's request had one; the real event of invoices.v1.void carries it,
// with its id as Nats-Msg-Id and the call's Correlation-Id.
func TestForgedReplyOnEmitSubjectIsNoEvent(t *testing.T) {
	t.Parallel()
	f := start(t, natsvc.Config{Subjects: []string{"invoices.v1.list", "invoices.v1.void"}}, invoices(), "invoices.v1.voided")
	ledger := f.env.MintUserSub(t, "ledger", nil, func(string) []string { return []string{"invoices.v1.voided"} }, time.Minute)
	lc := f.env.MustConnect(t, ledger.Option())
	events, err := lc.SubscribeSync("invoices.v1.voided")
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.Flush(); err != nil { // subscribed before anything is published
		t.Fatal(err)
	}

	bob := f.env.MintUser(t, "bob", []string{"invoices.v1.list"}, time.Minute)
	bc := f.env.MustConnect(t, bob.Option())
	forged := &nats.Msg{Subject: "invoices.v1.list", Reply: "invoices.v1.voided", Data: []byte(`{}`), Header: nats.Header{
		"Correlation-Id": {"void-2"}, natsvc.HeaderEvent: {"invoices.v1.void"}, "sqlgate-event": {"invoices.v1.void"},
	}}
	if err := bc.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	if err := bc.Flush(); err != nil {
		t.Fatal(err)
	}
	m, err := events.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("the forged reply did not reach the emit subject (the property this guards against): %v", err)
	}
	if env := decode(t, m); !env.OK || env.CorrelationID != "void-2" {
		t.Fatalf("first message on invoices.v1.voided = %s, want sqlgated's reply to bob", m.Data)
	}
	if isEvent(m, "invoices.v1.void") || len(m.Header.Values(natsvc.HeaderEvent)) != 0 {
		t.Errorf("the reply bob had published on the emit subject carries %s: %v; a consumer would take it for an event", natsvc.HeaderEvent, m.Header)
	}

	alice := f.env.MintUser(t, "alice", []string{"invoices.v1.void"}, time.Minute)
	ac := f.env.MustConnect(t, alice.Option())
	call := &nats.Msg{Subject: "invoices.v1.void", Data: []byte(`{"id":2}`), Header: nats.Header{"Correlation-Id": {"corr-void-1"}}}
	if _, err := ac.RequestMsg(call, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ev, err := events.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("event: %v", err)
	}
	if !isEvent(ev, "invoices.v1.void") || ev.Header.Get("Nats-Msg-Id") != "decision-void-1" || ev.Header.Get("Correlation-Id") != "corr-void-1" ||
		string(ev.Data) != `{"route":"invoices.v1.void"}` {
		t.Errorf("event headers %v, data %s; want Sqlgate-Event invoices.v1.void, Nats-Msg-Id decision-void-1, Correlation-Id corr-void-1", ev.Header, ev.Data)
	}
}

// TestReplyNeverCarriesEventHeader: whatever headers a request has, no reply
// sqlgated sends (ok, an error, invalid headers, the async answer) carries
// Sqlgate-Event, so that a reply published on an emit subject is never taken
// for an event.
func TestReplyNeverCarriesEventHeader(t *testing.T) {
	t.Parallel()
	h := &recorder{reply: func(req *broker.Request) *broker.Reply {
		if string(req.Payload) == `"fail"` {
			return &broker.Reply{CorrelationID: req.CorrelationID, AuditIndex: -1, Error: &broker.ReplyError{Code: broker.CodeForbidden, Message: "denied by policy"}}
		}
		return &broker.Reply{
			OK: true, CorrelationID: req.CorrelationID, AuditIndex: 1, Result: json.RawMessage(`{}`),
			Emit: &broker.Event{Subject: "invoices.v1.voided", Route: "invoices.v1.void", ID: "d", Data: []byte(`{}`)},
		}
	}}
	f := start(t, natsvc.Config{Subjects: []string{"invoices.v1.void"}}, h, "invoices.v1.voided")
	u := f.env.MintUser(t, "alice", []string{"invoices.v1.void"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	for _, tc := range []struct {
		name, payload string
		hdr           nats.Header
	}{
		{"ok", `{}`, nats.Header{}},
		{"error", `"fail"`, nats.Header{}},
		{"invalid headers", `{}`, nats.Header{"Idempotency-Key": {"a", "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.hdr[natsvc.HeaderEvent] = []string{"invoices.v1.void"}
			tc.hdr["sqlgate-event"] = []string{"invoices.v1.void"}
			resp, err := nc.RequestMsg(&nats.Msg{Subject: "invoices.v1.void", Data: []byte(tc.payload), Header: tc.hdr}, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if v := resp.Header.Values(natsvc.HeaderEvent); len(v) != 0 {
				t.Errorf("reply %s carries %s %q", resp.Data, natsvc.HeaderEvent, v)
			}
		})
	}
}

// TestAsyncEventHeaders: the async consumer's answer carries no
// Sqlgate-Event, and its event carries the same headers as a direct call's.
func TestAsyncEventHeaders(t *testing.T) {
	h := &recorder{seen: make(chan broker.Request, 1), reply: func(req *broker.Request) *broker.Reply {
		return &broker.Reply{
			OK: true, CorrelationID: req.CorrelationID, Result: json.RawMessage(`{"rows":[{"id":7}]}`), AuditIndex: 3,
			Emit: &broker.Event{Subject: "orders.v1.imported", Route: "orders.v1.import", ID: "decision-import-1", CorrelationID: req.CorrelationID, Data: []byte(`{}`)},
		}
	}}
	f := startAsync(t, h)
	replies, err := f.user.SubscribeSync(broker.ReplyPrefix(f.key) + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.user.Flush(); err != nil {
		t.Fatal(err)
	}
	bc := f.env.BrokerConn(t)
	events, err := bc.SubscribeSync("orders.v1.imported")
	if err != nil {
		t.Fatal(err)
	}
	if err := bc.Flush(); err != nil {
		t.Fatal(err)
	}
	f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{}`, map[string]string{
		natsvc.HeaderReplyTo: "job-1", natsvc.HeaderCorrelationID: "corr-a", natsvc.HeaderEvent: "orders.v1.import",
	})
	<-h.seen
	m, err := replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if v := m.Header.Values(natsvc.HeaderEvent); len(v) != 0 {
		t.Errorf("async answer carries %s %q", natsvc.HeaderEvent, v)
	}
	ev, err := events.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no event: %v", err)
	}
	if !isEvent(ev, "orders.v1.import") || ev.Header.Get("Nats-Msg-Id") != "decision-import-1" || ev.Header.Get("Correlation-Id") != "corr-a" {
		t.Errorf("async event headers = %v", ev.Header)
	}
}
