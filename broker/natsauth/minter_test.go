package natsauth_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

func newUserKey(t testing.TB) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return kp, pub
}

func TestMintUserClaims(t *testing.T) {
	t.Parallel()
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	_, key := newUserKey(t)
	exp := time.Now().Add(15 * time.Minute).Truncate(time.Second)
	spec := broker.UserSpec{
		UserKey: key,
		Name:    "00uAbCdEf-Okta", // case-sensitive subject kept exactly
		Pub:     []string{"orders.v1.create", "orders.v1.get", broker.AsyncPrefix(key) + ".>"},
		Sub:     []string{broker.InboxPrefix(key) + ".>"},
		Expires: exp,
		Tags:    []string{"email:Alice@Contoso.com"},
	}
	m, err := natsauth.NewMinter(keys).MintUser(context.Background(), spec)
	if err != nil {
		t.Fatalf("MintUser: %v", err)
	}
	uc, err := jwt.DecodeUserClaims(m.JWT)
	if err != nil {
		t.Fatalf("decode minted jwt: %v", err)
	}
	pub := keys.Public()
	checks := []struct {
		what      string
		got, want any
	}{
		{"subject", uc.Subject, key},
		{"name", uc.Name, spec.Name},
		{"expires", uc.Expires, exp.Unix()},
		{"issuer", uc.Issuer, pub.UsersSigning[0]},
		{"issuer account", uc.IssuerAccount, pub.Users},
		{"pub allow", []string(uc.Pub.Allow), spec.Pub},
		{"pub deny", len(uc.Pub.Deny), 0},
		{"sub allow", []string(uc.Sub.Allow), spec.Sub},
		{"bearer", uc.BearerToken, false},
		{"resp", uc.Resp == nil, true},
		{"MintedUser.ID", m.ID, uc.ID},
		{"MintedUser.SigningKey", m.SigningKey, pub.UsersSigning[0]},
		{"MintedUser.Account", m.Account, pub.Users},
	}
	for _, c := range checks {
		if !equalAny(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if !uc.Tags.Contains("email:alice@contoso.com") || !uc.Tags.Contains(natsauth.UserKeyTagPrefix+key) {
		t.Errorf("tags = %v, want the hint and the user key tag", uc.Tags)
	}
}

func equalAny(a, b any) bool {
	as, aok := a.([]string)
	bs, bok := b.([]string)
	if aok && bok {
		return slices.Equal(as, bs)
	}
	return a == b
}

func TestMintUserEmptyAllowListDeniesAll(t *testing.T) {
	t.Parallel()
	keys, _ := natsauth.GenerateKeys()
	_, key := newUserKey(t)
	m, err := natsauth.NewMinter(keys).MintUser(context.Background(), broker.UserSpec{
		UserKey: key, Name: "nobody", Expires: time.Now().Add(time.Minute),
	})
	if err != nil {
		t.Fatalf("MintUser: %v", err)
	}
	uc, _ := jwt.DecodeUserClaims(m.JWT)
	if len(uc.Pub.Allow) != 0 || !slices.Equal([]string(uc.Pub.Deny), []string{">"}) {
		t.Errorf("pub = %+v, want deny >", uc.Pub)
	}
	if len(uc.Sub.Allow) != 0 || !slices.Equal([]string(uc.Sub.Deny), []string{">"}) {
		t.Errorf("sub = %+v, want deny >", uc.Sub)
	}
}

func TestMintUserRefusesBadSpecs(t *testing.T) {
	t.Parallel()
	keys, _ := natsauth.GenerateKeys()
	_, key := newUserKey(t)
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	good := func() broker.UserSpec {
		return broker.UserSpec{UserKey: key, Name: "alice", Pub: []string{"a.b"}, Sub: []string{"_INBOX_x.>"}, Expires: time.Now().Add(time.Minute)}
	}
	tests := []struct {
		name   string
		modify func(*broker.UserSpec)
	}{
		{"zero_expiry", func(s *broker.UserSpec) { s.Expires = time.Time{} }},
		{"past_expiry", func(s *broker.UserSpec) { s.Expires = time.Now().Add(-time.Second) }},
		{"no_key", func(s *broker.UserSpec) { s.UserKey = "" }},
		{"account_key", func(s *broker.UserSpec) { s.UserKey = accPub }},
		{"garbage_key", func(s *broker.UserSpec) { s.UserKey = "Unot-a-key" }},
		{"no_name", func(s *broker.UserSpec) { s.Name = "" }},
		{"empty_subject", func(s *broker.UserSpec) { s.Pub = []string{""} }},
		{"space_subject", func(s *broker.UserSpec) { s.Pub = []string{"a b"} }},
		{"bad_wildcard", func(s *broker.UserSpec) { s.Sub = []string{"a.>.b"} }},
		{"reserved_tag", func(s *broker.UserSpec) { s.Tags = []string{"NKey:UABC"} }},
	}
	m := natsauth.NewMinter(keys)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := good()
			tc.modify(&spec)
			got, err := m.MintUser(context.Background(), spec)
			if !errors.Is(err, natsauth.ErrInvalidSpec) {
				t.Fatalf("MintUser = %v, %v; want ErrInvalidSpec", got, err)
			}
			if got.JWT != "" {
				t.Errorf("MintUser returned a JWT with an error")
			}
		})
	}
}

// BenchmarkMintUser measures signing one user JWT (target: under 200 µs).
func BenchmarkMintUser(b *testing.B) {
	keys, _ := natsauth.GenerateKeys()
	_, key := newUserKey(b)
	m := natsauth.NewMinter(keys)
	spec := broker.UserSpec{
		UserKey: key, Name: "alice@example.com",
		Pub:     []string{"orders.v1.create", "orders.v1.get", "orders.v1.cancel", broker.AsyncPrefix(key) + ".>"},
		Sub:     []string{broker.InboxPrefix(key) + ".>"},
		Expires: time.Now().Add(time.Hour),
		Tags:    []string{"email:alice@example.com", "group:sales"},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.MintUser(ctx, spec); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMintedUserLimits: a minted credential works for a plain NATS client,
// not over websocket (nor MQTT or as a leaf node), and one connection may
// hold at most MaxUserSubs subscriptions.
func TestMintedUserLimits(t *testing.T) {
	t.Parallel()
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := natsauth.EmbeddedOptions(keys, natsauth.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	opts.Websocket = server.WebsocketOpts{Host: "127.0.0.1", Port: -1, NoTLS: true}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	if err := natsauth.LoadAccounts(s, keys); err != nil {
		t.Fatal(err)
	}
	env := &natsauthtest.Env{Keys: keys, Server: s, URL: s.ClientURL(), Minter: natsauth.NewMinter(keys)}
	u := env.MintUser(t, "alice", []string{"orders.v1.create"}, time.Hour)

	// The server closes a refused connection at once: the client may fail
	// writing before it reads the -ERR, so a few tries must see the
	// authorization violation itself.
	var wsErr error
	for range 5 {
		nc, err := nats.Connect(s.WebsocketURL(), u.Option(), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
			t.Fatal("a minted user connected over websocket")
		}
		if wsErr = err; errors.Is(err, nats.ErrAuthorization) {
			break
		}
	}
	if !errors.Is(wsErr, nats.ErrAuthorization) {
		t.Errorf("websocket connect: %v, want authorization violation", wsErr)
	}

	asyncErrs := make(chan error, 4)
	nc := env.MustConnect(t, u.Option(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { asyncErrs <- err }))
	inbox := broker.InboxPrefix(u.Key)
	for i := range natsauth.MaxUserSubs {
		if _, err := nc.SubscribeSync(fmt.Sprintf("%s.%d", inbox, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-asyncErrs:
		t.Fatalf("%d subscriptions refused: %v", natsauth.MaxUserSubs, err)
	default:
	}
	if _, err := nc.SubscribeSync(inbox + ".one-too-many"); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-asyncErrs:
		if !errors.Is(err, nats.ErrMaxSubscriptionsExceeded) {
			t.Errorf("subscription beyond the limit: %v, want maximum subscriptions exceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("a subscription beyond MaxUserSubs was accepted")
	}
}
