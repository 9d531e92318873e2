package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsclient"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/web/api"
)

// devStack is `sqlgated dev` running in-process on free ports.
type devStack struct {
	st   devState
	dir  string
	out  *syncBuffer
	stop func()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDev runs `sqlgated dev` with dir as its data directory until the test
// ends (or stop is called).
func startDev(t *testing.T, dir string) *devStack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--data-dir", dir, "--http", "127.0.0.1:0", "--nats", "127.0.0.1:0", "--log-level", "warn"}, out, out)
	}()
	s := &devStack{dir: dir, out: out}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("sqlgated dev: %v\n%s", err, out)
				}
			case <-time.After(30 * time.Second):
				t.Error("sqlgated dev did not stop")
			}
		})
	}
	t.Cleanup(s.stop)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "sqlgate dev is running") {
		select {
		case err := <-done:
			t.Fatalf("sqlgated dev exited: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sqlgated dev did not start:\n%s", out)
		}
	}
	s.st = loadDevState(dir)
	return s
}

func (s *devStack) password(t *testing.T, user string) string {
	t.Helper()
	for _, u := range s.st.Users {
		if u.Name == user {
			return u.Password
		}
	}
	t.Fatalf("no demo user %s", user)
	return ""
}

// login signs user in with the password grant and returns an API client.
func (s *devStack) login(t *testing.T, user string) (*api.Client, string) {
	t.Helper()
	c, err := oidc.OpenClient(t.Context(), oidc.ClientConfig{Issuer: s.st.Issuer, ClientID: s.st.CLI})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.LoginPassword(t.Context(), user, s.password(t, user))
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	bearer := tok.Bearer()
	client, err := api.NewClient(s.st.HTTPURL, func(context.Context) (string, error) { return bearer, nil })
	if err != nil {
		t.Fatal(err)
	}
	return client, bearer
}

// natsUser gets a NATS credential for the client and connects with it.
func (s *devStack) natsUser(t *testing.T, c *api.Client, ttl time.Duration) (*nats.Conn, *api.NATSCreds, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	cred, err := c.NATSCreds(t.Context(), api.NATSCredsRequest{PublicKey: pub, TTLSeconds: int64(ttl.Seconds())})
	if err != nil {
		t.Fatalf("nats creds: %v", err)
	}
	nc, err := nats.Connect(cred.NATSURL, nats.UserJWTAndSeed(cred.JWT, string(seed)), nats.CustomInboxPrefix(cred.InboxPrefix), nats.MaxReconnects(0))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, cred, string(seed)
}

type envelope struct {
	OK            bool            `json:"ok"`
	CorrelationID string          `json:"correlation_id"`
	Result        json.RawMessage `json:"result"`
	Audit         *struct {
		Index int64 `json:"index"`
	} `json:"audit"`
	SQLTransactionID string `json:"sql_transaction_id"`
	Replayed         bool   `json:"replayed"`
	Error            *struct {
		Code    string   `json:"code"`
		Message string   `json:"message"`
		Reasons []string `json:"reasons"`
	} `json:"error"`
}

func request(t *testing.T, nc *nats.Conn, subject, payload string, headers map[string]string) (envelope, *nats.Msg) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(payload)
	for k, v := range headers {
		m.Header.Set(k, v)
	}
	reply, err := nc.RequestMsg(m, 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	var env envelope
	if err := json.Unmarshal(reply.Data, &env); err != nil {
		t.Fatalf("reply %q: %v", reply.Data, err)
	}
	return env, reply
}

func rows(t *testing.T, env envelope) []map[string]any {
	t.Helper()
	var r struct {
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(env.Result, &r); err != nil {
		t.Fatal(err)
	}
	return r.Rows
}

// TestDevEndToEnd walks the spine the README walkthrough shows, over the
// real stack: OIDC password login, NATS credential, policy, SQLite, signed
// audit log, reply; then the bad inputs a client can send.
func TestDevEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end dev stack: skipped with -short")
	}
	s := startDev(t, t.TempDir())
	alice, _ := s.login(t, "alice")
	who, err := alice.WhoAmI(t.Context())
	if err != nil || who.Email != "alice@example.com" || strings.Join(who.Groups, ",") != "sales" {
		t.Fatalf("whoami = %+v, %v", who, err)
	}
	routes, err := alice.Routes(t.Context())
	if err != nil || len(routes.Routes) != 4 {
		t.Fatalf("routes = %+v, %v; want the four demo routes", routes, err)
	}
	nc, cred, _ := s.natsUser(t, alice, 0)
	if cred.InboxPrefix != "_INBOX_"+userKeyOf(t, cred.JWT) {
		t.Errorf("inbox prefix %q does not name the user key", cred.InboxPrefix)
	}

	// The follow-up event: a broker-account subscriber sees orders.v1.created.
	_, events := s.brokerEvents(t, "orders.v1.created")

	injection := `Robert'); DROP TABLE orders; -- ☃ "quoted" \ back`
	payload, _ := json.Marshal(map[string]any{"customer": injection, "amount": 250, "note": injection})
	created, _ := request(t, nc, "orders.v1.create", string(payload), map[string]string{"Idempotency-Key": "order-1", "Correlation-Id": "corr-e2e-1"})
	if !created.OK || created.CorrelationID != "corr-e2e-1" || created.SQLTransactionID == "" || created.Audit == nil {
		t.Fatalf("create = %+v", created)
	}
	id := rows(t, created)[0]["id"].(float64)
	ev, err := events.NextMsg(5 * time.Second)
	if err != nil || !strings.Contains(string(ev.Data), "corr-e2e-1") {
		t.Errorf("emit event = %v, %v", ev, err)
	}

	got, _ := request(t, nc, "orders.v1.get", `{"id":`+jsonNum(id)+`}`, nil)
	row := rows(t, got)[0]
	if row["customer"] != injection || row["note"] != injection || row["created_by"] != "alice@example.com" || row["correlation_id"] != "corr-e2e-1" {
		t.Errorf("stored row = %v, want the injection string verbatim and the session values", row)
	}

	t.Run("replay", func(t *testing.T) {
		again, _ := request(t, nc, "orders.v1.create", string(payload), map[string]string{"Idempotency-Key": "order-1"})
		if !again.OK || !again.Replayed || string(again.Result) != string(created.Result) {
			t.Errorf("replay = %+v, want the stored result", again)
		}
		other, _ := request(t, nc, "orders.v1.create", `{"customer":"x","amount":1}`, map[string]string{"Idempotency-Key": "order-1"})
		if other.OK || other.Error.Code != "conflict" {
			t.Errorf("same key, other payload = %+v, want conflict", other)
		}
	})

	t.Run("service_client", func(t *testing.T) {
		// The dev client orders-service signs in with client credentials
		// (dev.json's service_client) and holds the app role orders.writer,
		// no group: the demo policy grants it create (amount up to 1000) and
		// get, nothing else.
		oc, err := oidc.OpenClient(t.Context(), oidc.ClientConfig{Issuer: s.st.Issuer, ClientID: s.st.Service.ID, ClientSecret: s.st.Service.Secret})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := oc.LoginClientCredentials(t.Context())
		if err != nil {
			t.Fatalf("client credentials: %v", err)
		}
		bearer := tok.Bearer()
		svc, err := api.NewClient(s.st.HTTPURL, func(context.Context) (string, error) { return bearer, nil })
		if err != nil {
			t.Fatal(err)
		}
		listed, err := svc.Routes(t.Context())
		if err != nil {
			t.Fatalf("service routes: %v", err)
		}
		var subjects []string
		for _, r := range listed.Routes {
			subjects = append(subjects, r.Subject)
		}
		slices.Sort(subjects)
		if !slices.Equal(subjects, []string{"orders.v1.create", "orders.v1.get"}) {
			t.Errorf("service routes = %v, want create and get", subjects)
		}
		snc, _, _ := s.natsUser(t, svc, 0)
		made, _ := request(t, snc, "orders.v1.create", `{"customer":"svc","amount":1000}`, nil)
		if !made.OK {
			t.Fatalf("service create = %+v", made.Error)
		}
		if got, _ := request(t, snc, "orders.v1.get", `{"id":`+jsonNum(rows(t, made)[0]["id"].(float64))+`}`, nil); !got.OK {
			t.Errorf("service get = %+v", got.Error)
		}
		over, _ := request(t, snc, "orders.v1.create", `{"customer":"svc","amount":1001}`, nil)
		if over.OK || over.Error.Code != "forbidden" || !slices.Contains(over.Error.Reasons, "amount exceeds the orders.writer limit of 1000") {
			t.Errorf("service create over the role's limit = %+v, want forbidden naming the orders.writer limit", over)
		}
		if _, err := snc.Request("orders.v1.cancel", []byte(`{"id":1}`), 2*time.Second); err == nil {
			t.Error("the service published to orders.v1.cancel, which its role is not granted")
		}
	})

	t.Run("audit_store_refuses_writes", func(t *testing.T) {
		// The control database answers pings but refuses writes (here: a
		// lock held elsewhere): calls are refused, and /readyz says the
		// audit log is not ready until writes succeed again.
		db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(s.dir, "control.db")))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		conn, err := db.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
			t.Fatal(err)
		}
		// The intent waits for the lock up to the store's busy timeout (10 s).
		reply, err := nc.Request("orders.v1.get", []byte(`{"id":1}`), 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var refused envelope
		if err := json.Unmarshal(reply.Data, &refused); err != nil {
			t.Fatal(err)
		}
		readyz := func() (int, []string) {
			resp, err := http.Get(s.st.HTTPURL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ready struct {
				NotReady []string `json:"not_ready"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&ready)
			return resp.StatusCode, ready.NotReady
		}
		// The caller gave up first; the write itself fails when the store's
		// wait for the lock ends, and from then on /readyz says so.
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, notReady := readyz()
			if code == http.StatusServiceUnavailable && slices.Contains(notReady, "audit log") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz while the audit store refuses writes = %d %v, want 503 naming the audit log", code, notReady)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if refused.OK || refused.Error.Code != "unavailable" {
			t.Errorf("call while the audit store refuses writes = %+v, want unavailable", refused)
		}
		// Two failed checks later the instance leaves the NATS queue group,
		// so that other instances would take its share: with none, callers
		// get NATS's no-responders status at once.
		for {
			_, err := nc.Request("orders.v1.get", []byte(`{"id":1}`), 30*time.Second)
			if errors.Is(err, nats.ErrNoResponders) {
				break
			}
			if time.Now().After(deadline.Add(30 * time.Second)) {
				t.Fatalf("call while the audit store kept refusing writes: %v, want no responders once the instance left the queue group", err)
			}
		}
		if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		// The audit log's probe sees the store take writes again, and the
		// instance rejoins the queue group.
		deadline = time.Now().Add(30 * time.Second)
		for {
			m, err := nc.Request("orders.v1.get", []byte(`{"id":1}`), 30*time.Second)
			if err == nil {
				var again envelope
				if err := json.Unmarshal(m.Data, &again); err != nil || !again.OK {
					t.Fatalf("call after the lock was released = %s, %v", m.Data, err)
				}
				break
			}
			if !errors.Is(err, nats.ErrNoResponders) || time.Now().After(deadline) {
				t.Fatalf("call after the lock was released: %v, want the instance back in the queue group", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if code, notReady := readyz(); code != http.StatusOK {
			t.Errorf("/readyz after writes succeed again = %d %v", code, notReady)
		}
	})

	t.Run("bad_input", func(t *testing.T) {
		tests := []struct{ name, subject, payload, code string }{
			{"not_json", "orders.v1.create", `{customer:"x"}`, "invalid_request"},
			{"wrong_type", "orders.v1.get", `{"id":"1"}`, "invalid_request"},
			{"missing", "orders.v1.create", `{"customer":"x"}`, "invalid_request"},
			{"extra", "orders.v1.get", `{"id":1,"drop":true}`, "invalid_request"},
			{"too_large", "orders.v1.create", `{"customer":"` + strings.Repeat("a", 70<<10) + `","amount":1}`, "too_large"},
			{"over_policy_limit", "orders.v1.create", `{"customer":"x","amount":5000}`, "forbidden"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				env, msg := request(t, nc, tc.subject, tc.payload, nil)
				if env.OK || env.Error == nil || env.Error.Code != tc.code {
					t.Fatalf("reply = %+v, want %s", env, tc.code)
				}
				if msg.Header.Get("Nats-Service-Error-Code") == "" {
					t.Error("no micro error header")
				}
			})
		}
	})

	t.Run("policy_hot_reload", func(t *testing.T) {
		path := filepath.Join(s.dir, "policy", "data.yaml")
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = os.WriteFile(path, orig, 0o600) }()
		raised := strings.Replace(string(orig), "max: 1000", "max: 10000", 1)
		if raised == string(orig) {
			t.Fatal("the demo policy has no max: 1000")
		}
		if err := os.WriteFile(path, []byte(raised), 0o600); err != nil {
			t.Fatal(err)
		}
		// The running daemon picks the edit up without a restart.
		deadline := time.Now().Add(10 * time.Second)
		for {
			env, _ := request(t, nc, "orders.v1.create", `{"customer":"big","amount":5000}`, nil)
			if env.OK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the raised limit never took effect: %+v", env.Error)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// A broken edit keeps the last good policy serving, and the instance
		// ready (a bad push must not take every replica out of its Service);
		// the policy status says why to admins only, and the metrics say it
		// failed.
		if err := os.WriteFile(path, []byte("sqlgate: [unclosed"), 0o600); err != nil {
			t.Fatal(err)
		}
		policyStatus := func(user string) map[string]any {
			_, bearer := s.login(t, user)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.st.HTTPURL+"/api/v1/policy/status", nil)
			req.Header.Set("Authorization", "Bearer "+bearer)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var st map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("policy status as %s: %d %v", user, resp.StatusCode, err)
			}
			return st
		}
		// until polls the policy status as an admin until the reload error
		// contains want.
		until := func(want string) map[string]any {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for {
				st := policyStatus("dave")
				if st["reload_failed"] == true && strings.Contains(fmt.Sprint(st["last_error"]), want) {
					return st
				}
				if time.Now().After(deadline) {
					t.Fatalf("policy status = %v, want a reload error containing %q", st, want)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		until("data.yaml")
		resp, err := http.Get(s.st.HTTPURL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("/readyz while the last good policy serves = %d %s, want 200", resp.StatusCode, body)
		}
		resp, err = http.Get(s.st.HTTPURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "\nsqlgate_policy_load_failed 1\n") || !strings.Contains(string(body), `sqlgate_policy_reloads_total{result="error"} 1`) {
			t.Errorf("/metrics after a failed reload lacks sqlgate_policy_load_failed 1 and one reload error:\n%s", body)
		}
		if st := policyStatus("alice"); st["reload_failed"] != true || st["last_error"] != nil || st["source"] != nil {
			t.Errorf("policy status for a member = %v, want reload_failed without the error or the directory", st)
		}
		if env, _ := request(t, nc, "orders.v1.create", `{"customer":"big","amount":5000}`, nil); !env.OK {
			t.Errorf("after a broken edit the last good policy should still serve: %+v", env.Error)
		}
		// A limit on a parameter the route does not have would never be
		// enforced: the reload is refused against the serving catalog.
		misspelt := strings.Replace(raised, "param: amount", "param: amout", 1)
		if err := os.WriteFile(path, []byte(misspelt), 0o600); err != nil {
			t.Fatal(err)
		}
		until("amout is not a parameter of orders.v1.create")
		if env, _ := request(t, nc, "orders.v1.create", `{"customer":"big","amount":5000}`, nil); !env.OK {
			t.Errorf("after a refused edit the last good policy should still serve: %+v", env.Error)
		}
	})

	t.Run("unknown_subject_refused_by_server", func(t *testing.T) {
		_, err := nc.Request("orders.v1.unknown", []byte(`{}`), 2*time.Second)
		if err == nil {
			t.Fatal("publish outside the allow-list succeeded")
		}
	})

	t.Run("forged_request_info", func(t *testing.T) {
		bob, _ := s.login(t, "bob")
		bnc, _, _ := s.natsUser(t, bob, 0)
		keys, err := natsauth.LoadOrCreateKeys(filepath.Join(s.dir, "secrets", "nats"))
		if err != nil {
			t.Fatal(err)
		}
		forged := `{"acc":"` + keys.Public().Users + `","user":"` + userKeyOf(t, cred.JWT) + `","issuer_key":"` + keys.Public().UsersSigning[0] + `"}`
		// bob claims to be alice: the server replaces the header, so bob is
		// still bob (support: may not create).
		env, _ := request(t, bnc, "orders.v1.get", `{"id":`+jsonNum(id)+`}`, map[string]string{"Nats-Request-Info": forged})
		if !env.OK {
			t.Fatalf("bob get = %+v", env)
		}
		denied, err := bnc.Request("orders.v1.create", []byte(`{"customer":"x","amount":1}`), 2*time.Second)
		if err == nil {
			t.Fatalf("bob may not even publish to create; got %s", denied.Data)
		}
	})

	t.Run("policy_allows_nothing", func(t *testing.T) {
		carol, _ := s.login(t, "carol")
		// A key pair issued to alice is never issued to anyone else.
		_, err := carol.NATSCreds(t.Context(), api.NATSCredsRequest{PublicKey: userKeyOf(t, cred.JWT)})
		var se *api.StatusError
		if !errors.As(err, &se) || se.Status != 400 {
			t.Fatalf("carol with alice's key = %v, want 400", err)
		}
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		_, err = carol.NATSCreds(t.Context(), api.NATSCredsRequest{PublicKey: pub})
		if !errors.As(err, &se) || se.Status != 403 || len(se.Body.Reasons) == 0 {
			t.Fatalf("carol creds = %v, want 403 with reasons", err)
		}
	})

	t.Run("expired_jwt", func(t *testing.T) {
		enc, ecred, seed := s.natsUser(t, alice, 2*time.Second)
		closed := make(chan struct{})
		enc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("the server did not disconnect an expired credential")
		}
		time.Sleep(1100 * time.Millisecond) // JWT expiry has one-second resolution
		if _, err := nats.Connect(ecred.NATSURL, nats.UserJWTAndSeed(ecred.JWT, seed), nats.MaxReconnects(0)); err == nil {
			t.Error("connected with an expired JWT")
		}
	})

	t.Run("revocation_closes_connection", func(t *testing.T) {
		rnc, rcred, _ := s.natsUser(t, alice, 0)
		closed := make(chan struct{})
		rnc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		rnc.SetDisconnectErrHandler(func(*nats.Conn, error) {})
		key := userKeyOf(t, rcred.JWT)
		if _, err := alice.RevokeLease(t.Context(), key); err != nil {
			t.Fatal(err)
		}
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
			t.Fatal("revoked connection still open after 2s")
		}
	})

	t.Run("callout", func(t *testing.T) {
		sentinel, err := os.ReadFile(s.st.Sentinel)
		if err != nil {
			t.Fatal(err)
		}
		_, token := s.login(t, "alice")
		cc, err := natsclient.ConnectCallout(t.Context(), natsclient.CalloutConfig{
			NATSURL: s.st.NATSURL, SentinelCreds: sentinel,
			Token: func(context.Context) (string, error) { return token, nil },
		})
		if err != nil {
			t.Fatalf("callout connect with a valid token: %v", err)
		}
		defer cc.Close()
		msg, err := cc.Request(t.Context(), "orders.v1.get", []byte(`{"id":`+jsonNum(id)+`}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		var env envelope
		if err := json.Unmarshal(msg.Data, &env); err != nil || !env.OK || rows(t, env)[0]["customer"] != injection {
			t.Fatalf("callout request = %s", msg.Data)
		}
		for name, bad := range map[string]string{
			"forged":    token[:len(token)-4] + "AAAA",
			"malformed": "not-a-token",
			"empty":     "",
		} {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			_, err := natsclient.ConnectCallout(ctx, natsclient.CalloutConfig{
				NATSURL: s.st.NATSURL, SentinelCreds: sentinel, InboxPrefix: "_INBOX_x",
				Token:   func(context.Context) (string, error) { return bad, nil },
				Options: []nats.Option{nats.MaxReconnects(0)},
			})
			cancel()
			if err == nil {
				t.Errorf("callout with a %s token connected", name)
			}
		}
	})

	t.Run("audit_verifies", func(t *testing.T) {
		carol, _ := s.login(t, "carol")
		var bundle bytes.Buffer
		if err := carol.AuditExport(t.Context(), &bundle, 0, 0); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "log.bundle")
		if err := os.WriteFile(path, bundle.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, err := audit.OpenBundle(f)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := audit.Verify(t.Context(), b, audit.VerifyOptions{Keys: []string{s.st.AuditKey}})
		if err != nil || !rep.OK() || rep.Records < 10 {
			var text bytes.Buffer
			_ = rep.WriteText(&text)
			t.Fatalf("verify: %v\n%s", err, text.String())
		}
		// SOC 2 evidence from the dashboard's API: auditors only, and the
		// create call is in the activity.
		var zipped bytes.Buffer
		if err := carol.AuditEvidence(t.Context(), &zipped, time.Now().Add(-time.Hour), time.Now()); err != nil {
			t.Fatal(err)
		}
		files := audittest.Unzip(t, zipped.Bytes())
		if !bytes.Contains(files["csv/activity.csv"], []byte("corr-e2e-1")) || !bytes.Contains(files["manifest.json"], []byte(`"ok": true`)) {
			t.Errorf("evidence: manifest %s\nactivity %s", files["manifest.json"], files["csv/activity.csv"])
		}
		// The dashboard signs the manifest with the log's key: the auditor's
		// pinned key checks the whole archive, signature required.
		checked, err := evidence.Check(bytes.NewReader(zipped.Bytes()), int64(zipped.Len()),
			evidence.CheckOptions{Keys: []string{s.st.AuditKey}, RequireSignature: true})
		if err != nil || checked.SignedBy == "" || checked.Files != len(checked.Manifest.Files) {
			t.Errorf("dashboard evidence does not check: %+v, %v", checked, err)
		}
		if err := alice.AuditEvidence(t.Context(), io.Discard, time.Now().Add(-time.Hour), time.Now()); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("alice downloaded evidence: %v", err)
		}

		// Receipt of the create call.
		raw, err := alice.AuditProof(t.Context(), created.Audit.Index)
		if err != nil {
			t.Fatal(err)
		}
		var p audit.Proof
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		vs, _ := audit.NewVerifiers(s.st.AuditKey)
		if err := audit.VerifyProof(&p, vs); err != nil {
			t.Errorf("receipt: %v", err)
		}
	})
}

// TestDevRestart checks that keys and state survive a restart: the same
// audit key, the same demo passwords, the log continues and verifies.
func TestDevRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end dev stack: skipped with -short")
	}
	dir := t.TempDir()
	first := startDev(t, dir)
	alice, _ := first.login(t, "alice")
	nc, _, _ := first.natsUser(t, alice, 0)
	if env, _ := request(t, nc, "orders.v1.create", `{"customer":"before restart","amount":10}`, nil); !env.OK {
		t.Fatalf("create: %+v", env)
	}
	nc.Close()
	first.stop()

	second := startDev(t, dir)
	if second.st.AuditKey != first.st.AuditKey || second.password(t, "alice") != first.password(t, "alice") {
		t.Error("restart changed the audit key or the demo passwords")
	}
	alice, _ = second.login(t, "alice")
	nc, _, _ = second.natsUser(t, alice, 0)
	env, _ := request(t, nc, "orders.v1.get", `{"id":1}`, nil)
	if !env.OK || rows(t, env)[0]["customer"] != "before restart" {
		t.Errorf("after restart: %+v", env)
	}
}

// brokerEvents connects as sqlgated's broker user (closed when the test
// ends) and subscribes to subject before returning.
func (s *devStack) brokerEvents(t *testing.T, subject string) (*nats.Conn, *nats.Subscription) {
	t.Helper()
	keys, err := natsauth.LoadOrCreateKeys(filepath.Join(s.dir, "secrets", "nats"))
	if err != nil {
		t.Fatal(err)
	}
	bc, err := nats.Connect(s.st.NATSURL, keys.BrokerUser())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bc.Close)
	events, err := bc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := bc.Flush(); err != nil {
		t.Fatal(err)
	}
	return bc, events
}

// registryGet reads an issuance from the dev stack's control database.
func (s *devStack) registryGet(t *testing.T, key string) (broker.Issuance, error) {
	t.Helper()
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(s.dir, "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cdb, err := control.Open(t.Context(), db, control.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	return control.NewRegistry(cdb, time.Nanosecond, nil).Get(t.Context(), key)
}

func userKeyOf(t *testing.T, userJWT string) string {
	t.Helper()
	uc, err := jwt.DecodeUserClaims(userJWT)
	if err != nil {
		t.Fatal(err)
	}
	return uc.Subject
}

func jsonNum(f float64) string { b, _ := json.Marshal(f); return string(b) }
