package natsvc_test

import (
	"context"
	"encoding/json"
	"maps"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// asyncFixture runs the consumer on a real operator-mode server with
// JetStream, and a user who may publish under its own key.
type asyncFixture struct {
	env  *natsauthtest.Env
	user *nats.Conn
	key  string
	js   jetstream.JetStream

	mu      sync.Mutex
	settles map[string]int
}

func startAsync(t *testing.T, h natsvc.Handler) *asyncFixture {
	t.Helper()
	f, _ := startAsyncCtx(t.Context(), t, h)
	return f
}

// startAsyncCtx starts the consumer under ctx (its end stops it) and returns
// it too.
func startAsyncCtx(ctx context.Context, t *testing.T, h natsvc.Handler) (*asyncFixture, *natsvc.Async) {
	t.Helper()
	f := newAsyncFixture(t)
	return f, f.start(ctx, t, h)
}

// newAsyncFixture starts the server and connects the user; no consumer runs.
func newAsyncFixture(t *testing.T) *asyncFixture {
	t.Helper()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.import"}, JetStream: true})
	bc := env.BrokerConn(t)
	f := &asyncFixture{env: env, settles: map[string]int{}}
	f.user, f.key = f.connectUser(t, "alice")
	js, err := jetstream.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	f.js = js
	return f
}

// connectUser connects a new user who may publish async requests.
func (f *asyncFixture) connectUser(t *testing.T, name string) (*nats.Conn, string) {
	t.Helper()
	u := f.env.MintUserSub(t, name, []string{broker.AsyncSubjectPrefix + ">"},
		func(key string) []string { return []string{broker.ReplyPrefix(key) + ".>"} }, time.Hour)
	return f.env.MustConnect(t, nats.UserJWTAndSeed(u.JWT, seedOf(t, u.KP)), nats.CustomInboxPrefix(broker.InboxPrefix(u.Key))), u.Key
}

// start starts one more instance on the fixture's server, sharing the
// stream, the durable consumer and the settle counts; tune adjusts its
// configuration.
func (f *asyncFixture) start(ctx context.Context, t *testing.T, h natsvc.Handler, tune ...func(*natsvc.AsyncConfig)) *natsvc.Async {
	t.Helper()
	cfg := natsvc.AsyncConfig{
		Subjects: []string{"orders.v1.import"}, UsersAccount: f.env.Keys.Public().Users, Workers: 2, MaxDeliver: 2,
		OnSettle: func(how string) { f.mu.Lock(); f.settles[how]++; f.mu.Unlock() },
	}
	for _, fn := range tune {
		fn(&cfg)
	}
	a, err := natsvc.StartAsync(ctx, f.env.BrokerConn(t), cfg, h)
	if err != nil {
		t.Fatalf("StartAsync: %v", err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	return a
}

// settledMsgs waits until the stream holds want messages (the server
// applies acknowledgements to a work queue asynchronously, after they
// arrive) and returns what it holds then, or after ten seconds.
func (f *asyncFixture) settledMsgs(t *testing.T, want int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := f.streamMsgs(t)
		if left == want || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// streamMsgs is how many messages the work-queue stream still holds.
func (f *asyncFixture) streamMsgs(t *testing.T) int {
	t.Helper()
	s, err := f.js.Stream(t.Context(), natsvc.DefaultAsyncStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Msgs)
}

// TestAsyncStopKeepsUnstartedRequests: when the instance stops (its context
// ends), the calls already running finish as if it kept running, and the
// messages it fetched but did not start go back to the stream. None is
// answered with a refusal and acknowledged, which would lose it.
func TestAsyncStopKeepsUnstartedRequests(t *testing.T) {
	started, release := make(chan struct{}, 8), make(chan struct{})
	var cancelled atomic.Int64
	h := &blocking{started: started, release: release, cancelled: &cancelled}
	ctx, cancel := context.WithCancel(t.Context())
	f, a := startAsyncCtx(ctx, t, h)
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	const n = 6
	for range n {
		f.publish(t, subject, `{}`, nil)
	}
	<-started
	<-started // both workers hold a call
	cancel()
	close(release)
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	got := f.settledCounts()
	if cancelled.Load() != 0 || got[natsvc.SettledFinal] != 0 || got[natsvc.SettledOK] < 2 {
		t.Errorf("settled %v, %d calls saw a cancelled context; want the started calls ok and none refused", got, cancelled.Load())
	}
	if left := f.settledMsgs(t, n-got[natsvc.SettledOK]); left != n-got[natsvc.SettledOK] {
		t.Errorf("stream holds %d messages after %v; want every message not handled (%d)", left, got, n-got[natsvc.SettledOK])
	}
}

// TestAsyncStopHandlesLastDelivery: instances stop in turn (a rolling
// restart) while a backlog waits. Each returns the messages it fetched but
// did not start, and each return counts as a delivery, beyond MaxDeliver
// (2) for some: the consumer has no delivery limit, so the stream delivers
// every returned message again. So every request runs and the stream ends
// empty.
func TestAsyncStopHandlesLastDelivery(t *testing.T) {
	ran := &ranSet{ran: map[string]int{}}
	h := ran.holding()
	f, a := startAsyncCtx(t.Context(), t, h)
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	const n = 24
	var last uint64
	for i := range n {
		last = f.publish(t, subject, `{"i":`+strconv.Itoa(i)+`}`, nil).Sequence
	}
	for round := range 3 {
		if round > 0 {
			h = ran.holding()
			a = f.start(t.Context(), t, h)
		}
		if !f.startedOrDone(t, h.started, last) {
			break
		}
		// A call is running: stop while it holds, so that the messages
		// fetched behind it go back to the stream.
		stopped := make(chan struct{})
		go func() { _ = a.Stop(); close(stopped) }()
		for !a.Stopping() {
			runtime.Gosched()
		}
		close(h.release)
		<-stopped
	}
	if got := f.settledCounts(); got[natsvc.SettledReturned] == 0 {
		t.Fatalf("settled %v: no message was returned, the stops did not meet a backlog", got)
	}
	h = ran.holding()
	close(h.release)
	f.start(t.Context(), t, h)
	f.done(t, last)
	if left := f.settledMsgs(t, 0); left != 0 {
		t.Errorf("stream holds %d messages the consumer will not deliver again (settled %v)", left, f.settledCounts())
	}
	for i := range n {
		if p := `{"i":` + strconv.Itoa(i) + `}`; ran.count(p) == 0 {
			t.Errorf("request %s never ran", p)
		}
	}
}

// ranSet counts the calls per payload across instances.
type ranSet struct {
	mu  sync.Mutex
	ran map[string]int
}

func (r *ranSet) count(payload string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ran[payload]
}

// holding returns a handler that holds each call until release is closed,
// signals the first on started, and counts it in r.
func (r *ranSet) holding() *holding {
	return &holding{started: make(chan struct{}, 1), release: make(chan struct{}), r: r}
}

type holding struct {
	started chan struct{}
	release chan struct{}
	r       *ranSet
}

func (h *holding) Handle(_ context.Context, req *broker.Request) *broker.Reply {
	select {
	case h.started <- struct{}{}:
	default:
	}
	<-h.release
	h.r.mu.Lock()
	h.r.ran[string(req.Payload)]++
	h.r.mu.Unlock()
	return &broker.Reply{OK: true, CorrelationID: req.CorrelationID}
}

// startedOrDone waits until a call starts (true) or the consumer is done
// with every message up to stream sequence last (false).
func (f *asyncFixture) startedOrDone(t *testing.T, started <-chan struct{}, last uint64) bool {
	t.Helper()
	for {
		select {
		case <-started:
			return true
		case <-time.After(20 * time.Millisecond):
		}
		if f.consumerDone(t, last) {
			return false
		}
	}
}

// done waits until the consumer is done with every message up to stream
// sequence last.
func (f *asyncFixture) done(t *testing.T, last uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f.consumerDone(t, last) {
		if time.Now().After(deadline) {
			t.Fatalf("the consumer is not done with stream sequence %d", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consumerDone reports whether the durable consumer will deliver none of
// the messages up to stream sequence last again: none is waiting, in
// flight, or below its ack floor. A message returned on its last delivery
// counts as done though the work queue still holds it.
func (f *asyncFixture) consumerDone(t *testing.T, last uint64) bool {
	t.Helper()
	c, err := f.js.Consumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return ci.NumPending == 0 && ci.NumAckPending == 0 && ci.AckFloor.Stream >= last
}

// blocking holds each call until release is closed, and answers the way the
// broker answers a request whose context ended before it ran: a refusal.
type blocking struct {
	started   chan struct{}
	release   chan struct{}
	cancelled *atomic.Int64
}

func (b *blocking) Handle(ctx context.Context, req *broker.Request) *broker.Reply {
	b.started <- struct{}{}
	<-b.release
	if ctx.Err() != nil {
		b.cancelled.Add(1)
		return &broker.Reply{CorrelationID: req.CorrelationID, Error: &broker.ReplyError{Code: broker.CodeUnauthenticated}}
	}
	return &broker.Reply{OK: true, CorrelationID: req.CorrelationID}
}

// settledCounts returns how many deliveries were settled each way.
func (f *asyncFixture) settledCounts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.settles)
}

func seedOf(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return string(seed)
}

// publish sends a message and returns the stream's acknowledgement.
func (f *asyncFixture) publish(t *testing.T, subject, payload string, hdr map[string]string) jetstream.PubAck {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(payload)
	for k, v := range hdr {
		m.Header.Set(k, v)
	}
	reply, err := f.user.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
	var ack jetstream.PubAck
	if err := json.Unmarshal(reply.Data, &ack); err != nil || ack.Stream != natsvc.DefaultAsyncStream {
		t.Fatalf("publish ack %q: %v", reply.Data, err)
	}
	return ack
}

// settled waits until the consumer acknowledged stream sequence seq and the
// work queue is empty.
func (f *asyncFixture) settled(t *testing.T, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := f.js.Stream(t.Context(), natsvc.DefaultAsyncStream)
		if err == nil {
			c, cerr := s.Consumer(t.Context(), natsvc.DefaultAsyncDurable)
			if cerr == nil {
				ci, ierr := c.Info(t.Context())
				if ierr == nil && ci.AckFloor.Stream >= seq && ci.NumAckPending == 0 && s.CachedInfo() != nil {
					if info, err := s.Info(t.Context()); err == nil && info.State.Msgs == 0 {
						return
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream sequence %d was not settled", seq)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAsyncRequest(t *testing.T) {
	h := &recorder{seen: make(chan broker.Request, 4)}
	f := startAsync(t, h)
	received := time.Now()
	ack := f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{"customer":"ACME"}`,
		map[string]string{natsvc.HeaderIdempotencyKey: "k-1", natsvc.HeaderCorrelationID: "corr-1", natsvc.HeaderReason: "why"})
	req := <-h.seen
	f.settled(t, ack.Sequence)
	want := broker.Caller{Transport: broker.TransportAsync, Attested: true, UserKey: f.key, Account: f.env.Keys.Public().Users}
	if req.Subject != "orders.v1.import" || string(req.Payload) != `{"customer":"ACME"}` || req.Caller.Transport != want.Transport ||
		req.Caller.UserKey != want.UserKey || req.Caller.Account != want.Account || !req.Caller.Attested {
		t.Errorf("request = %+v", req)
	}
	if req.IdempotencyKey != "k-1" || req.CorrelationID != "corr-1" || req.Reason != "why" {
		t.Errorf("headers: key %q, correlation %q, reason %q", req.IdempotencyKey, req.CorrelationID, req.Reason)
	}
	if d := req.Received.Sub(received); d < -time.Second || d > 5*time.Second {
		t.Errorf("received = %s, want the stream's time of the message (about %s)", req.Received, received)
	}

	// Without headers: Nats-Msg-Id is the key; else the message's place in
	// the stream, stable across deliveries and unique, is both the key and
	// the correlation id. A client's correlation id is never the key: an
	// import job may give all its messages the same one.
	f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{}`, map[string]string{natsvc.HeaderMsgID: "msg-9"})
	if r := <-h.seen; r.IdempotencyKey != "msg-9" {
		t.Errorf("idempotency key = %q, want the Nats-Msg-Id", r.IdempotencyKey)
	}
	f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{}`, nil)
	first := <-h.seen
	f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{}`, nil)
	second := <-h.seen
	if first.CorrelationID == "" || first.CorrelationID == second.CorrelationID || first.IdempotencyKey != first.CorrelationID || second.IdempotencyKey != second.CorrelationID {
		t.Errorf("derived correlation ids %q, %q (keys %q, %q)", first.CorrelationID, second.CorrelationID, first.IdempotencyKey, second.IdempotencyKey)
	}
	for range 2 {
		f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{}`, map[string]string{natsvc.HeaderCorrelationID: "job-7"})
	}
	third, fourth := <-h.seen, <-h.seen
	if third.CorrelationID != "job-7" || third.IdempotencyKey == "" || third.IdempotencyKey == fourth.IdempotencyKey {
		t.Errorf("two messages under one correlation id: keys %q, %q (correlation %q)", third.IdempotencyKey, fourth.IdempotencyKey, third.CorrelationID)
	}
}

// TestAsyncRetriesUnavailable: a request the database could not take is
// delivered again with the same correlation id; one that keeps failing with
// an internal error, or keeps running into its timeout, is settled after
// MaxDeliver attempts (one that keeps
// meeting an unavailable database is retried until its maximum age: see
// TestAsyncGivesUpAtMaxAge); a final refusal is not retried.
func TestAsyncRetriesUnavailable(t *testing.T) {
	var calls atomic.Int64
	h := &recorder{seen: make(chan broker.Request, 8), reply: func(req *broker.Request) *broker.Reply {
		code := broker.CodeUnavailable
		switch {
		case strings.Contains(string(req.Payload), "once") && calls.Add(1) > 1:
			return &broker.Reply{OK: true, CorrelationID: req.CorrelationID}
		case strings.Contains(string(req.Payload), "forbidden"):
			code = broker.CodeForbidden
		case strings.Contains(string(req.Payload), "always"):
			code = broker.CodeInternal
		case strings.Contains(string(req.Payload), "timeout"):
			// Ran into its timeout: it would again, so a few attempts.
			return &broker.Reply{CorrelationID: req.CorrelationID, TimedOut: true, Error: &broker.ReplyError{Code: code}}
		}
		return &broker.Reply{CorrelationID: req.CorrelationID, Error: &broker.ReplyError{Code: code}}
	}}
	f := startAsync(t, h)
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"

	ack := f.publish(t, subject, `{"fail":"once"}`, nil)
	a, b := <-h.seen, <-h.seen
	f.settled(t, ack.Sequence)
	if a.CorrelationID != b.CorrelationID {
		t.Errorf("redelivery changed the correlation id: %q, %q", a.CorrelationID, b.CorrelationID)
	}

	ack = f.publish(t, subject, `{"fail":"always"}`, nil)
	<-h.seen
	<-h.seen // MaxDeliver 2
	f.settled(t, ack.Sequence)

	ack = f.publish(t, subject, `{"fail":"timeout"}`, nil)
	<-h.seen
	<-h.seen // MaxDeliver 2, although unavailable
	f.settled(t, ack.Sequence)

	ack = f.publish(t, subject, `{"fail":"forbidden"}`, nil)
	<-h.seen
	f.settled(t, ack.Sequence)
	select {
	case r := <-h.seen:
		t.Errorf("delivered again: %s", r.Payload)
	case <-time.After(1500 * time.Millisecond): // past the first retry delay
	}
	want := map[string]int{natsvc.SettledRetry: 3, natsvc.SettledOK: 1, natsvc.SettledGaveUp: 2, natsvc.SettledFinal: 1}
	if got := f.settledCounts(); !maps.Equal(got, want) {
		t.Errorf("settled = %v, want %v", got, want)
	}
}

// TestAsyncReply: a message with Sqlgate-Reply-To gets its final envelope
// under the requester's own reply prefix; a token that is not one subject
// token gets none, and the request still runs.
func TestAsyncReply(t *testing.T) {
	h := &recorder{seen: make(chan broker.Request, 2), reply: func(req *broker.Request) *broker.Reply {
		return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, Result: json.RawMessage(`{"rows":[{"id":7}]}`), AuditIndex: 3}
	}}
	f := startAsync(t, h)
	replies, err := f.user.SubscribeSync(broker.ReplyPrefix(f.key) + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.user.Flush(); err != nil {
		t.Fatal(err)
	}
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	f.publish(t, subject, `{}`, map[string]string{natsvc.HeaderReplyTo: "job-1", natsvc.HeaderCorrelationID: "corr-r"})
	m, err := replies.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	env := decode(t, m)
	if m.Subject != broker.ReplyPrefix(f.key)+".job-1" || !env.OK || env.CorrelationID != "corr-r" || string(env.Result) != `{"rows":[{"id":7}]}` {
		t.Errorf("reply on %s = %s", m.Subject, m.Data)
	}
	<-h.seen

	ack := f.publish(t, subject, `{}`, map[string]string{natsvc.HeaderReplyTo: "a.b"})
	<-h.seen
	f.settled(t, ack.Sequence)
	if m, err := replies.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("a reply to the token %q arrived on %s", "a.b", m.Subject)
	}
}

func TestParseAsyncSubject(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	user, _ := kp.PublicKey()
	acct, _ := nkeys.CreateAccount()
	account, _ := acct.PublicKey()
	for _, tc := range []struct {
		subject, key, route string
		ok                  bool
	}{
		{"sqlgate.async." + user + ".orders.v1.create", user, "orders.v1.create", true},
		{"sqlgate.async." + user, "", "", false},
		{"sqlgate.async." + user + ".", "", "", false},
		{"sqlgate.async." + account + ".orders.v1.create", "", "", false},
		{"sqlgate.async.UFORGED.orders.v1.create", "", "", false},
		{"orders.v1.create", "", "", false},
	} {
		key, route, ok := natsvc.ParseAsyncSubject(tc.subject)
		if key != tc.key || route != tc.route || ok != tc.ok {
			t.Errorf("%q = %q, %q, %v", tc.subject, key, route, ok)
		}
	}
}

func FuzzParseAsyncSubject(f *testing.F) {
	kp, _ := nkeys.CreateUser()
	user, _ := kp.PublicKey()
	f.Add("sqlgate.async." + user + ".orders.v1.create")
	f.Add("sqlgate.async..x")
	f.Add("sqlgate.async." + user + ".a.>")
	f.Fuzz(func(t *testing.T, subject string) {
		key, route, ok := natsvc.ParseAsyncSubject(subject)
		if !ok {
			return
		}
		if broker.AsyncPrefix(key)+"."+route != subject || !nkeys.IsValidPublicUserKey(key) || route == "" {
			t.Fatalf("%q parsed as key %q, route %q", subject, key, route)
		}
	})
}

// TestAsyncStreamQuotaPerUserAndRoute: requests waiting on one subject (one
// user key and route) are capped; a publish beyond the cap is refused in its
// acknowledgement, nothing waiting is dropped, and another user still gets
// in.
func TestAsyncStreamQuotaPerUserAndRoute(t *testing.T) {
	f := newAsyncFixture(t)
	ran := &ranSet{ran: map[string]int{}}
	h := ran.holding()
	f.start(t.Context(), t, h, func(c *natsvc.AsyncConfig) { c.MaxPerSubject = 2 })
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	f.publish(t, subject, `{"i":0}`, nil)
	f.publish(t, subject, `{"i":1}`, nil)
	reply, err := f.user.Request(subject, []byte(`{"i":2}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ack struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		t.Fatalf("publish ack %q: %v", reply.Data, err)
	}
	if ack.Error == nil || !strings.Contains(ack.Error.Description, "maximum messages per subject") {
		t.Errorf("third waiting request on one subject: ack %s, want a per-subject limit error", reply.Data)
	}
	other, otherKey := f.connectUser(t, "bob")
	reply, err = other.Request(broker.AsyncPrefix(otherKey)+".orders.v1.import", []byte(`{"i":"bob"}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var bobAck jetstream.PubAck
	if err := json.Unmarshal(reply.Data, &bobAck); err != nil || bobAck.Sequence == 0 {
		t.Fatalf("another user's request while alice is at her limit: ack %s", reply.Data)
	}
	close(h.release)
	f.done(t, bobAck.Sequence)
	for _, p := range []string{`{"i":0}`, `{"i":1}`, `{"i":"bob"}`} {
		if ran.count(p) != 1 {
			t.Errorf("request %s ran %d times, want once", p, ran.count(p))
		}
	}
}

// TestAsyncStreamOfOlderVersionGetsLimits: a stream created without limits
// (an older sqlgated) is updated at start without losing a waiting request:
// a per-subject limit that a backlog exceeds waits for a later start.
func TestAsyncStreamOfOlderVersionGetsLimits(t *testing.T) {
	f := newAsyncFixture(t)
	if _, err := f.js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: natsvc.DefaultAsyncStream, Subjects: []string{broker.AsyncSubjects},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: natsvc.DuplicateWindow,
	}); err != nil {
		t.Fatal(err)
	}
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	var last uint64
	for i := range 3 {
		last = f.publish(t, subject, `{"i":`+strconv.Itoa(i)+`}`, nil).Sequence
	}
	ran := &ranSet{ran: map[string]int{}}
	h := ran.holding()
	close(h.release)
	limit := func(c *natsvc.AsyncConfig) { c.MaxPerSubject = 2; c.MaxBytes = 1 << 20 }
	a := f.start(t.Context(), t, h, limit)
	f.done(t, last)
	for i := range 3 {
		if p := `{"i":` + strconv.Itoa(i) + `}`; ran.count(p) != 1 {
			t.Errorf("waiting request %s ran %d times, want once", p, ran.count(p))
		}
	}
	cfg := f.streamConfig(t)
	if cfg.MaxBytes != 1<<20 || cfg.Discard != jetstream.DiscardNew {
		t.Errorf("stream after the first start: max bytes %d, discard %v; want 1 MiB, discard new", cfg.MaxBytes, cfg.Discard)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	// The backlog has drained: the next start applies the per-subject limit.
	f.start(t.Context(), t, h, limit)
	if cfg := f.streamConfig(t); cfg.MaxMsgsPerSubject != 2 || !cfg.DiscardNewPerSubject {
		t.Errorf("stream after the second start: max per subject %d, discard new per subject %v; want 2, true", cfg.MaxMsgsPerSubject, cfg.DiscardNewPerSubject)
	}
}

func (f *asyncFixture) streamConfig(t *testing.T) jetstream.StreamConfig {
	t.Helper()
	s, err := f.js.Stream(t.Context(), natsvc.DefaultAsyncStream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config
}

// TestAsyncStreamSizeCapThatDoesNotFit: a NATS server reserves a stream's
// size cap from its JetStream store and refuses a stream that does not fit;
// the consumer then starts with the largest cap that fits instead of
// keeping sqlgated from starting.
func TestAsyncStreamSizeCapThatDoesNotFit(t *testing.T) {
	f := newAsyncFixture(t)
	const want = int64(1) << 50 // a pebibyte: more than this machine's store
	f.start(t.Context(), t, natsvc.HandlerFunc(func(_ context.Context, req *broker.Request) *broker.Reply {
		return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, AuditIndex: -1}
	}), func(c *natsvc.AsyncConfig) { c.MaxBytes = want })
	s, err := f.js.Stream(t.Context(), natsvc.DefaultAsyncStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Config.MaxBytes; got == want || got == 0 {
		t.Errorf("stream MaxBytes = %d, want a cap that fits the store (below %d) or none (-1)", got, want)
	}
}

// TestAsyncBrokerUserCannotPublishForSomeoneElse: the async consumer takes
// the caller from the subject, so sqlgated's broker user may not publish
// under anyone's key: the server refuses it, the stream never holds it (a
// user's request after it is the stream's first message), and only the
// user's request runs.
func TestAsyncBrokerUserCannotPublishForSomeoneElse(t *testing.T) {
	h := &recorder{}
	f := startAsync(t, h)
	victim, _ := nkeys.CreateUser()
	victimKey, _ := victim.PublicKey()
	bc := f.env.BrokerConn(t)
	msg := nats.NewMsg(broker.AsyncPrefix(victimKey) + ".orders.v1.import")
	msg.Data = []byte(`{"customer":"forged"}`)
	msg.Header.Set(natsvc.RequestInfoHeader, forgedRequestInfo(f.env, victimKey))
	if !refusedPublish(t, bc, msg) {
		t.Fatalf("broker user published an async request for another key (last error %v)", bc.LastError())
	}
	ack := f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{"customer":"ACME"}`, nil)
	if ack.Sequence != 1 {
		t.Errorf("the user's request is stream message %d, want 1: the forged one was stored", ack.Sequence)
	}
	f.settled(t, ack.Sequence)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.reqs) != 1 || h.reqs[0].Caller.UserKey != f.key {
		t.Errorf("handler saw %d requests (%+v), want the user's only", len(h.reqs), h.reqs)
	}
}
