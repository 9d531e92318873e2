package natsvc_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// fakeClock is the consumer's clock: the real time (the stream stamps
// messages with it) plus an offset a test moves forward.
type fakeClock struct{ offset atomic.Int64 }

func (c *fakeClock) now() time.Time               { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *fakeClock) advance(d time.Duration)      { c.offset.Add(int64(d)) }
func noDelay(uint64) time.Duration                { return 0 }
func (c *fakeClock) tune(cfg *natsvc.AsyncConfig) { natsvc.SetAsyncClock(cfg, c.now, noDelay) }

// outage answers like the broker while its database or audit log is down
// (unavailable) as long as down is set, moving the clock on by step per
// attempt; afterwards it runs each request. It counts attempts per payload.
type outage struct {
	clock *fakeClock
	step  time.Duration
	down  atomic.Bool

	mu       sync.Mutex
	attempts map[string]int
	ran      map[string]int
	// reached gets a payload's name when it has been attempted `signal`
	// times.
	signal  int
	reached chan string
}

func (o *outage) Handle(_ context.Context, req *broker.Request) *broker.Reply {
	p := string(req.Payload)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.attempts[p]++
	if o.attempts[p] == o.signal {
		o.reached <- p
	}
	if o.down.Load() {
		o.clock.advance(o.step)
		return &broker.Reply{
			CorrelationID: req.CorrelationID, AuditIndex: -1,
			Error: &broker.ReplyError{Code: broker.CodeUnavailable, Message: "audit log unavailable; nothing was executed"},
		}
	}
	o.ran[p]++
	return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, AuditIndex: 1}
}

func (o *outage) counts(p string) (attempts, ran int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.attempts[p], o.ran[p]
}

// TestAsyncOutageKeepsRequests: the database or the audit log is down far
// longer than the five deliveries (1 s + 2 s + 4 s + 8 s) an older version
// allowed, on a consumer that version created with its delivery limit.
// Every queued request is kept, delivered again and again, and runs once
// the outage ends: none is given up.
func TestAsyncOutageKeepsRequests(t *testing.T) {
	f := newAsyncFixture(t)
	// The stream and durable consumer as an older sqlgated left them.
	s, err := f.js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: natsvc.DefaultAsyncStream, Subjects: []string{broker.AsyncSubjects},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: natsvc.DuplicateWindow,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateConsumer(t.Context(), jetstream.ConsumerConfig{
		Durable: natsvc.DefaultAsyncDurable, AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: natsvc.DefaultMaxDeliver,
	}); err != nil {
		t.Fatal(err)
	}
	const n, failures = 3, 3 * natsvc.DefaultMaxDeliver
	clock := &fakeClock{}
	h := &outage{
		clock: clock, step: 10 * time.Second, attempts: map[string]int{}, ran: map[string]int{},
		signal: failures, reached: make(chan string, n),
	}
	h.down.Store(true)
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	var last uint64
	for i := range n {
		last = f.publish(t, subject, `{"i":`+strconv.Itoa(i)+`}`, nil).Sequence
	}
	f.start(t.Context(), t, h, clock.tune, func(c *natsvc.AsyncConfig) { c.MaxDeliver = 0 })
	// The server's limit is only a backstop, far above any delivery count
	// the broker's own rules reach (a day of retries a minute apart).
	if cc := f.consumerConfig(t); cc.MaxDeliver < 2*int(natsvc.DefaultAsyncMaxAge/natsvc.MaxRetryDelay) || cc.MaxAckPending != -1 {
		t.Errorf("consumer after start: MaxDeliver %d, MaxAckPending %d; want a backstop above a day of retries and no ack-pending cap",
			cc.MaxDeliver, cc.MaxAckPending)
	}
	for range n {
		select {
		case <-h.reached: // a request met the outage `failures` times
		case <-time.After(30 * time.Second):
			t.Fatalf("the requests stopped being delivered during the outage (settled %v)", f.settledCounts())
		}
	}
	h.down.Store(false)
	f.done(t, last)
	if left := f.settledMsgs(t, 0); left != 0 {
		t.Errorf("stream holds %d messages after the outage", left)
	}
	got := f.settledCounts()
	if got[natsvc.SettledGaveUp] != 0 || got[natsvc.SettledOK] != n || got[natsvc.SettledRetry] < n*failures {
		t.Errorf("settled %v; want %d ok after at least %d retries, none given up", got, n, n*failures)
	}
	for i := range n {
		p := `{"i":` + strconv.Itoa(i) + `}`
		if attempts, ran := h.counts(p); ran != 1 || attempts <= failures {
			t.Errorf("request %s ran %d times after %d attempts; want once, after the outage", p, ran, attempts)
		}
	}
	if outage := time.Duration(clock.offset.Load()); outage < time.Duration(n*failures)*h.step {
		t.Errorf("the outage lasted %s on the consumer's clock, want at least %s", outage, time.Duration(n*failures)*h.step)
	}
}

// TestAsyncGivesUpAtMaxAge: a request the database keeps refusing as
// unavailable is retried until it has been in the stream for MaxAge; the
// attempt that fails at that age is its last: the requester gets that
// attempt's answer on its reply subject and the message leaves the stream
// (gave_up).
func TestAsyncGivesUpAtMaxAge(t *testing.T) {
	f := newAsyncFixture(t)
	clock := &fakeClock{}
	h := &outage{clock: clock, step: 20 * time.Minute, attempts: map[string]int{}, ran: map[string]int{}, reached: make(chan string, 1)}
	h.down.Store(true)
	f.start(t.Context(), t, h, clock.tune, func(c *natsvc.AsyncConfig) { c.MaxAge = time.Hour })
	replies, err := f.user.SubscribeSync(broker.ReplyPrefix(f.key) + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.user.Flush(); err != nil {
		t.Fatal(err)
	}
	ack := f.publish(t, broker.AsyncPrefix(f.key)+".orders.v1.import", `{"old":true}`, map[string]string{natsvc.HeaderReplyTo: "job-old"})
	m, err := replies.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no answer after the last attempt: %v", err)
	}
	var env struct {
		OK    bool `json:"ok"`
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &env); err != nil || env.OK || env.Error == nil || env.Error.Code != broker.CodeUnavailable {
		t.Errorf("answer on %s = %s, want the last attempt's unavailable", m.Subject, m.Data)
	}
	f.settled(t, ack.Sequence)
	// Attempts at ages 20, 40 and 60 minutes (each moves the clock on).
	if attempts, ran := h.counts(`{"old":true}`); attempts != 3 || ran != 0 {
		t.Errorf("%d attempts, %d ran; want 3 attempts, the one at an hour the last", attempts, ran)
	}
	if got := f.settledCounts(); got[natsvc.SettledGaveUp] != 1 || got[natsvc.SettledRetry] != 2 {
		t.Errorf("settled %v, want 2 retries then gave_up", got)
	}
	if extra, err := replies.NextMsg(100 * time.Millisecond); err == nil {
		t.Errorf("a second answer arrived: %s", extra.Data)
	}
}

// TestAsyncPauseResume: while paused (the instance cannot serve) the
// consumer fetches nothing: the call it was running finishes, and requests
// published meanwhile wait in the stream, undelivered; resumed, it runs
// them. Resume after Stop reports ErrStopped.
func TestAsyncPauseResume(t *testing.T) {
	f := newAsyncFixture(t)
	ran := &ranSet{ran: map[string]int{}}
	h := ran.holding()
	a := f.start(t.Context(), t, h)
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	first := f.publish(t, subject, `{"i":"running"}`, nil).Sequence
	<-h.started
	if err := a.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if !a.Paused() {
		t.Error("Paused() = false after Pause")
	}
	second := f.publish(t, subject, `{"i":"waiting"}`, nil).Sequence
	close(h.release)
	f.acked(t, first)
	// No pull request is outstanding, so the server cannot deliver the
	// waiting request to anyone.
	ci := f.consumerInfo(t)
	if ci.NumWaiting != 0 || ci.NumPending != 1 || ci.NumAckPending != 0 {
		t.Errorf("paused consumer: %d pull requests waiting, %d messages pending, %d delivered; want 0, 1, 0",
			ci.NumWaiting, ci.NumPending, ci.NumAckPending)
	}
	if n := ran.count(`{"i":"waiting"}`); n != 0 {
		t.Errorf("the request published while paused ran %d times", n)
	}
	if n := ran.count(`{"i":"running"}`); n != 1 {
		t.Errorf("the call running at the pause ran %d times, want once", n)
	}
	if err := a.Resume(); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if a.Paused() {
		t.Error("Paused() = true after Resume")
	}
	f.done(t, second)
	if n := ran.count(`{"i":"waiting"}`); n != 1 {
		t.Errorf("the request published while paused ran %d times after Resume, want once", n)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.Resume(); !errors.Is(err, natsvc.ErrStopped) {
		t.Errorf("Resume after Stop = %v, want ErrStopped", err)
	}
}

// TestAsyncPauseReturnsFetched: messages fetched but not started when the
// consumer pauses go back to the stream (returned) and run once it resumes.
func TestAsyncPauseReturnsFetched(t *testing.T) {
	f := newAsyncFixture(t)
	ran := &ranSet{ran: map[string]int{}}
	h := ran.holding()
	a := f.start(t.Context(), t, h, func(c *natsvc.AsyncConfig) { c.Workers = 1 })
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	const n = 6
	var last uint64
	for i := range n {
		last = f.publish(t, subject, `{"i":`+strconv.Itoa(i)+`}`, nil).Sequence
	}
	<-h.started // the one worker holds a call; the others are fetched or waiting
	if err := a.Pause(); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	close(h.release)
	// Every delivery is settled: the running call ok, the fetched ones
	// returned (the server holds those as pending until it delivers them
	// again), and no pull request is waiting.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ci, got := f.consumerInfo(t), f.settledCounts()
		if ci.NumWaiting == 0 && uint64(got[natsvc.SettledOK]+got[natsvc.SettledReturned]) == ci.Delivered.Consumer {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("paused consumer: %d deliveries, settled %v, %d pull requests waiting", ci.Delivered.Consumer, got, ci.NumWaiting)
		}
		time.Sleep(20 * time.Millisecond)
	}
	done := 0
	for i := range n {
		done += ran.count(`{"i":` + strconv.Itoa(i) + `}`)
	}
	if got := f.settledCounts(); got[natsvc.SettledReturned] == 0 || done == n {
		t.Fatalf("settled %v, %d ran: the pause met no fetched message", got, done)
	}
	if err := a.Resume(); err != nil {
		t.Fatal(err)
	}
	f.done(t, last)
	for i := range n {
		if p := `{"i":` + strconv.Itoa(i) + `}`; ran.count(p) != 1 {
			t.Errorf("request %s ran %d times, want once", p, ran.count(p))
		}
	}
}

// TestAsyncRetryDelay: attempts back off 1 s, 2 s, 4 s, ... and never wait
// longer than MaxRetryDelay, however many deliveries an outage took.
func TestAsyncRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		delivered uint64
		want      time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {4, 8 * time.Second}, {6, 32 * time.Second}, {7, time.Minute}, {100, time.Minute}, {1 << 40, time.Minute}} {
		if got := natsvc.RetryDelay(tc.delivered); got != tc.want {
			t.Errorf("RetryDelay(%d) = %s, want %s", tc.delivered, got, tc.want)
		}
	}
}

func (f *asyncFixture) consumerInfo(t *testing.T) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := f.js.Consumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return ci
}

// acked waits until the consumer acknowledged every message up to stream
// sequence seq and has none delivered and unacknowledged; unlike done it
// allows messages waiting behind seq.
func (f *asyncFixture) acked(t *testing.T, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for ci := f.consumerInfo(t); ci.AckFloor.Stream < seq || ci.NumAckPending != 0; ci = f.consumerInfo(t) {
		if time.Now().After(deadline) {
			t.Fatalf("stream sequence %d was not acknowledged (ack floor %d, %d delivered)", seq, ci.AckFloor.Stream, ci.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *asyncFixture) consumerConfig(t *testing.T) jetstream.ConsumerConfig {
	t.Helper()
	return f.consumerInfo(t).Config
}

// downDB answers unavailable for the requests of a database that is down
// ("down" payloads) and runs the others.
type downDB struct{ ran chan string }

func (d *downDB) Handle(_ context.Context, req *broker.Request) *broker.Reply {
	if strings.HasPrefix(string(req.Payload), `"down`) {
		return &broker.Reply{
			CorrelationID: req.CorrelationID, AuditIndex: -1,
			Error: &broker.ReplyError{Code: broker.CodeUnavailable, Message: "database unavailable"},
		}
	}
	d.ran <- string(req.Payload)
	return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, AuditIndex: 1}
}

// TestAsyncDownDatabaseHoldsNoOneBack: requests for a database that is down
// wait for their retries (pending on the consumer, for up to MaxAge); more of
// them than the workers could hold must not keep a request for a healthy
// database from being delivered (with an ack-pending cap they did, until
// they were a day old).
func TestAsyncDownDatabaseHoldsNoOneBack(t *testing.T) {
	f := newAsyncFixture(t)
	h := &downDB{ran: make(chan string, 1)}
	subject := broker.AsyncPrefix(f.key) + ".orders.v1.import"
	f.start(t.Context(), t, h, func(c *natsvc.AsyncConfig) {
		c.Workers = 1
		natsvc.SetAsyncClock(c, time.Now, func(uint64) time.Duration { return time.Minute })
	})
	const waiting = 4 // what an ack-pending cap of 4 per worker would hold
	for i := range waiting {
		f.publish(t, subject, `"down`+strconv.Itoa(i)+`"`, nil)
	}
	for f.settledCounts()[natsvc.SettledRetry] < waiting {
		time.Sleep(20 * time.Millisecond)
	}
	f.publish(t, subject, `"healthy"`, nil)
	select {
	case p := <-h.ran:
		if p != `"healthy"` {
			t.Errorf("ran %s, want the healthy request", p)
		}
	case <-time.After(30 * time.Second): // a deadline for a hang, not a timing
		ci := f.consumerInfo(t)
		t.Fatalf("the request for a healthy database was not delivered: ack pending %d (max %d), pending %d, settled %v",
			ci.NumAckPending, ci.Config.MaxAckPending, ci.NumPending, f.settledCounts())
	}
}
