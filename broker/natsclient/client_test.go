package natsclient_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
	"github.com/sqlgate/sqlgate/broker/natsclient"
	"github.com/sqlgate/sqlgate/broker/natsvc"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web"
)

const serviceToken = "service-access-token"

// credsServer is the broker's `POST nats/creds` for tests: the real web
// handler (bearer authentication, error mapping, wire format) in front of a
// broker that mints with the real Minter, or refuses as the broker does.
type credsServer struct {
	env *natsauthtest.Env
	ttl time.Duration
	// fetches counts the issuance requests that reached the broker,
	// refused ones included.
	fetches atomic.Int32
	// mintFor, when set, mints for another key than the one asked for.
	mintFor string
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []string
	// refuse, when set, is the broker's refusal of every request.
	refuse error
	// untrusted, when set, signs the JWTs with a key that is not one of
	// the account's signing keys.
	untrusted bool
	// block, when set, holds every request until it is closed.
	block chan struct{}
}

func newCredsServer(t *testing.T, env *natsauthtest.Env, ttl time.Duration) *credsServer {
	t.Helper()
	cs := &credsServer{env: env, ttl: ttl}
	h, err := web.New(web.Config{Broker: cs, Auth: cs, NATSURL: env.URL})
	if err != nil {
		t.Fatal(err)
	}
	cs.srv = httptest.NewServer(h)
	t.Cleanup(cs.srv.Close)
	return cs
}

func (cs *credsServer) set(f func()) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	f()
}

// Verify accepts serviceToken only, as identity/oidc would a valid token.
func (cs *credsServer) Verify(_ context.Context, raw string) (identity.Principal, error) {
	if raw != serviceToken {
		return identity.Principal{}, identity.Unauthenticated("token expired", nil)
	}
	return identity.Principal{Issuer: "https://idp.test", Subject: "svc-billing"}, nil
}

func (cs *credsServer) IssueNATS(ctx context.Context, req broker.NATSRequest) (*broker.NATSCredential, error) {
	cs.fetches.Add(1)
	cs.mu.Lock()
	cs.keys = append(cs.keys, req.UserKey)
	refuse, untrusted, block := cs.refuse, cs.untrusted, cs.block
	cs.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if refuse != nil {
		return nil, refuse
	}
	key := req.UserKey
	if cs.mintFor != "" {
		key = cs.mintFor
	}
	exp := time.Now().Add(cs.ttl)
	pub := []string{"orders.v1.create"}
	inbox := broker.InboxPrefix(req.UserKey)
	var userJWT string
	if untrusted {
		acct, _ := nkeys.CreateAccount()
		uc := jwt.NewUserClaims(key)
		exp = time.Now().Add(time.Hour) // refused for its signer only
		uc.Expires = exp.Unix()
		uc.IssuerAccount = cs.env.Keys.Public().Users // signed by none of its keys
		uc.Sub.Allow.Add(inbox + ".>")
		tok, err := uc.Encode(acct)
		if err != nil {
			return nil, err
		}
		userJWT = tok
	} else {
		m, err := cs.env.Minter.MintUser(ctx, broker.UserSpec{
			UserKey: key, Name: "svc-billing", Pub: pub, Sub: []string{inbox + ".>"}, Expires: exp,
		})
		if err != nil {
			return nil, err
		}
		userJWT = m.JWT
	}
	return &broker.NATSCredential{
		JWT: userJWT, UserKey: key, ExpiresAt: exp, Pub: pub, InboxPrefix: inbox,
		Decision: policy.Decision{ID: "d-1"},
	}, nil
}

var errNotInTest = errors.New("not used in these tests")

func (*credsServer) AllowedRoutes(context.Context, identity.Principal) ([]*route.Route, policy.Decision, error) {
	return nil, policy.Decision{}, errNotInTest
}

func (*credsServer) RevokeNATS(context.Context, identity.Principal, []string, string) error {
	return errNotInTest
}

func (*credsServer) RevokeAll(context.Context, identity.Principal, string, string) (*broker.RevokeAllResult, error) {
	return nil, errNotInTest
}

// The broker's refusals, as broker.Service returns them.
var (
	errKeyRevoked = fmt.Errorf("%w: public key was revoked; generate a new key pair", broker.ErrInvalid)
	errDenied     = &broker.DeniedError{Reasons: []string{"service billing may not call orders"}}
	errOffboarded = &broker.SignInRevokedError{Cutoff: time.Now()}
)

// idempotentHandler executes each idempotency key once and replays it.
type idempotentHandler struct {
	mu       sync.Mutex
	results  map[string]string
	executed atomic.Int32
	seen     chan string
	// corrs are the correlation ids of the requests, in order.
	corrs []string
	// hold, when set, delays the reply of the first execution until it is closed.
	hold chan struct{}
}

func (h *idempotentHandler) Handle(_ context.Context, req *broker.Request) *broker.Reply {
	if h.seen != nil {
		h.seen <- req.IdempotencyKey
	}
	h.mu.Lock()
	h.corrs = append(h.corrs, req.CorrelationID)
	res, ok := h.results[req.IdempotencyKey]
	if !ok {
		n := h.executed.Add(1)
		res = `{"n":` + strconv.Itoa(int(n)) + `}`
		h.results[req.IdempotencyKey] = res
	}
	hold := h.hold
	h.hold = nil
	h.mu.Unlock()
	if hold != nil && !ok {
		<-hold
	}
	return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, Result: json.RawMessage(res), AuditIndex: -1, Replayed: ok}
}

func startBroker(t *testing.T, h natsvc.Handler) *natsauthtest.Env {
	t.Helper()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}})
	pub := env.Keys.Public()
	svc, err := natsvc.Start(t.Context(), env.BrokerConn(t), natsvc.Config{
		Name: "sqlgate", Version: "0.1.0", Subjects: []string{"orders.v1.create"},
		UsersAccount: pub.Users, SigningKeys: pub.UsersSigning,
	}, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	return env
}

func staticToken(tok string) natsclient.TokenSource {
	return func(context.Context) (string, error) { return tok, nil }
}

type envelope struct {
	OK       bool            `json:"ok"`
	Result   json.RawMessage `json:"result"`
	Replayed bool            `json:"replayed"`
}

func decode(t *testing.T, m *nats.Msg) envelope {
	t.Helper()
	var e envelope
	if err := json.Unmarshal(m.Data, &e); err != nil {
		t.Fatalf("reply %q: %v", m.Data, err)
	}
	return e
}

func TestConnectWithFetchedCreds(t *testing.T) {
	t.Parallel()
	h := &idempotentHandler{results: map[string]string{}}
	env := startBroker(t, h)
	cs := newCredsServer(t, env, time.Hour)
	asyncErrs := make(chan error, 4)
	c, err := natsclient.Connect(t.Context(), natsclient.Config{
		FetchConfig: natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)},
		Options:     []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { asyncErrs <- err })},
	})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer c.Close()
	resp, err := c.Request(t.Context(), "orders.v1.create", []byte(`{}`), nats.Header{"Correlation-Id": {"billing-run-7"}})
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if e := decode(t, resp); !e.OK || e.Replayed {
		t.Errorf("reply = %s", resp.Data)
	}
	if got := resp.Header.Get("Correlation-Id"); got != "billing-run-7" {
		t.Errorf("reply correlation id %q, want the caller's", got)
	}
	if c.InboxPrefix() != broker.InboxPrefix(c.UserKey()) || c.Creds().UserKey != c.UserKey() {
		t.Errorf("inbox %q, key %q, creds key %q", c.InboxPrefix(), c.UserKey(), c.Creds().UserKey)
	}
	cs.mu.Lock()
	sent := cs.keys
	cs.mu.Unlock()
	if len(sent) != 1 || sent[0] != c.UserKey() {
		t.Errorf("public keys sent = %v, want [%s]", sent, c.UserKey())
	}
	// The credential is scoped: publishing elsewhere is refused by the server.
	if err := c.Conn().Publish("orders.v1.cancel", nil); err != nil {
		t.Fatal(err)
	}
	if err := <-asyncErrs; !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("publish outside the allow-list: %v, want a permissions violation", err)
	}
}

func TestConnectRefusedToken(t *testing.T) {
	t.Parallel()
	env := startBroker(t, &idempotentHandler{results: map[string]string{}})
	cs := newCredsServer(t, env, time.Hour)
	const bad = "expired-token-value"
	_, err := natsclient.Connect(t.Context(), natsclient.Config{FetchConfig: natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(bad)}})
	if !errors.Is(err, natsclient.ErrUnauthorized) {
		t.Fatalf("Connect = %v, want ErrUnauthorized", err)
	}
	if strings.Contains(err.Error(), bad) {
		t.Errorf("error contains the token: %v", err)
	}
}

func TestFetchRejectsJWTForAnotherKey(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}})
	cs := newCredsServer(t, env, time.Hour)
	other, _ := nkeys.CreateUser()
	cs.mintFor, _ = other.PublicKey()
	kp, _ := nkeys.CreateUser()
	if _, err := natsclient.FetchCreds(t.Context(), natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)}, kp); err == nil {
		t.Fatal("FetchCreds accepted a JWT for another key")
	}
}

func TestCredsFileConnects(t *testing.T) {
	t.Parallel()
	env := startBroker(t, &idempotentHandler{results: map[string]string{}})
	cs := newCredsServer(t, env, time.Hour)
	kp, _ := nkeys.CreateUser()
	cr, err := natsclient.FetchCreds(t.Context(), natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)}, kp)
	if err != nil {
		t.Fatal(err)
	}
	file, err := natsclient.CredsFile(cr, kp)
	if err != nil {
		t.Fatal(err)
	}
	nc := env.MustConnect(t, nats.UserCredentialBytes(file), nats.CustomInboxPrefix(cr.InboxPrefix))
	if _, err := nc.Request("orders.v1.create", nil, 5*time.Second); err != nil {
		t.Fatalf("request with the creds file: %v", err)
	}
}

// TestRequestSurvivesCredentialExpiry lets the server disconnect the client
// at its JWT's expiry while a request is in flight: the reply is published
// while the client is away, so the client must resend after reconnecting
// with its refreshed credential, and the broker must execute it once.
func TestRequestSurvivesCredentialExpiry(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 2s credential to expire")
	}
	t.Parallel()
	hold := make(chan struct{})
	h := &idempotentHandler{results: map[string]string{}, seen: make(chan string, 8), hold: hold}
	env := startBroker(t, h)
	cs := newCredsServer(t, env, 2*time.Second)
	var disconnects atomic.Int32
	firstErr := make(chan error, 1)
	c, err := natsclient.Connect(t.Context(), natsclient.Config{
		FetchConfig: natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)},
		RefreshAt:   0.5,
		Options: []nats.Option{
			nats.DisconnectErrHandler(func(*nats.Conn, error) {
				if disconnects.Add(1) == 1 {
					close(hold) // answer the held request while the client is away
				}
			}),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case firstErr <- err:
				default:
				}
			}),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := c.Creds()
	resp, err := c.Request(t.Context(), "orders.v1.create", []byte(`{}`), nil)
	if err != nil {
		t.Fatalf("request across the expiry: %v", err)
	}
	e := decode(t, resp)
	if !e.OK || !e.Replayed || string(e.Result) != `{"n":1}` {
		t.Errorf("reply = %s, want the stored result of the first execution", resp.Data)
	}
	if got := h.executed.Load(); got != 1 {
		t.Errorf("executed %d times, want 1", got)
	}
	k1, k2 := <-h.seen, <-h.seen
	if k1 == "" || k1 != k2 {
		t.Errorf("idempotency keys %q, %q: want the same key resent", k1, k2)
	}
	// One logical call shows under one correlation id in the audit log.
	h.mu.Lock()
	corrs := h.corrs
	h.mu.Unlock()
	if len(corrs) != 2 || corrs[0] != corrs[1] || uuid.Validate(corrs[0]) != nil {
		t.Errorf("correlation ids %q: want one UUID on the request and its resend", corrs)
	}
	if err := <-firstErr; !errors.Is(err, nats.ErrAuthExpired) {
		t.Errorf("server error: %v, want the credential's expiry", err)
	}
	if cur := c.Creds(); cur == first || !cur.ExpiresAt.After(first.ExpiresAt) || cs.fetches.Load() < 2 {
		t.Errorf("credential not refreshed: fetches %d", cs.fetches.Load())
	}
	// And the connection keeps working on the fresh credential.
	if _, err := c.Request(t.Context(), "orders.v1.create", []byte(`{}`), nil); err != nil {
		t.Errorf("request after reconnect: %v", err)
	}
}

func fakeToken(iss, sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	p, _ := json.Marshal(map[string]any{"iss": iss, "sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	return enc([]byte(`{"alg":"RS256","typ":"JWT"}`)) + "." + enc(p) + ".c2ln"
}

// calloutHandler accepts one token and mints for the server's user key with
// the principal's inbox prefix.
type calloutHandler struct {
	minter *natsauth.Minter
	token  string
	ttl    time.Duration
	calls  atomic.Int32
}

func (h *calloutHandler) Callout(ctx context.Context, req broker.CalloutRequest) (*broker.NATSCredential, error) {
	h.calls.Add(1)
	if req.Token != h.token {
		return nil, errors.New("token rejected")
	}
	exp := time.Now().Add(h.ttl)
	m, err := h.minter.MintUser(ctx, broker.UserSpec{
		UserKey: req.UserKey, Name: "alice", Pub: []string{"orders.v1.create"},
		Sub: []string{natsclient.PrincipalInboxPrefix("https://idp.test", "alice") + ".>"}, Expires: exp,
	})
	if err != nil {
		return nil, err
	}
	return &broker.NATSCredential{JWT: m.JWT, UserKey: req.UserKey, ExpiresAt: exp}, nil
}

func TestConnectCalloutReconnectsAtExpiry(t *testing.T) {
	t.Parallel()
	h := &idempotentHandler{results: map[string]string{}}
	env := startBroker(t, h)
	ch := &calloutHandler{minter: env.Minter, token: fakeToken("https://idp.test", "alice"), ttl: 2 * time.Second}
	co, err := natsauth.StartCallout(t.Context(), env.CalloutConn(t), env.Keys, natsauth.CalloutConfig{}, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = co.Stop() }()
	sentinel, _ := env.Keys.SentinelCreds()
	var tokens atomic.Int32
	reconnected := make(chan struct{}, 1)
	c, err := natsclient.ConnectCallout(t.Context(), natsclient.CalloutConfig{
		NATSURL: env.URL, SentinelCreds: sentinel,
		Token: func(context.Context) (string, error) { tokens.Add(1); return ch.token, nil },
		Options: []nats.Option{nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		})},
	})
	if err != nil {
		t.Fatalf("ConnectCallout: %v", err)
	}
	defer c.Close()
	if _, err := c.Request(t.Context(), "orders.v1.create", nil, nil); err != nil {
		t.Fatalf("request through the callout: %v", err)
	}
	if testing.Short() {
		return
	}
	<-reconnected // the 2s user JWT expired; the client came back through the callout
	if _, err := c.Request(t.Context(), "orders.v1.create", nil, nil); err != nil {
		t.Fatalf("request after the callout reconnect: %v", err)
	}
	if ch.calls.Load() < 2 || tokens.Load() < 3 {
		t.Errorf("callouts %d, token fetches %d: want a second callout with a fresh token", ch.calls.Load(), tokens.Load())
	}
}

func TestPrincipalInboxPrefix(t *testing.T) {
	t.Parallel()
	// A fixed vector: the broker must compute the same prefix.
	if got, want := natsclient.PrincipalInboxPrefix("https://idp.example.com", "alice"), "_INBOX_"; !strings.HasPrefix(got, want) || len(got) != len(want)+32 {
		t.Fatalf("PrincipalInboxPrefix = %q", got)
	}
	// echo -n "https://idp.example.com alice" | sha256sum | cut -c1-32
	if got, want := natsclient.PrincipalInboxPrefix("https://idp.example.com", "alice"), "_INBOX_0a30dc1b548a97f70c7cbe41e62f41ea"; got != want {
		t.Errorf("PrincipalInboxPrefix = %s, want %s", got, want)
	}
	tok := fakeToken("https://idp.example.com", "alice")
	got, err := natsclient.InboxPrefixFromToken(tok)
	if err != nil || got != natsclient.PrincipalInboxPrefix("https://idp.example.com", "alice") {
		t.Errorf("InboxPrefixFromToken = %q, %v", got, err)
	}
	for _, bad := range []string{"opaque-token", "a.b.c", "a." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"x"}`)) + ".c"} {
		if _, err := natsclient.InboxPrefixFromToken(bad); err == nil {
			t.Errorf("InboxPrefixFromToken(%q) accepted", bad)
		}
	}
}

// waitDone waits for the client to stop on its own; the bound only keeps a
// broken client from hanging the test.
func waitDone(t *testing.T, c *natsclient.Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the client kept running (reconnecting and refreshing) after a refusal that will not change")
	}
}

// fastRetry makes a client retry every 10ms and stop at the third refusal
// in a row (window 0), or never within a test (window an hour).
func fastRetry(cfg natsclient.Config, window time.Duration) natsclient.Config {
	return natsclient.WithRetry(cfg, window, 3, 10*time.Millisecond)
}

// TestRefusedRefreshStopsClient: a refresh the broker keeps refusing (a
// policy denial, an offboarded principal) stops the client once the refusal
// persisted (here: three in a row), and a revoked key at once: it asks no
// more, closes the connection, keeps its key pair, and Err and Request say
// why in the broker's words.
func TestRefusedRefreshStopsClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		refuse  error
		status  int
		say     string
		refused int // refused fetches before the client stops
	}{
		{"revoked key", errKeyRevoked, http.StatusBadRequest, "public key was revoked; generate a new key pair", 1},
		{"denied by policy", errDenied, http.StatusForbidden, "service billing may not call orders", 3},
		{"offboarded", errOffboarded, http.StatusUnauthorized, "sign in again", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := startBroker(t, &idempotentHandler{results: map[string]string{}})
			cs := newCredsServer(t, env, 2*time.Second)
			c, err := natsclient.Connect(t.Context(), fastRetry(natsclient.Config{
				FetchConfig: natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)},
				RefreshAt:   0.5,
			}, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Err(); err != nil {
				t.Fatalf("Err before any refusal: %v", err)
			}
			cs.set(func() { cs.refuse = tc.refuse })
			waitDone(t, c)
			err = c.Err()
			var be *natsclient.BrokerError
			if !errors.Is(err, natsclient.ErrRefused) || !errors.As(err, &be) || be.Status != tc.status || !strings.Contains(err.Error(), tc.say) {
				t.Fatalf("Err = %v, want a refusal (%d) saying %q", err, tc.status, tc.say)
			}
			if strings.Contains(err.Error(), serviceToken) {
				t.Errorf("error contains the token: %v", err)
			}
			if !c.Conn().IsClosed() {
				t.Errorf("connection status %v, want closed", c.Conn().Status())
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			if _, err := c.Request(ctx, "orders.v1.create", []byte(`{}`), nil); !errors.Is(err, natsclient.ErrRefused) || !strings.Contains(err.Error(), tc.say) {
				t.Errorf("Request after the refusal = %v, want the refusal", err)
			}
			if err := c.Refresh(ctx); !errors.Is(err, natsclient.ErrRefused) {
				t.Errorf("Refresh after the refusal = %v, want the refusal", err)
			}
			// One fetch at connect, then the refused ones: no more, and no
			// new key.
			cs.mu.Lock()
			keys := cs.keys
			cs.mu.Unlock()
			if len(keys) != 1+tc.refused {
				t.Errorf("%d fetches, want %d", len(keys), 1+tc.refused)
			}
			for _, k := range keys {
				if k != c.UserKey() {
					t.Errorf("asked for key %s, want only %s", k, c.UserKey())
				}
			}
		})
	}
}

// waitFetches waits until the client asked for n credentials (counted by
// *asked); the bound only keeps a broken client from hanging the test.
func waitFetches(t *testing.T, asked *atomic.Int32, n int32) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); asked.Load() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d fetches, still waiting for %d", asked.Load(), n)
		}
	}
}

// TestTransientRefusalKeepsClient: refusals that pass (the policy could not
// be evaluated, a token expired before the token source renewed it) are
// retried, and once the broker issues again the client carries on.
func TestTransientRefusalKeepsClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		refuse error  // the broker's refusal while it lasts
		token  string // the token sent while it lasts
	}{
		{"policy evaluation failed", &broker.DeniedError{Reasons: []string{"policy evaluation failed"}}, serviceToken},
		{"token expired", nil, "expired-token-value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := startBroker(t, &idempotentHandler{results: map[string]string{}})
			cs := newCredsServer(t, env, 2*time.Second)
			var token atomic.Pointer[string]
			var asked atomic.Int32
			good := serviceToken
			token.Store(&good)
			c, err := natsclient.Connect(t.Context(), fastRetry(natsclient.Config{
				FetchConfig: natsclient.FetchConfig{
					BrokerURL: cs.srv.URL,
					Token: func(context.Context) (string, error) {
						asked.Add(1)
						return *token.Load(), nil
					},
				},
				RefreshAt: 0.5,
			}, time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			first := c.Creds()
			cs.set(func() { cs.refuse = tc.refuse })
			token.Store(&tc.token)
			waitFetches(t, &asked, 5) // the first credential and four refusals
			if err := c.Err(); err != nil {
				t.Fatalf("Err while refused = %v, want nil: the refusal may pass", err)
			}
			cs.set(func() { cs.refuse = nil })
			token.Store(&good)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			for c.Creds() == first {
				select {
				case <-c.Done():
					t.Fatalf("client stopped: %v", c.Err())
				case <-ctx.Done():
					t.Fatal("no credential issued after the broker issued again")
				case <-time.After(5 * time.Millisecond):
				}
			}
			if _, err := c.Request(ctx, "orders.v1.create", []byte(`{}`), nil); err != nil {
				t.Fatalf("Request after the refusal passed: %v", err)
			}
			select {
			case <-c.Done():
				t.Fatalf("client stopped: %v", c.Err())
			default:
			}
		})
	}
}

// TestRefreshRetriesOutageWithBackoff: while the broker is unavailable (503)
// the client keeps its key and retries with backoff, past its credential's
// expiry; a request meanwhile says why it could not be sent; once the broker
// is back, the client reconnects and requests work again.
func TestRefreshRetriesOutageWithBackoff(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 2s credential to expire")
	}
	t.Parallel()
	env := startBroker(t, &idempotentHandler{results: map[string]string{}})
	cs := newCredsServer(t, env, 2*time.Second)
	expired := make(chan struct{})
	var once sync.Once
	c, err := natsclient.Connect(t.Context(), natsclient.Config{
		FetchConfig: natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)},
		RefreshAt:   0.5,
		Options: []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrAuthExpired) {
				once.Do(func() { close(expired) })
			}
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cs.set(func() { cs.refuse = broker.ErrUnavailable })
	<-expired // the server disconnected the client at its credential's expiry
	// JWT expiries are whole seconds: within the second of the expiry a
	// reconnect can still be accepted (and dropped again). Past it, the
	// server refuses the credential, and the broker gives no other.
	time.Sleep(time.Until(c.Creds().ExpiresAt.Add(1100 * time.Millisecond)))
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	_, err = c.Request(ctx, "orders.v1.create", []byte(`{}`), nil)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "503") {
		t.Errorf("Request while the broker is down = %v, want the deadline and the refresh failure", err)
	}
	refused := cs.fetches.Load() - 1
	cs.set(func() { cs.refuse = nil })
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := c.Request(ctx, "orders.v1.create", []byte(`{}`), nil); err != nil {
		t.Fatalf("Request after the broker came back: %v", err)
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err = %v, want nil: an outage is no refusal", err)
	}
	// From the first refresh (at 1s) until the expiry and a 500ms request
	// later, backoff from 1s allows a handful of attempts; retrying every
	// 100ms after expiry (the audited flood) makes a dozen or more.
	if refused > 6 {
		t.Errorf("%d refreshes during the outage: the client does not back off", refused)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, k := range cs.keys {
		if k != c.UserKey() {
			t.Fatalf("asked for key %s, want only %s", k, c.UserKey())
		}
	}
}

// TestServerRefusalsStopClient: when the NATS server keeps refusing the
// credentials the broker issues, the client fetches a new one (at once the
// first time, then with backoff), but stops once the refusals persisted
// (here: three credentials in a row) instead of fetching (and filling the
// audit log) forever.
func TestServerRefusalsStopClient(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 2s credential to expire")
	}
	t.Parallel()
	env := startBroker(t, &idempotentHandler{results: map[string]string{}})
	cs := newCredsServer(t, env, 2*time.Second)
	c, err := natsclient.Connect(t.Context(), fastRetry(natsclient.Config{
		FetchConfig: natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)},
		RefreshAt:   0.5,
	}, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cs.set(func() { cs.untrusted = true })
	waitDone(t, c)
	if err := c.Err(); !errors.Is(err, natsclient.ErrRefused) || !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("Err = %v, want the server's authorization violation", err)
	}
	// The first credential, the refresh, and two more after the server
	// refused the refresh: the third refused credential stops the client
	// (the first one expiring is no refusal). A scheduled refresh may race
	// the first credential's expiry and make it five; more would be a
	// client that does not stop.
	if got := cs.fetches.Load(); got < 4 || got > 5 {
		t.Errorf("%d fetches, want 4 (or 5)", got)
	}
}

// TestServerRefusalsThatPassKeepClient: the NATS server refusing the
// credentials for a while (servers that did not get a rotated signing key
// yet) does not stop the client: it fetches again until the server accepts
// one, and carries on.
func TestServerRefusalsThatPassKeepClient(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 2s credential to expire")
	}
	t.Parallel()
	env := startBroker(t, &idempotentHandler{results: map[string]string{}})
	cs := newCredsServer(t, env, 2*time.Second)
	reconnected := make(chan struct{}, 1)
	c, err := natsclient.Connect(t.Context(), fastRetry(natsclient.Config{
		FetchConfig: natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)},
		RefreshAt:   0.5,
		Options: []nats.Option{nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		})},
	}, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cs.set(func() { cs.untrusted = true })
	waitFetches(t, &cs.fetches, 5) // the first, the refresh, and three after refusals
	cs.set(func() { cs.untrusted = false })
	select {
	case <-reconnected:
	case <-c.Done():
		t.Fatalf("client stopped: %v", c.Err())
	case <-time.After(30 * time.Second):
		t.Fatal("not reconnected after the server accepted the credentials again")
	}
	if _, err := c.Request(t.Context(), "orders.v1.create", []byte(`{}`), nil); err != nil {
		t.Fatalf("Request after the refusals passed: %v", err)
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err = %v, want nil", err)
	}
}

// TestSlowBrokerDoesNotBlockRequests: while a refresh waits on a slow broker
// and the credential expired, requests still end at their deadline
// (nats.go asks for the JWT with its connection lock held).
func TestSlowBrokerDoesNotBlockRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 2s credential to expire")
	}
	t.Parallel()
	env := startBroker(t, &idempotentHandler{results: map[string]string{}})
	cs := newCredsServer(t, env, 2*time.Second)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) }) // before the server closes
	disconnected := make(chan struct{})
	var once sync.Once
	c, err := natsclient.Connect(t.Context(), natsclient.Config{
		FetchConfig: natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)},
		Options:     []nats.Option{nats.DisconnectErrHandler(func(*nats.Conn, error) { once.Do(func() { close(disconnected) }) })},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cs.set(func() { cs.block = block })
	<-disconnected // expired; the refresh is stuck on the broker
	for i := range 5 {
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			_, err := c.Request(ctx, "orders.v1.create", []byte(`{}`), nil)
			done <- err
		}()
		select {
		case err := <-done:
			// Its deadline, or, when the server let the expired credential
			// reconnect for a moment and then cut it again several times
			// within the deadline (a loaded machine), the drops counted:
			// either way the request ended without waiting on the broker.
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrDisconnected) {
				t.Fatalf("request %d: %v, want its deadline", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("request %d with a 300ms deadline still blocked after 5s: the connection waits on the broker", i)
		}
	}
	if got := cs.fetches.Load(); got != 2 {
		t.Errorf("%d fetches, want 2: reconnecting must not ask the broker", got)
	}
}

// TestFetchCredsRefusalCarriesBrokerReason reads the broker's error body.
func TestFetchCredsRefusalCarriesBrokerReason(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}})
	cs := newCredsServer(t, env, time.Hour)
	cs.set(func() { cs.refuse = errDenied })
	kp, _ := nkeys.CreateUser()
	_, err := natsclient.FetchCreds(t.Context(), natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)}, kp)
	var be *natsclient.BrokerError
	if !errors.As(err, &be) || be.Status != http.StatusForbidden || be.Code != "forbidden" || be.Message != "denied by policy" ||
		len(be.Reasons) != 1 || be.Reasons[0] != errDenied.Reasons[0] || be.RequestID == "" {
		t.Fatalf("FetchCreds = %#v (%v), want the broker's 403 with its reasons", be, err)
	}
	if !errors.Is(err, natsclient.ErrUnauthorized) || !errors.Is(err, natsclient.ErrRefused) || !strings.Contains(err.Error(), errDenied.Reasons[0]) {
		t.Errorf("FetchCreds error %q does not match ErrUnauthorized/ErrRefused or lacks the reason", err)
	}
	cs.set(func() { cs.refuse = broker.ErrUnavailable })
	_, err = natsclient.FetchCreds(t.Context(), natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)}, kp)
	if !errors.As(err, &be) || be.Status != http.StatusServiceUnavailable || errors.Is(err, natsclient.ErrRefused) {
		t.Errorf("FetchCreds during an outage = %v, want a 503 that is not a refusal", err)
	}
}

type recordingTransport struct{ calls atomic.Int32 }

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.calls.Add(1)
	return &http.Response{StatusCode: http.StatusServiceUnavailable, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
}

// TestPlainHTTPBrokerRefused: the bearer token never goes over plain http
// to another host (loopback, as in the other tests, is allowed).
func TestPlainHTTPBrokerRefused(t *testing.T) {
	t.Parallel()
	rt := &recordingTransport{}
	var tokens atomic.Int32
	fc := natsclient.FetchConfig{
		BrokerURL:  "http://sqlgate.example.com",
		Token:      func(context.Context) (string, error) { tokens.Add(1); return serviceToken, nil },
		HTTPClient: &http.Client{Transport: rt},
	}
	kp, _ := nkeys.CreateUser()
	if _, err := natsclient.FetchCreds(t.Context(), fc, kp); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("FetchCreds over plain http = %v, want a refusal asking for https", err)
	}
	if _, err := natsclient.Connect(t.Context(), natsclient.Config{FetchConfig: fc}); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("Connect over plain http = %v, want a refusal asking for https", err)
	}
	if rt.calls.Load() != 0 || tokens.Load() != 0 {
		t.Errorf("%d requests sent, %d tokens fetched: want none", rt.calls.Load(), tokens.Load())
	}
}

// TestRequestEndsAtClose: a request waiting for its reply or a reconnect
// returns when the client is closed.
func TestRequestEndsAtClose(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	defer close(hold)
	h := &idempotentHandler{results: map[string]string{}, seen: make(chan string, 1), hold: hold}
	env := startBroker(t, h)
	cs := newCredsServer(t, env, time.Hour)
	c, err := natsclient.Connect(t.Context(), natsclient.Config{FetchConfig: natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Request(context.Background(), "orders.v1.create", []byte(`{}`), nil)
		done <- err
	}()
	<-h.seen // in flight, its reply held
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, natsclient.ErrClosed) {
			t.Errorf("Request after Close = %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Request still blocked after Close")
	}
	if _, err := c.Request(t.Context(), "orders.v1.create", nil, nil); !errors.Is(err, natsclient.ErrClosed) {
		t.Errorf("Request on a closed client = %v, want ErrClosed", err)
	}
}

// TestRequestKeepsCallersHeadersInAnyCase sends the caller's idempotency key
// and correlation id under lower-case names: the broker reads header names
// case-insensitively, so the client must not add its own Idempotency-Key or
// Correlation-Id beside them (two keys are refused as invalid_request).
func TestRequestKeepsCallersHeadersInAnyCase(t *testing.T) {
	t.Parallel()
	h := &idempotentHandler{results: map[string]string{}, seen: make(chan string, 8)}
	env := startBroker(t, h)
	cs := newCredsServer(t, env, time.Hour)
	c, err := natsclient.Connect(t.Context(), natsclient.Config{
		FetchConfig: natsclient.FetchConfig{BrokerURL: cs.srv.URL, Token: staticToken(serviceToken)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	corr := "0194a3b2-7c1d-7e2f-8a9b-0c1d2e3f4a5b"
	for range 2 {
		hdr := nats.Header{"idempotency-key": {"order-42"}, "correlation-id": {corr}}
		resp, err := c.Request(t.Context(), "orders.v1.create", []byte(`{}`), hdr)
		if err != nil {
			t.Fatal(err)
		}
		if e := decode(t, resp); !e.OK {
			t.Fatalf("reply = %s, want ok", resp.Data)
		}
		if k := <-h.seen; k != "order-42" {
			t.Errorf("broker saw idempotency key %q, want the caller's order-42", k)
		}
	}
	if got := h.executed.Load(); got != 1 {
		t.Errorf("executed %d times, want 1 (the second call replays the caller's key)", got)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.corrs) != 2 || h.corrs[0] != corr || h.corrs[1] != corr {
		t.Errorf("correlation ids %q, want the caller's %s", h.corrs, corr)
	}
}
