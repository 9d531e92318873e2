package natsvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/internal/header"
	"github.com/sqlgate/sqlgate/internal/logsample"
)

// Request and reply headers.
const (
	HeaderCorrelationID  = "Correlation-Id"
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderMsgID          = "Nats-Msg-Id"
	HeaderTraceparent    = "traceparent"
	HeaderReason         = "Sqlgate-Reason"
	// HeaderReplyTo asks for the answer to an async request, published on
	// sqlgate.reply.<user key>.<this token> ([broker.ReplyPrefix]).
	HeaderReplyTo = "Sqlgate-Reply-To"
	// HeaderEvent is on every follow-up event, and on nothing else sqlgated
	// publishes: its value is the subject of the route whose call committed.
	// NATS checks no permission on a reply subject, so any user may name an
	// emit subject as the reply subject of a request; the reply published
	// there has no HeaderEvent, and consumers must drop it.
	HeaderEvent = "Sqlgate-Event"
)

// Handler handles one routed request and returns the reply envelope; it must
// never return nil. req is reused after Handle returns: do not retain it
// (copy what must outlive the call). Implementations must be safe for
// concurrent use.
type Handler interface {
	Handle(ctx context.Context, req *broker.Request) *broker.Reply
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, req *broker.Request) *broker.Reply

// Handle implements Handler.
func (f HandlerFunc) Handle(ctx context.Context, req *broker.Request) *broker.Reply {
	return f(ctx, req)
}

// Config configures the service.
type Config struct {
	// Name and Version are the micro service's (Version is semver).
	Name, Version string
	// Description is shown by `nats micro info`.
	Description string
	// QueueGroup shared by all sqlgated instances (default "sqlgate").
	QueueGroup string
	// Subjects are the route subjects; one endpoint each.
	Subjects []string
	// Workers handle requests concurrently (0: 16); QueueLen requests may
	// wait (0: 1024). A request that finds the queue full is answered
	// `rate_limited` at once.
	Workers, QueueLen int
	// UsersAccount is the users account's public key and SigningKeys the
	// users signing keys whose users are attested.
	UsersAccount string
	SigningKeys  []string
	// Admit, if set, is asked first for every request received; a request
	// it refuses is dropped unanswered and unhandled (sqlgated admits only
	// what a NATS server it accepts delivered). It is called on the hot
	// path: it must be cheap, and safe for concurrent use.
	Admit func() bool
	// OnServerPublished, if set, is called with the kind of the server's
	// internal client (e.g. "Account") for each message dropped because the
	// NATS server published it itself (see [EndpointData.ServerPublished]),
	// e.g. to count them. It must be cheap and safe for concurrent use.
	OnServerPublished func(kind string)
	// Logger receives operational messages (nil: discard).
	Logger *slog.Logger
}

// Validate reports every problem of c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	if c.Version == "" {
		errs = append(errs, errors.New("version is required"))
	}
	if len(c.Subjects) == 0 {
		errs = append(errs, errors.New("at least one subject is required"))
	}
	seen := map[string]bool{}
	for _, s := range c.Subjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n*>") {
			errs = append(errs, fmt.Errorf("invalid subject %q", s))
		}
		if seen[s] {
			errs = append(errs, fmt.Errorf("duplicate subject %q", s))
		}
		seen[s] = true
	}
	if !nkeys.IsValidPublicAccountKey(c.UsersAccount) {
		errs = append(errs, errors.New("users account is not an account public key"))
	}
	if len(c.SigningKeys) == 0 {
		errs = append(errs, errors.New("at least one signing key is required"))
	}
	for _, k := range c.SigningKeys {
		if !nkeys.IsValidPublicAccountKey(k) {
			errs = append(errs, fmt.Errorf("signing key %q is not an account public key", k))
		}
	}
	if c.Workers < 0 || c.QueueLen < 0 {
		errs = append(errs, errors.New("workers and queue length must not be negative"))
	}
	return errors.Join(errs...)
}

// Service is a running micro service.
type Service struct {
	nc    *nats.Conn
	cfg   Config
	h     Handler
	trust trust
	log   *slog.Logger
	jobs  chan *job
	stats map[string]*endpointStats

	mu       sync.RWMutex // guards closed against inflight.Add
	closed   bool
	inflight sync.WaitGroup
	workers  sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
	unreg    func() bool

	svcMu   sync.Mutex    // guards svc and stopped
	svc     micro.Service // nil while withdrawn from the queue group
	stopped bool

	// serverPublished counts the messages dropped as published by the
	// server itself; serverPublishedLog lets one line about them through
	// per serverPublishedLogInterval.
	serverPublished    atomic.Int64
	serverPublishedLog logsample.Sampler
}

// endpointStats are reported in micro's stats `data`.
type endpointStats struct {
	Errors          atomic.Int64
	RateLimited     atomic.Int64
	ServerPublished atomic.Int64
}

// EndpointData is the `data` of each endpoint in `nats micro stats`.
type EndpointData struct {
	// Errors counts error replies, RateLimited those refused because the
	// queue was full; QueueDepth is the number of requests waiting.
	Errors      int64 `json:"errors"`
	RateLimited int64 `json:"rate_limited"`
	QueueDepth  int   `json:"queue_depth"`
	// ServerPublished counts the messages the NATS server published to the
	// endpoint itself, by one of its internal clients (a message-trace event
	// whose Nats-Trace-Dest a user set to the route subject, for instance):
	// they name no user, and are dropped unanswered, never handled nor
	// audited.
	ServerPublished int64 `json:"server_published"`
}

// job is one request waiting for a worker; pooled.
type job struct {
	subject, reply string
	data           []byte
	hdr            nats.Header
	received       time.Time
	stats          *endpointStats
	req            broker.Request
}

var jobPool = sync.Pool{New: func() any { return new(job) }}

// out is a reply being written; pooled so the hot path reuses the envelope
// buffer, the message and its header map.
type out struct {
	buf  []byte
	msg  nats.Msg
	vals [3]string
}

var outPool = sync.Pool{New: func() any { return &out{buf: make([]byte, 0, 1024), msg: nats.Msg{Header: nats.Header{}}} }}

// Start registers the micro service on nc, a connection of the broker
// account's service user, with one endpoint per subject, and starts the
// workers. The service stops when ctx ends or Stop is called; ctx is also
// the parent of every Handle call, without its cancellation.
func Start(ctx context.Context, nc *nats.Conn, cfg Config, h Handler) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("natsvc: %w", err)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 16
	}
	if cfg.QueueLen == 0 {
		cfg.QueueLen = 1024
	}
	if cfg.QueueGroup == "" {
		cfg.QueueGroup = "sqlgate"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		nc: nc, h: h, log: cfg.Logger,
		trust: trust{account: cfg.UsersAccount, signingKeys: make(map[string]struct{}, len(cfg.SigningKeys)), cache: newCallerCache()},
		jobs:  make(chan *job, cfg.QueueLen),
		stats: make(map[string]*endpointStats, len(cfg.Subjects)),
	}
	for _, k := range cfg.SigningKeys {
		s.trust.signingKeys[k] = struct{}{}
	}
	for _, subj := range cfg.Subjects {
		s.stats[subj] = &endpointStats{}
	}
	s.cfg = cfg
	// A request that was accepted is answered as if the instance kept
	// running, even when ctx ends (shutdown): cancelling it midway would turn
	// it into a refusal. Each call is bounded by its route's timeout (three
	// of them with batch: the batch ahead, its batch, then alone).
	hctx := context.WithoutCancel(ctx)
	for range cfg.Workers {
		s.workers.Go(func() { s.work(hctx) })
	}
	svc, err := s.register()
	if err != nil {
		_ = s.Stop()
		return nil, err
	}
	s.svc = svc
	s.unreg = context.AfterFunc(ctx, func() { _ = s.Stop() })
	return s, nil
}

// register adds the micro service with one endpoint per subject, in the
// queue group, and waits until the server has its subscriptions: requests
// sent once it returns find a responder.
func (s *Service) register() (micro.Service, error) {
	cfg := s.cfg
	svc, err := micro.AddService(s.nc, micro.Config{
		Name:        cfg.Name,
		Version:     cfg.Version,
		Description: cfg.Description,
		QueueGroup:  cfg.QueueGroup,
		StatsHandler: func(e *micro.Endpoint) any {
			st := s.stats[e.Subject]
			if st == nil {
				return nil
			}
			return EndpointData{
				Errors: st.Errors.Load(), RateLimited: st.RateLimited.Load(), QueueDepth: len(s.jobs),
				ServerPublished: st.ServerPublished.Load(),
			}
		},
		ErrorHandler: func(_ micro.Service, e *micro.NATSError) {
			s.log.ErrorContext(context.Background(), "nats service error", slog.String("subject", e.Subject), slog.String("error", e.Description))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("natsvc: add service: %w", err)
	}
	names := make(map[string]bool, len(cfg.Subjects))
	for _, subj := range cfg.Subjects {
		name := endpointName(subj, names)
		st := s.stats[subj]
		err := svc.AddEndpoint(name, micro.HandlerFunc(func(r micro.Request) { s.accept(r, st) }),
			micro.WithEndpointSubject(subj))
		if err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("natsvc: add endpoint %q: %w", subj, err)
		}
	}
	if err := s.nc.FlushTimeout(10 * time.Second); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("natsvc: flush subscriptions: %w", err)
	}
	return svc, nil
}

// ErrStopped is returned by [Service.Rejoin] after [Service.Stop].
var ErrStopped = errors.New("natsvc: service stopped")

// Withdraw takes this instance out of the queue group: the endpoints
// unsubscribe (draining), so new requests go to the other instances, or,
// when no instance serves, their callers get NATS's no-responders status at
// once instead of a refusal from an instance that cannot serve. Requests
// already received are answered. The service is not listed by `nats micro`
// while withdrawn. It does nothing when already withdrawn.
func (s *Service) Withdraw() error {
	s.svcMu.Lock()
	defer s.svcMu.Unlock()
	if s.svc == nil {
		return nil
	}
	svc := s.svc
	s.svc = nil
	if err := svc.Stop(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("natsvc: withdraw: %w", err)
	}
	// Once the server has the unsubscriptions, no new request reaches this
	// instance; the ones it already sent are answered.
	if err := s.nc.FlushTimeout(10 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("natsvc: withdraw: flush: %w", err)
	}
	return nil
}

// Rejoin subscribes the endpoints again after [Service.Withdraw] (a new
// micro service instance, with a new id). It does nothing when serving and
// returns [ErrStopped] after Stop.
func (s *Service) Rejoin() error {
	s.svcMu.Lock()
	defer s.svcMu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	if s.svc != nil {
		return nil
	}
	svc, err := s.register()
	if err != nil {
		return err
	}
	s.svc = svc
	return nil
}

// Serving reports whether the endpoints are subscribed (not withdrawn, not
// stopped).
func (s *Service) Serving() bool {
	s.svcMu.Lock()
	defer s.svcMu.Unlock()
	return s.svc != nil
}

// endpointName derives a unique micro endpoint name (letters, digits, '-',
// '_') from a subject.
func endpointName(subject string, used map[string]bool) string {
	b := []byte(subject)
	for i, c := range b {
		if !nameByte(c) {
			b[i] = '_'
		}
	}
	name := string(b)
	for i := 2; used[name]; i++ {
		name = string(b) + "-" + strconv.Itoa(i)
	}
	used[name] = true
	return name
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// Stop drains the endpoints (no new requests reach this instance), waits for
// the queued and running requests to be answered, and stops the workers.
// Requests the client library still delivers after the drain are answered
// `unavailable` (retryable: idempotency keys make a retry safe).
func (s *Service) Stop() error {
	s.stopOnce.Do(func() {
		if s.unreg != nil {
			s.unreg()
		}
		s.svcMu.Lock()
		svc := s.svc
		s.svc, s.stopped = nil, true
		s.svcMu.Unlock()
		if svc != nil {
			if err := svc.Stop(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
				s.stopErr = fmt.Errorf("natsvc: stop: %w", err)
			}
		}
		if !s.nc.IsClosed() {
			_ = s.nc.FlushTimeout(5 * time.Second)
		}
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.inflight.Wait()
		close(s.jobs)
		s.workers.Wait()
	})
	return s.stopErr
}

// accept runs on micro's per-endpoint goroutine: it must not block.
func (s *Service) accept(r micro.Request, st *endpointStats) {
	if s.cfg.Admit != nil && !s.cfg.Admit() {
		return
	}
	now := time.Now()
	hdr := nats.Header(r.Headers())
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		s.refuse(r.Reply(), hdr, broker.CodeUnavailable, "service is stopping", st)
		return
	}
	s.inflight.Add(1)
	s.mu.RUnlock()
	j := jobPool.Get().(*job)
	*j = job{subject: r.Subject(), reply: r.Reply(), data: r.Data(), hdr: hdr, received: now, stats: st}
	select {
	case s.jobs <- j:
	default:
		s.inflight.Done()
		*j = job{}
		jobPool.Put(j)
		s.refuse(r.Reply(), hdr, broker.CodeRateLimited, "too many requests in flight", st)
	}
}

// refuse answers at the transport level, without the broker.
func (s *Service) refuse(reply string, hdr nats.Header, code, message string, st *endpointStats) {
	if code == broker.CodeRateLimited {
		st.RateLimited.Add(1)
	}
	st.Errors.Add(1)
	if reply == "" {
		return
	}
	corr, _ := oneHeader(hdr, HeaderCorrelationID)
	s.respond(context.Background(), reply, &broker.Reply{
		CorrelationID: broker.CorrelationID(corr), AuditIndex: -1,
		Error: &broker.ReplyError{Code: code, Message: message},
	})
}

func (s *Service) work(ctx context.Context) {
	for j := range s.jobs {
		s.serve(ctx, j)
		*j = job{}
		jobPool.Put(j)
		s.inflight.Done()
	}
}

func (s *Service) serve(ctx context.Context, j *job) {
	caller, serverKind := s.trust.cachedCaller(j.hdr[RequestInfoHeader])
	if serverKind != "" {
		s.dropServerPublished(ctx, j, serverKind)
		return
	}
	j.req = broker.Request{
		Subject:  j.subject,
		Payload:  j.data,
		Caller:   caller,
		Received: j.received,
	}
	req := &j.req
	problem := requestHeaders(req, j.hdr)
	req.CorrelationID = broker.CorrelationID(req.CorrelationID)
	var reply *broker.Reply
	if problem != "" {
		reply = invalidHeaders(req.CorrelationID, problem)
	} else {
		reply = s.handle(ctx, req)
	}
	if reply == nil {
		s.log.ErrorContext(ctx, "nats handler returned no reply", slog.String("subject", j.subject))
		reply = &broker.Reply{
			CorrelationID: req.CorrelationID, AuditIndex: -1,
			Error: &broker.ReplyError{Code: broker.CodeInternal, Message: "internal error"},
		}
	}
	if reply.CorrelationID == "" {
		reply.CorrelationID = req.CorrelationID
	}
	if !reply.OK {
		j.stats.Errors.Add(1)
	}
	if j.reply != "" {
		s.respond(ctx, j.reply, reply)
	}
	emit(ctx, s.nc, s.log, reply)
}

// serverPublishedLogInterval is the least time between two log lines about
// messages dropped as published by the server itself.
const serverPublishedLogInterval = time.Minute

// dropServerPublished drops a message that one of the NATS server's
// internal clients published (kind is its Nats-Request-Info `kind`): with
// message tracing, any user may have the server publish a trace event to a
// subject the user may publish to, and on a route subject it crosses the
// users import as a request of the users account's own client, naming no
// user. Answering it would have the broker refuse it as unauthenticated and
// audit a record naming nobody, once per publish, while the message that
// caused it never reaches sqlgated (Nats-Trace-Only). It is counted and,
// at most once per serverPublishedLogInterval, logged; nothing is answered
// and the handler never sees it.
func (s *Service) dropServerPublished(ctx context.Context, j *job, kind string) {
	j.stats.ServerPublished.Add(1)
	n := s.serverPublished.Add(1)
	if s.cfg.OnServerPublished != nil {
		s.cfg.OnServerPublished(kind)
	}
	if ok, _ := s.serverPublishedLog.Allow(time.Now(), serverPublishedLogInterval); !ok {
		return
	}
	s.log.WarnContext(ctx, "nats message published by the server itself dropped unanswered",
		slog.String("subject", j.subject), slog.String("kind", kind), slog.Int64("dropped_total", n))
}

// emit publishes a successful call's follow-up event, if it has one, with
// the headers that tell it from a reply published on the same subject
// (HeaderEvent, which no reply carries), its id as Nats-Msg-Id and the
// call's Correlation-Id.
func emit(ctx context.Context, nc *nats.Conn, log *slog.Logger, r *broker.Reply) {
	if !r.OK || r.Emit == nil || r.Emit.Subject == "" {
		return
	}
	ev := r.Emit
	if ev.Route == "" {
		// Without the header consumers drop it as forged: a bug, not an
		// event.
		log.ErrorContext(ctx, "nats emit without a route not published", slog.String("subject", ev.Subject))
		return
	}
	m := &nats.Msg{Subject: ev.Subject, Data: ev.Data, Header: nats.Header{HeaderEvent: []string{headerValue(ev.Route)}}}
	if ev.ID != "" {
		m.Header[HeaderMsgID] = []string{headerValue(ev.ID)}
	}
	if ev.CorrelationID != "" {
		m.Header[HeaderCorrelationID] = []string{headerValue(ev.CorrelationID)}
	}
	if err := nc.PublishMsg(m); err != nil {
		log.ErrorContext(ctx, "nats emit not published", slog.String("subject", ev.Subject), slog.String("error", err.Error()))
	}
}

// handle calls the handler; a panic is logged (without the payload) and
// answered as an internal error instead of taking the process down.
func (s *Service) handle(ctx context.Context, req *broker.Request) (reply *broker.Reply) {
	defer func() {
		if p := recover(); p != nil {
			s.log.ErrorContext(ctx, "nats handler panicked", slog.String("subject", req.Subject), slog.Any("panic", p))
			reply = nil
		}
	}()
	return s.h.Handle(ctx, req)
}

// respond publishes the envelope, echoing the correlation id and, on
// errors, micro's Nats-Service-Error / Nats-Service-Error-Code headers.
func (s *Service) respond(ctx context.Context, subject string, r *broker.Reply) {
	respond(ctx, s.nc, s.log, subject, r)
}

func respond(ctx context.Context, nc *nats.Conn, log *slog.Logger, subject string, r *broker.Reply) {
	o := outPool.Get().(*out)
	err := o.publish(nc, subject, r)
	if errors.Is(err, nats.ErrMaxPayload) && !r.OK {
		// The message or the reasons made the error reply longer than the
		// server takes: the caller still gets the envelope, with its code.
		short := *r
		short.Result, short.Error = nil, &broker.ReplyError{Code: broker.CodeInternal, Message: errorTooLong}
		if r.Error != nil && r.Error.Code != "" {
			short.Error.Code = r.Error.Code
		}
		log.WarnContext(ctx, "nats error reply too large; sent with a short message", slog.String("code", short.Error.Code),
			slog.Int("bytes", len(o.buf)), slog.String("correlation_id", r.CorrelationID))
		err = o.publish(nc, subject, &short)
	}
	if errors.Is(err, nats.ErrMaxPayload) && r.OK {
		// The call ran, but its result does not fit: the caller learns so,
		// with the transaction, instead of waiting for a reply that never
		// comes (and a retry replays the same oversized result).
		log.WarnContext(ctx, "nats result too large for max_payload; answered too_large", slog.Int("bytes", len(o.buf)),
			slog.String("correlation_id", r.CorrelationID), slog.String("sql_transaction_id", r.SQLTransactionID))
		short := broker.Reply{CorrelationID: r.CorrelationID, AuditIndex: r.AuditIndex, Error: &broker.ReplyError{
			Code: broker.CodeTooLarge, Message: resultTooLarge(len(o.buf), r.SQLTransactionID),
		}}
		err = o.publish(nc, subject, &short)
	}
	if err != nil {
		log.WarnContext(ctx, "nats reply not sent", slog.String("error", err.Error()))
	}
	o.msg.Data, o.msg.Subject, o.vals = nil, "", [3]string{}
	if cap(o.buf) <= 64<<10 {
		outPool.Put(o)
	}
}

// resultTooLarge is the message of an ok reply of n bytes that the NATS
// server would not take: the call ran (in transaction txid, when known).
func resultTooLarge(n int, txid string) string {
	ran := "the call ran"
	if txid != "" {
		ran += " in SQL transaction " + txid
	}
	return ran + ", but its reply (" + strconv.Itoa(n) + " bytes) is more than the NATS server's max_payload: " +
		"a retry with the same Idempotency-Key gets this answer again; ask for fewer rows or columns"
}

// errorTooLong replaces an error reply's message when the reply would
// exceed the NATS server's max_payload.
const errorTooLong = "the error's message and reasons are too long for the NATS server's max_payload and were left out"

// publish encodes r into o and publishes it on subject. The headers are
// set here and nowhere else, none copied from the request: a reply never
// carries HeaderEvent, whatever the request had.
func (o *out) publish(nc *nats.Conn, subject string, r *broker.Reply) error {
	o.buf = r.AppendJSON(o.buf[:0])
	clear(o.msg.Header)
	o.msg.Subject, o.msg.Data = subject, o.buf
	if r.CorrelationID != "" {
		o.vals[0] = headerValue(r.CorrelationID)
		o.msg.Header[HeaderCorrelationID] = o.vals[0:1:1]
	}
	if !r.OK {
		code, desc := broker.CodeInternal, "internal error"
		if r.Error != nil {
			code, desc = r.Error.Code, r.Error.Message
			if desc == "" {
				desc = code
			}
		}
		o.vals[1], o.vals[2] = headerValue(desc), strconv.Itoa(broker.Status(code))
		o.msg.Header[micro.ErrorHeader] = o.vals[1:2:2]
		o.msg.Header[micro.ErrorCodeHeader] = o.vals[2:3:3]
	}
	return nc.PublishMsg(&o.msg)
}

// requestHeaders sets req's CorrelationID, IdempotencyKey (Idempotency-Key,
// else Nats-Msg-Id), Traceparent and Reason from h and returns why the
// request is invalid, or "". Clients differ in header case, so every case
// variant of a name is that name, and a name may come more than once: one
// value given several times is that value, but different values are never
// chosen between (a map loop would pick one at random, and two deliveries of
// one message could run under two idempotency keys). Different values of
// the idempotency key in use or of Sqlgate-Reason (which policy decides on)
// make the request invalid; different correlation ids or traceparents are
// left empty, as if none was sent (the transport then generates the
// correlation id, as for an invalid one).
func requestHeaders(req *broker.Request, h nats.Header) (problem string) {
	req.CorrelationID, _ = oneHeader(h, HeaderCorrelationID)
	req.Traceparent, _ = oneHeader(h, HeaderTraceparent)
	var ok bool
	if req.IdempotencyKey, ok = oneHeader(h, HeaderIdempotencyKey); !ok {
		return repeated(HeaderIdempotencyKey)
	}
	if req.IdempotencyKey == "" {
		var msgID string
		if msgID, ok = oneHeader(h, HeaderMsgID); !ok {
			return repeated(HeaderMsgID)
		}
		req.IdempotencyKey = msgIDKey(msgID)
	}
	if req.Reason, ok = oneHeader(h, HeaderReason); !ok {
		return repeated(HeaderReason)
	}
	return ""
}

// msgIDKeyPrefix starts the idempotency key derived from a Nats-Msg-Id that
// is not a valid key itself.
const msgIDKeyPrefix = "nats-msg-id-sha256-"

// msgIDKey returns the idempotency key of a message whose sender set no
// Idempotency-Key: its Nats-Msg-Id as it is when that is a valid key (1 to
// 256 printable ASCII characters without spaces; so keys stored before
// stay the same), else msgIDKeyPrefix and the hex SHA-256 of the id, so
// that a redelivery, or a message sent again with the same id, has the
// same key ("" for none). The broker would refuse an invalid key as
// invalid_request, about a header the sender never set.
func msgIDKey(msgID string) string {
	if msgID == "" || header.Valid(msgID, header.MaxIdempotencyKey) {
		return msgID
	}
	sum := sha256.Sum256([]byte(msgID))
	return msgIDKeyPrefix + hex.EncodeToString(sum[:])
}

func repeated(name string) string {
	return name + " given more than once with different values (header names are case-insensitive)"
}

// invalidHeaders is the reply to a request whose headers requestHeaders
// refused; nothing else of it was looked at.
func invalidHeaders(correlationID, problem string) *broker.Reply {
	return &broker.Reply{
		CorrelationID: correlationID, AuditIndex: -1,
		Error: &broker.ReplyError{Code: broker.CodeInvalidRequest, Message: problem},
	}
}

// oneHeader returns the value of key in h, in any case and however often it
// is given, as long as it is one value; ok is false, and v "", when there
// are different values. The result does not depend on the map's order.
func oneHeader(h nats.Header, key string) (v string, ok bool) {
	found := false
	for k, vals := range h {
		if !strings.EqualFold(k, key) {
			continue
		}
		for _, x := range vals {
			switch {
			case !found:
				v, found = x, true
			case x != v:
				return "", false
			}
		}
	}
	return v, true
}

// headerValue makes s safe as a header value (no CR or LF).
func headerValue(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
