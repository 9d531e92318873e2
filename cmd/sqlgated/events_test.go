package main

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// TestDevForgedEventHasNoEventHeader is the reviewer's forgery on the whole
// dev stack. NATS checks a publisher's permission on the subject it
// publishes to, not on the reply subject it names: bob (support, who may
// only call orders.v1.get) sends a get with the reply subject
// orders.v1.created, and alice, who follows the created orders (data.yaml
// grants sales that event), receives sqlgated's reply to bob there, rows
// included. The real event carries Sqlgate-Event naming the route, the
// call's decision id as Nats-Msg-Id and its Correlation-Id; the forged
// message carries no Sqlgate-Event, even though bob's request had one.
func TestDevForgedEventHasNoEventHeader(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end dev stack: skipped with -short")
	}
	s := startDev(t, t.TempDir())
	alice, _ := s.login(t, "alice")
	anc, cred, _ := s.natsUser(t, alice, 0)
	if !slices.Contains(cred.Sub, "orders.v1.created") {
		t.Errorf("alice's credential may subscribe to %q, want orders.v1.created (data.yaml grants sales the event)", cred.Sub)
	}
	events, err := anc.SubscribeSync("orders.v1.created")
	if err != nil {
		t.Fatal(err)
	}
	if err := anc.Flush(); err != nil { // refused at once if the credential may not subscribe
		t.Fatalf("alice subscribes to orders.v1.created: %v", err)
	}
	if err := anc.LastError(); err != nil {
		t.Fatalf("alice subscribes to orders.v1.created: %v", err)
	}

	created, _ := request(t, anc, "orders.v1.create", `{"customer":"ACME","amount":12}`, map[string]string{"Correlation-Id": "corr-ev-1"})
	if !created.OK {
		t.Fatalf("create = %+v", created)
	}
	id := rows(t, created)[0]["id"].(float64)
	ev, err := events.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("alice got no orders.v1.created event: %v", err)
	}
	got, _ := request(t, anc, "orders.v1.get", `{"id":`+jsonNum(id)+`}`, nil)
	decision, _ := rows(t, got)[0]["decision_id"].(string)
	if ev.Header.Get(natsvc.HeaderEvent) != "orders.v1.create" || ev.Header.Get("Correlation-Id") != "corr-ev-1" ||
		decision == "" || ev.Header.Get("Nats-Msg-Id") != decision {
		t.Errorf("event headers = %v, want Sqlgate-Event orders.v1.create, Correlation-Id corr-ev-1, Nats-Msg-Id %q (the decision id)", ev.Header, decision)
	}
	var body struct {
		Route         string `json:"route"`
		CorrelationID string `json:"correlation_id"`
		Principal     string `json:"principal"`
		AuditIndex    int64  `json:"audit_index"`
	}
	if err := json.Unmarshal(ev.Data, &body); err != nil || body.Route != "orders.v1.create" || body.CorrelationID != "corr-ev-1" ||
		body.Principal != "alice@example.com" || created.Audit == nil || body.AuditIndex != created.Audit.Index {
		t.Errorf("event body = %s (%v)", ev.Data, err)
	}

	bob, _ := s.login(t, "bob")
	bnc, bcred, _ := s.natsUser(t, bob, 0)
	if slices.Contains(bcred.Sub, "orders.v1.created") {
		t.Errorf("bob's credential may subscribe to %q; support is granted no event", bcred.Sub)
	}
	forged := &nats.Msg{Subject: "orders.v1.get", Reply: "orders.v1.created", Data: []byte(`{"id":` + jsonNum(id) + `}`), Header: nats.Header{
		"Correlation-Id": {"void-2"}, natsvc.HeaderEvent: {"orders.v1.create"},
	}}
	if err := bnc.PublishMsg(forged); err != nil {
		t.Fatal(err)
	}
	if err := bnc.Flush(); err != nil {
		t.Fatal(err)
	}
	m, err := events.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("bob's reply did not reach orders.v1.created (the NATS property this guards against): %v", err)
	}
	var env envelope
	if err := json.Unmarshal(m.Data, &env); err != nil || !env.OK || env.CorrelationID != "void-2" || len(rows(t, env)) != 1 {
		t.Fatalf("second message on orders.v1.created = %s, want sqlgated's reply to bob", m.Data)
	}
	if v := m.Header.Values(natsvc.HeaderEvent); len(v) != 0 {
		t.Errorf("the reply bob had published on orders.v1.created carries %s %q: a consumer would take it for an event", natsvc.HeaderEvent, v)
	}
}
