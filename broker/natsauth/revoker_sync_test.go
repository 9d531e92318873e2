package natsauth_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
)

// heldRequests sends n requests from a users-account user through the
// service import of subject, each with its own reply subject, and returns
// them as the broker account's subscriber received them, unanswered, and the
// user's subscription their replies arrive on.
func heldRequests(t *testing.T, env *natsauthtest.Env, subject string, n int) (bc, uc *nats.Conn, held []*nats.Msg, replies *nats.Subscription) {
	t.Helper()
	bc = env.BrokerConn(t)
	reqs, err := bc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := bc.Flush(); err != nil {
		t.Fatal(err)
	}
	u := env.MintUser(t, "alice", []string{subject}, time.Hour)
	uc = env.MustConnect(t, u.Option())
	inbox := broker.InboxPrefix(u.Key)
	if replies, err = uc.SubscribeSync(inbox + ".>"); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := uc.PublishRequest(subject, fmt.Sprintf("%s.%d", inbox, i), []byte("call")); err != nil {
			t.Fatal(err)
		}
	}
	if err := uc.Flush(); err != nil {
		t.Fatal(err)
	}
	for range n {
		m, err := reqs.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("request not received by the broker account: %v", err)
		}
		held = append(held, m)
	}
	return bc, uc, held, replies
}

// answer replies to every held request and returns how many replies reached
// the user. The flushes make it exact: the server routes a reply while it
// reads it, so after the broker connection's round trip every reply that
// will ever reach the user is queued to it, and after the user
// connection's round trip it has been read.
func answer(t *testing.T, bc, uc *nats.Conn, held []*nats.Msg, replies *nats.Subscription) int {
	t.Helper()
	for _, m := range held {
		if err := m.Respond([]byte("done")); err != nil {
			t.Fatal(err)
		}
	}
	if err := bc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := uc.Flush(); err != nil {
		t.Fatal(err)
	}
	n, _, err := replies.Pending()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// accountOnServer looks up the JWT of the account pub the server holds.
func accountOnServer(t *testing.T, sys *nats.Conn, pub string) string {
	t.Helper()
	m, err := sys.Request("$SYS.REQ.ACCOUNT."+pub+".CLAIMS.LOOKUP", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return string(m.Data)
}

// TestSyncAtStartKeepsRepliesInFlight: an instance that starts (or restarts)
// with the catalog and keys the servers already hold must not make the calls
// then in flight on the other instances lose their replies. Pushing the
// broker account again would: the server rebuilds its exports and forgets
// where the replies of the requests that crossed the users account's import
// go. A signing key rotation changes the users account only, which is
// pushed and loses no reply either.
func TestSyncAtStartKeepsRepliesInFlight(t *testing.T) {
	t.Parallel()
	subjects := []string{"orders.v1.create"}
	emits := []string{"orders.v1.created"}
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: subjects, Emits: emits})
	sys := env.SystemConn(t)
	pub := env.Keys.Public()
	// What the first instance pushed at its start, a minute ago.
	brokerBefore, usersBefore := pushBackdated(t, env, sys, subjects, emits)

	const calls = 8
	bc, uc, held, replies := heldRequests(t, env, "orders.v1.create", calls)
	// A second instance starts while the first holds the calls.
	var logged strings.Builder
	second := natsauth.NewRevoker(sys, env.Keys, natsauth.RevokerConfig{
		Subjects: subjects, Emits: emits, Logger: slog.New(slog.NewTextHandler(&logged, nil)),
	})
	if err := second.Sync(t.Context()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := answer(t, bc, uc, held, replies); got != calls {
		t.Errorf("%d of %d replies reached the caller after another instance started", got, calls)
	}
	if accountOnServer(t, sys, pub.Broker) != brokerBefore || accountOnServer(t, sys, pub.Users) != usersBefore {
		t.Error("Sync with unchanged claims replaced an account JWT the server held")
	}
	if !strings.Contains(logged.String(), "nats broker account up to date") || !strings.Contains(logged.String(), "nats users account up to date") {
		t.Errorf("log does not say the accounts were up to date:\n%s", logged.String())
	}

	// A signing key rotation: the users account is pushed, the broker
	// account is not, and the calls in flight keep their replies.
	rotated, err := env.Keys.WithSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	bc, uc, held, replies = heldRequests(t, env, "orders.v1.create", calls)
	if err := natsauth.NewRevoker(sys, rotated, natsauth.RevokerConfig{Subjects: subjects, Emits: emits}).Sync(t.Context()); err != nil {
		t.Fatalf("Sync with a new signing key: %v", err)
	}
	if got := answer(t, bc, uc, held, replies); got != calls {
		t.Errorf("%d of %d replies reached the caller after a signing key rotation", got, calls)
	}
	ac, err := jwt.DecodeAccountClaims(accountOnServer(t, sys, pub.Users))
	if err != nil {
		t.Fatal(err)
	}
	if !ac.SigningKeys.Contains(rotated.Public().UsersSigning[0]) {
		t.Error("the new signing key was not pushed")
	}
	if accountOnServer(t, sys, pub.Broker) != brokerBefore {
		t.Error("a signing key rotation replaced the broker account JWT")
	}
}

// TestSyncPushesChangedAccounts: a restart with a changed catalog (a new
// route, a new emit) or a revocation the server lacks still pushes the
// accounts, and only the ones that changed.
func TestSyncPushesChangedAccounts(t *testing.T) {
	t.Parallel()
	subjects := []string{"orders.v1.create"}
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: subjects})
	sys := env.SystemConn(t)
	pub := env.Keys.Public()
	pushBackdated(t, env, sys, subjects, nil)

	// A new emit: a new stream export and import.
	emits := []string{"orders.v1.created"}
	if err := natsauth.NewRevoker(sys, env.Keys, natsauth.RevokerConfig{Subjects: subjects, Emits: emits}).Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	b, err := jwt.DecodeAccountClaims(accountOnServer(t, sys, pub.Broker))
	if err != nil {
		t.Fatal(err)
	}
	if !hasExport(b.Exports, "orders.v1.created", jwt.Stream) {
		t.Errorf("new emit not exported by the broker account the server holds: %v", b.Exports)
	}
	u, err := jwt.DecodeAccountClaims(accountOnServer(t, sys, pub.Users))
	if err != nil {
		t.Fatal(err)
	}
	if !hasImport(u.Imports, "orders.v1.created", jwt.Stream) {
		t.Errorf("new emit not imported by the users account the server holds: %v", u.Imports)
	}

	// A new route: callers reach it.
	serveEcho(t, env, "orders.v1.refund")
	subjects = append(subjects, "orders.v1.refund")
	if err := natsauth.NewRevoker(sys, env.Keys, natsauth.RevokerConfig{Subjects: subjects, Emits: emits}).Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	usr := env.MintUser(t, "alice", []string{"orders.v1.refund"}, time.Hour)
	if _, err := env.MustConnect(t, usr.Option()).Request("orders.v1.refund", nil, 5*time.Second); err != nil {
		t.Errorf("request to the newly exported route: %v", err)
	}

	// A revocation the server lacks (the users account was replaced by
	// hand): the users account is pushed with it, the broker account is not.
	_, revoked := newUserKey(t)
	r := natsauth.NewRevoker(sys, env.Keys, natsauth.RevokerConfig{Subjects: subjects, Emits: emits})
	if err := r.RevokeUsers(t.Context(), []string{revoked}, time.Now()); err != nil {
		t.Fatal(err)
	}
	brokerBefore := accountOnServer(t, sys, pub.Broker)
	withoutRevocation, err := env.Keys.AccountJWTs(subjects, emits)
	if err != nil {
		t.Fatal(err)
	}
	pushRaw(t, sys, withoutRevocation.Users)
	if _, ok := usersAccountOnServer(t, env, sys).Revocations[revoked]; ok {
		t.Fatal("test setup: revocation still held")
	}
	if err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, ok := usersAccountOnServer(t, env, sys).Revocations[revoked]; !ok {
		t.Error("Sync did not push the revocation the server lacked")
	}
	if accountOnServer(t, sys, pub.Broker) != brokerBefore {
		t.Error("Sync replaced the unchanged broker account along with the users account")
	}
}

// pushBackdated pushes the broker and users accounts for subjects and emits
// as an instance that started a minute ago did, and returns them. (Within
// the same second the JWTs would be byte-identical to the ones Sync signs,
// and the server would take the push as no update.)
func pushBackdated(t *testing.T, env *natsauthtest.Env, sys *nats.Conn, subjects, emits []string) (brokerJWT, usersJWT string) {
	t.Helper()
	a, err := env.Keys.AccountJWTs(subjects, emits)
	if err != nil {
		t.Fatal(err)
	}
	if brokerJWT, err = env.Keys.BackdatedAccountJWTForTest(a.Broker, time.Minute); err != nil {
		t.Fatal(err)
	}
	if usersJWT, err = env.Keys.BackdatedAccountJWTForTest(a.Users, time.Minute); err != nil {
		t.Fatal(err)
	}
	pushRaw(t, sys, brokerJWT)
	pushRaw(t, sys, usersJWT)
	if accountOnServer(t, sys, env.Keys.Public().Broker) != brokerJWT || accountOnServer(t, sys, env.Keys.Public().Users) != usersJWT {
		t.Fatal("test setup: the server does not hold the backdated account JWTs")
	}
	return brokerJWT, usersJWT
}

func hasExport(exports jwt.Exports, subject string, typ jwt.ExportType) bool {
	for _, e := range exports {
		if string(e.Subject) == subject && e.Type == typ {
			return true
		}
	}
	return false
}

func hasImport(imports jwt.Imports, subject string, typ jwt.ExportType) bool {
	for _, i := range imports {
		if string(i.Subject) == subject && i.Type == typ {
			return true
		}
	}
	return false
}

func pushRaw(t *testing.T, sys *nats.Conn, accountJWT string) {
	t.Helper()
	m, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(accountJWT), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(m.Data), `"error"`) {
		t.Fatalf("claims update refused: %s", m.Data)
	}
}

// TestSyncPushesWhenTheLookupFails: Sync compares with what the server holds
// only when it gets an answer; a failed lookup of the broker account, or an
// answer that is not our operator's broker account, pushes it as before
// (correctness over the replies in flight), and an identical account is not
// pushed.
func TestSyncPushesWhenTheLookupFails(t *testing.T) {
	t.Parallel()
	// A plain server standing in for the system account's responders.
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, NoSystemAccount: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	subjects := []string{"orders.v1.create"}
	a, err := keys.AccountJWTs(subjects, nil)
	if err != nil {
		t.Fatal(err)
	}
	same, err := keys.BackdatedAccountJWTForTest(a.Broker, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Another operator's JWT for our broker account's key.
	otherOperator, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := jwt.NewAccountClaims(keys.Public().Broker).Encode(otherOperator)
	if err != nil {
		t.Fatal(err)
	}
	pub := keys.Public()
	for _, tc := range []struct {
		name       string
		answer     func(*nats.Msg)
		wantPushed bool
	}{
		{"no responder", nil, true},
		{"no jwt", func(m *nats.Msg) { _ = m.Respond(nil) }, true},
		{"not a jwt", func(m *nats.Msg) { _ = m.Respond([]byte(`{"error":"lookup failed"}`)) }, true},
		{"another operator's", func(m *nats.Msg) { _ = m.Respond([]byte(foreign)) }, true},
		{"same claims", func(m *nats.Msg) { _ = m.Respond([]byte(same)) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := nats.Connect(s.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			if tc.answer != nil {
				if _, err := nc.Subscribe("$SYS.REQ.ACCOUNT."+pub.Broker+".CLAIMS.LOOKUP", tc.answer); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := nc.Subscribe("$SYS.REQ.ACCOUNT."+pub.Users+".CLAIMS.LOOKUP", func(m *nats.Msg) { _ = m.Respond(nil) }); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			pushed := map[string]int{}
			if _, err := nc.Subscribe("$SYS.REQ.CLAIMS.UPDATE", func(m *nats.Msg) {
				ac, err := jwt.DecodeAccountClaims(string(m.Data))
				if err != nil {
					t.Errorf("pushed something that is not an account JWT: %v", err)
					return
				}
				mu.Lock()
				pushed[ac.Subject]++
				mu.Unlock()
				resp, _ := json.Marshal(map[string]any{"data": map[string]any{"account": ac.Subject, "code": 200, "message": "jwt updated"}})
				_ = m.Respond(resp)
			}); err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			r := natsauth.NewRevoker(nc, keys, natsauth.RevokerConfig{Subjects: subjects, Timeout: 500 * time.Millisecond})
			if err := r.Sync(t.Context()); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if got := pushed[pub.Broker] == 1; got != tc.wantPushed {
				t.Errorf("broker account pushed %d times, want pushed=%v", pushed[pub.Broker], tc.wantPushed)
			}
			if pushed[pub.Users] != 1 {
				t.Errorf("users account pushed %d times, want once (the server holds none)", pushed[pub.Users])
			}
		})
	}
}
