package natsclient_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
	"github.com/sqlgate/sqlgate/broker/natsclient"
	"github.com/sqlgate/sqlgate/broker/natsvc"
	"github.com/sqlgate/sqlgate/web/api"
)

const serviceToken = "service-access-token"

// credsServer is the broker's `POST nats/creds` for tests: it checks the
// bearer token and mints with the real Minter.
type credsServer struct {
	env     *natsauthtest.Env
	ttl     time.Duration
	fetches atomic.Int32
	// mintFor, when set, mints for another key than the one asked for.
	mintFor string
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []string
}

func newCredsServer(t *testing.T, env *natsauthtest.Env, ttl time.Duration) *credsServer {
	t.Helper()
	cs := &credsServer{env: env, ttl: ttl}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/nats/creds", cs.serve)
	cs.srv = httptest.NewServer(mux)
	t.Cleanup(cs.srv.Close)
	return cs
}

func (cs *credsServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+serviceToken {
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(api.Error{Code: "unauthenticated", Message: "token expired"})
		return
	}
	var req api.NATSCredsRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	cs.fetches.Add(1)
	cs.mu.Lock()
	cs.keys = append(cs.keys, req.PublicKey)
	cs.mu.Unlock()
	key := req.PublicKey
	if cs.mintFor != "" {
		key = cs.mintFor
	}
	exp := time.Now().Add(cs.ttl)
	pub := []string{"orders.v1.create"}
	m, err := cs.env.Minter.MintUser(r.Context(), broker.UserSpec{
		UserKey: key, Name: "svc-billing", Pub: pub,
		Sub: []string{broker.InboxPrefix(req.PublicKey) + ".>"}, Expires: exp,
	})
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	_ = json.NewEncoder(w).Encode(api.NATSCreds{
		JWT: m.JWT, ExpiresAt: exp, InboxPrefix: broker.InboxPrefix(req.PublicKey),
		NATSURL: cs.env.URL, Pub: pub, DecisionID: "d-1",
	})
}

// idempotentHandler executes each idempotency key once and replays it.
type idempotentHandler struct {
	mu       sync.Mutex
	results  map[string]string
	executed atomic.Int32
	seen     chan string
	// hold, when set, delays the reply of the first execution until it is closed.
	hold chan struct{}
}

func (h *idempotentHandler) Handle(_ context.Context, req *broker.Request) *broker.Reply {
	if h.seen != nil {
		h.seen <- req.IdempotencyKey
	}
	h.mu.Lock()
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
	resp, err := c.Request(t.Context(), "orders.v1.create", []byte(`{}`), nil)
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if e := decode(t, resp); !e.OK || e.Replayed {
		t.Errorf("reply = %s", resp.Data)
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
