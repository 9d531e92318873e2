package natsauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/internal/logsample"
	"github.com/sqlgate/sqlgate/policy"
)

const (
	calloutSubject    = "$SYS.REQ.USER.AUTH"
	calloutAudience   = "nats-authorization-request"
	serverXKeyHeader  = "Nats-Server-Xkey"
	refusalText       = "not authorized"
	maxCalloutRequest = 256 << 10
)

// DefaultMaxTokenBytes bounds the OIDC token a callout client may present.
const DefaultMaxTokenBytes = 16 << 10

// Errors of callout request decoding and token extraction. The client sees
// none of them: a refused connection gets "Authorization Violation".
var (
	// ErrCalloutRequest: the request is not a valid, current authorization
	// request signed by a NATS server for our auth account.
	ErrCalloutRequest = errors.New("invalid auth callout request")
	// ErrNoToken: the client sent no token in CONNECT.
	ErrNoToken = errors.New("auth callout: no token")
	// ErrTokenTooLarge: the token exceeds the configured bound.
	ErrTokenTooLarge = errors.New("auth callout: token too large")
)

// CalloutHandler decides an auth callout: it verifies req.Token, evaluates
// policy, mints a user JWT for req.UserKey (the server-generated key) and
// records the issuance and its audit record. Any error refuses the
// connection; the handler's error text is logged, never sent to the client.
// An error matching [broker.ErrUnverifiedToken] (a token that names no one)
// is counted in [CalloutStats] and logged as a sample only, like a missing
// or oversized token. Implementations must be safe for concurrent use.
type CalloutHandler interface {
	Callout(ctx context.Context, req broker.CalloutRequest) (*broker.NATSCredential, error)
}

// CalloutConfig configures the auth callout responder.
type CalloutConfig struct {
	// MaxTokenBytes bounds the token (0: [DefaultMaxTokenBytes]).
	MaxTokenBytes int
	// Workers is the number of requests handled at once (0: 8); QueueLen the
	// number waiting (0: 256). A request that finds the queue full is
	// refused at once.
	Workers, QueueLen int
	// QueueGroup lets several sqlgated instances share the callout (default
	// "sqlgate-callout").
	QueueGroup string
	// Timeout bounds the handler (0: 1.5s, below the server's default 2s
	// auth timeout); the request's own expiry bounds it too.
	Timeout time.Duration
	// MaxClockSkew tolerated on the request's expiry (0: 5s).
	MaxClockSkew time.Duration
	// Admit, if set, is asked first for every request received; a request
	// it refuses is dropped unanswered (sqlgated admits only what a NATS
	// server it accepts delivered). It must be cheap and safe for
	// concurrent use.
	Admit func() bool
	// Logger receives refusals (reasons only, never tokens); nil: discard.
	// Refusals of tokens that name no one and of requests that find the
	// queue full are logged at most once per [CalloutLogEvery] each, with
	// the number of refusals not logged since the previous line.
	Logger *slog.Logger
}

// CalloutLogEvery is how often at most the responder logs a refusal of a
// token that names no one, and a refusal because it is busy: anyone who
// holds the sentinel credentials can send such tokens without end.
const CalloutLogEvery = 10 * time.Second

// CalloutStats counts the refusals of a responder since it started.
type CalloutStats struct {
	// Unverified counts the tokens refused that name no one: none, too
	// large, or refused by the handler with [broker.ErrUnverifiedToken]
	// (not a JWT, an issuer not trusted, a signature that does not
	// verify...). None of them is audited.
	Unverified uint64
	// Busy counts the requests refused at once because the queue was
	// full.
	Busy uint64
}

// Callout is a running auth callout responder.
type Callout struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	keys    *Keys
	h       CalloutHandler
	dec     requestDecoder
	timeout time.Duration
	log     *slog.Logger
	jobs    chan *nats.Msg
	wg      sync.WaitGroup
	// cancel ends the workers' context once they have finished (Stop).
	cancel context.CancelFunc
	unreg  func() bool
	once   sync.Once

	// qmu guards sending on jobs against its closing (Stop).
	qmu    sync.Mutex
	closed bool

	mu   sync.Mutex
	seen map[string]int64 // request jti -> expiry (unix)

	unverified, busy       atomic.Uint64
	unverifiedLog, busyLog logsample.Sampler
	logNow                 func() time.Time // the samples' clock
}

// Stats returns the responder's refusal counts (for metrics).
func (c *Callout) Stats() CalloutStats {
	return CalloutStats{Unverified: c.unverified.Load(), Busy: c.busy.Load()}
}

// StartCallout subscribes to `$SYS.REQ.USER.AUTH` on nc, a connection of the
// callout user of the auth account ([Keys.CalloutUser]), and answers each
// authorization request: it decrypts it with the xkey, checks that a NATS
// server signed it for our auth account and that it is current and not
// replayed, extracts the token from CONNECT (`auth_token`) and the
// server-generated user key, calls h, and replies with an authorization
// response signed by the auth account and encrypted to the server's xkey:
// the user JWT, or an error. Requests that fail these checks are dropped (the
// server refuses the client when its auth timeout passes). The responder
// stops as [Callout.Stop] describes when ctx ends or Stop is called; ctx's
// end does not cancel the requests being handled.
func StartCallout(ctx context.Context, nc *nats.Conn, keys *Keys, cfg CalloutConfig, h CalloutHandler) (*Callout, error) {
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 256
	}
	if cfg.QueueGroup == "" {
		cfg.QueueGroup = "sqlgate-callout"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 1500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Callout{
		nc: nc, keys: keys, h: h,
		dec:     newRequestDecoder(keys, cfg.MaxTokenBytes, cfg.MaxClockSkew),
		timeout: cfg.Timeout,
		log:     cfg.Logger,
		jobs:    make(chan *nats.Msg, cfg.QueueLen),
		seen:    make(map[string]int64),
	}
	c.logNow = time.Now
	// The workers' context outlives ctx: a login being decided when
	// sqlgated shuts down is answered, not refused (each is bounded by the
	// handler timeout and the request's expiry).
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	for range cfg.Workers {
		c.wg.Go(func() { c.work(wctx) })
	}
	abort := func() {
		c.closeQueue()
		c.wg.Wait()
		c.cancel()
	}
	sub, err := nc.QueueSubscribe(calloutSubject, cfg.QueueGroup, func(m *nats.Msg) {
		if cfg.Admit == nil || cfg.Admit() {
			c.enqueue(wctx, m)
		}
	})
	if err != nil {
		abort()
		return nil, fmt.Errorf("subscribe auth callout: %w", err)
	}
	fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
	err = nc.FlushWithContext(fctx)
	fcancel()
	if err != nil {
		_ = sub.Unsubscribe()
		abort()
		return nil, fmt.Errorf("subscribe auth callout: %w", err)
	}
	c.sub = sub
	c.unreg = context.AfterFunc(ctx, func() { _ = c.Stop() })
	return c, nil
}

// calloutDrainWait bounds how long Stop waits for the subscription to hand
// over the requests the client library had already received.
const calloutDrainWait = 5 * time.Second

// Stop stops taking requests and returns once every request it took has been
// answered: it drains the subscription (requests the client library already
// received are still queued; later ones go to the other instances of the
// queue group), then the workers handle what is queued or running, each
// request bounded by the handler timeout and its own expiry, and stop.
// Neither Stop nor the end of StartCallout's ctx cancels a request being
// handled: a client logging in during a rolling restart is answered.
func (c *Callout) Stop() error {
	var err error
	c.once.Do(func() {
		if c.unreg != nil {
			c.unreg()
		}
		drained := c.sub.StatusChanged(nats.SubscriptionClosed)
		err = c.sub.Drain()
		switch {
		case err == nil:
			select {
			case <-drained:
			case <-time.After(calloutDrainWait):
				// Requests still arriving are refused by enqueue.
			}
		case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrBadSubscription):
			err = nil // nothing more arrives
		}
		c.closeQueue()
		c.wg.Wait()
		c.cancel()
	})
	return err
}

// enqueue hands a request to the workers, or refuses it at once when the
// queue is full or closed.
func (c *Callout) enqueue(ctx context.Context, m *nats.Msg) {
	c.qmu.Lock()
	queued := false
	if !c.closed {
		select {
		case c.jobs <- m:
			queued = true
		default:
		}
	}
	c.qmu.Unlock()
	if !queued {
		c.refuseBusy(ctx, m)
	}
}

// closeQueue closes the queue: the workers handle what it holds, then return.
func (c *Callout) closeQueue() {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.jobs)
	}
}

func (c *Callout) work(ctx context.Context) {
	for m := range c.jobs {
		c.handle(ctx, m)
	}
}

func (c *Callout) refuseBusy(ctx context.Context, m *nats.Msg) {
	req, err := c.dec.decode(m.Data, m.Header.Get(serverXKeyHeader), time.Now())
	if err != nil {
		c.log.WarnContext(ctx, "auth callout request dropped", slog.String("reason", err.Error()))
		return
	}
	c.busy.Add(1)
	if ok, suppressed := c.busyLog.Allow(c.logNow(), CalloutLogEvery); ok {
		c.log.WarnContext(ctx, "auth callout refused", slog.String("reason", "busy"), slog.String("user_key", req.claims.UserNkey),
			slog.Int64("suppressed", suppressed))
	}
	c.reply(ctx, m, req, "", refusalText)
}

// refuseUnverified counts and answers the refusal of a token that names
// no one (err says why), and logs it when the sample lets it through.
func (c *Callout) refuseUnverified(ctx context.Context, log *slog.Logger, m *nats.Msg, req *calloutRequest, err error) {
	c.unverified.Add(1)
	if ok, suppressed := c.unverifiedLog.Allow(c.logNow(), CalloutLogEvery); ok {
		log.InfoContext(ctx, "auth callout refused a token that names no one",
			slog.String("reason", unverifiedReason(err)), slog.Int64("suppressed", suppressed))
	}
	c.reply(ctx, m, req, "", refusalText)
}

// unverifiedReason is what a log line says of a refusal of a token that
// names no one: the verifier's reason (never the token).
func unverifiedReason(err error) string {
	var ae *identity.AuthError
	switch {
	case errors.Is(err, ErrNoToken):
		return "no token"
	case errors.Is(err, ErrTokenTooLarge):
		return "token too large"
	case errors.As(err, &ae):
		return ae.Reason
	}
	return "unverified token"
}

func (c *Callout) handle(ctx context.Context, m *nats.Msg) {
	now := time.Now()
	req, err := c.dec.decode(m.Data, m.Header.Get(serverXKeyHeader), now)
	if err != nil {
		c.log.WarnContext(ctx, "auth callout request dropped", slog.String("reason", err.Error()))
		return
	}
	if c.replayed(req.id, req.claims.Expires, now) {
		c.log.WarnContext(ctx, "auth callout request dropped", slog.String("reason", "replayed request"))
		return
	}
	log := c.log.With(slog.String("user_key", req.claims.UserNkey), slog.String("server", req.claims.Server.Name))
	token, err := c.dec.token(req.claims)
	if err != nil {
		c.refuseUnverified(ctx, log, m, req, err)
		return
	}
	deadline := now.Add(c.timeout)
	if exp := time.Unix(req.claims.Expires, 0); exp.Before(deadline) {
		deadline = exp
	}
	hctx, cancel := context.WithDeadline(ctx, deadline)
	cred, err := c.h.Callout(hctx, broker.CalloutRequest{
		Token:   token,
		UserKey: req.claims.UserNkey,
		Client: policy.Client{
			Host:    req.claims.ClientInformation.Host,
			Name:    req.claims.ClientInformation.Name,
			Lang:    req.claims.ConnectOptions.Lang,
			Version: req.claims.ConnectOptions.Version,
			UserKey: req.claims.UserNkey,
			Account: c.keys.pub.Users,
		},
	})
	cancel()
	if errors.Is(err, broker.ErrUnverifiedToken) {
		c.refuseUnverified(ctx, log, m, req, err)
		return
	}
	if err != nil {
		log.InfoContext(ctx, "auth callout refused", slog.String("reason", err.Error()))
		c.reply(ctx, m, req, "", refusalText)
		return
	}
	if cred == nil {
		log.ErrorContext(ctx, "auth callout refused", slog.String("reason", "handler returned no credential"))
		c.reply(ctx, m, req, "", refusalText)
		return
	}
	if err := c.checkUserJWT(cred.JWT, req.claims.UserNkey); err != nil {
		log.ErrorContext(ctx, "auth callout refused", slog.String("reason", err.Error()))
		c.reply(ctx, m, req, "", refusalText)
		return
	}
	c.reply(ctx, m, req, cred.JWT, "")
}

// checkUserJWT makes sure the handler's JWT is one the server will accept
// for this connection: for the requested key, users account, our signing
// key, expiry set. It reads the claims without verifying the signature (the
// JWT comes from our own handler and the server verifies it; this check
// catches wiring mistakes, and saves an ed25519 verification per connect).
func (c *Callout) checkUserJWT(s, userKey string) error {
	var uc struct {
		Subject string `json:"sub"`
		Issuer  string `json:"iss"`
		Expires int64  `json:"exp"`
		Nats    struct {
			IssuerAccount string `json:"issuer_account"`
			Type          string `json:"type"`
		} `json:"nats"`
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return errors.New("handler returned a malformed user jwt")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &uc) != nil {
		return errors.New("handler returned an undecodable user jwt")
	}
	switch {
	case uc.Nats.Type != string(jwt.UserClaim):
		return errors.New("handler returned a jwt that is not a user jwt")
	case uc.Subject != userKey:
		return errors.New("handler returned a user jwt for another key")
	case uc.Nats.IssuerAccount != c.keys.pub.Users:
		return errors.New("handler returned a user jwt of another account")
	case !slices.Contains(c.keys.pub.UsersSigning, uc.Issuer):
		return errors.New("handler returned a user jwt not signed by a users signing key")
	case uc.Expires == 0:
		return errors.New("handler returned a user jwt without expiry")
	}
	return nil
}

func (c *Callout) reply(ctx context.Context, m *nats.Msg, req *calloutRequest, userJWT, errText string) {
	data, err := buildResponse(c.keys, req, userJWT, errText)
	if err != nil {
		c.log.ErrorContext(ctx, "auth callout response not built", slog.String("error", err.Error()))
		return
	}
	if err := m.Respond(data); err != nil {
		c.log.WarnContext(ctx, "auth callout response not sent", slog.String("error", err.Error()))
	}
}

// buildResponse signs an authorization response (user JWT or error) for req
// with the auth account key, addressed to the requesting server, and seals
// it to the server's xkey when the request was encrypted.
func buildResponse(keys *Keys, req *calloutRequest, userJWT, errText string) ([]byte, error) {
	rc := jwt.NewAuthorizationResponseClaims(req.claims.UserNkey)
	rc.Audience = req.claims.Server.ID
	rc.Jwt = userJWT
	rc.Error = errText
	s, err := rc.Encode(keys.auth)
	if err != nil {
		return nil, fmt.Errorf("sign response: %w", err)
	}
	if req.serverXKey == "" {
		return []byte(s), nil
	}
	data, err := keys.xkey.Seal([]byte(s), req.serverXKey)
	if err != nil {
		return nil, fmt.Errorf("seal response: %w", err)
	}
	return data, nil
}

// replayed records a request id (its signature: the jwt `jti` hashes only
// the standard claims, so two requests of one second share it) and reports
// whether it was seen before.
func (c *Callout) replayed(id string, exp int64, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[id]; ok {
		return true
	}
	if len(c.seen) >= 4096 {
		cut := now.Add(-c.dec.skew).Unix()
		for k, e := range c.seen {
			if e < cut {
				delete(c.seen, k)
			}
		}
	}
	c.seen[id] = exp
	return false
}

// calloutRequest is a decoded, checked authorization request.
type calloutRequest struct {
	claims *jwt.AuthorizationRequestClaims
	// id identifies this request: its signature.
	id string
	// serverXKey is the server's one-time curve key when the request was
	// encrypted; the response is sealed to it.
	serverXKey string
}

type requestDecoder struct {
	xkey      nkeys.KeyPair
	account   string
	maxToken  int
	skew      time.Duration
	encrypted bool
}

func newRequestDecoder(keys *Keys, maxToken int, skew time.Duration) requestDecoder {
	if maxToken <= 0 {
		maxToken = DefaultMaxTokenBytes
	}
	if skew <= 0 {
		skew = 5 * time.Second
	}
	return requestDecoder{xkey: keys.xkey, account: keys.pub.Auth, maxToken: maxToken, skew: skew, encrypted: keys.xkey != nil}
}

// decode decrypts (when the server sent its xkey) and checks an
// authorization request: size, signature by a server key that is also the
// request's server id, audience, our auth account as subject, a valid user
// key, an expiry that has not passed. With an xkey configured, unencrypted
// requests are refused.
func (d requestDecoder) decode(data []byte, serverXKey string, now time.Time) (*calloutRequest, error) {
	if len(data) == 0 || len(data) > maxCalloutRequest {
		return nil, fmt.Errorf("%w: size %d", ErrCalloutRequest, len(data))
	}
	if serverXKey != "" {
		if !nkeys.IsValidPublicCurveKey(serverXKey) {
			return nil, fmt.Errorf("%w: bad server xkey", ErrCalloutRequest)
		}
		if d.xkey == nil {
			return nil, fmt.Errorf("%w: encrypted but no xkey configured", ErrCalloutRequest)
		}
		plain, err := d.xkey.Open(data, serverXKey)
		if err != nil {
			return nil, fmt.Errorf("%w: cannot decrypt", ErrCalloutRequest)
		}
		data = plain
	} else if d.encrypted {
		return nil, fmt.Errorf("%w: not encrypted", ErrCalloutRequest)
	}
	claims, err := jwt.DecodeAuthorizationRequestClaims(string(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCalloutRequest, err)
	}
	vr := jwt.CreateValidationResults()
	claims.Validate(vr)
	switch {
	case len(vr.Errors()) > 0:
		return nil, fmt.Errorf("%w: %w", ErrCalloutRequest, errors.Join(vr.Errors()...))
	case !nkeys.IsValidPublicServerKey(claims.Issuer) || claims.Issuer != claims.Server.ID:
		return nil, fmt.Errorf("%w: not signed by the requesting server", ErrCalloutRequest)
	case claims.Audience != calloutAudience:
		return nil, fmt.Errorf("%w: wrong audience", ErrCalloutRequest)
	case claims.Subject != d.account:
		return nil, fmt.Errorf("%w: not for our auth account", ErrCalloutRequest)
	case claims.Expires == 0:
		return nil, fmt.Errorf("%w: no expiry", ErrCalloutRequest)
	case now.Add(-d.skew).Unix() > claims.Expires:
		return nil, fmt.Errorf("%w: expired", ErrCalloutRequest)
	case claims.IssuedAt > now.Add(d.skew).Unix():
		return nil, fmt.Errorf("%w: issued in the future", ErrCalloutRequest)
	case serverXKey != "" && claims.Server.XKey != serverXKey:
		return nil, fmt.Errorf("%w: xkey header does not match the request", ErrCalloutRequest)
	}
	sig := string(data)
	if i := strings.LastIndexByte(sig, '.'); i >= 0 {
		sig = sig[i+1:]
	}
	return &calloutRequest{claims: claims, id: sig, serverXKey: serverXKey}, nil
}

// token extracts the OIDC token the client sent in CONNECT.
func (d requestDecoder) token(c *jwt.AuthorizationRequestClaims) (string, error) {
	t := strings.TrimSpace(c.ConnectOptions.Token)
	switch {
	case t == "":
		return "", ErrNoToken
	case len(t) > d.maxToken:
		return "", ErrTokenTooLarge
	}
	return t, nil
}
