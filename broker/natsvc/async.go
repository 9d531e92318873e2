package natsvc

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/internal/logsample"
)

// Defaults of [AsyncConfig].
const (
	DefaultAsyncStream  = "SQLGATE_ASYNC"
	DefaultAsyncDurable = "sqlgated"
	// DefaultMaxDeliver bounds the deliveries of a message that failed
	// with an internal error ([AsyncConfig.MaxDeliver]).
	DefaultMaxDeliver = 5
	// DefaultAsyncMaxAge is how long a request the database or the audit
	// log could not take is retried, from the time the stream stored it
	// ([AsyncConfig.MaxAge]): long enough to outlast an outage of a night
	// or a weekend day.
	DefaultAsyncMaxAge = 24 * time.Hour
	// MaxRetryDelay caps the back-off between the attempts of a request the
	// database or the audit log could not take (1 s, 2 s, 4 s, ... 1 min).
	MaxRetryDelay = time.Minute
	// DuplicateWindow is how long the stream drops a message whose
	// Nats-Msg-Id it has seen: the server's minimum. The stream's window is
	// shared by every user, so a long one would let a user who knows another
	// user's message id have that message dropped; exactly-once comes from
	// the idempotency record in the target database, kept per principal.
	DuplicateWindow = 100 * time.Millisecond
	// DefaultAsyncMaxBytes caps the stream's size: past it, publishes are
	// refused until the brokers have worked through the backlog.
	DefaultAsyncMaxBytes = 1 << 30
	// DefaultAsyncMaxPerSubject caps the requests waiting on one subject,
	// that is for one user key and one route: a user who floods a route is
	// refused (the publish's acknowledgement is an error) while the others
	// keep their share of the stream.
	DefaultAsyncMaxPerSubject = 10000
	// MaxAsyncReplicas is the most replicas a JetStream stream can have.
	MaxAsyncReplicas = 5
	// DefaultClusterAsyncReplicas is how many replicas the stream gets by
	// default when the NATS server is part of a cluster
	// ([AsyncConfig.Replicas]): it survives the loss of one server.
	DefaultClusterAsyncReplicas = 3
	// DefaultStreamCheckInterval is how often the consumer asks the server
	// for the stream and the consumer ([AsyncConfig.StreamCheckInterval]).
	DefaultStreamCheckInterval = 10 * time.Second
)

// AsyncConfig configures the consumer of durable async requests.
type AsyncConfig struct {
	// Stream and Durable name the JetStream stream that captures
	// `sqlgate.async.>` in the broker account and the durable pull consumer
	// every sqlgated instance shares (defaults DefaultAsyncStream,
	// DefaultAsyncDurable).
	Stream, Durable string
	// Subjects are the async routes' subjects. A message for another
	// route subject is returned to the stream for an instance that serves
	// it (a rolling deploy that adds an async route), until it is MaxAge
	// old: then it is answered not_found and given up. A message whose
	// subject is no async subject at all is dropped, unanswered.
	Subjects []string
	// UsersAccount is the users account's public key.
	UsersAccount string
	// Workers handle messages concurrently (0: 16).
	Workers int
	// AckWait is how long a delivered message may go without word from
	// the instance that holds it before JetStream delivers it again. The
	// instance renews it (InProgress) while the message waits for a
	// worker and while its call runs, every AckWait/3, so only the wait
	// in the fetch's buffer, before the instance sees the message, goes
	// unrenewed: that buffer holds at most Workers messages, so the wait
	// is at most about one call. AckWait must exceed the longest a call
	// can take: its route's timeout, three times that on a route with
	// batch (the wait for the batch ahead, the batch, the call alone
	// after a failed batch), plus up to 5 s to ask the database whether a
	// failed call committed, and the audit writes (0: 1 min). It is also
	// how long the messages of an instance that died wait before another
	// instance gets them.
	AckWait time.Duration
	// StuckAfter bounds the renewals of a message's ack wait: a call still
	// running StuckAfter after it began (a driver that ignores its
	// context) is taken as stuck, an error is logged, and its message is
	// no longer renewed, so that JetStream delivers it again after the ack
	// wait, to this instance or another (the idempotency key makes that
	// safe); a message that waited that long for a worker (every worker
	// stuck) goes back to the stream at once. It must exceed the longest a
	// call can take, as AckWait must (0: 2 x AckWait).
	StuckAfter time.Duration
	// MaxAge bounds how long a request the database or the audit log could
	// not take (`unavailable`) is retried: an attempt that fails so when the
	// message has been in the stream for MaxAge or longer is its last (0:
	// DefaultAsyncMaxAge). Attempts back off from 1 s to MaxRetryDelay.
	// Deliveries do not count: an outage of any length up to MaxAge loses
	// nothing.
	MaxAge time.Duration
	// MaxDeliver bounds the deliveries of a message whose attempt failed
	// with an internal error (a fault of sqlgated, which a retry rarely
	// cures; 0: DefaultMaxDeliver), or ran into its timeout: the attempt on
	// the MaxDeliver-th delivery is its last. Every delivery counts, also
	// those that met an outage. The consumer's own delivery limit is only a
	// backstop far above it (backstopDeliveries).
	MaxDeliver int
	// MaxPayload caps the stream's message size in bytes (0: the server's).
	MaxPayload int32
	// MaxBytes caps the stream's size in bytes (0: DefaultAsyncMaxBytes)
	// and MaxPerSubject the requests waiting on one subject, per user key
	// and route (0: DefaultAsyncMaxPerSubject). A publish beyond either is
	// refused (discard new), never a waiting request dropped.
	MaxBytes      int64
	MaxPerSubject int64
	// Replicas is how many NATS servers keep the stream (1 to
	// MaxAsyncReplicas). 0 sizes it: 1 when the server sqlgated is connected
	// to is not part of a cluster, else DefaultClusterAsyncReplicas, fewer if
	// the cluster cannot place that many now (a warning says so; a later
	// start scales it up), and never fewer than an existing stream has. A
	// set value is applied exactly, also to an existing stream (a scale up
	// or down, which the server carries out in the background), or the
	// start fails: a single server refuses more than 1.
	Replicas int
	// StreamCheckInterval is how often the stream and the consumer are
	// asked for ([Async.CheckStream]; 0: DefaultStreamCheckInterval).
	StreamCheckInterval time.Duration
	// OnStreamHealth, if set, is called with the result of every check of
	// the stream and the consumer (nil: both answer) and with the errors of
	// the fetch that mean they do not (missed heartbeats, no responders,
	// the consumer deleted), e.g. to set a gauge. It is called with nil
	// once StartAsync has created them.
	OnStreamHealth func(err error)
	// OnSettle, if set, is called once per delivery with how it was settled
	// (one of the Settled* values), e.g. to count them.
	OnSettle func(settled string)
	// Admit, if set, is asked first for every message fetched; a message it
	// refuses is neither handled nor settled: JetStream delivers it again
	// after AckWait, to this instance or another (sqlgated admits only what
	// a NATS server it accepts delivered). It must be cheap and safe for
	// concurrent use.
	Admit func() bool
	// Logger receives operational messages (nil: discard).
	Logger *slog.Logger

	// now and retryDelay replace the clock and the back-off in tests,
	// otherRouteDelay the delay of a message for a route the instance
	// does not serve, and sweepAfter the wait before a stream check gives
	// up a message past the delivery limit (sweepAfter).
	now             func() time.Time
	retryDelay      func(delivered uint64) time.Duration
	otherRouteDelay func(delivered uint64) time.Duration
	sweepAfter      time.Duration
}

// How a delivered message was settled ([AsyncConfig.OnSettle]).
const (
	// SettledOK: the call succeeded (or replayed); acknowledged.
	SettledOK = "ok"
	// SettledFinal: a final answer other than success (refused, invalid, a
	// database error); acknowledged, and in the audit log.
	SettledFinal = "final"
	// SettledRetry: the database or the audit log could not take it; it is
	// delivered again later.
	SettledRetry = "retry"
	// SettledGaveUp: still unavailable when the message reached its
	// maximum age (or an internal error on its last delivery);
	// acknowledged, answered, the last attempt is in the audit log. Also
	// a message for a route no instance served until its maximum age
	// (answered not_found, never decided nor audited), and one that no
	// attempt settled within the consumer's delivery limit (deleted from
	// the stream and answered internal; see backstopDeliveries). Alert on
	// this.
	SettledGaveUp = "gave_up"
	// SettledDropped: not an async subject (or unreadable); removed from
	// the stream without running.
	SettledDropped = "dropped"
	// SettledReturned: fetched while the instance was stopping or paused
	// and returned to the stream unhandled, for immediate redelivery (to
	// another instance, or to this one once it fetches again); or fetched
	// for a route the instance does not serve, returned after a delay for
	// an instance that does.
	SettledReturned = "returned"
)

// Async consumes durable async requests: messages published by users to
// `sqlgate.async.<user key>.<route subject>` ([broker.AsyncPrefix]) and kept
// by a work-queue stream until a worker acknowledged them. Each is handled
// like a request/reply call (identity from the subject, decision, intent,
// one transaction, outcome), with the idempotency key of its
// `Idempotency-Key` header, else its `Nats-Msg-Id`, else one derived from
// its place in the stream, so a redelivery never executes twice. There is
// no reply on the publish itself: the publisher gets the stream's
// acknowledgement. A message with a `Sqlgate-Reply-To: <token>` header gets
// its final reply envelope on `sqlgate.reply.<user key>.<token>`
// ([broker.ReplyPrefix]); the route's emit event follows a commit, and a
// synchronous call with the same Idempotency-Key returns the stored result.
type Async struct {
	nc        *nats.Conn
	h         Handler
	log       *slog.Logger
	cfg       AsyncConfig
	js        jetstream.JetStream
	clustered bool
	routes    map[string]bool
	// gen is the stream the keys of messages without an idempotency key
	// are derived from; it changes when the stream was recreated.
	gen  atomic.Pointer[streamGen]
	hctx context.Context
	// msgs hands fetched messages to the workers; it is unbuffered, so that
	// a message waits for a worker in the fetch's callback, which renews
	// its ack wait (hold), rather than unseen in a channel.
	msgs     chan fetched
	workers  sync.WaitGroup
	stopOnce sync.Once
	// pastLimit receives the server's advisories of messages past the
	// consumer's delivery limit (giveUpPastLimit), one at a time;
	// pastLimitDone is closed once it is closed and its last handler has
	// returned. otherRouteLog samples the log lines about messages for
	// routes the instance does not serve.
	pastLimit     *nats.Subscription
	pastLimitDone chan struct{}
	otherRouteLog logsample.Sampler

	// repairMu serializes the checks (CheckStream), which recreate the
	// stream or the consumer when they are gone. stream is read and
	// replaced under it; cons is replaced under it and a.mu, and read
	// under either.
	repairMu sync.Mutex
	// missingAt is when a check first found the stream gone (zero: found).
	missingAt time.Time
	// givenUp holds the stream sequences of the messages the last check
	// found given up by the consumer, and when a check first found each
	// so (sweep).
	givenUp map[uint64]time.Time
	stream  jetstream.Stream
	cons    jetstream.Consumer
	// recheck asks the checker for a check now (the fetch reported the
	// consumer gone).
	recheck chan struct{}

	// mu orders Pause, Resume and Stop. cc is the current fetch (nil while
	// paused or stopped) and halt its channel, closed when it ends, so that
	// its callback returns what it still holds instead of waiting for a
	// worker. consuming waits for every fetch to have ended.
	mu        sync.Mutex
	cc        jetstream.ConsumeContext
	halt      chan struct{}
	consuming sync.WaitGroup
	// stopping is set when Stop begins and paused while the instance does
	// not fetch (Pause): messages not yet started go back to the stream at
	// once (Nak), for this or another instance (putBack).
	stopping atomic.Bool
	paused   atomic.Bool

	// checker runs checkStreams until stopChecks; healthMu guards
	// streamErr, the last reported problem of the stream or consumer.
	checker    sync.WaitGroup
	stopChecks context.CancelFunc
	healthMu   sync.Mutex
	streamErr  error
}

// Validate reports every problem of c at once.
func (c *AsyncConfig) Validate() error {
	var errs []error
	if len(c.Subjects) == 0 {
		errs = append(errs, errors.New("at least one async subject is required"))
	}
	for _, s := range c.Subjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n*>") {
			errs = append(errs, fmt.Errorf("invalid subject %q", s))
		}
	}
	if !nkeys.IsValidPublicAccountKey(c.UsersAccount) {
		errs = append(errs, errors.New("users account is not an account public key"))
	}
	if c.Workers < 0 || c.AckWait < 0 || c.StuckAfter < 0 || c.MaxAge < 0 || c.MaxDeliver < 0 || c.MaxPayload < 0 || c.MaxBytes < 0 ||
		c.MaxPerSubject < 0 || c.StreamCheckInterval < 0 {
		errs = append(errs, errors.New("workers, ack wait, stuck after, max age, max deliver, max payload, max bytes, max per subject and stream check interval must not be negative"))
	}
	if c.Replicas < 0 || c.Replicas > MaxAsyncReplicas {
		errs = append(errs, fmt.Errorf("replicas must be 1 to %d (0: sized by the server's cluster), not %d", MaxAsyncReplicas, c.Replicas))
	}
	return errors.Join(errs...)
}

// setDefaults fills the fields left unset with their defaults.
func (c *AsyncConfig) setDefaults() {
	if c.Stream == "" {
		c.Stream = DefaultAsyncStream
	}
	if c.Durable == "" {
		c.Durable = DefaultAsyncDurable
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	if c.AckWait == 0 {
		c.AckWait = time.Minute
	}
	if c.StuckAfter == 0 {
		c.StuckAfter = 2 * c.AckWait
	}
	if c.sweepAfter == 0 {
		c.sweepAfter = sweepAfter
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultAsyncMaxAge
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.retryDelay == nil {
		c.retryDelay = jitteredRetryDelay
	}
	if c.otherRouteDelay == nil {
		c.otherRouteDelay = otherRouteDelay
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultAsyncMaxBytes
	}
	if c.MaxPerSubject == 0 {
		c.MaxPerSubject = DefaultAsyncMaxPerSubject
	}
	if c.StreamCheckInterval == 0 {
		c.StreamCheckInterval = DefaultStreamCheckInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// StartAsync creates (or updates) the stream and the durable consumer on nc,
// a connection of the broker account, and starts consuming. It stops when
// ctx ends or Stop is called; ctx is also the parent of every Handle call,
// without its cancellation. A stream created by an older version without
// limits is updated to them, except a per-subject limit that a subject's
// backlog already exceeds: that one is applied at a later start, once the
// backlog has drained, and a warning says so (the server would enforce it
// by deleting waiting requests). The stream's replicas follow
// [AsyncConfig.Replicas], also for an existing stream; the consumer's follow
// the stream's (the server keeps a work queue's consumers on the stream's
// servers). The stream and the consumer are checked every
// StreamCheckInterval ([Async.CheckStream]).
func StartAsync(ctx context.Context, nc *nats.Conn, cfg AsyncConfig, h Handler) (*Async, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("natsvc async: %w", err)
	}
	cfg.setDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("natsvc async: %w", err)
	}
	sc := streamConfig(cfg)
	existing, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		existing = nil
	} else if err != nil {
		return nil, fmt.Errorf("natsvc async: stream %s: %w", cfg.Stream, err)
	}
	if err := keepBacklog(ctx, existing, &sc, cfg.Logger); err != nil {
		return nil, fmt.Errorf("natsvc async: stream %s: %w", cfg.Stream, err)
	}
	cluster := nc.ConnectedClusterName()
	var floor int
	sc.Replicas, floor = streamReplicas(cfg.Replicas, cluster != "", existing)
	if existing != nil && existing.CachedInfo().Config.Replicas > sc.Replicas {
		cfg.Logger.WarnContext(ctx, "async stream: scaling down to the configured replicas; fewer NATS servers keep the queued requests",
			slog.String("stream", cfg.Stream), slog.Int("replicas", sc.Replicas), slog.Int("current_replicas", existing.CachedInfo().Config.Replicas))
	}
	stream, err := createStream(ctx, js, sc, floor, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("natsvc async: stream %s: %w", cfg.Stream, err)
	}
	replicas := stream.CachedInfo().Config.Replicas
	cfg.Logger.InfoContext(ctx, "async stream", slog.String("stream", cfg.Stream), slog.Int("replicas", replicas), slog.String("nats_cluster", cluster))
	if cluster != "" && replicas < 2 {
		cfg.Logger.WarnContext(ctx, "the async stream has a single replica in a NATS cluster: while its server is down async publishes are refused "+
			"and queued requests wait, and losing its disk loses them; give it replicas (nats.asyncReplicas: 3)",
			slog.String("stream", cfg.Stream), slog.String("nats_cluster", cluster))
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, consumerConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("natsvc async: consumer %s: %w", cfg.Durable, err)
	}
	a := &Async{
		nc: nc, h: h, log: cfg.Logger, cfg: cfg, js: js, clustered: cluster != "", routes: make(map[string]bool, len(cfg.Subjects)),
		stream: stream, cons: cons, msgs: make(chan fetched), recheck: make(chan struct{}, 1),
	}
	a.gen.Store(newStreamGen(stream.CachedInfo().Created))
	for _, s := range cfg.Subjects {
		a.routes[s] = true
	}
	// A call that has started runs to its end even when ctx ends (shutdown):
	// cancelling it midway would turn a durable request into a refusal.
	a.hctx = context.WithoutCancel(ctx)
	for range cfg.Workers {
		a.workers.Go(func() {
			for f := range a.msgs {
				if a.stopping.Load() || a.paused.Load() {
					a.putBack(a.hctx, f.m)
					continue
				}
				a.serve(a.hctx, f.m, f.gen)
			}
		})
	}
	// Subscribed before the first fetch: the server advises a message past
	// the delivery limit once, when it would deliver it again.
	a.pastLimit, err = nc.QueueSubscribe(pastLimitSubject(cfg), cfg.Durable, a.giveUpPastLimit)
	if err != nil {
		close(a.msgs)
		a.workers.Wait()
		return nil, fmt.Errorf("natsvc async: subscribe to delivery limit advisories: %w", err)
	}
	// Called when the subscription's goroutine ends: after the handler of
	// the last advisory it received has returned.
	a.pastLimitDone = make(chan struct{})
	a.pastLimit.SetClosedHandler(func(string) { close(a.pastLimitDone) })
	if err := a.consume(); err != nil {
		_ = a.pastLimit.Unsubscribe()
		close(a.msgs)
		a.workers.Wait()
		return nil, err
	}
	a.reportStream(nil) // both were just created or updated
	var checkCtx context.Context
	checkCtx, a.stopChecks = context.WithCancel(a.hctx)
	a.checker.Go(func() { a.checkStreams(checkCtx) })
	context.AfterFunc(ctx, func() { _ = a.Stop() })
	return a, nil
}

// streamConfig is the stream's configuration, before keepBacklog and
// streamReplicas adjust it.
func streamConfig(cfg AsyncConfig) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:                 cfg.Stream,
		Description:          "sqlgate durable async requests, until a broker has handled them",
		Subjects:             []string{broker.AsyncSubjects},
		Retention:            jetstream.WorkQueuePolicy,
		Storage:              jetstream.FileStorage,
		Duplicates:           DuplicateWindow,
		MaxMsgSize:           cfg.MaxPayload,
		MaxBytes:             cfg.MaxBytes,
		MaxMsgsPerSubject:    cfg.MaxPerSubject,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
	}
}

// consumerConfig is the durable consumer's configuration.
//
// The consumer delivers a message until a broker settles it: which
// failures end a request, and when, is decided here (serve), by the
// message's age or, for internal errors and timeouts, its deliveries.
// The server's own delivery limit is only a backstop (backstopDeliveries)
// for a message that never gets that far (one that kills the process):
// a consumer created by an older version with a limit of 5 is updated
// (the limit is editable). No limit on acks pending: a message waiting
// for its retry stays pending, and with a cap, requests for a database
// that is down would hold back every other route's for up to MaxAge (the
// pull batch, Workers, bounds what an instance holds unstarted).
func consumerConfig(cfg AsyncConfig) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		Description:   "sqlgated instances",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    backstopDeliveries(cfg),
		MaxAckPending: -1,
	}
}

// streamGen is one incarnation of the stream: id, derived from its
// creation time, makes the keys derived from stream sequences unique, since
// a recreated stream starts its sequence again.
type streamGen struct {
	id      string
	created time.Time
}

func newStreamGen(created time.Time) *streamGen {
	return &streamGen{id: "js" + strconv.FormatInt(created.UnixNano(), 36), created: created}
}

// fetched is a message and the stream it was fetched from as far as the
// instance knew when the fetch began.
type fetched struct {
	m   jetstream.Msg
	gen *streamGen
}

// streamReplicas returns the replicas to ask for and the fewest to settle
// for when the cluster cannot place them ([AsyncConfig.Replicas]).
func streamReplicas(configured int, clustered bool, existing jetstream.Stream) (want, floor int) {
	switch {
	case configured > 0:
		return configured, configured
	case !clustered:
		return 1, 1
	}
	current := 1
	if existing != nil {
		current = max(existing.CachedInfo().Config.Replicas, 1)
	}
	return max(DefaultClusterAsyncReplicas, current), current
}

// recreateAfter is the longest a gone stream waits for its recreation
// after a check found it gone (the check interval when shorter).
const recreateAfter = 2 * time.Second

// checkTimeout bounds one check of the stream and the consumer, whatever
// the check interval: the checks run one after another, and recreating a
// stream on a loaded server can take longer than a short interval (a bound
// of the interval made every recreation time out under load).
const checkTimeout = 5 * time.Second

// checkStreams checks the stream and the consumer every
// StreamCheckInterval, and at once when the fetch reports the consumer
// gone, until ctx ends.
func (a *Async) checkStreams(ctx context.Context) {
	t := time.NewTicker(a.cfg.StreamCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.recheck:
		}
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		_ = a.CheckStream(cctx)
		cancel()
	}
}

// CheckStream asks the server for the stream and the durable consumer and
// reports the result (nil: both answer, each with a leader in a cluster) to
// OnStreamHealth. While they do not answer, async publishes are refused or
// go unacknowledged and no queued request is fetched. A check that ctx
// ended is not reported.
//
// A stream or consumer that is gone (deleted by an operator, or the
// consumer with its stream) is recreated with the configuration StartAsync
// gives it, and the instance fetches from it again; so is a fetch the
// server ended while the consumer was recreated by another instance. Not
// while the instance is stopping or paused: the check reports the problem,
// and the first check after Resume repairs it. Instances that recreate at
// the same time all end up fetching from the one durable consumer (creating
// a stream or consumer that exists with the same configuration succeeds).
func (a *Async) CheckStream(ctx context.Context) error {
	err := a.checkStream(ctx)
	if ctx.Err() == nil {
		a.reportStream(err)
	}
	return err
}

func (a *Async) checkStream(ctx context.Context) error {
	a.repairMu.Lock()
	defer a.repairMu.Unlock()
	info, err := a.stream.Info(ctx)
	if errors.Is(err, jetstream.ErrStreamNotFound) && a.mayRepair() {
		// A stream is recreated by the first check at least a check
		// interval (at most recreateAfter) after one found it gone:
		// nats-server v2.15.3 finishes a deletion after answering it,
		// and a stream recreated at once was seen to store nothing
		// (publishes unanswered while its info answered).
		now := time.Now()
		if a.missingAt.IsZero() {
			a.missingAt = now
		}
		if now.Sub(a.missingAt) < min(a.cfg.StreamCheckInterval, recreateAfter) {
			return fmt.Errorf("stream %s: %w (recreated by a later check)", a.cfg.Stream, err)
		}
		if err := a.recreateStream(ctx); err != nil {
			return fmt.Errorf("stream %s: recreate: %w", a.cfg.Stream, err)
		}
		info, err = a.stream.Info(ctx)
	}
	if err == nil {
		a.missingAt = time.Time{}
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", a.cfg.Stream, err)
	}
	if c := info.Cluster; c != nil && c.Leader == "" {
		return fmt.Errorf("stream %s has no leader", a.cfg.Stream)
	}
	renewed := a.noteStream(info.Created)
	ci, err := a.cons.Info(ctx)
	recreated := false
	if errors.Is(err, jetstream.ErrConsumerNotFound) && a.mayRepair() {
		cons, cerr := a.stream.CreateOrUpdateConsumer(ctx, consumerConfig(a.cfg))
		if cerr != nil {
			return fmt.Errorf("consumer %s: recreate: %w", a.cfg.Durable, cerr)
		}
		a.mu.Lock()
		a.cons = cons
		a.mu.Unlock()
		recreated = true
		ci, err = cons.CachedInfo(), nil
	}
	if err != nil {
		return fmt.Errorf("consumer %s: %w", a.cfg.Durable, err)
	}
	if c := ci.Cluster; c != nil && c.Leader == "" {
		return fmt.Errorf("consumer %s has no leader", a.cfg.Durable)
	}
	if recreated {
		a.log.WarnContext(ctx, "async consumer recreated", slog.String("stream", a.cfg.Stream), slog.String("consumer", a.cfg.Durable))
	}
	switch {
	case recreated || renewed || info.State.Msgs == 0:
		a.givenUp = nil // sequences of another stream, or none
	case a.mayRepair():
		sctx, cancel := context.WithTimeout(ctx, sweepTimeout)
		a.sweep(sctx, info.State.FirstSeq, ci)
		cancel()
	}
	// A new stream or consumer: the current fetch (if the server has not
	// ended it) ends, and a new one begins, under the new stream's keys.
	if err := a.refetch(recreated || renewed); err != nil {
		return fmt.Errorf("consumer %s: %w", a.cfg.Durable, err)
	}
	return nil
}

// mayRepair reports whether the check may recreate the stream or the
// consumer: not while the instance is stopping or paused.
func (a *Async) mayRepair() bool { return !a.stopping.Load() && !a.paused.Load() }

// recreateStream creates the stream again, as StartAsync does; a.repairMu
// is held.
func (a *Async) recreateStream(ctx context.Context) error {
	sc := streamConfig(a.cfg)
	var floor int
	sc.Replicas, floor = streamReplicas(a.cfg.Replicas, a.clustered, nil)
	stream, err := createStream(ctx, a.js, sc, floor, a.log)
	if err != nil {
		return err
	}
	a.stream = stream
	a.log.WarnContext(ctx, "async stream recreated; the requests it held are lost", slog.String("stream", a.cfg.Stream),
		slog.Int("replicas", stream.CachedInfo().Config.Replicas))
	return nil
}

// noteStream records the stream's creation time; it reports whether it
// changed (the stream was recreated, by this instance or another).
func (a *Async) noteStream(created time.Time) bool {
	if a.gen.Load().created.Equal(created) {
		return false
	}
	a.gen.Store(newStreamGen(created))
	return true
}

// refetch fetches again when force is set or the server ended the fetch
// (the consumer was deleted); not while the instance is stopping or paused.
func (a *Async) refetch(force bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopping.Load() || a.paused.Load() {
		return nil
	}
	if !force && a.cc != nil {
		select {
		case <-a.cc.Closed():
		default:
			return nil // fetching
		}
	}
	a.endFetch()
	return a.consume()
}

// StreamError is the last reported problem of the stream or the consumer
// (nil: none).
func (a *Async) StreamError() error {
	a.healthMu.Lock()
	defer a.healthMu.Unlock()
	return a.streamErr
}

// reportStream records a check's result (or a fetch error that means the
// stream or the consumer is unreachable), logs a change and calls
// OnStreamHealth.
func (a *Async) reportStream(err error) {
	a.healthMu.Lock()
	defer a.healthMu.Unlock()
	switch was := a.streamErr; {
	case err != nil && was == nil:
		a.log.WarnContext(a.hctx, "async stream unreachable: async publishes are refused or unacknowledged, and queued requests wait",
			slog.String("stream", a.cfg.Stream), slog.String("error", err.Error()))
	case err == nil && was != nil:
		a.log.InfoContext(a.hctx, "async stream reachable again", slog.String("stream", a.cfg.Stream))
	}
	a.streamErr = err
	if a.cfg.OnStreamHealth != nil {
		a.cfg.OnStreamHealth(err)
	}
}

// unreachable reports whether an error of the fetch means the stream or the
// consumer does not answer (rather than a passing event such as a change of
// leader).
func unreachable(err error) bool {
	return errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound)
}

// fetchExpiry is how long one pull request of the fetch lasts; the server
// sends heartbeats at half of it. When the NATS server holding the
// consumer's leader is lost, the pull request goes with it: the fetch
// notices the missing heartbeats after fetchExpiry and pulls again from the
// new leader (nats.go's default, 30 s, would hold queued requests that
// long).
const fetchExpiry = 10 * time.Second

// consume starts fetching; a.mu is held (or a is not shared yet).
func (a *Async) consume() error {
	halt := make(chan struct{})
	gen := a.gen.Load()
	cc, err := a.cons.Consume(func(m jetstream.Msg) {
		if a.cfg.Admit != nil && !a.cfg.Admit() {
			return // not settled: a return would be delivered again at once, to the same server
		}
		if a.stopping.Load() || a.paused.Load() {
			a.putBack(a.hctx, m)
			return
		}
		a.hold(fetched{m, gen}, halt)
	},
		// The fetch's buffer holds at most Workers messages: a message
		// waits there, its ack wait running unrenewed, for at most about
		// one call (AckWait).
		jetstream.PullMaxMessages(a.cfg.Workers), jetstream.PullExpiry(fetchExpiry),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			a.log.WarnContext(a.hctx, "async consumer", slog.String("error", err.Error()))
			if unreachable(err) {
				a.reportStream(fmt.Errorf("consumer %s: %w", a.cfg.Durable, err))
			}
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				select { // the check recreates it
				case a.recheck <- struct{}{}:
				default:
				}
			}
		}))
	if err != nil {
		return fmt.Errorf("natsvc async: consume: %w", err)
	}
	a.cc, a.halt = cc, halt
	a.consuming.Go(func() { <-cc.Closed() })
	return nil
}

// hold hands a fetched message to a worker. While every worker is busy it
// waits here, and the instance renews its ack wait (InProgress) at once and
// every AckWait/3, so that JetStream does not deliver it again, here or to
// another instance, while it waits: the first renewal covers its wait in
// the fetch's buffer. It goes back to the stream if the fetch ends first,
// or when it has waited StuckAfter (every worker is stuck in a call).
func (a *Async) hold(f fetched, halt <-chan struct{}) {
	select {
	case a.msgs <- f:
		return
	case <-halt:
		a.putBack(a.hctx, f.m)
		return
	default:
	}
	_ = f.m.InProgress() // the connection is down: so is the renewal, and the ack wait decides
	t := time.NewTicker(a.renewEvery())
	defer t.Stop()
	stuck := time.NewTimer(a.cfg.StuckAfter)
	defer stuck.Stop()
	for {
		select {
		case a.msgs <- f:
			return
		case <-halt:
			a.putBack(a.hctx, f.m)
			return
		case <-t.C:
			_ = f.m.InProgress()
		case <-stuck.C:
			a.log.ErrorContext(a.hctx, "async message waited for a worker past the stuck bound, every call is stuck; returned for another instance",
				slog.String("subject", f.m.Subject()), slog.Duration("stuck_after", a.cfg.StuckAfter), slog.Int("workers", a.cfg.Workers))
			a.putBack(a.hctx, f.m)
			return
		}
	}
}

// inProgress renews m's ack wait now and every AckWait/3 while a worker
// handles req, until the returned stop is called or for StuckAfter: a call
// that runs longer is stuck (its route's timeout is long past), an error is
// logged once, and the ack wait has JetStream deliver the message again,
// to this instance or another, rather than never. stop returns once no
// renewal is sent any more, so that none follows the message's settlement
// (a renewal after a Nak with a delay would change when the message is
// delivered again).
func (a *Async) inProgress(ctx context.Context, m jetstream.Msg, req *broker.Request) (stop func()) {
	_ = m.InProgress()
	done := make(chan struct{})
	var renewing sync.WaitGroup
	renewing.Go(func() {
		t := time.NewTicker(a.renewEvery())
		defer t.Stop()
		stuck := time.NewTimer(a.cfg.StuckAfter)
		defer stuck.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = m.InProgress()
			case <-stuck.C:
				a.log.ErrorContext(ctx, "async call stuck past the stuck bound; its message is no longer renewed and is delivered again after the ack wait",
					slog.String("subject", req.Subject), slog.String("correlation_id", req.CorrelationID),
					slog.Duration("stuck_after", a.cfg.StuckAfter), slog.Duration("ack_wait", a.cfg.AckWait))
				return
			}
		}
	})
	return func() {
		close(done)
		renewing.Wait()
	}
}

// renewEvery is how often the ack wait of a message the instance holds is
// renewed: three times per ack wait.
func (a *Async) renewEvery() time.Duration {
	return max(a.cfg.AckWait/3, time.Millisecond)
}

// endFetch stops the current fetch, if any; a.mu is held. The messages it
// has received and not handed to a worker go back to the stream.
func (a *Async) endFetch() <-chan struct{} {
	if a.cc == nil {
		return nil
	}
	cc := a.cc
	close(a.halt)
	cc.Drain()
	a.cc, a.halt = nil, nil
	return cc.Closed()
}

// ErrPauseTimeout is returned by [Async.Pause] when the fetch it ended has
// not wound down within the wait; the consumer is paused all the same.
var ErrPauseTimeout = errors.New("natsvc async: paused, but the fetch has not ended yet")

// pauseWait bounds how long Pause waits for the server to have the end of
// the fetch (the NATS connection may be down too).
const pauseWait = 10 * time.Second

// Pause stops fetching while the instance cannot serve (its control
// database, audit log or policy is down), so that the requests wait in the
// stream, for another instance or for this one once it recovers, instead of
// meeting the failure. Calls already running finish; messages fetched but
// not started go back to the stream at once (settled `returned`). Pause
// returns once the server knows this instance fetches no more (at most
// pauseWait, else ErrPauseTimeout). It does nothing when paused and returns
// [ErrStopped] after Stop.
func (a *Async) Pause() error {
	a.mu.Lock()
	if a.stopping.Load() {
		a.mu.Unlock()
		return ErrStopped
	}
	if a.paused.Load() {
		a.mu.Unlock()
		return nil
	}
	a.paused.Store(true)
	closed := a.endFetch()
	a.mu.Unlock()
	if closed == nil {
		return nil
	}
	t := time.NewTimer(pauseWait)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
		return ErrPauseTimeout
	}
	// The returned messages' naks are published asynchronously.
	if err := a.nc.FlushTimeout(pauseWait); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("natsvc async: pause: flush: %w", err)
	}
	return nil
}

// Resume fetches again after [Async.Pause]. It does nothing when fetching
// and returns [ErrStopped] after Stop; after an error the consumer stays
// paused.
func (a *Async) Resume() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopping.Load() {
		return ErrStopped
	}
	if !a.paused.Load() {
		return nil
	}
	if err := a.consume(); err != nil {
		return err
	}
	a.paused.Store(false)
	return nil
}

// Paused reports whether the consumer is paused ([Async.Pause]).
func (a *Async) Paused() bool { return a.paused.Load() }

// pastLimitDrainWait bounds how long Stop waits for the advisories of
// messages past the delivery limit that the instance has received to be
// handled: two of them (one running, one waiting). It is within the
// margin sqlgated's shutdown gives the transports beyond the calls.
const pastLimitDrainWait = 2 * pastLimitTimeout

// Stop stops fetching, lets the workers finish the calls they have started
// and returns. Messages fetched but not started go back to the stream
// unhandled, to this or another instance; their idempotency keys make a
// redelivery safe either way. The advisories of messages past the delivery
// limit the instance has received are handled before Stop returns (for at
// most pastLimitDrainWait): the server sends each once, to one instance.
func (a *Async) Stop() error {
	a.stopOnce.Do(func() {
		// Another instance gives up what passes the delivery limit now;
		// what this one has received is still handled (Drain, unlike
		// Unsubscribe, keeps it).
		if err := a.pastLimit.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			a.log.WarnContext(a.hctx, "async stop: delivery limit advisories not drained", slog.String("error", err.Error()))
		}
		a.stopChecks()
		a.checker.Wait()
		a.mu.Lock()
		a.stopping.Store(true)
		a.endFetch()
		a.mu.Unlock()
		a.consuming.Wait()
		close(a.msgs)
		a.workers.Wait()
		// Without a server the advisories cannot be handled (nor the
		// drain end): a later stream check of another instance gives up
		// their messages (sweep).
		if a.nc.IsConnected() {
			t := time.NewTimer(pastLimitDrainWait)
			select {
			case <-a.pastLimitDone:
			case <-t.C:
				a.log.WarnContext(a.hctx, "async stop: delivery limit advisories still being handled; stopping without them")
			}
			t.Stop()
		}
		// The acks and naks of the last calls are published
		// asynchronously: have them reach the server before returning.
		if !a.nc.IsClosed() {
			_ = a.nc.FlushTimeout(5 * time.Second)
		}
	})
	return nil
}

// jsErrStorageResourcesExceeded is nats-server's JSStorageResourcesExceededErr
// ("insufficient storage resources available"), which nats.go names no
// constant for.
const jsErrStorageResourcesExceeded jetstream.ErrorCode = 10047

// jsErrClusterNoPeers and jsErrInsufficientResources are nats-server's
// JSClusterNoPeersErr ("no suitable peers for placement") and
// JSInsufficientResourcesErr, with which a cluster refuses a stream's
// replicas.
const (
	jsErrClusterNoPeers        jetstream.ErrorCode = 10005
	jsErrInsufficientResources jetstream.ErrorCode = 10023
)

// minAsyncMaxBytes is the smallest size cap createStream settles for before
// it leaves the stream's size to the account's limits.
const minAsyncMaxBytes = 64 << 20

// createStream creates or updates the stream. A NATS server reserves a
// stream's MaxBytes from its JetStream store, and refuses a stream that does
// not fit (a small max_file_store or volume): then the cap is halved until
// it fits, down to minAsyncMaxBytes, and below that the stream gets no size
// cap of its own (the per-subject cap still holds). A cluster that cannot
// place sc.Replicas now (too few servers up, or with room) gets one replica
// fewer at a time, down to floor. Either way it is logged, since the async
// routes would otherwise keep sqlgated from starting.
func createStream(ctx context.Context, js jetstream.JetStream, sc jetstream.StreamConfig, floor int, log *slog.Logger) (jetstream.Stream, error) {
	want, wantReplicas := sc.MaxBytes, sc.Replicas
	for {
		stream, err := js.CreateOrUpdateStream(ctx, sc)
		var apiErr *jetstream.APIError
		api := errors.As(err, &apiErr)
		switch {
		case err == nil:
			if sc.MaxBytes != want {
				log.WarnContext(ctx, "the NATS JetStream store cannot reserve the async stream's size cap; using a smaller one",
					slog.Int64("wanted_bytes", want), slog.Int64("max_bytes", sc.MaxBytes))
			}
			if sc.Replicas != wantReplicas {
				log.WarnContext(ctx, "the NATS cluster cannot place the async stream's replicas now; using fewer, a later start adds the others",
					slog.Int("wanted_replicas", wantReplicas), slog.Int("replicas", sc.Replicas))
			}
			return stream, nil
		case api && apiErr.ErrorCode == jsErrStorageResourcesExceeded && sc.MaxBytes > 0:
			if sc.MaxBytes /= 2; sc.MaxBytes < minAsyncMaxBytes {
				sc.MaxBytes = -1
			}
		case api && (apiErr.ErrorCode == jsErrClusterNoPeers || apiErr.ErrorCode == jsErrInsufficientResources) && sc.Replicas > floor:
			sc.Replicas--
		case sc.Replicas > 1:
			return nil, fmt.Errorf("%d replicas: %w", sc.Replicas, err)
		default:
			return nil, err
		}
	}
}

// keepBacklog adjusts sc so that updating an existing stream to it deletes no
// waiting request. The server enforces a new or lowered per-subject limit by
// deleting a subject's oldest messages, whatever the discard policy (a
// lowered MaxBytes deletes nothing under discard new). When a subject holds
// more requests than sc's limit, sc keeps the stream's current per-subject
// limit and a warning reports the difference; a later start applies it.
// (Requests published between this check and the update can still exceed
// the limit and be deleted; the check reads the backlog moments before.)
// s is the existing stream (nil: none, nothing to keep).
func keepBacklog(ctx context.Context, s jetstream.Stream, sc *jetstream.StreamConfig, log *slog.Logger) error {
	if s == nil {
		return nil
	}
	info := s.CachedInfo()
	held := info.Config.MaxMsgsPerSubject
	if (held > 0 && held <= sc.MaxMsgsPerSubject) || info.State.Msgs <= uint64(sc.MaxMsgsPerSubject) {
		return nil
	}
	full, err := s.Info(ctx, jetstream.WithSubjectFilter(broker.AsyncSubjects))
	if err != nil {
		return err
	}
	var most uint64
	for _, n := range full.State.Subjects {
		most = max(most, n)
	}
	if most <= uint64(sc.MaxMsgsPerSubject) {
		return nil
	}
	log.WarnContext(ctx, "async stream: per-subject limit not applied yet, a subject holds more waiting requests; it applies at a start after the backlog has drained",
		slog.String("stream", sc.Name), slog.Int64("limit", sc.MaxMsgsPerSubject),
		slog.Int64("current_limit", held), slog.Uint64("largest_backlog", most))
	sc.MaxMsgsPerSubject = held
	if held <= 0 {
		sc.DiscardNewPerSubject = false // requires a per-subject limit
	}
	return nil
}

// ParseAsyncSubject splits `sqlgate.async.<user key>.<route subject>`; ok is
// false unless the user key is a user public key and a subject follows.
func ParseAsyncSubject(subject string) (userKey, route string, ok bool) {
	rest, found := strings.CutPrefix(subject, broker.AsyncSubjectPrefix)
	if !found {
		return "", "", false
	}
	userKey, route, found = strings.Cut(rest, ".")
	if !found || route == "" || !nkeys.IsValidPublicUserKey(userKey) {
		return "", "", false
	}
	return userKey, route, true
}

// putBack returns a message that was fetched but not started to the stream,
// for immediate redelivery (it counts as a delivery, far below the
// consumer's backstop limit).
func (a *Async) putBack(ctx context.Context, m jetstream.Msg) {
	a.settled(SettledReturned)
	if err := m.Nak(); err != nil {
		a.log.WarnContext(ctx, "async message not returned; it is delivered again after the ack wait", slog.String("error", err.Error()))
	}
}

// serve handles one message and settles it with the stream.
func (a *Async) serve(ctx context.Context, m jetstream.Msg, gen *streamGen) {
	meta, err := m.Metadata()
	if err != nil {
		a.log.ErrorContext(ctx, "async message without metadata; dropped", slog.String("error", err.Error()))
		_ = m.Term()
		a.settled(SettledDropped)
		return
	}
	userKey, subject, ok := ParseAsyncSubject(m.Subject())
	if !ok {
		// Publish permissions allow only the caller's own key, so this is
		// a misconfiguration.
		a.log.WarnContext(ctx, "async message for no async route; dropped", slog.String("subject", m.Subject()))
		_ = m.TermWithReason("no async route")
		a.settled(SettledDropped)
		return
	}
	if !a.routes[subject] {
		a.otherRoute(ctx, m, meta, gen, userKey, subject)
		return
	}
	hdr := m.Headers()
	req := &broker.Request{
		Subject:  subject,
		Payload:  m.Data(),
		Caller:   broker.Caller{Transport: broker.TransportAsync, Attested: true, UserKey: userKey, Account: a.cfg.UsersAccount},
		Received: meta.Timestamp,
	}
	problem := requestHeaders(req, hdr)
	// The message's place in the stream: the key of a message that came
	// without one, and its correlation id if it came without a valid one.
	position := a.position(gen, meta.Timestamp, meta.Sequence.Stream)
	if req.IdempotencyKey == "" {
		req.IdempotencyKey = position
	}
	if !broker.ValidCorrelationID(req.CorrelationID) {
		req.CorrelationID = position
	}
	var rep *broker.Reply
	if problem != "" {
		rep = invalidHeaders(req.CorrelationID, problem) // final: settled below without a retry
	} else {
		stop := a.inProgress(ctx, m, req)
		rep = a.handle(ctx, req)
		stop()
	}
	code := ""
	if !rep.OK && rep.Error != nil {
		code = rep.Error.Code
	}
	// An unavailable database or audit log is retried until the message
	// is MaxAge old, however many deliveries that takes; an internal error,
	// or a call that ran into its timeout (it would run to its timeout
	// again, every minute for a day), until its MaxDeliver-th delivery.
	// Either way the consumer's last delivery is the last attempt: the
	// server would not deliver it again.
	age := a.cfg.now().Sub(meta.Timestamp)
	retryable, last := false, false
	switch {
	case code == broker.CodeUnavailable && !rep.TimedOut:
		retryable, last = true, age >= a.cfg.MaxAge
	case code == broker.CodeUnavailable, code == broker.CodeInternal:
		retryable, last = true, int(meta.NumDelivered) >= a.cfg.MaxDeliver
	}
	last = last || int(meta.NumDelivered) >= backstopDeliveries(a.cfg)
	final := !retryable || last
	if token, _ := oneHeader(hdr, HeaderReplyTo); final && replyToken(token) {
		// The answer goes under the requester's own key: only it may
		// subscribe there.
		respond(ctx, a.nc, a.log, broker.ReplyPrefix(userKey)+"."+token, rep)
	}
	switch {
	case rep.OK:
		a.settled(SettledOK)
		if err := m.Ack(); err != nil {
			a.log.WarnContext(ctx, "async ack failed; the message will be delivered again and replayed", slog.String("error", err.Error()),
				slog.String("correlation_id", rep.CorrelationID))
		}
		emit(ctx, a.nc, a.log, rep)
	case !final:
		// The database (or the audit log) could not take it: try again later.
		a.settled(SettledRetry)
		_ = m.NakWithDelay(a.cfg.retryDelay(meta.NumDelivered))
	default:
		// A final answer (refused, invalid, a database error, or the last
		// attempt): it is in the audit log; the message is done.
		settled := SettledFinal
		if retryable {
			settled = SettledGaveUp
		}
		a.settled(settled)
		a.log.WarnContext(ctx, "async request not executed", slog.String("code", code), slog.String("subject", subject),
			slog.String("settled", settled), slog.String("correlation_id", rep.CorrelationID), slog.Uint64("deliveries", meta.NumDelivered),
			slog.Duration("age", age.Round(time.Second)))
		_ = m.Ack()
	}
}

// position is a message's place in the stream, `<stream id>-<sequence>`,
// stable across redeliveries: the key of a message that came without one
// (so a redelivery never runs twice), and its correlation id if it came
// without a valid one. gen is the stream the fetch began on; a message
// stored after the stream was recreated (a fetch that outlived the stream)
// is keyed by the new one.
func (a *Async) position(gen *streamGen, stored time.Time, seq uint64) string {
	if cur := a.gen.Load(); cur != gen && !stored.Before(cur.created) {
		gen = cur
	}
	return gen.id + "-" + strconv.FormatUint(seq, 10)
}

// correlationID is the message's valid Correlation-Id, else its position.
func (a *Async) correlationID(hdr nats.Header, gen *streamGen, stored time.Time, seq uint64) string {
	if id, _ := oneHeader(hdr, HeaderCorrelationID); broker.ValidCorrelationID(id) {
		return id
	}
	return a.position(gen, stored, seq)
}

// otherRouteLogInterval is the least time between two log lines about
// messages returned for a route the instance does not serve.
const otherRouteLogInterval = time.Minute

// otherRoute settles a message for a route subject this instance does not
// serve. During a rolling deploy that adds an async route, the instances
// still on the old catalog fetch from the consumer they share with those
// that serve it: the message goes back to the stream after a delay
// (otherRouteDelay: not at once, which would have it bounce between the
// old instances), for an instance that serves it. When it is MaxAge old,
// or on the consumer's last delivery, no instance has served it (the route
// was removed, or never rolled out): it is answered not_found, as the
// broker answers a call for no route, acknowledged, logged and counted
// gave_up. Nothing ran, and as for a direct call for no route, the audit
// log has no record of it.
func (a *Async) otherRoute(ctx context.Context, m jetstream.Msg, meta *jetstream.MsgMetadata, gen *streamGen, userKey, subject string) {
	age := a.cfg.now().Sub(meta.Timestamp)
	if age < a.cfg.MaxAge && int(meta.NumDelivered) < backstopDeliveries(a.cfg) {
		a.settled(SettledReturned)
		if ok, suppressed := a.otherRouteLog.Allow(time.Now(), otherRouteLogInterval); ok {
			a.log.InfoContext(ctx, "async message for a route this instance does not serve; returned for an instance that does",
				slog.String("subject", subject), slog.Uint64("deliveries", meta.NumDelivered), slog.Int64("suppressed", suppressed))
		}
		if err := m.NakWithDelay(a.cfg.otherRouteDelay(meta.NumDelivered)); err != nil {
			a.log.WarnContext(ctx, "async message not returned; it is delivered again after the ack wait", slog.String("error", err.Error()))
		}
		return
	}
	hdr := m.Headers()
	rep := &broker.Reply{
		CorrelationID: a.correlationID(hdr, gen, meta.Timestamp, meta.Sequence.Stream), AuditIndex: -1,
		Error: &broker.ReplyError{Code: broker.CodeNotFound, Message: fmt.Sprintf("no async route for subject %q", subject)},
	}
	if token, _ := oneHeader(hdr, HeaderReplyTo); replyToken(token) {
		respond(ctx, a.nc, a.log, broker.ReplyPrefix(userKey)+"."+token, rep)
	}
	a.settled(SettledGaveUp)
	a.log.WarnContext(ctx, "async request not executed", slog.String("code", broker.CodeNotFound), slog.String("subject", subject),
		slog.String("settled", SettledGaveUp), slog.String("correlation_id", rep.CorrelationID), slog.Uint64("deliveries", meta.NumDelivered),
		slog.Duration("age", age.Round(time.Second)))
	_ = m.Ack()
}

// pastLimitSubject is the subject of the server's advisories of messages
// of the consumer past its delivery limit (nats-server's
// JSAdvisoryConsumerMaxDeliveryExceedPre).
func pastLimitSubject(cfg AsyncConfig) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + cfg.Stream + "." + cfg.Durable
}

// pastLimitAdvisory is the part of nats-server's
// JSConsumerDeliveryExceededAdvisory that giveUpPastLimit reads.
type pastLimitAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// pastLimitTimeout bounds the requests that give up a message past the
// delivery limit.
const pastLimitTimeout = 5 * time.Second

// giveUpPastLimit gives up a message the consumer will not deliver again:
// no delivery of it was settled within the delivery limit
// (backstopDeliveries), because every attempt died with its instance or
// never began. A work queue would keep it, unseen, counting against the
// stream's limits, and a recreated consumer would deliver it again, however
// old. So the server's advisory, which one instance of the queue group
// receives, has it given up (giveUp). An advisory no instance handled (none
// subscribed then, or the stream did not answer) is made up for by the
// stream checks (sweep).
func (a *Async) giveUpPastLimit(msg *nats.Msg) {
	ctx, cancel := context.WithTimeout(a.hctx, pastLimitTimeout)
	defer cancel()
	var adv pastLimitAdvisory
	if err := json.Unmarshal(msg.Data, &adv); err != nil || adv.Stream != a.cfg.Stream || adv.Consumer != a.cfg.Durable || adv.StreamSeq == 0 {
		a.log.WarnContext(ctx, "async delivery limit advisory not understood; ignored", slog.String("subject", msg.Subject))
		return
	}
	a.repairMu.Lock()
	stream := a.stream
	a.repairMu.Unlock()
	a.giveUp(ctx, stream, adv.StreamSeq, slog.String("found_by", "advisory"), slog.Uint64("deliveries", adv.Deliveries))
}

// giveUp gives up the message at seq in stream, which the consumer will
// not deliver again: it answers internal on its Sqlgate-Reply-To subject,
// deletes it from the stream, counts it gave_up and logs it. The answer
// comes first: a failure or a stop between the two leaves the message in
// the stream, answered, for a later check to give up again (a repeated
// answer beats none). Nothing runs here (an attempt that died after its
// intent was durable is completed by the audit log's recovery, as for any
// crash), so this does not ask Admit. A message no longer in the stream
// (settled after all, or given up by another instance) is left alone.
func (a *Async) giveUp(ctx context.Context, stream jetstream.Stream, seq uint64, attrs ...slog.Attr) {
	gen := a.gen.Load()
	sm, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return
	}
	if err != nil {
		a.log.ErrorContext(ctx, "async message past the delivery limit not given up; a later stream check gives it up",
			slog.String("stream", a.cfg.Stream), slog.Uint64("stream_seq", seq), slog.String("error", err.Error()))
		return
	}
	userKey, subject, ok := ParseAsyncSubject(sm.Subject)
	rep := &broker.Reply{
		CorrelationID: a.correlationID(sm.Header, gen, sm.Time, sm.Sequence), AuditIndex: -1,
		Error: &broker.ReplyError{Code: broker.CodeInternal, Message: pastLimitMessage},
	}
	if token, _ := oneHeader(sm.Header, HeaderReplyTo); ok && replyToken(token) {
		respond(ctx, a.nc, a.log, broker.ReplyPrefix(userKey)+"."+token, rep)
	}
	err = stream.DeleteMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return // given up by another instance meanwhile
	}
	if err != nil {
		a.log.ErrorContext(ctx, "async message past the delivery limit answered but not deleted; a later stream check gives it up",
			slog.String("stream", a.cfg.Stream), slog.Uint64("stream_seq", seq), slog.String("correlation_id", rep.CorrelationID),
			slog.String("error", err.Error()))
		return
	}
	a.settled(SettledGaveUp)
	if !ok {
		subject = sm.Subject
	}
	attrs = append([]slog.Attr{
		slog.String("code", broker.CodeInternal), slog.String("subject", subject), slog.String("settled", SettledGaveUp),
		slog.String("correlation_id", rep.CorrelationID), slog.Uint64("stream_seq", seq),
		slog.Duration("age", a.cfg.now().Sub(sm.Time).Round(time.Second)),
	}, attrs...)
	a.log.LogAttrs(ctx, slog.LevelError, "async request given up: no delivery was settled within the consumer's delivery limit; deleted from the stream", attrs...)
}

// sweepAfter is how long a message stays given up by the consumer
// (givenUpLimit) before a stream check gives it up (sweep): far longer
// than the server takes to delete an acknowledged message from the work
// queue, or an instance to handle an advisory.
const sweepAfter = time.Minute

// sweepTimeout bounds a check's sweep, within checkTimeout: a sweep cut
// short goes on at the next check.
const sweepTimeout = 2 * time.Second

// givenUpLimit is the highest stream sequence up to which every message
// the work-queue stream still holds was given up by the consumer (ci), or
// acknowledged moments ago: the stream deletes a message once the consumer
// has it acknowledged or terminated, but keeps one past the delivery limit.
// The consumer's ack floor passes such a message (nats-server 2.15 moves it
// once nothing is pending), and when nothing is pending every message
// delivered so far was settled or given up. A message the consumer still
// delivers is pending or above both.
func givenUpLimit(ci *jetstream.ConsumerInfo) uint64 {
	limit := ci.AckFloor.Stream
	if ci.NumAckPending == 0 {
		limit = max(limit, ci.Delivered.Stream)
	}
	return limit
}

// sweepBatch bounds the messages one check looks at.
const sweepBatch = 100

// sweep gives up the messages the consumer gave up whose advisory no
// instance handled: none was subscribed when the server sent it, or the
// stream did not answer the one that got it. Such a message stays in the
// work-queue stream, never delivered again, at or below givenUpLimit(ci);
// one found there by checks sweepAfter apart is given up (giveUp). Every
// instance sweeps, so two may answer the same message. first is the
// stream's first sequence. a.repairMu is held.
func (a *Async) sweep(ctx context.Context, first uint64, ci *jetstream.ConsumerInfo) {
	floor := givenUpLimit(ci)
	if first == 0 || first > floor {
		a.givenUp = nil // the common case: no request to ask for
		return
	}
	now := time.Now()
	found := make(map[uint64]time.Time)
	for seq, n := first, 0; seq <= floor && n < sweepBatch && ctx.Err() == nil; n++ {
		sm, err := a.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(broker.AsyncSubjects))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return // the next check looks again; givenUp is kept
		}
		if sm.Sequence > floor {
			break
		}
		since, ok := a.givenUp[sm.Sequence]
		if !ok {
			since = now
		}
		found[sm.Sequence] = since // if it is not deleted now, the next check tries again
		if now.Sub(since) >= a.cfg.sweepAfter {
			a.giveUp(ctx, a.stream, sm.Sequence, slog.String("found_by", "stream check"))
		}
		seq = sm.Sequence + 1
	}
	a.givenUp = found
}

// pastLimitMessage is the answer to a request given up past the delivery
// limit.
const pastLimitMessage = "no attempt of the queued request finished within the delivery limit; it was given up " +
	"(if an attempt committed before it failed, a call with the same Idempotency-Key returns its result)"

func (a *Async) settled(how string) {
	if a.cfg.OnSettle != nil {
		a.cfg.OnSettle(how)
	}
}

// handle calls the handler, turning a panic or a nil reply into an
// internal error.
func (a *Async) handle(ctx context.Context, req *broker.Request) (rep *broker.Reply) {
	defer func() {
		if p := recover(); p != nil {
			a.log.ErrorContext(ctx, "async handler panicked", slog.String("subject", req.Subject), slog.Any("panic", p))
			rep = nil
		}
		if rep == nil {
			rep = &broker.Reply{CorrelationID: req.CorrelationID, AuditIndex: -1, Error: &broker.ReplyError{Code: broker.CodeInternal, Message: "internal error"}}
		}
	}()
	return a.h.Handle(ctx, req)
}

// replyToken reports whether t can name a reply subject: one subject token
// of letters, digits, '-' and '_', at most 64 bytes.
func replyToken(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for i := range len(t) {
		if !nameByte(t[i]) {
			return false
		}
	}
	return true
}

// backstopDeliveries is the consumer's server-side delivery limit: twice
// the attempts a request retried until MaxAge can take (back-off up to
// MaxRetryDelay), plus MaxDeliver. The broker settles every request it
// handles long before, and the attempt on this delivery is a last one
// whatever its answer. A message past it (one that crashes every instance
// it reaches, so that no attempt returns) is not delivered again: the
// server's advisory has it given up (giveUpPastLimit).
func backstopDeliveries(cfg AsyncConfig) int {
	return 2*int(cfg.MaxAge/MaxRetryDelay) + 2*cfg.MaxDeliver + 10
}

// otherRouteFlat deliveries of a message for a route the instance does not
// serve come minOtherRouteDelay apart (shortened by up to a quarter at
// random): about a minute, for the instances of a rolling deploy to take
// over.
const (
	minOtherRouteDelay = 5 * time.Second
	otherRouteFlat     = 12
)

// otherRouteDelay is the delay before a message for a route the instance
// does not serve is delivered again: minOtherRouteDelay for the first
// otherRouteFlat deliveries (while some instances still serve an older
// catalog, each delivery may reach one of them), then backing off as a
// retry does, to MaxRetryDelay, so that MaxAge takes fewer deliveries than
// backstopDeliveries allows.
func otherRouteDelay(delivered uint64) time.Duration {
	if delivered <= otherRouteFlat {
		return jitter(minOtherRouteDelay)
	}
	return max(jitteredRetryDelay(delivered-otherRouteFlat), minOtherRouteDelay)
}

// retryDelay backs off 1s, 2s, 4s, ... up to MaxRetryDelay.
func retryDelay(delivered uint64) time.Duration {
	return min(time.Second<<min(max(delivered, 1)-1, 6), MaxRetryDelay)
}

// jitteredRetryDelay is retryDelay shortened by up to a quarter at random:
// messages that failed together (the calls of a batch that ran into its
// timeout, the requests that met an outage) are not delivered together
// again, to fail together again. At least three quarters of retryDelay, so
// the attempts until MaxAge stay well within backstopDeliveries.
func jitteredRetryDelay(delivered uint64) time.Duration {
	return jitter(retryDelay(delivered))
}

// jitter shortens d by up to a quarter at random.
func jitter(d time.Duration) time.Duration {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand: never fails (Go 1.24+)
	return d - time.Duration(binary.LittleEndian.Uint64(b[:])%uint64(d/4+1))
}
