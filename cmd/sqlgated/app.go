package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	modsemver "golang.org/x/mod/semver"
	"golang.org/x/sync/errgroup"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsvc"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/internal/ctxsleep"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/web"
	"github.com/sqlgate/sqlgate/web/api"
)

// runtimeConfig is a fully resolved configuration: files read, secrets
// loaded, listeners open. Dev mode builds one from its data directory, serve
// mode from the config file.
type runtimeConfig struct {
	Instance string
	Logger   *slog.Logger

	// HTTP: an open listener, optional TLS, extra handlers (the dev IdP).
	Listener net.Listener
	// MaxHTTPConnections bounds the connections Listener keeps open at once
	// (http.maxConnections; 0: half the file descriptor limit).
	MaxHTTPConnections int
	// MetricsListener, when set, serves /metrics (with TLSCert, over TLS)
	// instead of Listener: http.metricsListen.
	MetricsListener net.Listener
	TLSCert         *tls.Certificate
	// BrowserTLS says browsers reach the API over TLS, sqlgated's own
	// (TLSCert) or a proxy's in front of it: cookies become Secure.
	BrowserTLS    bool
	Mounts        map[string]http.Handler
	AdminGroups   []string
	AuditorGroups []string
	Discovery     api.Discovery

	Catalog   *route.Catalog
	Executors map[string]broker.Executor
	// IdempotencyRetention is how long each database keeps idempotency
	// records (0: forever; a database not listed: the default, 168h).
	IdempotencyRetention map[string]time.Duration

	ControlDB      *sql.DB
	ControlDialect string

	Audit      audit.Config
	SinkDir    string
	PolicyDir  string
	Watch      bool
	EvalTimout time.Duration

	Identity oidc.Config
	// WebLogin is completed with the verifier once it is open (nil: no
	// dashboard sign-in).
	WebLogin *oidc.WebLoginConfig

	NATSKeys     *natsauth.Keys
	NATSURL      string
	NATSWorkers  int
	NATSQueueLen int
	Callout      bool
	// AsyncMaxAge bounds the retries of a queued async request that meets
	// an unavailable database or audit log (0: natsvc's default).
	AsyncMaxAge time.Duration
	// AsyncReplicas is the async stream's replicas (0: natsvc's sizing).
	AsyncReplicas int
	// NATSConnect adds options to sqlgated's own NATS connections (the
	// embedded server's in-process transport).
	NATSConnect []nats.Option

	NATSTTL, MaxTTL time.Duration
	// MaxNATSCredentials bounds live NATS credentials per principal (0:
	// the broker's default; negative: unlimited).
	MaxNATSCredentials int

	// LoginIssuers enable short-lived SQL logins per database; Leases and
	// ReaperInterval configure them (Service and Store are filled in).
	LoginIssuers   map[string]broker.SQLLoginIssuer
	Leases         broker.LeasesConfig
	ReaperInterval time.Duration

	// GateInterval is how often the instance checks whether it can serve
	// routed calls, and leaves or rejoins the queue group (0: 5s).
	GateInterval time.Duration

	// ShutdownDelay is how long the API and dashboard keep serving once a
	// stop begins, /readyz answering 503 (http.shutdownDelay).
	ShutdownDelay time.Duration
}

// defaultWorkers is the default number of concurrent calls per instance.
const defaultWorkers = 128

// app is a running sqlgated.
type app struct {
	cfg     runtimeConfig
	log     *slog.Logger
	metrics *prometheus.Registry
	http    *http.Server
	handler atomic.Pointer[http.Handler]
	// handlers counts the API and dashboard requests being handled: the
	// stop waits for them before the audit log closes (they append to it).
	handlers inflight
	// stopping is set when the stop begins: /readyz answers 503 from then.
	stopping atomic.Bool
	// metricsHTTP serves http.metricsListen (nil without it).
	metricsHTTP *http.Server
	registry    *control.Registry
	cutoffs     *control.SignInCutoffs
	store       *sqlstore.Store
	claim       *sqlstore.Claim
	audit       *audit.Log
	engine      *opa.Engine
	verifier    *oidc.Verifier
	login       web.Login // nil: no dashboard sign-in
	service     *broker.Service
	leases      *broker.Leases
	conns       []*nats.Conn
	micro       *natsvc.Service
	callout     *natsauth.Callout
	async       *natsvc.Async
	closers     []func(context.Context) error
	group       *errgroup.Group
	groupCtx    context.Context
	// boundary is the audit log's size when the instance started taking
	// calls: the intents at or after it are this run's.
	boundary int64
	// stranded serializes the passes of recoverStranded (two would write
	// two outcomes for one intent); stopStranded ends its loop.
	stranded     sync.Mutex
	stopStranded context.CancelFunc
	// failed receives the first error that must stop the instance while it
	// runs (fail); wait returns it.
	failed chan error
}

// start builds and starts every component; the returned app runs until ctx
// ends (then call shutdown).
func start(ctx context.Context, cfg runtimeConfig) (a *app, err error) {
	a = &app{cfg: cfg, log: cfg.Logger, metrics: prometheus.NewRegistry(), failed: make(chan error, 1)}
	a.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.group, a.groupCtx = errgroup.WithContext(ctx)
	defer func() {
		if err != nil {
			a.cfg.ShutdownDelay = 0 // it never served: no load balancer to wait for
			a.shutdown(context.Background())
		}
	}()

	// HTTP first: in dev mode the identity provider is served here and the
	// verifier below discovers it.
	a.serveHTTP()

	if cfg.ControlDB == nil {
		return a, errors.New("no control database")
	}
	sizeControlPool(cfg.ControlDB)
	// The identity providers and the dashboard's sign-in before the audit
	// log: a provider that cannot be reached, or a sign-in configuration
	// they refuse, stops the start before it appends to the log (and to the
	// sink's write-once copies), at every restart.
	a.verifier, err = oidc.Open(ctx, cfg.Identity, a.log.With("component", "oidc"))
	if err != nil {
		return a, fmt.Errorf("identity: %w", err)
	}
	if cfg.WebLogin != nil {
		wl := *cfg.WebLogin
		wl.Verifier = a.verifier
		l, err := oidc.NewWebLogin(wl)
		if err != nil {
			return a, fmt.Errorf("dashboard sign-in: %w", err)
		}
		a.login = webLogin{l}
	}
	if err := a.openAudit(ctx); err != nil {
		return a, err
	}
	cdb, err := control.Open(ctx, cfg.ControlDB, cfg.ControlDialect)
	if err != nil {
		return a, err
	}
	a.registry = control.NewRegistry(cdb, 0, nil)
	if a.cutoffs, err = control.OpenSignInCutoffs(ctx, cdb); err != nil {
		return a, err
	}
	// Which version serves which route catalog, before anything is served:
	// unrecorded, the instance does not start.
	if err := recordStartup(ctx, a.audit, cfg.Catalog); err != nil {
		return a, err
	}
	if err := a.openPolicy(ctx); err != nil {
		return a, err
	}
	if err := a.startBroker(ctx); err != nil {
		return a, err
	}
	if err := recoverIntents(ctx, a.audit, cfg.Executors, a.log); err != nil {
		return a, err
	}
	checkRoutes(ctx, cfg.Catalog, cfg.Executors, a.log)
	// Before any call: the databases unreachable at start open in the
	// background, each recovering its own intents first.
	a.boundary = a.audit.Size()
	a.openPending(ctx)
	// The outcomes this run's calls could not append are recovered while
	// it runs.
	sctx, stop := context.WithCancel(a.groupCtx)
	a.stopStranded = stop
	a.group.Go(func() error {
		a.recoverStrandedLoop(sctx, ctxsleep.Sleep)
		return nil
	})
	if err := a.startLeases(ctx, cdb); err != nil {
		return a, err
	}
	if err := a.startNATS(); err != nil {
		return a, err
	}
	if err := a.startWeb(ctx, cdb); err != nil {
		return a, err
	}
	// Registered here, not when housekeeping first runs: /metrics names
	// them from the start.
	prune := newPruneMetrics(a.metrics)
	prune.init(cfg.Executors, cfg.IdempotencyRetention)
	a.group.Go(func() error { return a.housekeeping(a.groupCtx, prune) })
	return a, nil
}

func (a *app) openAudit(ctx context.Context) error {
	store, err := sqlstore.Open(ctx, a.cfg.ControlDB, a.cfg.ControlDialect)
	if err != nil {
		return fmt.Errorf("audit store: %w", err)
	}
	a.store = store
	acfg := a.cfg.Audit
	// One writer per origin: a second process appending to it would write
	// indexes the first already wrote, and the first would then refuse
	// every call. Refuse the second at start instead. The claim keeps
	// holding the origin while the instance runs (a control-database
	// session that ends is replaced); while it does not, the store refuses
	// the log's writes and ready reports it.
	claim, err := store.Claim(ctx, acfg.Origin, sqlstore.ClaimOptions{Logger: a.log.With("component", "audit")})
	if errors.Is(err, sqlstore.ErrOriginInUse) {
		return fmt.Errorf("audit origin %q is in use by another running sqlgated: give each instance its own audit.origin (in dev mode: another sqlgated dev uses this data directory)", acfg.Origin)
	}
	if err != nil {
		return fmt.Errorf("audit store: %w", err)
	}
	a.claim = claim
	a.closers = append(a.closers, func(context.Context) error { return claim.Release() }) // after the log's close below
	acfg.Logger = a.log.With("component", "audit")
	if a.cfg.SinkDir != "" {
		sink, err := audit.NewDirSink(a.cfg.SinkDir)
		if err != nil {
			return fmt.Errorf("audit checkpoint sink: %w", err)
		}
		acfg.Sink = sink
	}
	log, err := audit.Open(ctx, store, acfg)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	a.audit = log
	a.closers = append(a.closers, func(ctx context.Context) error {
		if err := log.Close(ctx); err != nil {
			return err
		}
		logFinalCheckpoint(ctx, a.log, log)
		return nil
	})
	a.metrics.MustRegister(auditCollector{log})
	a.log.InfoContext(ctx, "audit log open", "origin", log.Origin(), "size", log.Size(), "verifier_key", acfg.Signer.VerifierKey())
	return nil
}

func (a *app) openPolicy(ctx context.Context) error {
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlgate_policy_reloads_total", Help: "Policy load attempts by result.",
	}, []string{"result"})
	for _, result := range []string{"ok", "error"} {
		reloads.WithLabelValues(result) // at 0 from the start: an alert on increase() sees the first error
	}
	a.metrics.MustRegister(reloads)
	engine, err := opa.Open(ctx, opa.Config{
		Dir: a.cfg.PolicyDir, Watch: a.cfg.Watch, EvalTimeout: a.cfg.EvalTimout, Routes: policyRoutes(a.cfg.Catalog),
		Logger: a.log.With("component", "policy"),
		OnReload: func(ev opa.ReloadEvent) {
			rec := &audit.Record{
				Kind: audit.KindAdmin, Actor: &audit.Actor{Transport: "system"}, PolicyRevision: ev.Revision,
				Admin: &audit.Admin{Action: "policy_load", Detail: fmt.Sprintf("revision %s (previous %s), %d modules", ev.Revision, ev.Previous, len(ev.Modules))},
			}
			result := "ok"
			if ev.Err != nil {
				result = "error"
				rec.Admin = &audit.Admin{Action: "policy_load_failed", Detail: ev.Err.Error()}
			}
			reloads.WithLabelValues(result).Inc()
			actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := a.audit.Append(actx, rec); err != nil {
				a.log.ErrorContext(actx, "audit policy reload record failed", "err", err)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	a.engine = engine
	a.closers = append(a.closers, func(context.Context) error { return engine.Close() })
	a.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sqlgate_policy_load_failed",
		Help: "1 while the last policy load failed (the last good revision keeps serving; with none, every call is denied) or the policy directory is not watched, else 0.",
	}, func() float64 {
		if engine.Status().LastError != nil {
			return 1
		}
		return 0
	}))
	return nil
}

func (a *app) startBroker(ctx context.Context) error {
	minter := natsauth.NewMinter(a.cfg.NATSKeys)
	// The system user handles no message: it publishes revocations.
	sysConn, _, err := a.connect("sqlgated-system", a.cfg.NATSKeys.SystemUser())
	if err != nil {
		return err
	}
	revoker := natsauth.NewRevoker(sysConn, a.cfg.NATSKeys, natsauth.RevokerConfig{
		Subjects: a.cfg.Catalog.Subjects(), Emits: emits(a.cfg.Catalog), MaxTTL: a.cfg.MaxTTL,
		Logger: a.log.With("component", "revoker"),
	})
	// The servers may predate the current routes (an external cluster). Sync
	// pushes only the accounts whose claims differ from what the servers
	// hold: a pushed broker account drops the replies of the calls in flight
	// on every instance, so an unchanged start must not push it.
	if err := revoker.Sync(ctx); err != nil {
		return fmt.Errorf("push account JWTs to NATS: %w", err)
	}
	pub := a.cfg.NATSKeys.Public()
	batchCalls := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sqlgate_batch_calls", Help: "Calls per SQL transaction of batched (async, batch > 1) routes, by route subject.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 9),
	}, []string{"route"})
	batchFallbacks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlgate_batch_fallbacks_total", Help: "Batches that failed as a whole and ran their calls again alone, by route subject.",
	}, []string{"route"})
	revocationSyncs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlgate_nats_revocation_syncs_total", Help: "Attempts to make NATS revocations effective on the servers (a revocation, a revoke-all, the periodic re-application of the issuance registry's revocations), by result (ok, error).",
	}, []string{"result"})
	// At 0 from the start: an alert on increase() sees the first error.
	revocationSyncs.WithLabelValues("ok")
	revocationSyncs.WithLabelValues("error")
	a.metrics.MustRegister(batchCalls, batchFallbacks, revocationSyncs)
	svc, err := broker.New(broker.Config{
		Catalog: a.cfg.Catalog, Databases: a.cfg.Executors,
		Authorizer: a.engine, Recorder: a.audit, Registry: a.registry,
		Minter: minter, Revoker: revoker, Verifier: a.verifier, Cutoffs: a.cutoffs,
		UsersAccount: pub.Users, SigningKeys: pub.UsersSigning,
		NATSTTL: a.cfg.NATSTTL, MaxTTL: a.cfg.MaxTTL, MaxNATSCredentialsPerPrincipal: a.cfg.MaxNATSCredentials,
		OnBatch: func(subject string, calls int, fellBack bool) {
			batchCalls.WithLabelValues(subject).Observe(float64(calls))
			if fellBack {
				batchFallbacks.WithLabelValues(subject).Inc()
			}
		},
		OnRevocationSync: func(err error) {
			result := "ok"
			if err != nil {
				result = "error"
			}
			revocationSyncs.WithLabelValues(result).Inc()
		},
		Logger: a.log.With("component", "broker"),
	})
	if err != nil {
		return err
	}
	a.service = svc
	// Every revoked credential that has not expired, in case the servers
	// restarted, another instance revoked while this one was down, or a push
	// failed; then every minute (and at once after a failed push) until
	// shutdown.
	if _, err := svc.ReapplyRevocations(ctx); err != nil {
		return fmt.Errorf("re-apply nats revocations: %w", err)
	}
	a.group.Go(func() error { return svc.RunRevocationSync(a.groupCtx, broker.DefaultRevocationSyncInterval) })
	return nil
}

func (a *app) startNATS() error {
	pub := a.cfg.NATSKeys.Public()
	if len(a.cfg.Catalog.Subjects()) == 0 {
		a.log.WarnContext(a.groupCtx, "no routes in the catalog: serving credentials only")
	} else if err := a.startMicro(pub); err != nil {
		return err
	} else {
		interval := cmp.Or(a.cfg.GateInterval, defaultGateInterval)
		a.group.Go(func() error { return a.gate(a.groupCtx, interval) })
	}
	if a.cfg.Callout {
		calloutConn, gate, err := a.connect("sqlgated-callout", a.cfg.NATSKeys.CalloutUser())
		if err != nil {
			return err
		}
		a.callout, err = natsauth.StartCallout(a.groupCtx, calloutConn, a.cfg.NATSKeys,
			natsauth.CalloutConfig{Admit: gate.admit, Logger: a.log.With("component", "callout")}, a.service)
		if err != nil {
			return fmt.Errorf("start auth callout: %w", err)
		}
		callout := a.callout
		a.metrics.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "sqlgate_nats_callout_unverified_total",
				Help: "Auth callout connections refused with a token that names no one (none, too large, not a JWT, an issuer not trusted, a signature that does not verify); not audited.",
			}, func() float64 { return float64(callout.Stats().Unverified) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "sqlgate_nats_callout_busy_total",
				Help: "Auth callout connections refused at once because the callout's workers and queue were full.",
			}, func() float64 { return float64(callout.Stats().Busy) }),
		)
	}
	return nil
}

// startMicro starts the routed-call service on the broker account.
func (a *app) startMicro(pub natsauth.PublicKeys) error {
	// The broker user may not publish to the route subjects nor to
	// sqlgate.async.>: requests there must come through the users import.
	brokerConn, gate, err := a.connect("sqlgated-"+a.cfg.Instance, a.cfg.NATSKeys.BrokerUser(a.cfg.Catalog.Subjects()...))
	if err != nil {
		return err
	}
	// Calls mostly wait (durable audit intent, then SQL): the worker pool is
	// sized for waiting, not for cores. The database pool bounds SQL work.
	workers := a.cfg.NATSWorkers
	if workers <= 0 {
		workers = defaultWorkers
	}
	handler := newMeteredHandler(a.service, a.metrics)
	handler.initRoutes(a.cfg.Catalog.Subjects())
	serverPublished := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlgate_nats_server_published_dropped_total",
		Help: "Messages on route subjects the NATS server published itself (kind Account, JetStream or System: a message-trace event, for instance), dropped unanswered and not audited.",
	}, []string{"kind"})
	for _, kind := range []string{"Account", "JetStream", "System"} {
		serverPublished.WithLabelValues(kind)
	}
	a.metrics.MustRegister(serverPublished)
	micro, err := natsvc.Start(a.groupCtx, brokerConn, natsvc.Config{
		Name: "sqlgate", Version: semver(version), Description: "sqlgate routed calls",
		Subjects: a.cfg.Catalog.Subjects(), Workers: workers, QueueLen: a.cfg.NATSQueueLen,
		UsersAccount: pub.Users, SigningKeys: pub.UsersSigning,
		Admit: gate.admit, Logger: a.log.With("component", "natsvc"),
		OnServerPublished: func(kind string) { serverPublished.WithLabelValues(kind).Inc() },
	}, handler)
	if err != nil {
		return fmt.Errorf("start micro service: %w", err)
	}
	a.micro = micro
	var async []string
	ackWait := time.Duration(0)
	maxPayload := 0
	for _, r := range a.cfg.Catalog.Routes() {
		if r.Mode == route.Async {
			async = append(async, r.Subject)
			ackWait = max(ackWait, longestCall(r))
			maxPayload = max(maxPayload, r.MaxPayload)
		}
	}
	if len(async) == 0 {
		return nil
	}
	settled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sqlgate_async_messages_total", Help: "Deliveries of async requests, by how they were settled (ok, final, retry, gave_up, dropped, returned).",
	}, []string{"settled"})
	for _, how := range []string{natsvc.SettledOK, natsvc.SettledFinal, natsvc.SettledRetry, natsvc.SettledGaveUp, natsvc.SettledDropped, natsvc.SettledReturned} {
		settled.WithLabelValues(how) // at 0 from the start: an alert on increase() sees the first
	}
	streamOK := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sqlgate_async_stream_ok",
		Help: "1 while the async stream SQLGATE_ASYNC and its consumer answer, 0 while they do not (async publishes refused or unacknowledged, queued requests waiting).",
	})
	a.metrics.MustRegister(settled, streamOK)
	// A delivered message gets the route's timeout and room for the audit
	// writes before JetStream delivers it again. natsvc renews the ack wait
	// while a message waits for a worker and while its call runs, so the
	// wait covers a message's time in the fetch's buffer (about one call at
	// most), and is how long a dead instance's messages wait for another.
	a.async, err = natsvc.StartAsync(a.groupCtx, brokerConn, natsvc.AsyncConfig{
		Subjects: async, UsersAccount: pub.Users, Workers: workers, MaxAge: a.cfg.AsyncMaxAge, Replicas: a.cfg.AsyncReplicas,
		AckWait: ackWait + 30*time.Second, MaxPayload: int32(min(maxPayload+asyncHeaderRoom, math.MaxInt32)),
		OnSettle:       func(how string) { settled.WithLabelValues(how).Inc() },
		OnStreamHealth: func(err error) { setServing(streamOK, err == nil) },
		Admit:          gate.admit,
		Logger:         a.log.With("component", "async"),
	}, handler)
	if err != nil {
		return fmt.Errorf("start async consumer: %w", err)
	}
	return nil
}

// longestCall is the longest a call of r may run before it is answered:
// its timeout, and on a route with batch three of them (the wait for the
// batch ahead, the batch, the call alone after a failed batch). The async
// ack wait adds room for the audit writes and the lookup of a failed call.
func longestCall(r *route.Route) time.Duration {
	if r.Batch > 1 {
		return 3 * r.Timeout
	}
	return r.Timeout
}

// asyncHeaderRoom is what the stream allows beyond the largest payload for
// the headers of a message.
const asyncHeaderRoom = 8 << 10

// connect opens one of sqlgated's own NATS connections; it reconnects for
// ever and logs state changes. The server must be minNATSServerVersion or
// later, at the first connect (else connect fails) and at every reconnect
// (else the connection is closed and the instance stops: refuseServer).
// The gate it returns admits the connection's messages only from such a
// server: every handler of them must ask it first (serverGate).
func (a *app) connect(name string, auth nats.Option) (*nats.Conn, *serverGate, error) {
	gate := newServerGate(name, a.log)
	opts := append([]nats.Option{
		auth, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed on purpose
				a.log.WarnContext(context.Background(), "nats disconnected", "conn", name, "err", err)
			}
		}),
		// Asynchronous errors, e.g. a permissions violation: the broker
		// user may not publish to route subjects (see natsauth.BrokerUserJWT).
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			a.log.WarnContext(context.Background(), "nats error", "conn", name, "err", err)
		}),
	}, a.cfg.NATSConnect...)
	var conn atomic.Pointer[nats.Conn] // nil until Connect returns: a refusal before is connect's to report
	// After the caller's options: the gate must close before every
	// reconnect attempt and open only in this handler, which no option of
	// the caller may replace.
	opts = append(opts, nats.ReconnectHandler(func(nc *nats.Conn) {
		if err := gate.connected(nc); errors.Is(err, errGateRefused) {
			return // reported when it was refused
		} else if err != nil {
			a.refuseServer(nc, name, nc.ConnectedUrlRedacted(), err)
			return
		}
		a.log.InfoContext(context.Background(), "nats reconnected", "conn", name, "server_version", nc.ConnectedServerVersion())
	}), gate.option(func(left nats.ServerInfo, err error) {
		if nc := conn.Load(); nc != nil {
			a.refuseServer(nc, name, fmt.Sprintf("nats-server %s (%s)", left.Name, net.JoinHostPort(left.Host, strconv.Itoa(left.Port))), err)
		}
	}))
	nc, err := nats.Connect(a.cfg.NATSURL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS as %s: %w", name, err)
	}
	conn.Store(nc)
	if err := gate.connected(nc); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("connect to NATS as %s: %s: %w", name, nc.ConnectedUrlRedacted(), err)
	}
	a.conns = append(a.conns, nc)
	return nc, gate, nil
}

// issuerURLs lists the configured identity issuers' URLs (web.Config.Issuers).
func issuerURLs(issuers []oidc.IssuerConfig) []string {
	out := make([]string, len(issuers))
	for i, ic := range issuers {
		out[i] = ic.Issuer
	}
	return out
}

// minNATSServerVersion is the oldest nats-server sqlgated serves through
// (docs/nats.md): Nats-Request-Info, the header that says who sent a
// request, can be spoofed before the fixes of 2.11.15 and 2.12.6
// (CVE-2026-33223), and before 2.15.3 it lacks the tags and JWT name of
// auth callout users, which sqlgate reads.
const minNATSServerVersion = "2.15.3"

// errOldNATSServer is the error of a server older than minNATSServerVersion.
var errOldNATSServer = errors.New("nats-server is too old")

// checkNATSServerVersion refuses a server version (as the server announces
// it in INFO) below minNATSServerVersion, or that is no version: the
// identity of every request would rest on a header a client can forge.
func checkNATSServerVersion(v string) error {
	c := modsemver.Canonical("v" + strings.TrimPrefix(v, "v"))
	switch {
	case c == "":
		return fmt.Errorf("%w: the server announces version %q, which is no version; sqlgated needs nats-server %s or later (docs/nats.md)", errOldNATSServer, v, minNATSServerVersion)
	case modsemver.Compare(c, "v"+minNATSServerVersion) < 0:
		return fmt.Errorf("%w: the server runs %s, and sqlgated needs %s or later (docs/nats.md): Nats-Request-Info, which says who sent "+
			"a request, can be forged before 2.11.15 and 2.12.6 (CVE-2026-33223), and lacks the tags of auth callout users before 2.15.3; upgrade nats-server",
			errOldNATSServer, v, minNATSServerVersion)
	}
	return nil
}

// refuseServer handles a reconnect to a server sqlgated must not serve
// through, or a reconnect attempt away from one (serverGate): the
// connection's gate is refused already, so nothing that server delivers is
// handled; the connection is closed, and the instance stops with the error
// (fail), its calls drained and its audit log closed. Under systemd or
// Kubernetes it is restarted, and refuses to start until the servers are
// upgraded.
func (a *app) refuseServer(nc *nats.Conn, name, server string, err error) {
	err = fmt.Errorf("NATS connection %s reached %s: %w", name, server, err)
	a.log.ErrorContext(context.Background(), "nats server refused: closing the connection and stopping", "conn", name, "err", err)
	go nc.Close() // not from the client's callback goroutine
	a.fail(err)
}

// fail stops a running instance with err: wait returns it (the first, if
// several).
func (a *app) fail(err error) {
	select {
	case a.failed <- err:
	default:
	}
}

func (a *app) startWeb(ctx context.Context, cdb *control.DB) error {
	sessions, err := control.OpenSessionStore(ctx, cdb)
	if err != nil {
		return err
	}
	var sqlLeases web.SQLLeases
	if a.leases != nil {
		sqlLeases = a.leases
	}
	as := &auditService{log: a.audit, store: a.store, signer: a.cfg.Audit.Signer, previousKeys: a.cfg.Audit.PreviousKeys}
	if missing, err := as.untrustedKeys(ctx); err != nil {
		a.log.WarnContext(ctx, "cannot read the audit key history", "err", err)
	} else if len(missing) > 0 {
		a.log.WarnContext(ctx, "audit keys this log used are not in audit.previousVerifierKeys: the dashboard's verification and evidence will fail the checkpoints they signed; add them back",
			"verifier_keys", missing)
	}
	srv, err := web.New(web.Config{
		Broker: a.service, Auth: a.verifier, SignIns: a.service, Issuances: a.registry, Login: a.login, SQLLeases: sqlLeases,
		Issuers: issuerURLs(a.cfg.Identity.Issuers),
		Audit:   as,
		Policy:  &policyService{engine: a.engine, dir: a.cfg.PolicyDir},
		Ready:   a.ready, Registry: a.metrics, MetricsElsewhere: a.cfg.MetricsListener != nil, NATSURL: a.cfg.Discovery.NATSURL, Discovery: a.cfg.Discovery,
		AdminGroups: a.cfg.AdminGroups, AuditorGroups: a.cfg.AuditorGroups,
		Secure: a.cfg.BrowserTLS, Sessions: webSessions{sessions}, Mounts: a.cfg.Mounts, Logger: a.log.With("component", "web"),
	})
	if err != nil {
		return err
	}
	var h http.Handler = srv
	a.handler.Store(&h)
	return nil
}

// serveHTTP starts the HTTP server on the configured listener. Until
// startWeb swaps in the real handler it serves only the mounts (the dev
// identity provider) and answers 503 elsewhere.
func (a *app) serveHTTP() {
	boot := http.NewServeMux()
	for prefix, h := range a.cfg.Mounts {
		boot.Handle(prefix, h)
	}
	boot.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "sqlgated is starting", http.StatusServiceUnavailable)
	}))
	var h http.Handler = boot
	a.handler.Store(&h)
	a.http = apiServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.handlers.enter()
		defer a.handlers.leave()
		(*a.handler.Load()).ServeHTTP(w, r)
	}), a.log)
	ln := limitConnections(a.cfg.Listener, httpConnections(a.cfg.MaxHTTPConnections))
	if a.cfg.TLSCert != nil {
		a.http.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*a.cfg.TLSCert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, a.http.TLSConfig)
	}
	a.group.Go(func() error {
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	a.serveMetrics()
}

// Bounds of the API and dashboard server's requests.
const (
	// apiMaxHeaderBytes bounds a request's header (Go's default is 1 MiB):
	// bearer tokens with many groups fit many times over.
	apiMaxHeaderBytes = 64 << 10
	// apiReadHeaderTimeout bounds the TLS handshake and the header.
	apiReadHeaderTimeout = 10 * time.Second
	// apiReadTimeout bounds reading a whole request, header and body (at
	// most 1 MiB: web.maxDocBody). Go clears the read deadline once the body
	// is read, so a long download is not cut by it.
	apiReadTimeout = time.Minute
	// apiIdleTimeout closes a kept-alive connection that sends nothing.
	apiIdleTimeout = 2 * time.Minute
)

// apiServer is the API and dashboard's http.Server (also the metrics
// listener's). It sets no WriteTimeout: the audit export, the recorded
// policy inputs and the evidence archive are sent for as long as they are
// large, and a deadline on the whole response would cut a healthy download
// (the client sees a broken transfer). Only auditors and admins get those
// and other large answers (audit records); the rest fit the socket's
// buffer, so a client that stops reading does not hold the handler, and
// its idle connection is closed after apiIdleTimeout.
func apiServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		ReadHeaderTimeout: apiReadHeaderTimeout,
		ReadTimeout:       apiReadTimeout,
		IdleTimeout:       apiIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// serveMetrics serves /metrics on a listener of its own (http.metricsListen)
// when one is configured: there, unlike on the API's port, only what the
// scrapers reach sees the route names and counts. Stopped with the API's
// server (stopHTTP).
func (a *app) serveMetrics() {
	if a.cfg.MetricsListener == nil {
		return
	}
	ln := limitConnections(a.cfg.MetricsListener, metricsConnections)
	srv := apiServer(web.MetricsHandler(a.metrics), a.log)
	if a.cfg.TLSCert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*a.cfg.TLSCert}, MinVersion: tls.VersionTLS12}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	a.metricsHTTP = srv
	a.group.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics http server: %w", err)
		}
		return nil
	})
}

// Bounds of the HTTP servers' stop, after the shutdown delay: it runs while
// the transports drain, and the stop's bound (shutdownBound) takes the
// longer of the two; without a delay it fits within drainMargin.
const (
	// httpShutdownBound is how long the requests in progress have to
	// finish (API and dashboard requests are short: no routed call runs
	// over HTTP). Then the remaining connections are closed: a client that
	// stalls in the middle of a request, or a long download, cannot hold
	// the stop, nor use up the audit log's last writes.
	httpShutdownBound = 5 * time.Second
	// httpHandlersBound is how long the handlers of the closed connections
	// (their requests' contexts canceled) have to return before the audit
	// log closes under them: what they would still append is refused.
	httpHandlersBound = 5 * time.Second
)

// stopHTTP stops the API's and the metrics listener's servers: no new
// connections, the requests in progress answered within httpShutdownBound,
// then the connections left closed, and the API's handlers awaited (at most
// httpHandlersBound), since they append audit records: only then may the
// audit log close.
func (a *app) stopHTTP(ctx context.Context) {
	var wg sync.WaitGroup
	for _, srv := range []*http.Server{a.http, a.metricsHTTP} {
		if srv == nil {
			continue
		}
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, httpShutdownBound)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				a.log.WarnContext(ctx, "http requests still in progress at the shutdown deadline: closing their connections", "waited", httpShutdownBound, "err", err)
				_ = srv.Close()
			}
		})
	}
	wg.Wait()
	hctx, cancel := context.WithTimeout(ctx, httpHandlersBound)
	defer cancel()
	if err := a.handlers.wait(hctx); err != nil {
		a.log.WarnContext(ctx, "http handlers still running after their connections closed; what they append to the audit log now is refused",
			"handlers", a.handlers.count(), "waited", httpHandlersBound)
	}
}

// inflight counts requests being handled, and lets the stop wait for none.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0, for a waiter
}

func (f *inflight) enter() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
}

func (f *inflight) leave() {
	f.mu.Lock()
	f.n--
	if f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
	f.mu.Unlock()
}

func (f *inflight) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// wait returns once no request is being handled, or with ctx's error.
func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return nil
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	idle := f.idle
	f.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startLeases enables short-lived SQL logins when a database offers them,
// and runs the lease reaper (which first finishes or undoes half-done
// leases of this instance).
func (a *app) startLeases(ctx context.Context, cdb *control.DB) error {
	store, err := control.OpenLeaseStore(ctx, cdb)
	if err != nil {
		return err
	}
	if err := reportStranded(ctx, a.log, store, a.cfg.LoginIssuers); err != nil {
		return err
	}
	if len(a.cfg.LoginIssuers) == 0 {
		return nil
	}
	lc := a.cfg.Leases
	lc.Service, lc.Store, lc.Issuers = a.service, store, a.cfg.LoginIssuers
	lc.Logger = a.log.With("component", "leases")
	if lc.Instance == "" {
		lc.Instance = a.cfg.Instance
	}
	leases, err := broker.NewLeases(lc)
	if err != nil {
		return err
	}
	a.leases = leases
	a.group.Go(func() error { return leases.RunReaper(a.groupCtx, a.cfg.ReaperInterval) })
	return nil
}

// reportStranded logs, at every start, the unfinished SQL leases of
// databases no longer configured to issue logins: nothing can revoke them,
// so their logins stay valid until VALID UNTIL and their sessions stay open
// (the database was renamed, or its postgresLogins or sqlserverLogins
// removed).
func reportStranded(ctx context.Context, log *slog.Logger, store broker.LeaseStore, issuers map[string]broker.SQLLoginIssuer) error {
	stranded, err := broker.StrandedLeases(ctx, store, issuers)
	if err != nil {
		return err
	}
	for _, db := range slices.Sorted(maps.Keys(stranded)) {
		log.ErrorContext(ctx, strandedMessage, slog.String("database", db), slog.Int("leases", stranded[db]))
	}
	return nil
}

const strandedMessage = "unfinished SQL leases of a database that no postgresLogins or sqlserverLogins entry issues: " +
	"their logins stay valid until they expire and their sessions stay open; configure the database's logins again until the reaper has revoked them"

// ready reports what keeps sqlgated from serving, for /readyz: a fixed
// component name each (served) and the detail (logged only).
//
// A failed reload does not: the last good revision keeps deciding every
// call, and one bad policy push would otherwise take every replica out of
// its Service at once. It is reported by GET /api/v1/policy/status, the
// policy_load_failed audit record, sqlgate_policy_reloads_total and
// sqlgate_policy_load_failed.
func (a *app) ready(ctx context.Context) []web.NotReady {
	var out []web.NotReady
	if a.stopping.Load() {
		// Beside the others, not instead of them: the gate (blocksCalls)
		// must not rejoin the queue group while a component still fails.
		out = append(out, web.NotReady{Component: "stopping", Err: errors.New("the instance is stopping")})
	}
	if st := a.engine.Status(); !st.Ready() {
		err := errors.New("no policy loaded")
		if st.LastError != nil {
			err = fmt.Errorf("no policy loaded: %w", st.LastError)
		}
		out = append(out, web.NotReady{Component: "policy", Err: err})
	}
	for _, nc := range a.conns {
		if !nc.IsConnected() {
			out = append(out, web.NotReady{Component: "nats", Err: fmt.Errorf("nats connection %s is %s", nc.Opts.Name, nc.Status())})
		}
	}
	if err := a.cfg.ControlDB.PingContext(ctx); err != nil {
		out = append(out, web.NotReady{Component: "control database", Err: err})
	}
	if err := auditNotReady(a.audit, a.claim); err != nil {
		out = append(out, web.NotReady{Component: "audit log", Err: err})
	}
	return out
}

// auditNotReady says why the audit log cannot take the calls' records, nil
// when it can.
//
// A database can answer a ping and still refuse writes (a read-only replica
// after a failover, a full disk): then every call is refused. A store that
// holds every write (a lock on the audit table) fails no write until the
// write times out, while every call hangs: the log reports it stalled once
// its oldest pending append has waited past audit.StallBound. A lost origin
// claim refuses every write, and says why, before the next write fails.
func auditNotReady(log *audit.Log, claim interface{ Err() error }) error {
	err := log.WriteError()
	if serr := log.Stalled(); serr != nil {
		err = serr
	}
	if cerr := claim.Err(); cerr != nil {
		err = cerr
	}
	return err
}

// recoverStrandedLoop writes the outcomes this run's calls could not append
// (recoverStranded) every strandedInterval while there are any, until ctx
// ends; wait waits (tests drive it). A pass that fails is logged, and the
// next one waits twice as long, up to strandedBackoffLast.
func (a *app) recoverStrandedLoop(ctx context.Context, wait func(context.Context, time.Duration) error) {
	delay := strandedInterval
	for {
		if err := wait(ctx, delay); err != nil {
			return
		}
		if a.audit.Stats().Stranded == 0 {
			delay = strandedInterval
			continue
		}
		if err := a.recoverStranded(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			delay = min(2*delay, strandedBackoffLast)
			a.log.WarnContext(ctx, "audit outcomes of calls whose outcome append failed are not recovered yet; retrying",
				"err", err, "retry_in", delay)
			continue
		}
		delay = strandedInterval
	}
}

// recoverStrandedAtStop is the last pass of recoverStrandedLoop, at the
// stop once the accepted calls have ended or the drain bound ran out: an
// instance scaled down for good has no next start to recover them. The log reads the store again first (a write
// that failed may have been stored). What stays stranded is logged; the
// next start of this origin recovers it.
func (a *app) recoverStrandedAtStop(ctx context.Context) {
	if a.stopStranded == nil {
		return // it never ran
	}
	a.stopStranded()
	if a.audit.Stats().Stranded == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, strandedStopBound)
	defer cancel()
	err := a.audit.Sync(ctx)
	if err == nil {
		err = a.recoverStranded(ctx)
	}
	if n := a.audit.Stats().Stranded; n > 0 {
		a.log.WarnContext(ctx, "stopping with audit intents whose outcome is not written: the next start of this audit origin recovers them",
			"intents", n, "err", err)
	}
}

// recoverStranded runs one pass of recoverStranded, never two at once.
func (a *app) recoverStranded(ctx context.Context) error {
	a.stranded.Lock()
	defer a.stranded.Unlock()
	return recoverStranded(ctx, a.audit, a.cfg.Executors, a.boundary, a.log)
}

// strandedStopBound bounds recoverStrandedAtStop, within lastWritesMargin.
const strandedStopBound = 5 * time.Second

// housekeeping prunes expired issuances and old idempotency records: a
// minute after start (so an instance restarted more often than hourly still
// prunes), then once an hour.
func (a *app) housekeeping(ctx context.Context, metrics pruneMetrics) error {
	next := time.NewTimer(time.Minute)
	defer next.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-next.C:
			if n, err := a.registry.Prune(ctx, time.Now().Add(-issuanceKeep(a.cfg.AsyncMaxAge))); err != nil {
				a.log.WarnContext(ctx, "prune issuances failed", "err", err)
			} else if n > 0 {
				a.log.InfoContext(ctx, "pruned expired issuances", "count", n)
			}
			pruneIdempotency(ctx, a.audit, a.cfg.Executors, a.cfg.IdempotencyRetention, time.Now(), a.log, metrics)
			next.Reset(time.Hour)
		}
	}
}

// issuanceKeep is how long housekeeping keeps an issuance after it
// expired: 24 hours, and an hour more than a queued async request may wait
// (asyncMaxAge), because such a request is judged by the credential that
// was valid when the stream stored it: pruned sooner, its retry after a long
// outage would be refused unauthenticated, for good.
func issuanceKeep(asyncMaxAge time.Duration) time.Duration {
	if asyncMaxAge <= 0 {
		asyncMaxAge = natsvc.DefaultAsyncMaxAge
	}
	return max(24*time.Hour, asyncMaxAge+time.Hour)
}

// wait blocks until ctx ends or a component fails.
func (a *app) wait(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- a.group.Wait() }()
	select {
	case <-ctx.Done():
		return nil
	case err := <-done:
		return err
	case err := <-a.failed:
		return err
	}
}

// shutdown stops everything in reverse order within a bounded time. It
// logs the drain's start and end, the audit log's final checkpoint (with
// the closers) and the end: a stop is visible in the log.
func (a *app) shutdown(ctx context.Context) {
	// The transports answer the calls they accepted, each within its route's
	// timeout, and the HTTP servers theirs within a few seconds
	// (stopHTTP), side by side; only then does the budget of the audit
	// log's last writes start, so neither a slow call nor a stalled HTTP
	// client can use it up.
	//
	// /readyz answers 503 at once, but the API and dashboard keep serving
	// for ShutdownDelay: Kubernetes takes the pod out of its Service's
	// endpoints while it sends SIGTERM, and until every node and load
	// balancer has seen that, new connections still arrive here.
	a.stopping.Store(true)
	bound := a.drainBound()
	a.log.InfoContext(ctx, "stopping: taking no new calls, answering the accepted ones", "bound", bound)
	began := time.Now()
	httpStopped := make(chan struct{})
	go func() {
		defer close(httpStopped)
		if d := a.cfg.ShutdownDelay; d > 0 {
			a.log.InfoContext(ctx, "stopping: the API keeps serving for the shutdown delay, /readyz answers 503", "delay", d)
			_ = ctxsleep.Sleep(ctx, d)
		}
		a.stopHTTP(ctx)
	}()
	drained := a.stopTransports(ctx, bound)
	took := time.Since(began) // the calls', not the HTTP servers' shutdown delay
	<-httpStopped
	ctx, cancel := context.WithTimeout(ctx, lastWritesMargin)
	defer cancel()
	if a.service != nil {
		if err := a.service.Drain(ctx); err != nil {
			drained = false
			a.log.WarnContext(ctx, "shutdown", "err", err)
		}
	}
	if drained {
		a.log.InfoContext(ctx, "stopping: the accepted calls are answered", "took", took.Round(time.Millisecond))
	}
	a.recoverStrandedAtStop(ctx)
	for _, nc := range a.conns {
		nc.Close()
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](ctx); err != nil {
			a.log.WarnContext(ctx, "shutdown", "err", err)
		}
	}
	closeExecutors(a.cfg.Executors)
	if a.cfg.ControlDB != nil {
		_ = a.cfg.ControlDB.Close()
	}
	a.log.InfoContext(ctx, "stopped")
}

// logFinalCheckpoint logs the checkpoint a closed audit log ended with:
// what its write-once copies and its auditors should have last.
func logFinalCheckpoint(ctx context.Context, logger *slog.Logger, log *audit.Log) {
	cp, err := log.Latest(ctx)
	if err != nil {
		logger.InfoContext(ctx, "audit log closed without a checkpoint", "origin", log.Origin(), "size", log.Size())
		return
	}
	logger.InfoContext(ctx, "audit log closed", "origin", cp.Origin, "size", log.Size(),
		"checkpoint_size", cp.Size, "checkpoint_root", cp.Root.String(), "checkpoint_time", cp.Time.UTC().Format(time.RFC3339Nano))
}

// Shutdown margins beyond the longest a call may run (longestCall): the
// transports' (the audit intent before a call and the reply after it) and the audit
// log's last writes once the calls are answered. serve --check compares
// their sum with the stop budget of the shipped unit and chart.
const (
	drainMargin      = 15 * time.Second
	lastWritesMargin = 15 * time.Second
)

// drainBound is how long the transports may take to answer the calls they
// accepted at shutdown: the longest a call may run (longestCall) and
// drainMargin.
func (a *app) drainBound() time.Duration {
	return longestCalls(a.cfg.Catalog) + drainMargin
}

// longestCalls is the longest any call of catalog may run (longestCall);
// 0 without a catalog.
func longestCalls(catalog *route.Catalog) time.Duration {
	longest := time.Duration(0)
	if catalog != nil {
		for _, r := range catalog.Routes() {
			longest = max(longest, longestCall(r))
		}
	}
	return longest
}

// stopTransports stops taking calls and waits, at most bound, for the ones
// accepted to be answered, and reports whether they were. A call still
// running then finishes on its own or dies with the process; its intent
// without an outcome is repaired at the next start.
func (a *app) stopTransports(ctx context.Context, bound time.Duration) bool {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if a.micro != nil {
			if err := a.micro.Stop(); err != nil {
				a.log.WarnContext(ctx, "stop micro service", "err", err)
			}
		}
		if a.async != nil {
			if err := a.async.Stop(); err != nil {
				a.log.WarnContext(ctx, "stop async consumer", "err", err)
			}
		}
		if a.callout != nil {
			if err := a.callout.Stop(); err != nil {
				a.log.WarnContext(ctx, "stop auth callout", "err", err)
			}
		}
	}()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-timer.C:
		a.log.WarnContext(ctx, "calls still running at the shutdown deadline; their outcomes are recovered at the next start", "waited", bound)
		return false
	}
}

func emits(c *route.Catalog) []string {
	var out []string
	for _, r := range c.Routes() {
		if r.Emit != "" {
			out = append(out, r.Emit)
		}
	}
	return out
}

// semver turns the build version into the semver micro requires (a
// service with another version does not start). A release tag is used as
// is; anything else, such as the commit id `git describe` gives between
// tags, becomes the pre-release of 0.0.0.
func semver(v string) string {
	if c := modsemver.Canonical("v" + strings.TrimPrefix(v, "v")); c != "" {
		return c[1:]
	}
	pre := strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') {
			return r
		}
		return '-'
	}, v)
	if c := modsemver.Canonical("v0.0.0-" + pre); c != "" {
		return c[1:]
	}
	return "0.0.0-dev"
}

// controlConns is the control database's connection pool: the audit
// writer, the intent bookkeeping, the registry and the dashboard share it.
// Every connection is kept: database/sql keeps two idle by default and
// closes the others after each use, and a new PostgreSQL or SQL Server
// session costs the server far more than the statement it was opened for.
const controlConns = 16

// sizeControlPool applies controlConns to db.
func sizeControlPool(db *sql.DB) {
	db.SetMaxOpenConns(controlConns)
	db.SetMaxIdleConns(controlConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
}
