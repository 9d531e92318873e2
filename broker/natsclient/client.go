package natsclient

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/internal/ctxsleep"
	"github.com/sqlgate/sqlgate/web/api"
)

// Config configures [Connect].
type Config struct {
	FetchConfig
	// NATSURL overrides the NATS URL the broker advertises.
	NATSURL string
	// RefreshAt is the fraction of a credential's lifetime after which a new
	// one is fetched (0: 0.8).
	RefreshAt float64
	// Options are extra connect options (name, timeouts, reconnect policy,
	// handlers). The client's authentication and inbox prefix override
	// yours; your disconnect, reconnect, error and closed handlers are
	// called after the client's.
	Options []nats.Option
	// Logger receives refresh and reconnect events (nil: discard). Tokens
	// and seeds are never logged.
	Logger *slog.Logger

	retry *retryConfig // tests only: see export_test.go
}

// retryConfig replaces refusalWindow, minRefusals and retryDelay.
type retryConfig struct {
	window   time.Duration
	attempts int
	backoff  func(n int) time.Duration
}

// Client is a NATS connection authenticated with a short-lived credential
// that it keeps fresh: it generates its own key pair (the seed never leaves
// the process), fetches a user JWT from the broker, and refreshes it before
// expiry. When the server disconnects the client at the old JWT's expiry,
// nats.go reconnects with the fresh JWT and re-creates the subscriptions;
// publishes made meanwhile are buffered. [Client.Request] also retries a
// request whose reply was lost to such a disconnect, with the same
// idempotency key, so the broker executes it at most once.
//
// A refresh that fails is retried with exponential backoff and jitter
// (1s doubling to 30s), also after the credential expired: an outage (the
// broker or the network unavailable, a 5xx) for as long as it lasts, and a
// refusal ([ErrRefused]: a 401 or 403 of the broker, or the NATS server
// refusing the credentials the broker issues) until it has persisted: a
// policy that could not be evaluated, a token that expired before the
// token source renewed it, or servers that do not have a rotated signing
// key yet all pass. When refusals continued for two minutes and at least
// three attempts with no success in between, or at once when the broker
// answers 400 (its key was revoked or is not acceptable: asking again with
// the same key cannot change that), the client stops: it closes the
// connection, [Client.Done] is closed, and [Client.Err] and every
// [Client.Request] return the reason. It does not generate a new key pair
// by itself: a revoked key is an administrator's decision, and a new key
// means a new inbox prefix that the live connection cannot take. To carry
// on regardless, call [Connect] again.
type Client struct {
	nc     *nats.Conn
	kp     nkeys.KeyPair
	key    string
	cfg    Config
	log    *slog.Logger
	creds  atomic.Pointer[Creds]
	inbox  string
	cancel context.CancelFunc
	done   chan struct{}

	fetchMu sync.Mutex // one fetch at a time

	// kick wakes the refresh loop when the server refused a credential.
	kick chan struct{}
	// refusalWindow and minRefusals say when refusals persisted (see
	// persisted); backoff is the wait after the n-th failure in a row.
	// Tests shorten them.
	refusalWindow time.Duration
	minRefusals   int
	backoff       func(n int) time.Duration
	// stopped is closed when the client stops for good (Close, a
	// permanent refusal, nats.go closing the connection); fatal is the
	// reason of a permanent refusal.
	stopped  chan struct{}
	stopOnce sync.Once
	fatal    atomic.Pointer[error]
	// closing is set by Close before it closes the connection, so that a
	// request the closed connection ends reports ErrClosed, not nats.go's
	// error, in the moment before Done is closed.
	closing atomic.Bool

	mu   sync.Mutex
	down chan struct{} // closed at the next disconnect
	up   chan struct{} // closed once connected (again)
	// attempts are the credentials presented by connect attempts whose
	// outcome (an error or the connection) nats.go has not delivered yet,
	// oldest first; connected is the credential of the connection the
	// callbacks last reported, cbUp whether they report it up. nats.go
	// delivers its callbacks in order but later than it queues them, by
	// when a newer credential may have been presented: a refusal is pinned
	// on the attempt it answers, never on a credential presented after it.
	attempts  []*Creds
	connected *Creds
	cbUp      bool
	// refused is the last credential the NATS server refused, refusals
	// how many distinct ones it refused since the last (re)connect (the
	// first at refusedSince), and authErr its last refusal.
	refused      *Creds
	refusals     int
	refusedSince time.Time
	lastRefusal  time.Time
	authErr      error
	refreshErr   error // the last failed refresh, nil after a success
}

// Refusals persist, and the client stops, once they continued for
// refusalWindow and at least minRefusals attempts (credentials the broker
// refused to issue, or issued ones the NATS server refused) with no
// success in between. With the backoff that is a handful of issuance
// requests, and audit records, per stop.
const (
	refusalWindow = 2 * time.Minute
	minRefusals   = 3
)

// maxAttempts bounds the connect attempts remembered (see Client.attempts).
// Beyond it new ones are not recorded, so that a refusal is pinned on an
// older credential (and ignored as replaced) rather than on a newer one.
const maxAttempts = 16

// ErrClosed is returned by [Client.Request] after [Client.Close].
var ErrClosed = errors.New("natsclient: client closed")

// errInboxChanged: live subscriptions use the first inbox prefix, so a
// changed grant cannot be applied to the connection, now or later.
var errInboxChanged = fmt.Errorf("%w: broker changed the inbox prefix", ErrRefused)

// Connect generates a key pair, fetches a credential and connects. The
// client keeps its credential fresh until Close. ctx bounds the first fetch
// and connect only.
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.RefreshAt <= 0 || cfg.RefreshAt >= 1 {
		cfg.RefreshAt = 0.8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := api.RequireTLS("broker", cfg.BrokerURL); err != nil {
		return nil, fmt.Errorf("natsclient: %w", err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("natsclient: generate key pair: %w", err)
	}
	key, _ := kp.PublicKey()
	c := &Client{
		kp: kp, key: key, cfg: cfg, log: cfg.Logger, done: make(chan struct{}),
		down: make(chan struct{}), up: make(chan struct{}),
		kick: make(chan struct{}, 1), stopped: make(chan struct{}),
		refusalWindow: refusalWindow, minRefusals: minRefusals, backoff: retryDelay,
	}
	if cfg.retry != nil {
		c.refusalWindow, c.minRefusals, c.backoff = cfg.retry.window, cfg.retry.attempts, cfg.retry.backoff
	}
	close(c.up)
	first, err := FetchCreds(ctx, cfg.FetchConfig, kp)
	if err != nil {
		return nil, err
	}
	c.creds.Store(first)
	c.inbox = first.InboxPrefix
	url := cfg.NATSURL
	if url == "" {
		url = first.NATSURL
	}
	if url == "" {
		return nil, errors.New("natsclient: no NATS URL (configure one or have the broker advertise it)")
	}
	opts := c.options(cfg.Options, nats.UserJWT(c.userJWT, c.sign))
	nc, err := connect(ctx, url, opts)
	if err != nil {
		return nil, fmt.Errorf("natsclient: connect: %w", err)
	}
	c.nc = nc
	var rctx context.Context
	rctx, c.cancel = context.WithCancel(context.WithoutCancel(ctx))
	go c.refreshLoop(rctx)
	return c, nil
}

// options returns the connect options: reconnect defaults, then the
// caller's, then what the client relies on (authentication, the inbox
// prefix, and disconnect/reconnect handlers that call the caller's own).
func (c *Client) options(user []nats.Option, auth ...nats.Option) []nats.Option {
	var uo nats.Options
	for _, o := range user {
		_ = o(&uo)
	}
	userConn, userDisc, userRecon, userErr, userClosed := uo.ConnectedCB, uo.DisconnectedErrCB, uo.ReconnectedCB, uo.AsyncErrorCB, uo.ClosedCB
	opts := []nats.Option{
		// Reconnect for as long as the credential may be renewed: the
		// client gives up itself when it cannot be (see Client).
		nats.MaxReconnects(-1),
		nats.IgnoreAuthErrorAbort(),
		nats.CustomReconnectDelay(reconnectDelay),
	}
	opts = append(opts, user...)
	opts = append(opts, auth...)
	return append(opts,
		nats.CustomInboxPrefix(c.inbox),
		nats.ConnectHandler(func(nc *nats.Conn) {
			c.connectedCB()
			if userConn != nil {
				userConn(nc)
			}
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			c.disconnected(nc, err)
			if userDisc != nil {
				userDisc(nc, err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.reconnected(nc)
			if userRecon != nil {
				userRecon(nc)
			}
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			c.asyncError(err)
			if userErr != nil {
				userErr(nc, sub, err)
			}
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			c.stop()
			if userClosed != nil {
				userClosed(nc)
			}
		}),
	)
}

func connect(ctx context.Context, url string, opts []nats.Option) (*nats.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(dl)))
	}
	return nats.Connect(url, opts...)
}

// reconnectDelay retries at once, then backs off to 2s, with jitter so that
// the clients a server restart disconnected do not come back in step.
// Reconnecting presents the current credential only; it never asks the
// broker for one.
func reconnectDelay(attempts int) time.Duration {
	return jitter(min(10*time.Millisecond<<min(attempts, 8), 2*time.Second))
}

// retryDelay is the wait after the n-th failed refresh in a row (from 0):
// 1s, doubling up to 30s, with jitter. It does not shorten as the
// credential's expiry nears or after it passed: a broker that is down is
// not helped by being asked more often.
func retryDelay(n int) time.Duration {
	return jitter(min(time.Second<<min(n, 5), 30*time.Second))
}

// jitter returns a duration in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d < 2 {
		return d
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return d/2 + time.Duration(binary.LittleEndian.Uint64(b[:])%uint64(d/2))
}

// Conn returns the NATS connection. It stays the same for the client's
// life; do not close it, call Close.
func (c *Client) Conn() *nats.Conn { return c.nc }

// UserKey is the client's user public key ("" for a callout client: the
// server generates its key).
func (c *Client) UserKey() string { return c.key }

// InboxPrefix is the inbox prefix replies arrive under.
func (c *Client) InboxPrefix() string { return c.inbox }

// Creds returns the current credential (nil for a callout client).
func (c *Client) Creds() *Creds { return c.creds.Load() }

// Close stops refreshing and closes the connection. Requests waiting for a
// reconnect return [ErrClosed].
func (c *Client) Close() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	c.closing.Store(true)
	c.nc.Close() // before Done, which promises a closed connection
	c.stop()
}

// Done is closed when the client has stopped for good (its connection is
// closed by then): [Client.Close], a
// refusal that persisted or cannot change (see [Client] and [Client.Err]),
// or nats.go closing the connection (when your options limit reconnects).
func (c *Client) Done() <-chan struct{} { return c.stopped }

// Err is why the client stopped on its own: nil while it runs and after
// [Client.Close]; otherwise an error matching [ErrRefused] that carries the
// broker's refusal (a [*BrokerError], e.g. "public key was revoked;
// generate a new key pair", "denied by policy" and its reasons, "your
// credentials were revoked ... sign in again") or the NATS server's last
// refusal of the credentials the broker issued.
func (c *Client) Err() error {
	if p := c.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *Client) stop() { c.stopOnce.Do(func() { close(c.stopped) }) }

// fail stops the client for good: err is what Err and Request return.
func (c *Client) fail(err error) {
	err = fmt.Errorf("natsclient: stopped, the credential cannot be renewed: %w", err)
	c.fatal.CompareAndSwap(nil, &err)
	c.log.Error("nats client stopped", slog.String("error", err.Error()))
	c.nc.Close() // before Done, which promises a closed connection
	c.stop()
}

// stoppedErr is what Request returns once the client stopped (nil before).
func (c *Client) stoppedErr() error {
	if err := c.Err(); err != nil {
		return err // set before the connection closes
	}
	select {
	case <-c.stopped:
	default:
		if c.closing.Load() {
			return ErrClosed
		}
		return nil
	}
	if err := c.nc.LastError(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return ErrClosed
}

func (c *Client) sign(nonce []byte) ([]byte, error) { return c.kp.Sign(nonce) }

// errExpired fails a reconnect attempt locally while the credential is
// expired and not replaced yet: the server would accept nothing, or
// accept it and close the connection at once.
var errExpired = errors.New("natsclient: credential expired, waiting for a new one")

// userJWT is nats.go's UserJWT callback, called on every (re)connect with
// the connection's lock held: it returns the current credential and never
// fetches (the refresh loop does, and then makes nats.go reconnect at once).
func (c *Client) userJWT() (string, error) {
	if err := c.Err(); err != nil {
		return "", err
	}
	cur := c.creds.Load()
	if !time.Now().Before(c.expiresAt(cur)) {
		return "", errExpired
	}
	c.mu.Lock()
	if len(c.attempts) < maxAttempts {
		c.attempts = append(c.attempts, cur)
	}
	c.mu.Unlock()
	return cur.JWT, nil
}

// isAuthError says whether err is the NATS server refusing the credential.
func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// asyncError notes the NATS server refusing a credential and wakes the
// refresh loop to replace it. While the callbacks report the connection
// down, every error but the client's own (userJWT's, which presents
// nothing) ends the oldest pending connect attempt, and a refusal is of
// that attempt's credential; while they report it up, a refusal is of the
// connection's credential (a revocation, an account update).
func (c *Client) asyncError(err error) {
	if c.creds.Load() == nil || errors.Is(err, errExpired) || errors.Is(err, ErrRefused) {
		return
	}
	c.mu.Lock()
	p := c.connected
	if !c.cbUp {
		p = nil
		if len(c.attempts) > 0 {
			p = c.attempts[0]
			c.attempts = c.attempts[1:]
		}
	}
	// The server ending a connection at its credential's expiry refuses
	// nothing: the refresh loop replaces it on time, or is retrying.
	refusal := isAuthError(err) && !errors.Is(err, nats.ErrAuthExpired)
	if refusal && p != nil && p != c.refused {
		now := time.Now()
		if c.refusals == 0 || now.Sub(c.lastRefusal) > refusalStreakGap {
			c.refusals, c.refusedSince = 0, now // a new streak
		}
		c.refused, c.lastRefusal = p, now
		c.refusals++
		c.authErr = err
	}
	c.mu.Unlock()
	if refusal {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// Refresh fetches a new credential now. The connection uses it from its next
// (re)connect on. It fails on a callout client, which has no credential of
// its own, and on a client that stopped.
func (c *Client) Refresh(ctx context.Context) error {
	cur := c.creds.Load()
	if cur == nil {
		return errors.New("natsclient: callout clients have no credential to refresh")
	}
	if err := c.stoppedErr(); err != nil {
		return err
	}
	return c.replace(ctx, cur)
}

// replace fetches a credential to replace old, unless another caller
// already replaced it.
func (c *Client) replace(ctx context.Context, old *Creds) error {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	if cur := c.creds.Load(); cur != old {
		return nil
	}
	fresh, err := FetchCreds(ctx, c.cfg.FetchConfig, c.kp)
	if err != nil {
		return err
	}
	if fresh.InboxPrefix != c.inbox {
		// Live subscriptions use the first prefix; a changed grant cannot be
		// applied to this connection, now or later.
		return fmt.Errorf("%w from %q to %q", errInboxChanged, c.inbox, fresh.InboxPrefix)
	}
	c.creds.Store(fresh)
	c.log.InfoContext(ctx, "nats credential refreshed", slog.Time("expires_at", fresh.ExpiresAt))
	return nil
}

func (c *Client) lifetime(cr *Creds) time.Duration {
	if d := cr.ExpiresAt.Sub(cr.IssuedAt); d > 0 {
		return d
	}
	return time.Minute
}

// refreshAt is when cr is due for renewal: RefreshAt of its lifetime after
// it arrived (by this machine's clock, see Creds.received).
func (c *Client) refreshAt(cr *Creds) time.Time {
	return arrived(cr).Add(time.Duration(float64(c.lifetime(cr)) * c.cfg.RefreshAt))
}

// expiresAt is cr's expiry by this machine's clock.
func (c *Client) expiresAt(cr *Creds) time.Time {
	if cr.ExpiresAt.Before(cr.IssuedAt) {
		return cr.ExpiresAt
	}
	return arrived(cr).Add(cr.ExpiresAt.Sub(cr.IssuedAt))
}

func arrived(cr *Creds) time.Time {
	if cr.received.IsZero() {
		return cr.IssuedAt
	}
	return cr.received
}

// refusalStreakGap ends a streak of refusals: refusals further apart (an
// outage of the broker or the network in between) start a new one, so
// that the client does not stop at the first refusals after a long outage.
const refusalStreakGap = time.Minute

// persisted says whether refusals that began at since, n attempts so far
// with no success in between, persisted (see refusalWindow).
func (c *Client) persisted(n int, since time.Time) bool {
	return n >= c.minRefusals && time.Since(since) >= c.refusalWindow
}

// permanent says whether the broker refused for a reason that asking again
// with the same key pair cannot change: a 400 of the broker itself (its
// "invalid_request": the key was revoked, is another principal's, or is not
// a user key), or a changed inbox prefix. A 400 without the broker's code
// (from a proxy) is a refusal like the others.
func permanent(err error) bool {
	var be *BrokerError
	if errors.As(err, &be) {
		return be.Status == http.StatusBadRequest && be.Code == "invalid_request"
	}
	return errors.Is(err, errInboxChanged)
}

// refreshLoop fetches a new credential at RefreshAt of the current one's
// lifetime, or when the NATS server refused the current one (at once the
// first time, then with backoff). A failure is retried with backoff; it
// stops the client when it is permanent or refusals persisted (see
// Client). After a fetch it makes a reconnecting connection try again at
// once with the new credential.
func (c *Client) refreshLoop(ctx context.Context) {
	defer close(c.done)
	failures := 0 // failed fetches in a row
	refusals := 0 // of them, broker refusals, the first at refusedSince
	var refusedSince, lastRefused time.Time
	for {
		cur := c.creds.Load()
		t := time.NewTimer(time.Until(c.refreshAt(cur)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.kick:
			t.Stop()
			c.mu.Lock()
			refused, n, since, authErr := c.refused == cur, c.refusals, c.refusedSince, c.authErr
			c.mu.Unlock()
			if !refused {
				continue // the server refused one that is replaced already
			}
			if c.persisted(n, since) {
				c.fail(fmt.Errorf("%w: the NATS server refused %d credentials in a row for %s: %w",
					ErrRefused, n, time.Since(since).Round(time.Second), authErr))
				return
			}
			// Pace the fetches: the server may refuse the next one too.
			if n > 1 && ctxsleep.Sleep(ctx, c.backoff(n-2)) != nil {
				return
			}
		case <-t.C:
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.replace(fctx, cur)
		cancel()
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		c.refreshErr = err
		c.mu.Unlock()
		if err == nil {
			failures, refusals = 0, 0
			// Skip the reconnect backoff. nats.go may reconnect between
			// this check and ForceReconnect, which then ends the new
			// connection once; it reconnects at once, with the fresh
			// credential.
			if c.nc.Status() == nats.RECONNECTING {
				_ = c.nc.ForceReconnect()
			}
			continue
		}
		if permanent(err) {
			c.fail(err)
			return
		}
		if errors.Is(err, ErrRefused) {
			if now := time.Now(); refusals == 0 || now.Sub(lastRefused) > refusalStreakGap {
				refusals, refusedSince = 0, now // a new streak
			}
			lastRefused = time.Now()
			refusals++
			if c.persisted(refusals, refusedSince) {
				c.fail(fmt.Errorf("refused %d times in a row for %s: %w", refusals, time.Since(refusedSince).Round(time.Second), err))
				return
			}
		}
		wait := c.backoff(failures)
		failures++
		c.log.WarnContext(ctx, "nats credential refresh failed; retrying", slog.String("error", err.Error()), slog.Duration("retry_in", wait))
		if ctxsleep.Sleep(ctx, wait) != nil {
			return
		}
	}
}

func (c *Client) disconnected(_ *nats.Conn, err error) {
	c.mu.Lock()
	c.cbUp = false
	close(c.down)
	c.down = make(chan struct{})
	c.up = make(chan struct{})
	c.mu.Unlock()
	if err != nil {
		c.log.Info("nats disconnected", slog.String("error", err.Error()))
	}
}

func (c *Client) reconnected(*nats.Conn) {
	c.connectedCB()
	c.log.Info("nats reconnected")
}

// connectedCB notes the connection up: a credential was accepted, the one
// of the newest connect attempt.
func (c *Client) connectedCB() {
	c.mu.Lock()
	select {
	case <-c.up:
	default:
		close(c.up)
	}
	// The newest attempt is the one that connected: nats.go reports no
	// error for some failed attempts (a non-auth -ERR, a write error), so
	// the older entries would otherwise stay and pin later refusals on the
	// wrong credential. (An attempt begun after a disconnect that this
	// callback has not seen yet would be taken for it; nats.go delivers the
	// callback long before.)
	if len(c.attempts) > 0 {
		c.connected = c.attempts[len(c.attempts)-1]
		c.attempts = nil
	}
	c.cbUp = true
	c.refused, c.refusals, c.refusedSince = nil, 0, time.Time{}
	c.mu.Unlock()
}

func (c *Client) state() (down, up chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down, c.up
}

// waitErr is err (ctx's end while waiting for a reply or a reconnect),
// with the last refresh failure when the connection is down, so that the
// caller learns why rather than a bare deadline.
func (c *Client) waitErr(err error) error {
	c.mu.Lock()
	rerr := c.refreshErr
	c.mu.Unlock()
	if rerr == nil || c.nc.IsConnected() {
		return err
	}
	return fmt.Errorf("%w (not connected; the last credential refresh failed: %w)", err, rerr)
}

// maxRetries bounds how often Request resends over reconnects.
const maxRetries = 3

// hasHeader reports whether h has a non-empty value under name in any
// letter case: the broker reads header names case-insensitively, so adding
// Idempotency-Key beside a caller's idempotency-key would make the request
// carry two keys (refused as invalid_request).
func hasHeader(h nats.Header, name string) bool {
	for k, vs := range h {
		if strings.EqualFold(k, name) && slices.ContainsFunc(vs, func(v string) bool { return v != "" }) {
			return true
		}
	}
	return false
}

// dropHeader removes name from h in every letter case.
func dropHeader(h nats.Header, name string) {
	for k := range h {
		if strings.EqualFold(k, name) {
			delete(h, k)
		}
	}
}

// Request sends a request and waits for its reply until ctx ends. If the
// connection drops while the request is in flight (a credential expiry, a
// server restart), it waits for the reconnect and sends the request again
// with the same idempotency key and correlation id: the broker returns the
// stored result of a call that already ran, and the audit log shows one
// call. A request without `Idempotency-Key` or `Nats-Msg-Id` header gets a
// fresh Idempotency-Key so that the retry is safe, and one without
// `Correlation-Id` a fresh one (a UUIDv7). Once the client stopped (see
// [Client.Err]) it returns why at once; when ctx ends while the connection
// is down, the error (matching ctx's) includes the last refresh failure.
func (c *Client) Request(ctx context.Context, subject string, data []byte, hdr nats.Header) (*nats.Msg, error) {
	if err := c.stoppedErr(); err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	for k, v := range hdr {
		msg.Header[k] = append([]string(nil), v...)
	}
	if !hasHeader(msg.Header, "Idempotency-Key") && !hasHeader(msg.Header, "Nats-Msg-Id") {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("natsclient: idempotency key: %w", err)
		}
		dropHeader(msg.Header, "Idempotency-Key")
		msg.Header.Set("Idempotency-Key", id.String())
	}
	if !hasHeader(msg.Header, "Correlation-Id") {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("natsclient: correlation id: %w", err)
		}
		dropHeader(msg.Header, "Correlation-Id")
		msg.Header.Set("Correlation-Id", id.String())
	}
	for attempt := 0; ; attempt++ {
		down, _ := c.state()
		rctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-down:
				cancel()
			case <-c.stopped:
				cancel()
			case <-rctx.Done():
			}
		}()
		resp, err := c.nc.RequestMsgWithContext(rctx, msg)
		cancel()
		if err == nil {
			return resp, nil
		}
		if serr := c.stoppedErr(); serr != nil {
			return nil, serr
		}
		if ctx.Err() != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				err = ctx.Err() // not rctx's: a disconnect may have cancelled it meanwhile
			}
			return nil, c.waitErr(err)
		}
		if attempt >= maxRetries {
			if errors.Is(err, context.Canceled) {
				err = fmt.Errorf("natsclient: the connection dropped %d times while the request was in flight: %w", attempt+1, nats.ErrDisconnected)
			}
			return nil, c.waitErr(err)
		}
		select {
		case <-down:
		default:
			if !errors.Is(err, nats.ErrConnectionReconnecting) && !errors.Is(err, nats.ErrReconnectBufExceeded) {
				return nil, err
			}
		}
		// Interrupted by a disconnect: wait until connected again, resend.
		_, up := c.state()
		select {
		case <-up:
		case <-c.stopped:
			return nil, c.stoppedErr()
		case <-ctx.Done():
			return nil, c.waitErr(ctx.Err())
		}
		c.log.InfoContext(ctx, "nats request resent after reconnect", slog.String("subject", subject), slog.Int("attempt", attempt+1))
	}
}
