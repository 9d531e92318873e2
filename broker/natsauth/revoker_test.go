package natsauth_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
)

func TestRevokeClosesLiveConnectionAndRefusesReconnect(t *testing.T) {
	t.Parallel()
	subjects := []string{"orders.v1.create"}
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: subjects})
	serveEcho(t, env, "orders.v1.create")
	u := env.MintUser(t, "alice", subjects, time.Hour)
	bystander := env.MintUser(t, "bob", subjects, time.Hour)
	closed := make(chan struct{})
	uc := env.MustConnect(t, u.Option(), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	bc := env.MustConnect(t, bystander.Option())
	if _, err := uc.Request("orders.v1.create", nil, 5*time.Second); err != nil {
		t.Fatalf("request before revocation: %v", err)
	}

	r := natsauth.NewRevoker(env.SystemConn(t), env.Keys, natsauth.RevokerConfig{Subjects: subjects})
	start := time.Now()
	if err := r.RevokeUsers(t.Context(), []string{u.Key}, time.Now()); err != nil {
		t.Fatalf("RevokeUsers: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(time.Second - time.Since(start)):
		t.Fatal("live connection of the revoked user still open 1s after revocation")
	}
	if _, err := env.Connect(t, u.Option()); err == nil {
		t.Fatal("revoked user reconnected")
	}
	// Idempotent, and others are unaffected.
	if err := r.RevokeUsers(t.Context(), []string{u.Key}, time.Now()); err != nil {
		t.Fatalf("RevokeUsers again: %v", err)
	}
	if _, err := bc.Request("orders.v1.create", nil, 5*time.Second); err != nil {
		t.Errorf("bystander request after revocation: %v", err)
	}
	if _, err := env.Connect(t, bystander.Option()); err != nil {
		t.Errorf("bystander cannot reconnect: %v", err)
	}
}

func TestRevokeRejectsNonUserKeys(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{})
	r := natsauth.NewRevoker(env.SystemConn(t), env.Keys, natsauth.RevokerConfig{})
	if err := r.RevokeUsers(t.Context(), []string{env.Keys.Public().Users}, time.Now()); err == nil {
		t.Fatal("RevokeUsers accepted an account key")
	}
}

// usersAccountOnServer looks up the users account JWT the server holds.
func usersAccountOnServer(t *testing.T, env *natsauthtest.Env, sys *nats.Conn) *jwt.AccountClaims {
	t.Helper()
	m, err := sys.Request("$SYS.REQ.ACCOUNT."+env.Keys.Public().Users+".CLAIMS.LOOKUP", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(string(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	return ac
}

func TestRevokersMergeAndPrune(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{})
	sys := env.SystemConn(t)
	_, k1 := newUserKey(t)
	_, k2 := newUserKey(t)
	_, k3 := newUserKey(t)
	// Two instances: b must keep a's entry.
	a := natsauth.NewRevoker(sys, env.Keys, natsauth.RevokerConfig{MaxTTL: time.Hour})
	b := natsauth.NewRevoker(sys, env.Keys, natsauth.RevokerConfig{MaxTTL: time.Hour})
	if err := a.RevokeUsers(t.Context(), []string{k1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.RevokeUsers(t.Context(), []string{k2}, time.Now()); err != nil {
		t.Fatal(err)
	}
	revs := usersAccountOnServer(t, env, sys).Revocations
	if _, ok := revs[k1]; !ok {
		t.Errorf("second instance dropped the first instance's revocation: %v", revs)
	}
	if _, ok := revs[k2]; !ok {
		t.Errorf("revocation of k2 missing: %v", revs)
	}
	// Two hours later, k1 and k2 are past the horizon and pruned.
	b.SetNowForTest(func() time.Time { return time.Now().Add(2 * time.Hour) })
	if err := b.RevokeUsers(t.Context(), []string{k3}, time.Now()); err != nil {
		t.Fatal(err)
	}
	revs = usersAccountOnServer(t, env, sys).Revocations
	if _, ok := revs[k3]; !ok || len(revs) != 1 {
		t.Errorf("revocations after pruning = %v, want only k3", revs)
	}
}

// TestSyncExportsNewRoute: a restart after a route catalog change (Sync)
// brings the servers' accounts up to date.
func TestSyncExportsNewRoute(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}})
	serveEcho(t, env, "orders.v1.refund")
	u := env.MintUser(t, "alice", []string{"orders.v1.refund"}, time.Hour)
	uc := env.MustConnect(t, u.Option())
	if _, err := uc.Request("orders.v1.refund", nil, 2*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request to an unexported route: %v, want no responders", err)
	}
	r := natsauth.NewRevoker(env.SystemConn(t), env.Keys, natsauth.RevokerConfig{Subjects: []string{"orders.v1.create", "orders.v1.refund"}})
	if err := r.Sync(t.Context()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if _, err := uc.Request("orders.v1.refund", nil, 5*time.Second); err != nil {
		t.Fatalf("request to the newly exported route: %v", err)
	}
}

// TestRevocationByOlderInstanceKeepsNewRoutes: in a rolling deployment the
// new instance has pushed a new route (Sync at its start); a revocation
// handled by an instance still on the old catalog must not take the route
// away from users.
func TestRevocationByOlderInstanceKeepsNewRoutes(t *testing.T) {
	t.Parallel()
	oldSubjects := []string{"orders.v1.create"}
	newSubjects := []string{"orders.v1.create", "orders.v1.refund"}
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: oldSubjects})
	serveEcho(t, env, "orders.v1.refund")
	sys := env.SystemConn(t)
	upgraded := natsauth.NewRevoker(sys, env.Keys, natsauth.RevokerConfig{Subjects: newSubjects})
	old := natsauth.NewRevoker(sys, env.Keys, natsauth.RevokerConfig{Subjects: oldSubjects})
	if err := upgraded.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	u := env.MintUser(t, "alice", newSubjects, time.Hour)
	uc := env.MustConnect(t, u.Option())
	if _, err := uc.Request("orders.v1.refund", nil, 5*time.Second); err != nil {
		t.Fatalf("new route before the revocation: %v", err)
	}
	_, other := newUserKey(t)
	if err := old.RevokeUsers(t.Context(), []string{other}, time.Now()); err != nil {
		t.Fatal(err)
	}
	ac := usersAccountOnServer(t, env, sys)
	if _, ok := ac.Revocations[other]; !ok {
		t.Fatalf("revocation not pushed: %v", ac.Revocations)
	}
	var imported bool
	for _, im := range ac.Imports {
		imported = imported || string(im.Subject) == "orders.v1.refund"
	}
	if !imported {
		t.Error("the older instance's revocation push removed the new route's import")
	}
	if _, err := uc.Request("orders.v1.refund", nil, 5*time.Second); err != nil {
		t.Errorf("new route after the older instance's revocation: %v", err)
	}
}

// TestRevocationByOlderInstanceKeepsNewSigningKey: during a signing key
// rotation, an instance that does not know the new key yet must not remove
// it with a revocation push: the users the new key signed would be
// disconnected and refused.
func TestRevocationByOlderInstanceKeepsNewSigningKey(t *testing.T) {
	t.Parallel()
	subjects := []string{"orders.v1.create"}
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: subjects})
	serveEcho(t, env, "orders.v1.create")
	sys := env.SystemConn(t)
	rotated, err := env.Keys.WithSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	upgraded := natsauth.NewRevoker(sys, rotated, natsauth.RevokerConfig{Subjects: subjects})
	old := natsauth.NewRevoker(sys, env.Keys, natsauth.RevokerConfig{Subjects: subjects})
	if err := upgraded.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	rotatedEnv := *env
	rotatedEnv.Minter = natsauth.NewMinter(rotated)
	u := rotatedEnv.MintUser(t, "alice", subjects, time.Hour)
	uc := env.MustConnect(t, u.Option())
	if _, err := uc.Request("orders.v1.create", nil, 5*time.Second); err != nil {
		t.Fatalf("request before the revocation: %v", err)
	}
	_, other := newUserKey(t)
	if err := old.RevokeUsers(t.Context(), []string{other}, time.Now()); err != nil {
		t.Fatal(err)
	}
	newKey := rotated.Public().UsersSigning[0]
	if ac := usersAccountOnServer(t, env, sys); !ac.SigningKeys.Contains(newKey) {
		t.Errorf("the older instance's revocation push removed the new signing key: %v", ac.SigningKeys.Keys())
	}
	if _, err := uc.Request("orders.v1.create", nil, 5*time.Second); err != nil {
		t.Errorf("request of a user signed by the new key after the older instance's revocation: %v", err)
	}
	if _, err := env.Connect(t, u.Option()); err != nil {
		t.Errorf("user signed by the new key cannot connect: %v", err)
	}
}

// TestRevokeUsersPushesNothingWithoutTheServersAccount: when the lookup of
// the users account fails or finds nothing, RevokeUsers fails (the broker
// retries) and pushes nothing, rather than this instance's own view of the
// account, which may be older than the servers'.
func TestRevokeUsersPushesNothingWithoutTheServersAccount(t *testing.T) {
	t.Parallel()
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
	lookup := "$SYS.REQ.ACCOUNT." + keys.Public().Users + ".CLAIMS.LOOKUP"
	for _, tc := range []struct {
		name   string
		answer func(*nats.Msg)
	}{
		{"no responder", nil},
		{"no jwt", func(m *nats.Msg) { _ = m.Respond(nil) }},
		{"not a jwt", func(m *nats.Msg) { _ = m.Respond([]byte(`{"error":"lookup failed"}`)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := nats.Connect(s.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			if tc.answer != nil {
				if _, err := nc.Subscribe(lookup, tc.answer); err != nil {
					t.Fatal(err)
				}
			}
			pushes, err := nc.SubscribeSync("$SYS.REQ.CLAIMS.UPDATE")
			if err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			r := natsauth.NewRevoker(nc, keys, natsauth.RevokerConfig{Timeout: 500 * time.Millisecond})
			_, k := newUserKey(t)
			if err := r.RevokeUsers(t.Context(), []string{k}, time.Now()); err == nil {
				t.Error("RevokeUsers succeeded without the server's users account")
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if n, _, _ := pushes.Pending(); n != 0 {
				t.Errorf("%d account pushes, want none", n)
			}
		})
	}
}

func TestRestartKeepsRevocations(t *testing.T) {
	t.Parallel()
	keys, _ := natsauth.GenerateKeys()
	dir := t.TempDir()
	subjects := []string{"orders.v1.create"}
	env := natsauthtest.Start(t, natsauthtest.Config{Keys: keys, Dir: dir, Subjects: subjects})
	u := env.MintUser(t, "alice", subjects, time.Hour)
	r := natsauth.NewRevoker(env.SystemConn(t), keys, natsauth.RevokerConfig{Subjects: subjects})
	if err := r.RevokeUsers(t.Context(), []string{u.Key}, time.Now()); err != nil {
		t.Fatal(err)
	}
	env.Server.Shutdown()
	env.Server.WaitForShutdown()
	env2 := natsauthtest.Start(t, natsauthtest.Config{Keys: keys, Dir: dir, Subjects: subjects})
	env2.Minter = env.Minter
	if _, err := env2.Connect(t, u.Option()); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("revoked user connect after restart: %v, want authorization violation", err)
	}
}

// TestRevokeUsersPushesOnlyWhatServersLack: re-applying revocations (the
// broker does it every minute) pushes the users account only when the
// servers lack one of them, such as after a push that failed.
func TestRevokeUsersPushesOnlyWhatServersLack(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{})
	sys := env.SystemConn(t)
	// Each push of the users account is logged as "nats users revoked".
	var logged strings.Builder
	pushes := func() int { return strings.Count(logged.String(), "nats users revoked") }
	_, k1 := newUserKey(t)
	_, k2 := newUserKey(t)
	r := natsauth.NewRevoker(sys, env.Keys, natsauth.RevokerConfig{
		MaxTTL: time.Hour, Logger: slog.New(slog.NewTextHandler(&logged, nil)),
	})
	at := time.Now().Add(-time.Minute)
	if err := r.RevokeUsers(t.Context(), []string{k1}, at); err != nil {
		t.Fatal(err)
	}
	if n := pushes(); n != 1 {
		t.Fatalf("pushes after the first revocation = %d, want 1", n)
	}
	if _, ok := usersAccountOnServer(t, env, sys).Revocations[k1]; !ok {
		t.Fatal("revocation of k1 not on the server")
	}
	// Held already: nothing is pushed.
	if err := r.RevokeUsers(t.Context(), []string{k1}, at); err != nil {
		t.Fatal(err)
	}
	if n := pushes(); n != 1 {
		t.Errorf("pushes after re-applying a held revocation = %d, want still 1", n)
	}
	// Lacking one: pushed, and the held one is kept.
	if err := r.RevokeUsers(t.Context(), []string{k1, k2}, at); err != nil {
		t.Fatal(err)
	}
	if n := pushes(); n != 2 {
		t.Errorf("pushes after re-applying a missing revocation = %d, want 2", n)
	}
	revs := usersAccountOnServer(t, env, sys).Revocations
	if _, ok := revs[k2]; !ok {
		t.Errorf("revocation of k2 not pushed: %v", revs)
	}
	if _, ok := revs[k1]; !ok {
		t.Errorf("revocation of k1 lost: %v", revs)
	}
}
