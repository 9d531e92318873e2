package natsvc_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// traceOnly is a message that asks the server for a trace event on dest
// instead of being delivered (NATS message tracing).
func traceOnly(subject, dest string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set("Nats-Trace-Dest", dest)
	m.Header.Set("Nats-Trace-Only", "true")
	return m
}

// TestMessageTraceEventsDropped: with message tracing any user has the
// server publish a trace event to a subject the user may publish to. On a
// route subject the event crosses the users import as a request of the users
// account's own client (Nats-Request-Info kind "Account", naming no user),
// and the original (trace-only) message is never delivered. Each event would
// be refused as unauthenticated and audited naming nobody; it is dropped
// instead: never handled, unanswered, counted and logged once. The user's own
// requests, a traced one included, are handled as the user's.
func TestMessageTraceEventsDropped(t *testing.T) {
	t.Parallel()
	var dropped atomic.Int64
	var kinds kindSet
	logs := &lockedBuffer{}
	h := &recorder{}
	f := start(t, natsvc.Config{
		Subjects: []string{"orders.v1.get"},
		OnServerPublished: func(kind string) {
			kinds.add(kind)
			dropped.Add(1)
		},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}, h)
	bob := f.env.MintUser(t, "bob", []string{"orders.v1.get"}, time.Minute)
	nc := f.env.MustConnect(t, bob.Option())
	const n = 5
	for range n {
		if err := nc.PublishMsg(traceOnly("orders.v1.get", "orders.v1.get")); err != nil {
			t.Fatal(err)
		}
	}
	// A traced message that is not trace-only is delivered: bob's request.
	traced := nats.NewMsg("orders.v1.get")
	traced.Header.Set("Nats-Trace-Dest", "orders.v1.get")
	for _, m := range []*nats.Msg{traced, nats.NewMsg("orders.v1.get")} {
		r, err := nc.RequestMsg(m, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if e := decode(t, r); !e.OK {
			t.Fatalf("bob's request answered %s", r.Data)
		}
	}
	handled := func() []broker.Request {
		h.mu.Lock()
		defer h.mu.Unlock()
		return append([]broker.Request(nil), h.reqs...)
	}
	// One event per trace-only message, one for the traced request.
	eventually(t, 10*time.Second, "the trace events dropped", func() bool {
		for _, req := range handled() {
			if c := req.Caller; !c.Attested || c.UserKey != bob.Key {
				t.Fatalf("handler saw a request of caller %+v, payload %.80s", c, req.Payload)
			}
		}
		return dropped.Load() >= n+1
	})
	if reqs := handled(); len(reqs) != 2 {
		t.Errorf("handler saw %d requests, want bob's 2", len(reqs))
	}
	if k := kinds.get(); len(k) != 1 || k[0] != "Account" {
		t.Errorf("dropped kinds = %v, want Account", k)
	}
	if data := endpointData(t, f); data.ServerPublished != dropped.Load() || data.Errors != 0 {
		t.Errorf("stats data = %+v, want server_published %d and no errors", data, dropped.Load())
	}
	if lines := strings.Count(logs.String(), "nats message published by the server itself dropped unanswered"); lines < 1 || int64(lines) >= dropped.Load() {
		t.Errorf("%d log lines for %d dropped messages, want one per interval:\n%s", lines, dropped.Load(), logs.String())
	}
}

// kindSet collects the kinds OnServerPublished was called with, once each.
type kindSet struct {
	mu   sync.Mutex
	seen []string
}

func (s *kindSet) add(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.seen, k) {
		s.seen = append(s.seen, k)
	}
}

func (s *kindSet) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// endpointData is the stats `data` of the service's only endpoint.
func endpointData(t *testing.T, f *fixture) natsvc.EndpointData {
	t.Helper()
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
	if len(sr.Endpoints) != 1 || json.Unmarshal(sr.Endpoints[0].Data, &data) != nil {
		t.Fatalf("stats = %s", m.Data)
	}
	return data
}

// TestAsyncTraceEventIsThePublishers pins what a trace event aimed at an
// async subject becomes. The stream stores it without any header (JetStream
// removes the Nats-Request-Info that tells it came from the server), so the
// consumer cannot tell it from a message the user published there, and
// handles it as the request of the subject's user key: the user who asked
// for the trace, since the server lets a user name as trace destination only
// a subject it may publish to itself. No one gets an event stored under
// another user's key, and none is handled as nobody's.
func TestAsyncTraceEventIsThePublishers(t *testing.T) {
	h := &recorder{seen: make(chan broker.Request, 4)}
	f := startAsync(t, h)
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"

	mallory := f.env.MustConnect(t, f.env.MintUser(t, "mallory", []string{"orders.v1.import"}, time.Minute).Option())
	if err := mallory.PublishMsg(traceOnly("orders.v1.import", subject)); err != nil {
		t.Fatal(err)
	}
	if err := mallory.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := mallory.LastError(); !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"`+subject+`"`) {
		t.Fatalf("trace destination another user's async subject: last error %v, want a permissions violation", err)
	}

	if err := f.user.PublishMsg(traceOnly(subject, subject)); err != nil {
		t.Fatal(err)
	}
	req := <-h.seen
	if c := req.Caller; !c.Attested || c.UserKey != f.key || !strings.HasPrefix(string(req.Payload), `{"server":`) {
		t.Errorf("trace event handled as caller %+v with payload %.80s, want the trace's requester %s", c, req.Payload, f.key)
	}
	if req.CorrelationID == "" || req.IdempotencyKey != req.CorrelationID {
		t.Errorf("stored event carried headers: correlation id %q, idempotency key %q", req.CorrelationID, req.IdempotencyKey)
	}
	if left := f.settledMsgs(t, 0); left != 0 {
		t.Errorf("stream holds %d messages", left)
	}
	s, err := f.js.Stream(t.Context(), natsvc.DefaultAsyncStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != 1 {
		t.Errorf("stream stored %d messages, want the one event of the user's own trace", info.State.LastSeq)
	}
}
