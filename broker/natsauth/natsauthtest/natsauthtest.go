// Package natsauthtest runs a real in-process nats-server configured by
// natsauth (operator mode, full resolver, sqlgate's accounts) for tests of
// the NATS-facing packages, and connects test users to it.
package natsauthtest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
)

// Env is a running embedded server and the keys it trusts.
type Env struct {
	Keys   *natsauth.Keys
	Server *server.Server
	URL    string
	Minter *natsauth.Minter
	Dir    string
	// subjects are the route subjects the accounts were built from.
	subjects []string
}

// Config tunes [Start].
type Config struct {
	Subjects, Emits []string
	JetStream       bool
	// Keys to use (nil: generated).
	Keys *natsauth.Keys
	// Dir is the server data directory (empty: t.TempDir()).
	Dir string
}

// Start starts an embedded server for cfg and stops it when the test ends.
func Start(t testing.TB, cfg Config) *Env {
	t.Helper()
	keys := cfg.Keys
	if keys == nil {
		var err error
		if keys, err = natsauth.GenerateKeys(); err != nil {
			t.Fatalf("GenerateKeys: %v", err)
		}
	}
	dir := cfg.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	opts, err := natsauth.EmbeddedOptions(keys, natsauth.EmbeddedConfig{
		Dir: dir, Subjects: cfg.Subjects, Emits: cfg.Emits, JetStream: cfg.JetStream,
	})
	if err != nil {
		t.Fatalf("EmbeddedOptions: %v", err)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if err := natsauth.LoadAccounts(s, keys); err != nil {
		t.Fatalf("LoadAccounts: %v", err)
	}
	return &Env{Keys: keys, Server: s, URL: s.ClientURL(), Minter: natsauth.NewMinter(keys), Dir: dir, subjects: cfg.Subjects}
}

// Connect connects to the server with opts (no reconnects unless opts ask)
// and closes the connection when the test ends.
func (e *Env) Connect(t testing.TB, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	all := append([]nats.Option{nats.MaxReconnects(0)}, opts...)
	nc, err := nats.Connect(e.URL, all...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	return nc, nil
}

// MustConnect is Connect that fails the test on error.
func (e *Env) MustConnect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := e.Connect(t, opts...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return nc
}

// BrokerConn connects as sqlgated's broker-account service user, with the
// JWT sqlgated mints for the environment's route subjects (it may not
// publish to them nor to sqlgate.async.>).
func (e *Env) BrokerConn(t testing.TB) *nats.Conn {
	return e.MustConnect(t, e.Keys.BrokerUser(e.subjects...))
}

// UnrestrictedBrokerConn connects as a test-only user of the broker account
// without any permission limits, signed with the broker account key: what a
// holder of that key could connect as. sqlgated never mints such a user.
func (e *Env) UnrestrictedBrokerConn(t testing.TB) *nats.Conn {
	t.Helper()
	// The account seed is reachable only through the key files.
	dir := t.TempDir()
	if err := e.Keys.WriteKeys(dir); err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(dir, "broker.nk")) //nolint:gosec // G304: the test's own temp dir
	if err != nil {
		t.Fatal(err)
	}
	account, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	key, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(key)
	uc.Name = "test-unrestricted"
	j, err := uc.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	return e.MustConnect(t, nats.UserJWTAndSeed(j, mustSeed(kp)))
}

// SystemConn connects as sqlgated's system-account user.
func (e *Env) SystemConn(t testing.TB) *nats.Conn { return e.MustConnect(t, e.Keys.SystemUser()) }

// CalloutConn connects as the auth callout service user.
func (e *Env) CalloutConn(t testing.TB) *nats.Conn { return e.MustConnect(t, e.Keys.CalloutUser()) }

// User is a minted test user.
type User struct {
	KP  nkeys.KeyPair
	Key string
	JWT string
}

// Option returns the connect options of u: its JWT and the per-user inbox.
func (u User) Option() nats.Option {
	return func(o *nats.Options) error {
		if err := nats.UserJWTAndSeed(u.JWT, mustSeed(u.KP))(o); err != nil {
			return err
		}
		return nats.CustomInboxPrefix(broker.InboxPrefix(u.Key))(o)
	}
}

func mustSeed(kp nkeys.KeyPair) string {
	s, err := kp.Seed()
	if err != nil {
		panic("natsauthtest: user seed: " + err.Error())
	}
	return string(s)
}

// MintUser mints a users-account user that may publish to pub and subscribe
// to its own inbox, valid for ttl.
func (e *Env) MintUser(t testing.TB, name string, pub []string, ttl time.Duration) User {
	t.Helper()
	return e.MintUserSub(t, name, pub, nil, ttl)
}

// MintUserSub is MintUser with more subjects to subscribe to: sub, each a
// function of the new user's key.
func (e *Env) MintUserSub(t testing.TB, name string, pub []string, sub func(key string) []string, ttl time.Duration) User {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	key, _ := kp.PublicKey()
	m, err := e.Minter.MintUser(context.Background(), broker.UserSpec{
		UserKey: key, Name: name, Pub: pub,
		Sub:     append([]string{broker.InboxPrefix(key) + ".>"}, subOf(sub, key)...),
		Expires: time.Now().Add(ttl),
	})
	if err != nil {
		t.Fatalf("MintUser: %v", err)
	}
	return User{KP: kp, Key: key, JWT: m.JWT}
}

func subOf(sub func(string) []string, key string) []string {
	if sub == nil {
		return nil
	}
	return sub(key)
}
