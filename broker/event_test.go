package broker_test

import (
	"encoding/json"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
)

// TestEventNamesRouteAndDecision: a committed call's event carries what the
// transport puts in its headers: the route that emitted it (Sqlgate-Event,
// which tells it from a reply published on the emit subject), an id unique
// to the call, the call's decision id as its audit records have it
// (Nats-Msg-Id, so that a stream capturing the subject drops a duplicate),
// and the call's correlation id. Its body is what docs/engineer.md lists.
func TestEventNamesRouteAndDecision(t *testing.T) {
	e := newEmitEnv(t)
	payload := `{"customer":"ACME","amount":1,"quantity":1,"express":false}`
	first := e.svc.Handle(t.Context(), &broker.Request{Subject: brokertest.SubjectCreate, Payload: []byte(payload), Caller: e.caller(alice), CorrelationID: "corr-ev-1"})
	second := e.svc.Handle(t.Context(), &broker.Request{Subject: brokertest.SubjectCreate, Payload: []byte(payload), Caller: e.caller(alice), CorrelationID: "corr-ev-1"})
	for _, rep := range []*broker.Reply{first, second} {
		if !rep.OK || rep.Emit == nil {
			t.Fatalf("create = %s (emit %+v), want ok with an event", rep.AppendJSON(nil), rep.Emit)
		}
	}
	decisions := map[int64]string{}
	for _, r := range e.records(t) {
		if r.Kind == audit.KindIntent {
			decisions[r.Index] = r.DecisionID
		}
	}
	ev := first.Emit
	if ev.Subject != emitCreated || ev.Route != brokertest.SubjectCreate || ev.CorrelationID != "corr-ev-1" ||
		ev.ID == "" || ev.ID != decisions[first.AuditIndex] {
		t.Errorf("event = %+v, want route %s, correlation id corr-ev-1 and the decision id %q of the intent record", ev, brokertest.SubjectCreate, decisions[first.AuditIndex])
	}
	if second.Emit.ID == ev.ID {
		t.Errorf("two calls' events share the id %q", ev.ID)
	}
	var body struct {
		Route            string          `json:"route"`
		CorrelationID    string          `json:"correlation_id"`
		Principal        string          `json:"principal"`
		SQLTransactionID string          `json:"sql_transaction_id"`
		AuditIndex       int64           `json:"audit_index"`
		Result           json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(ev.Data, &body); err != nil {
		t.Fatal(err)
	}
	if body.Route != brokertest.SubjectCreate || body.CorrelationID != "corr-ev-1" || body.Principal != alice.Display() ||
		body.SQLTransactionID != first.SQLTransactionID || body.AuditIndex != first.AuditIndex || string(body.Result) != string(first.Result) {
		t.Errorf("event body = %s, want the call's route, correlation id, principal, transaction, audit index and result", ev.Data)
	}
}
