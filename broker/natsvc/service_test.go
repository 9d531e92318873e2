package natsvc_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// recorder is a Handler that records requests and answers with reply(req).
type recorder struct {
	mu    sync.Mutex
	reqs  []broker.Request
	reply func(*broker.Request) *broker.Reply
	seen  chan broker.Request
}

func (r *recorder) Handle(_ context.Context, req *broker.Request) *broker.Reply {
	r.mu.Lock()
	r.reqs = append(r.reqs, *req)
	r.mu.Unlock()
	if r.seen != nil {
		r.seen <- *req
	}
	if r.reply != nil {
		return r.reply(req)
	}
	return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, Result: json.RawMessage(`{"rows":[]}`), AuditIndex: 7}
}

func (r *recorder) last(t *testing.T) broker.Request {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("handler saw no request")
	}
	return r.reqs[len(r.reqs)-1]
}

type fixture struct {
	env *natsauthtest.Env
	svc *natsvc.Service
	h   *recorder
}

func start(t *testing.T, cfg natsvc.Config, h *recorder, emits ...string) *fixture {
	t.Helper()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: cfg.Subjects, Emits: emits})
	pub := env.Keys.Public()
	if cfg.Name == "" {
		cfg.Name, cfg.Version = "sqlgate", "0.1.0"
	}
	cfg.UsersAccount, cfg.SigningKeys = pub.Users, pub.UsersSigning
	svc, err := natsvc.Start(t.Context(), env.BrokerConn(t), cfg, h)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return &fixture{env: env, svc: svc, h: h}
}

type envelope struct {
	OK            bool                 `json:"ok"`
	CorrelationID string               `json:"correlation_id"`
	Result        json.RawMessage      `json:"result"`
	Error         *broker.ReplyError   `json:"error"`
	Audit         *struct{ Index int } `json:"audit"`
}

func decode(t *testing.T, m *nats.Msg) envelope {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(m.Data, &e); err != nil {
		t.Fatalf("reply body %q: %v", m.Data, err)
	}
	return e
}

func TestAttestedCallerAndHeaders(t *testing.T) {
	t.Parallel()
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create", "orders.v1.get"}}, &recorder{})
	u := f.env.MintUser(t, "00uAlice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option(), nats.Name("billing"))
	msg := nats.NewMsg("orders.v1.create")
	msg.Data = []byte(`{"amount":10}`)
	msg.Header.Set("Correlation-Id", "corr-1")
	msg.Header.Set("Idempotency-Key", "idem-1")
	msg.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	msg.Header.Set("Sqlgate-Reason", "INC-42")
	resp, err := nc.RequestMsg(msg, 5*time.Second)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	env := decode(t, resp)
	if !env.OK || env.CorrelationID != "corr-1" || string(env.Result) != `{"rows":[]}` || env.Audit == nil || env.Audit.Index != 7 {
		t.Errorf("reply envelope = %s", resp.Data)
	}
	if got := resp.Header.Get("Correlation-Id"); got != "corr-1" {
		t.Errorf("Correlation-Id reply header = %q, want corr-1", got)
	}
	if resp.Header.Get(micro.ErrorCodeHeader) != "" {
		t.Errorf("ok reply carries an error header: %v", resp.Header)
	}
	req := f.h.last(t)
	pub := f.env.Keys.Public()
	want := broker.Caller{
		Transport: "nats", Attested: true, UserKey: u.Key, IssuerKey: pub.UsersSigning[0],
		Account: pub.Users, Name: "00uAlice", Tags: []string{}, Host: "127.0.0.1", Lang: "go", Version: nats.Version,
	}
	if diff := cmp.Diff(want, req.Caller, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Caller (-want +got):\n%s", diff)
	}
	if req.Subject != "orders.v1.create" || string(req.Payload) != `{"amount":10}` || req.CorrelationID != "corr-1" ||
		req.IdempotencyKey != "idem-1" || req.Reason != "INC-42" || !strings.HasPrefix(req.Traceparent, "00-0af7") || req.Received.IsZero() {
		t.Errorf("Request = %+v", req)
	}
}

func TestIdempotencyKeyFallsBackToMsgID(t *testing.T) {
	t.Parallel()
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, &recorder{})
	u := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	msg := nats.NewMsg("orders.v1.create")
	msg.Header.Set("Nats-Msg-Id", "msg-9")
	msg.Header.Set("correlation-id", "lower-case")
	if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if req := f.h.last(t); req.IdempotencyKey != "msg-9" || req.CorrelationID != "lower-case" {
		t.Errorf("IdempotencyKey = %q, CorrelationID = %q", req.IdempotencyKey, req.CorrelationID)
	}
}

func TestClientWrittenRequestInfoIsNotTrusted(t *testing.T) {
	t.Parallel()
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, &recorder{})
	alice := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	bob := f.env.MintUser(t, "bob", []string{"orders.v1.create"}, time.Minute)
	pub := f.env.Keys.Public()
	forged := `{"acc":"` + pub.Users + `","user":"` + bob.Key + `","issuer_key":"` + pub.UsersSigning[0] +
		`","name_tag":"bob","tags":["nkey:` + strings.ToLower(bob.Key) + `"]}`
	nc := f.env.MustConnect(t, alice.Option())
	for _, tc := range []struct {
		name string
		set  func(nats.Header)
	}{
		{"exact_case", func(h nats.Header) { h.Set("Nats-Request-Info", forged) }},
		{"lower_case", func(h nats.Header) { h["nats-request-info"] = []string{forged} }},
		{"twice", func(h nats.Header) { h["Nats-Request-Info"] = []string{forged, forged} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := nats.NewMsg("orders.v1.create")
			tc.set(msg.Header)
			if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			c := f.h.last(t).Caller
			if c.Attested && c.UserKey != alice.Key {
				t.Fatalf("forged Nats-Request-Info accepted: caller %+v", c)
			}
			if !c.Attested || c.UserKey != alice.Key || c.Name != "alice" {
				t.Errorf("caller = %+v, want attested alice", c)
			}
		})
	}
}

// TestConnectUserFieldsCannotImpersonate covers a nats-server behaviour: a
// JWT client that also sends `user` or `nkey` in CONNECT sees that value in
// the `user` field of Nats-Request-Info. The caller must still be the JWT's.
func TestConnectUserFieldsCannotImpersonate(t *testing.T) {
	t.Parallel()
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, &recorder{})
	spy := f.env.BrokerConn(t)
	raw, err := spy.SubscribeSync("orders.v1.create")
	if err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	alice := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	bob := f.env.MintUser(t, "bob", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, alice.Option(), nats.UserInfo(bob.Key, ""))
	if _, err := nc.Request("orders.v1.create", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	m, err := raw.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ri struct {
		User string `json:"user"`
	}
	if err := json.Unmarshal([]byte(m.Header.Get("Nats-Request-Info")), &ri); err != nil {
		t.Fatal(err)
	}
	if ri.User != bob.Key {
		t.Logf("server no longer copies CONNECT user into Nats-Request-Info (user=%q)", ri.User)
	}
	if c := f.h.last(t).Caller; !c.Attested || c.UserKey != alice.Key {
		t.Errorf("caller = %+v, want attested alice (%s), not bob (%s)", c, alice.Key, bob.Key)
	}
}

// TestRequestInsideBrokerAccountIsUnattested: a request published inside
// the broker account without a Nats-Request-Info (by a user the broker
// account key signed without limits; sqlgated's own user may not publish
// there) has no caller.
func TestRequestInsideBrokerAccountIsUnattested(t *testing.T) {
	t.Parallel()
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, &recorder{})
	nc := f.env.UnrestrictedBrokerConn(t)
	if _, err := nc.Request("orders.v1.create", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if c := f.h.last(t).Caller; c.Attested || c.UserKey != "" || c.Transport != "nats" {
		t.Errorf("caller of a request that did not cross the import = %+v, want unattested", c)
	}
}

// forgedRequestInfo is a Nats-Request-Info naming victim as the caller, as
// the server would write it for a request crossing the users import.
func forgedRequestInfo(env *natsauthtest.Env, victim string) string {
	pub := env.Keys.Public()
	return `{"acc":"` + pub.Users + `","issuer_key":"` + pub.UsersSigning[0] +
		`","name_tag":"victim","tags":["nkey:` + strings.ToLower(victim) + `"]}`
}

// refusedPublish publishes msg on nc and reports whether the server refused
// it with a permissions violation (its -ERR comes before the flush's PONG).
func refusedPublish(t *testing.T, nc *nats.Conn, msg *nats.Msg) bool {
	t.Helper()
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	err := nc.LastError()
	return errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+msg.Subject+`"`)
}

// TestBrokerUserCannotForgeRequestInfo: inside the broker account a
// client-written Nats-Request-Info would pass through (the request does not
// cross the users import), so sqlgated's broker user, the one the service
// runs on, may not publish to a route subject: the forged request is refused
// by the server and never reaches the handler.
func TestBrokerUserCannotForgeRequestInfo(t *testing.T) {
	t.Parallel()
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, &recorder{})
	bob := f.env.MintUser(t, "bob", []string{"orders.v1.create"}, time.Minute)
	bc := f.env.BrokerConn(t)
	msg := nats.NewMsg("orders.v1.create")
	msg.Reply = bc.NewRespInbox()
	msg.Header.Set(natsvc.RequestInfoHeader, forgedRequestInfo(f.env, bob.Key))
	if !refusedPublish(t, bc, msg) {
		t.Fatalf("broker user published a request to a route subject (last error %v)", bc.LastError())
	}
	alice := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	if _, err := f.env.MustConnect(t, alice.Option()).Request("orders.v1.create", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	f.h.mu.Lock()
	defer f.h.mu.Unlock()
	if len(f.h.reqs) != 1 || f.h.reqs[0].Caller.UserKey != alice.Key {
		t.Errorf("handler saw %d requests (%+v), want alice's only", len(f.h.reqs), f.h.reqs)
	}
}

func TestErrorReplyCarriesEnvelopeAndMicroHeaders(t *testing.T) {
	t.Parallel()
	h := &recorder{reply: func(req *broker.Request) *broker.Reply {
		return &broker.Reply{CorrelationID: "c-2", AuditIndex: 11, Error: &broker.ReplyError{
			Code: broker.CodeForbidden, Message: "amount over\r\nlimit", Reasons: []string{"sales may create up to 1000"},
		}}
	}}
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, h)
	u := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	resp, err := nc.Request("orders.v1.create", []byte(`{"amount":5000}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	env := decode(t, resp)
	if env.OK || env.Error == nil || env.Error.Code != "forbidden" || env.CorrelationID != "c-2" ||
		!slices.Equal(env.Error.Reasons, []string{"sales may create up to 1000"}) || env.Audit == nil || env.Audit.Index != 11 {
		t.Errorf("error envelope = %s", resp.Data)
	}
	if got := resp.Header.Get(micro.ErrorCodeHeader); got != "403" {
		t.Errorf("%s = %q, want 403", micro.ErrorCodeHeader, got)
	}
	if got := resp.Header.Get(micro.ErrorHeader); got != "amount over  limit" {
		t.Errorf("%s = %q", micro.ErrorHeader, got)
	}
	if got := resp.Header.Get("Correlation-Id"); got != "c-2" {
		t.Errorf("Correlation-Id = %q", got)
	}
}

func TestRateLimitedWhenQueueFull(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	h := &recorder{reply: func(req *broker.Request) *broker.Reply {
		started <- struct{}{}
		<-release
		return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, AuditIndex: -1}
	}}
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}, Workers: 1, QueueLen: 1}, h)
	u := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	type result struct {
		m   *nats.Msg
		err error
	}
	results := make(chan result, 8)
	send := func() {
		go func() {
			m, err := nc.Request("orders.v1.create", nil, 10*time.Second)
			results <- result{m, err}
		}()
	}
	send()
	<-started // the only worker is busy
	for range 5 {
		send()
	}
	// One request fits the queue; the other four are refused at once.
	var limited int
	for range 4 {
		r := <-results
		if r.err != nil {
			t.Fatalf("request: %v", r.err)
		}
		env := decode(t, r.m)
		if env.OK || env.Error == nil || env.Error.Code != broker.CodeRateLimited || r.m.Header.Get(micro.ErrorCodeHeader) != "429" || env.CorrelationID == "" {
			t.Fatalf("reply while the queue is full = %s %v", r.m.Data, r.m.Header)
		}
		limited++
	}
	close(release)
	for range 2 {
		r := <-results
		if r.err != nil || !decode(t, r.m).OK {
			t.Fatalf("queued request: %v %s", r.err, r.m.Data)
		}
	}
	// The stats report the refusals.
	stats, err := micro.ControlSubject(micro.StatsVerb, "sqlgate", "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.env.BrokerConn(t).Request(stats, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var sr micro.Stats
	if err := json.Unmarshal(m.Data, &sr); err != nil {
		t.Fatal(err)
	}
	var data natsvc.EndpointData
	if len(sr.Endpoints) != 1 || json.Unmarshal(sr.Endpoints[0].Data, &data) != nil || data.RateLimited != 4 {
		t.Errorf("stats = %s", m.Data)
	}
}

func TestEmitPublishedAfterOKReply(t *testing.T) {
	t.Parallel()
	h := &recorder{reply: func(req *broker.Request) *broker.Reply {
		return &broker.Reply{
			OK: true, CorrelationID: "c", AuditIndex: -1, Result: json.RawMessage(`{"id":1}`),
			Emit: &broker.Event{Subject: "orders.v1.created", Route: "orders.v1.create", ID: "decision-1", Data: []byte(`{"id":1}`)},
		}
	}}
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, h, "orders.v1.created")
	bc := f.env.BrokerConn(t)
	events, err := bc.SubscribeSync("orders.v1.created")
	if err != nil {
		t.Fatal(err)
	}
	if err := bc.Flush(); err != nil { // the subscription is at the server before the call
		t.Fatal(err)
	}
	u := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	if _, err := nc.Request("orders.v1.create", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ev, err := events.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("emit event: %v", err)
	}
	if string(ev.Data) != `{"id":1}` || ev.Header.Get(natsvc.HeaderEvent) != "orders.v1.create" {
		t.Errorf("event = %s, headers %v", ev.Data, ev.Header)
	}
}

// TestEmitWithoutRouteNotPublished: an event without its route would lack
// the Sqlgate-Event header, and consumers would drop it as a forged reply;
// it is not published (a bug of the handler, logged).
func TestEmitWithoutRouteNotPublished(t *testing.T) {
	t.Parallel()
	h := &recorder{reply: func(req *broker.Request) *broker.Reply {
		subject := "evt.first"
		if string(req.Payload) == `"second"` {
			subject = "evt.second"
		}
		ev := &broker.Event{Subject: subject, Data: []byte(`{}`)}
		if subject == "evt.second" {
			ev.Route = "orders.v1.create"
		}
		return &broker.Reply{OK: true, CorrelationID: "c", AuditIndex: -1, Result: json.RawMessage(`{}`), Emit: ev}
	}}
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, h, "evt.first", "evt.second")
	bc := f.env.BrokerConn(t)
	events, err := bc.SubscribeSync("evt.*")
	if err != nil {
		t.Fatal(err)
	}
	if err := bc.Flush(); err != nil {
		t.Fatal(err)
	}
	u := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	for _, payload := range []string{`"first"`, `"second"`} {
		if _, err := nc.Request("orders.v1.create", []byte(payload), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Both events would come in order on one connection: the first one
	// seen is the second call's.
	ev, err := events.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Subject != "evt.second" {
		t.Errorf("first event on %s (headers %v), want only the one with a route", ev.Subject, ev.Header)
	}
}

func TestStopAnswersInFlightRequests(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := &recorder{reply: func(req *broker.Request) *broker.Reply {
		started <- struct{}{}
		<-release
		return &broker.Reply{OK: true, CorrelationID: "c", AuditIndex: -1}
	}}
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, h)
	u := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	done := make(chan error, 1)
	go func() {
		m, err := nc.Request("orders.v1.create", nil, 10*time.Second)
		if err == nil && !decode(t, m).OK {
			err = errFromReply(m)
		}
		done <- err
	}()
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- f.svc.Stop() }()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("in-flight request during Stop: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := nc.Request("orders.v1.create", nil, 2*time.Second); err == nil {
		t.Error("request answered after Stop")
	}
}

type replyError string

func (e replyError) Error() string { return string(e) }

func errFromReply(m *nats.Msg) error { return replyError(m.Data) }

func TestDiscoverableWithMicro(t *testing.T) {
	t.Parallel()
	f := start(t, natsvc.Config{Name: "sqlgate", Version: "1.2.3", Subjects: []string{"orders.v1.create", "orders.v1.get"}}, &recorder{})
	subj, _ := micro.ControlSubject(micro.InfoVerb, "sqlgate", "")
	m, err := f.env.BrokerConn(t).Request(subj, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, e := range info.Endpoints {
		subjects = append(subjects, e.Subject)
		if e.QueueGroup != "sqlgate" {
			t.Errorf("endpoint %s queue group %q", e.Subject, e.QueueGroup)
		}
	}
	slices.Sort(subjects)
	if info.Version != "1.2.3" || !slices.Equal(subjects, []string{"orders.v1.create", "orders.v1.get"}) {
		t.Errorf("info = %s", m.Data)
	}
}

func TestHandlerPanicAnsweredAsInternal(t *testing.T) {
	t.Parallel()
	h := &recorder{reply: func(req *broker.Request) *broker.Reply {
		if req.CorrelationID == "boom" {
			panic("handler bug")
		}
		return nil // a handler that forgets to answer
	}}
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, h)
	u := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	for _, corr := range []string{"boom", "nil-reply"} {
		msg := nats.NewMsg("orders.v1.create")
		msg.Header.Set("Correlation-Id", corr)
		resp, err := nc.RequestMsg(msg, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", corr, err)
		}
		env := decode(t, resp)
		if env.OK || env.Error == nil || env.Error.Code != broker.CodeInternal || resp.Header.Get(micro.ErrorCodeHeader) != "500" || env.CorrelationID != corr {
			t.Errorf("%s: reply = %s %v", corr, resp.Data, resp.Header)
		}
	}
}

// TestCorrelationIDBeforeHandler: a request without a usable correlation id
// gets one from the transport, before the handler runs, so the reply of a
// handler that failed carries the id its audit records would carry.
func TestCorrelationIDBeforeHandler(t *testing.T) {
	t.Parallel()
	seen := make(chan string, 2)
	h := &recorder{reply: func(req *broker.Request) *broker.Reply {
		seen <- req.CorrelationID
		panic("handler bug")
	}}
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, h)
	u := f.env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Minute)
	nc := f.env.MustConnect(t, u.Option())
	for _, corr := range []string{"", "two words"} {
		msg := nats.NewMsg("orders.v1.create")
		if corr != "" {
			msg.Header.Set("Correlation-Id", corr)
		}
		resp, err := nc.RequestMsg(msg, 5*time.Second)
		if err != nil {
			t.Fatalf("%q: %v", corr, err)
		}
		env, handled := decode(t, resp), <-seen
		if handled == "" || handled == corr || env.CorrelationID != handled || resp.Header.Get("Correlation-Id") != handled {
			t.Errorf("%q: handler saw %q, reply %s with header %q", corr, handled, resp.Data, resp.Header.Get("Correlation-Id"))
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cfg := natsvc.Config{Subjects: []string{"a.b", "a.b", "a.>"}, UsersAccount: "nope", SigningKeys: []string{"bad"}, Workers: -1}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken config")
	}
	for _, want := range []string{"name", "version", "duplicate subject", "invalid subject", "users account", "signing key", "negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; missing %q", err, want)
		}
	}
}

// BenchmarkRoundTrip measures one request from a minted user across the
// import to the micro service, a handler that answers at once, and the
// reply (client and server allocations included); gated, with an Admit
// hook that loads an atomic flag, as sqlgated's gate on the NATS server's
// version does.
func BenchmarkRoundTrip(b *testing.B) {
	var open atomic.Bool
	open.Store(true)
	for _, bc := range []struct {
		name  string
		admit func() bool
	}{{"ungated", nil}, {"gated", open.Load}} {
		b.Run(bc.name, func(b *testing.B) { benchmarkRoundTrip(b, bc.admit) })
	}
}

func benchmarkRoundTrip(b *testing.B, admit func() bool) {
	env := natsauthtest.Start(b, natsauthtest.Config{Subjects: []string{"orders.v1.get"}})
	pub := env.Keys.Public()
	result := json.RawMessage(`{"rows":[{"id":1,"amount":10}]}`)
	svc, err := natsvc.Start(b.Context(), env.BrokerConn(b), natsvc.Config{
		Name: "sqlgate", Version: "0.1.0", Subjects: []string{"orders.v1.get"},
		UsersAccount: pub.Users, SigningKeys: pub.UsersSigning, Admit: admit,
	}, natsvc.HandlerFunc(func(_ context.Context, req *broker.Request) *broker.Reply {
		return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, Result: result, AuditIndex: 1}
	}))
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = svc.Stop() }()
	u := env.MintUser(b, "alice", []string{"orders.v1.get"}, time.Hour)
	nc := env.MustConnect(b, u.Option())
	msg := nats.NewMsg("orders.v1.get")
	msg.Data = []byte(`{"id":1}`)
	msg.Header.Set("Correlation-Id", "bench")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// calloutMinter answers the auth callout for one token with a JWT for the
// server-generated key.
type calloutMinter struct {
	env  *natsauthtest.Env
	keys chan string
}

func (c *calloutMinter) Callout(ctx context.Context, req broker.CalloutRequest) (*broker.NATSCredential, error) {
	if req.Token != "tok" {
		return nil, errors.New("token rejected")
	}
	c.keys <- req.UserKey
	exp := time.Now().Add(time.Hour)
	m, err := c.env.Minter.MintUser(ctx, broker.UserSpec{
		UserKey: req.UserKey, Name: "00uCarol", Pub: []string{"orders.v1.create"},
		Sub: []string{"_INBOX_carol.>"}, Expires: exp,
	})
	if err != nil {
		return nil, err
	}
	return &broker.NATSCredential{JWT: m.JWT, UserKey: req.UserKey, ExpiresAt: exp}, nil
}

func TestCalloutUserIsAttestedWithServerGeneratedKey(t *testing.T) {
	t.Parallel()
	f := start(t, natsvc.Config{Subjects: []string{"orders.v1.create"}}, &recorder{})
	cm := &calloutMinter{env: f.env, keys: make(chan string, 1)}
	co, err := natsauth.StartCallout(t.Context(), f.env.CalloutConn(t), f.env.Keys, natsauth.CalloutConfig{}, cm)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = co.Stop() }()
	sentinel, err := f.env.Keys.SentinelCreds()
	if err != nil {
		t.Fatal(err)
	}
	nc := f.env.MustConnect(t, nats.UserCredentialBytes(sentinel), nats.Token("tok"), nats.CustomInboxPrefix("_INBOX_carol"))
	if _, err := nc.Request("orders.v1.create", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	key := <-cm.keys
	if c := f.h.last(t).Caller; !c.Attested || c.UserKey != key || c.Name != "00uCarol" {
		t.Errorf("callout caller = %+v, want attested %s named 00uCarol", c, key)
	}
}

// TestWithdrawLeavesTheQueueGroup: a withdrawn instance gets no new
// requests (the other instance of the queue group takes them all; with none
// left, callers get NATS's no-responders status), answers the request it
// already holds, and serves again after Rejoin.
func TestWithdrawLeavesTheQueueGroup(t *testing.T) {
	t.Parallel()
	subjects := []string{"orders.v1.get"}
	holding, release := make(chan struct{}, 1), make(chan struct{})
	tagged := func(name string) *recorder {
		return &recorder{reply: func(req *broker.Request) *broker.Reply {
			if string(req.Payload) == "hold" {
				holding <- struct{}{}
				<-release
			}
			return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, Result: json.RawMessage(`"` + name + `"`), AuditIndex: -1}
		}}
	}
	a := start(t, natsvc.Config{Subjects: subjects}, tagged("a"))
	pub := a.env.Keys.Public()
	b, err := natsvc.Start(t.Context(), a.env.BrokerConn(t), natsvc.Config{
		Name: "sqlgate", Version: "0.1.0", Subjects: subjects, UsersAccount: pub.Users, SigningKeys: pub.UsersSigning,
	}, tagged("b"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	u := a.env.MintUser(t, "alice", subjects, time.Minute)
	nc := a.env.MustConnect(t, u.Option())
	served := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			m, err := nc.Request("orders.v1.get", nil, 5*time.Second)
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			got[string(decode(t, m).Result)]++
		}
		return got
	}
	if got := served(20); got[`"a"`]+got[`"b"`] != 20 {
		t.Fatalf("requests with both serving went to %v", got)
	}

	// With b withdrawn a takes the request that it holds while it is
	// withdrawn itself and b serves again.
	if err := b.Withdraw(); err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	held := make(chan *nats.Msg, 1)
	go func() {
		m, err := nc.Request("orders.v1.get", []byte("hold"), 10*time.Second)
		if err != nil {
			t.Errorf("held request: %v", err)
		}
		held <- m
	}()
	<-holding
	if err := b.Rejoin(); err != nil {
		t.Fatalf("Rejoin: %v", err)
	}
	if err := a.svc.Withdraw(); err != nil {
		t.Fatalf("Withdraw: %v", err)
	}
	if err := a.svc.Withdraw(); err != nil {
		t.Errorf("second Withdraw: %v", err)
	}
	if a.svc.Serving() || !b.Serving() {
		t.Errorf("Serving() = a %v, b %v; want false, true", a.svc.Serving(), b.Serving())
	}
	if got := served(20); got[`"b"`] != 20 {
		t.Errorf("requests while a is withdrawn went to %v, want all to b", got)
	}
	close(release)
	if m := <-held; m == nil || string(decode(t, m).Result) != `"a"` {
		t.Errorf("request held by a during Withdraw = %v, want a's answer", m)
	}

	if err := b.Withdraw(); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request("orders.v1.get", nil, 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("request with every instance withdrawn: err = %v, want no responders", err)
	}

	if err := a.svc.Rejoin(); err != nil {
		t.Fatalf("Rejoin: %v", err)
	}
	if err := a.svc.Rejoin(); err != nil {
		t.Errorf("second Rejoin: %v", err)
	}
	if got := served(5); got[`"a"`] != 5 {
		t.Errorf("requests after a rejoined went to %v, want all to a", got)
	}
	if err := a.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.svc.Rejoin(); !errors.Is(err, natsvc.ErrStopped) {
		t.Errorf("Rejoin after Stop = %v, want ErrStopped", err)
	}
}

// TestJetStreamCarriesNoRequestInfo pins a nats-server behaviour the broker
// user's limits rely on: it keeps JetStream administration of the broker
// account, and the server delivers a stream's messages anywhere a push
// consumer or a republish names, without checking the publisher's
// permissions. JetStream removes Nats-Request-Info when it stores a
// message, so what it delivers to a route subject has no caller.
func TestJetStreamCarriesNoRequestInfo(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"push_consumer", "republish"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			h := &recorder{seen: make(chan broker.Request, 1)}
			env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}, JetStream: true})
			pub := env.Keys.Public()
			svc, err := natsvc.Start(t.Context(), env.BrokerConn(t), natsvc.Config{
				Name: "sqlgate", Version: "0.1.0", Subjects: []string{"orders.v1.create"}, UsersAccount: pub.Users, SigningKeys: pub.UsersSigning,
			}, h)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = svc.Stop() })
			js, err := jetstream.New(env.BrokerConn(t))
			if err != nil {
				t.Fatal(err)
			}
			sc := jetstream.StreamConfig{Name: "X", Subjects: []string{"x.>"}, Storage: jetstream.MemoryStorage}
			if via == "republish" {
				sc.RePublish = &jetstream.RePublish{Source: "x.1", Destination: "orders.v1.create"}
			}
			s, err := js.CreateStream(t.Context(), sc)
			if err != nil {
				t.Fatal(err)
			}
			victim := env.MintUser(t, "victim", nil, time.Minute)
			msg := nats.NewMsg("x.1")
			msg.Header.Set(natsvc.RequestInfoHeader, forgedRequestInfo(env, victim.Key))
			if _, err := js.PublishMsg(t.Context(), msg); err != nil {
				t.Fatal(err)
			}
			if via == "push_consumer" {
				if _, err := s.CreateOrUpdateConsumer(t.Context(), jetstream.ConsumerConfig{
					Name: "p", DeliverSubject: "orders.v1.create", DeliverGroup: "sqlgate", AckPolicy: jetstream.AckNonePolicy,
				}); err != nil {
					t.Fatal(err)
				}
			}
			if c := (<-h.seen).Caller; c.Attested || c.UserKey != "" {
				t.Errorf("a message JetStream delivered to a route subject has caller %+v, want unattested", c)
			}
		})
	}
}
