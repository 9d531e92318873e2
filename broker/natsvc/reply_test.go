package natsvc_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// TestErrorReplyTooLargeStillAnswered: an error reply longer than the
// server's max_payload (its message goes into the body and the
// Nats-Service-Error header) is sent again with a short message and its
// code, instead of leaving the caller to time out.
func TestErrorReplyTooLargeStillAnswered(t *testing.T) {
	t.Parallel()
	h := &recorder{reply: func(req *broker.Request) *broker.Reply {
		r := &broker.Reply{CorrelationID: req.CorrelationID, AuditIndex: -1, Error: &broker.ReplyError{Code: broker.CodeInvalidRequest}}
		switch string(req.Payload) {
		case "message":
			r.Error.Message = "field " + strings.Repeat("N", 600_000) + ": unknown field"
		case "reasons":
			r.Error.Code, r.AuditIndex = broker.CodeForbidden, 9
			r.Error.Message = "denied by policy"
			r.Error.Reasons = []string{strings.Repeat("R", 700_000), strings.Repeat("S", 700_000)}
		}
		return r
	}}
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, h)
	u := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	for _, tc := range []struct {
		payload, code, status string
		audit                 int
	}{
		{"message", broker.CodeInvalidRequest, "400", -1},
		{"reasons", broker.CodeForbidden, "403", 9},
	} {
		msg := nats.NewMsg("orders.v1.create")
		msg.Data = []byte(tc.payload)
		msg.Header.Set("Correlation-Id", "corr-"+tc.payload)
		resp, err := nc.RequestMsg(msg, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: no reply: %v", tc.payload, err)
		}
		env := decode(t, resp)
		if env.OK || env.Error == nil || env.Error.Code != tc.code || !strings.Contains(env.Error.Message, "too long") ||
			len(env.Error.Reasons) != 0 || env.CorrelationID != "corr-"+tc.payload || (tc.audit >= 0) != (env.Audit != nil) {
			t.Errorf("%s: reply = %.300s", tc.payload, resp.Data)
		}
		if got := resp.Header.Get(micro.ErrorCodeHeader); got != tc.status {
			t.Errorf("%s: %s = %q, want %s", tc.payload, micro.ErrorCodeHeader, got, tc.status)
		}
		if got := resp.Header.Get(micro.ErrorHeader); got != env.Error.Message {
			t.Errorf("%s: %s = %.100q, want the short message", tc.payload, micro.ErrorHeader, got)
		}
	}
}

// TestResultTooLargeAnswered: an ok reply longer than the server's
// max_payload is answered too_large, naming the transaction the call ran in
// and keeping its audit index, instead of leaving the caller to time out.
func TestResultTooLargeAnswered(t *testing.T) {
	t.Parallel()
	h := &recorder{reply: func(req *broker.Request) *broker.Reply {
		rows := `{"rows":[{"note":"` + strings.Repeat("x", 1_200_000) + `"}]}`
		return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, Result: []byte(rows), AuditIndex: 12, SQLTransactionID: "7741"}
	}}
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.get"}}, h)
	u := f.env.MintUser(t, "alice", []string{"orders.v1.get"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	resp, err := nc.Request("orders.v1.get", []byte(`{}`), 10*time.Second)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	env := decode(t, resp)
	if env.OK || env.Error == nil || env.Error.Code != broker.CodeTooLarge || !strings.Contains(env.Error.Message, "7741") ||
		!strings.Contains(env.Error.Message, "max_payload") || env.Audit == nil || env.Audit.Index != 12 {
		t.Errorf("reply = %.300s, want too_large naming transaction 7741 with audit index 12", resp.Data)
	}
	if got := resp.Header.Get(micro.ErrorCodeHeader); got != "413" {
		t.Errorf("%s = %q, want 413", micro.ErrorCodeHeader, got)
	}
}
