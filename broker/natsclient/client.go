package natsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
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
	// yours; your disconnect and reconnect handlers are called after the
	// client's.
	Options []nats.Option
	// Logger receives refresh and reconnect events (nil: discard). Tokens
	// and seeds are never logged.
	Logger *slog.Logger
}

// Client is a NATS connection authenticated with a short-lived credential
// that it keeps fresh: it generates its own key pair (the seed never leaves
// the process), fetches a user JWT from the broker, and refreshes it before
// expiry. When the server disconnects the client at the old JWT's expiry,
// nats.go reconnects with the fresh JWT and re-creates the subscriptions;
// publishes made meanwhile are buffered. [Client.Request] also retries a
// request whose reply was lost to such a disconnect, with the same
// idempotency key, so the broker executes it at most once.
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

	mu   sync.Mutex
	down chan struct{} // closed at the next disconnect
	up   chan struct{} // closed once connected (again)
}

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
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("natsclient: generate key pair: %w", err)
	}
	key, _ := kp.PublicKey()
	c := &Client{
		kp: kp, key: key, cfg: cfg, log: cfg.Logger, done: make(chan struct{}),
		down: make(chan struct{}), up: make(chan struct{}),
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
	userDisc, userRecon := uo.DisconnectedErrCB, uo.ReconnectedCB
	opts := []nats.Option{
		nats.MaxReconnects(-1),
		nats.IgnoreAuthErrorAbort(),
		nats.CustomReconnectDelay(reconnectDelay),
	}
	opts = append(opts, user...)
	opts = append(opts, auth...)
	return append(opts,
		nats.CustomInboxPrefix(c.inbox),
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
	)
}

func connect(ctx context.Context, url string, opts []nats.Option) (*nats.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(dl)))
	}
	return nats.Connect(url, opts...)
}

// reconnectDelay retries at once, then backs off to 2s.
func reconnectDelay(attempts int) time.Duration {
	d := 10 * time.Millisecond << min(attempts, 8)
	return min(d, 2*time.Second)
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

// Close stops refreshing and closes the connection.
func (c *Client) Close() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	c.nc.Close()
}

func (c *Client) sign(nonce []byte) ([]byte, error) { return c.kp.Sign(nonce) }

// userJWT is nats.go's UserJWT callback, called on every (re)connect. If the
// refresh loop has not replaced an expired credential yet, it fetches one.
func (c *Client) userJWT() (string, error) {
	cur := c.creds.Load()
	if time.Now().Before(cur.ExpiresAt) {
		return cur.JWT, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fresh, err := c.replace(ctx, cur)
	if err != nil {
		c.log.WarnContext(ctx, "nats credential expired and refresh failed", slog.String("error", err.Error()))
		return cur.JWT, nil // the server refuses it; nats.go retries
	}
	return fresh.JWT, nil
}

// Refresh fetches a new credential now. The connection uses it from its next
// (re)connect on. It fails on a callout client, which has no credential of
// its own.
func (c *Client) Refresh(ctx context.Context) error {
	cur := c.creds.Load()
	if cur == nil {
		return errors.New("natsclient: callout clients have no credential to refresh")
	}
	_, err := c.replace(ctx, cur)
	return err
}

// replace fetches a credential to replace old, unless another caller
// already replaced it.
func (c *Client) replace(ctx context.Context, old *Creds) (*Creds, error) {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	if cur := c.creds.Load(); cur != old {
		return cur, nil
	}
	fresh, err := FetchCreds(ctx, c.cfg.FetchConfig, c.kp)
	if err != nil {
		return nil, err
	}
	if fresh.InboxPrefix != c.inbox {
		// Live subscriptions use the first prefix; a changed grant cannot be
		// applied to this connection.
		return nil, fmt.Errorf("natsclient: broker changed the inbox prefix from %q to %q", c.inbox, fresh.InboxPrefix)
	}
	c.creds.Store(fresh)
	c.log.InfoContext(ctx, "nats credential refreshed", slog.Time("expires_at", fresh.ExpiresAt))
	return fresh, nil
}

func (c *Client) lifetime(cr *Creds) time.Duration {
	if d := cr.ExpiresAt.Sub(cr.IssuedAt); d > 0 {
		return d
	}
	return time.Minute
}

// refreshLoop fetches a new credential at RefreshAt of the current one's
// lifetime, retrying with backoff on failure.
func (c *Client) refreshLoop(ctx context.Context) {
	defer close(c.done)
	backoff := time.Second
	for {
		cur := c.creds.Load()
		life := c.lifetime(cur)
		at := cur.IssuedAt.Add(time.Duration(float64(life) * c.cfg.RefreshAt))
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := c.replace(fctx, cur)
		cancel()
		if err == nil {
			backoff = time.Second
			continue
		}
		c.log.WarnContext(ctx, "nats credential refresh failed", slog.String("error", err.Error()))
		wait := min(backoff, max(time.Until(cur.ExpiresAt)/4, 100*time.Millisecond))
		backoff = min(2*backoff, 30*time.Second)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (c *Client) disconnected(_ *nats.Conn, err error) {
	c.mu.Lock()
	close(c.down)
	c.down = make(chan struct{})
	c.up = make(chan struct{})
	c.mu.Unlock()
	if err != nil {
		c.log.Info("nats disconnected", slog.String("error", err.Error()))
	}
}

func (c *Client) reconnected(*nats.Conn) {
	c.mu.Lock()
	select {
	case <-c.up:
	default:
		close(c.up)
	}
	c.mu.Unlock()
	c.log.Info("nats reconnected")
}

func (c *Client) state() (down, up chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down, c.up
}

// maxRetries bounds how often Request resends over reconnects.
const maxRetries = 3

// Request sends a request and waits for its reply until ctx ends. If the
// connection drops while the request is in flight (a credential expiry, a
// server restart), it waits for the reconnect and sends the request again
// with the same idempotency key: the broker returns the stored result of a
// call that already ran. A request without `Idempotency-Key` or
// `Nats-Msg-Id` header gets a fresh Idempotency-Key so that the retry is
// safe.
func (c *Client) Request(ctx context.Context, subject string, data []byte, hdr nats.Header) (*nats.Msg, error) {
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	for k, v := range hdr {
		msg.Header[k] = append([]string(nil), v...)
	}
	if msg.Header.Get("Idempotency-Key") == "" && msg.Header.Get("Nats-Msg-Id") == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("natsclient: idempotency key: %w", err)
		}
		msg.Header.Set("Idempotency-Key", id.String())
	}
	for attempt := 0; ; attempt++ {
		down, _ := c.state()
		rctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-down:
				cancel()
			case <-rctx.Done():
			}
		}()
		resp, err := c.nc.RequestMsgWithContext(rctx, msg)
		cancel()
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil || attempt >= maxRetries {
			return nil, err
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
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.log.InfoContext(ctx, "nats request resent after reconnect", slog.String("subject", subject), slog.Int("attempt", attempt+1))
	}
}
