package natsauth_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"golang.org/x/sys/unix"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
)

// serveEcho answers subject in the broker account and forwards each request.
func serveEcho(t *testing.T, env *natsauthtest.Env, subject string) <-chan *nats.Msg {
	t.Helper()
	bc := env.BrokerConn(t)
	got := make(chan *nats.Msg, 16)
	if _, err := bc.Subscribe(subject, func(m *nats.Msg) {
		got <- m
		_ = m.Respond([]byte("ok"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := bc.Flush(); err != nil {
		t.Fatal(err)
	}
	return got
}

type requestInfo struct {
	Account   string   `json:"acc"`
	User      string   `json:"user"`
	IssuerKey string   `json:"issuer_key"`
	NameTag   string   `json:"name_tag"`
	Tags      []string `json:"tags"`
	JWT       string   `json:"jwt"`
}

func TestMintedUserReachesRouteAcrossImport(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create", "orders.v1.get"}})
	got := serveEcho(t, env, "orders.v1.create")
	u := env.MintUser(t, "Alice", []string{"orders.v1.create"}, time.Minute)
	uc := env.MustConnect(t, u.Option())
	resp, err := uc.Request("orders.v1.create", []byte(`{}`), 5*time.Second)
	if err != nil {
		t.Fatalf("request across the import: %v", err)
	}
	if string(resp.Data) != "ok" {
		t.Errorf("reply = %q, want ok", resp.Data)
	}
	m := <-got
	var ci requestInfo
	if err := json.Unmarshal([]byte(m.Header.Get("Nats-Request-Info")), &ci); err != nil {
		t.Fatalf("Nats-Request-Info: %v", err)
	}
	pub := env.Keys.Public()
	if ci.Account != pub.Users || ci.IssuerKey != pub.UsersSigning[0] || ci.NameTag != "Alice" || ci.JWT != u.JWT {
		t.Errorf("Nats-Request-Info = %+v; want users account, signing key, name Alice and the user's jwt", ci)
	}
	if !strings.Contains(strings.Join(ci.Tags, ","), strings.ToLower(u.Key)) {
		t.Errorf("tags %v lack the user key tag", ci.Tags)
	}
}

// foreignSigned re-signs claims with a key that is not ours, claiming to be
// the users account.
func foreignSigned(t *testing.T, uc *jwt.UserClaims, users string) string {
	t.Helper()
	foreign, _ := nkeys.CreateAccount()
	uc.IssuerAccount = users
	s, err := uc.Encode(foreign)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tamper replaces the payload of a signed JWT, keeping header and signature.
func tamper(t *testing.T, signed string, edit func(*jwt.UserClaims)) string {
	t.Helper()
	parts := strings.Split(signed, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var uc jwt.UserClaims
	if err := json.Unmarshal(raw, &uc); err != nil {
		t.Fatal(err)
	}
	edit(&uc)
	b, _ := json.Marshal(&uc)
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestServerRefusesBadUserJWTsAtConnect(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}})
	pub := env.Keys.Public()
	kp, key := newUserKey(t)
	seed, _ := kp.Seed()
	claims := func() *jwt.UserClaims {
		uc := jwt.NewUserClaims(key)
		uc.Name = "mallory"
		uc.Pub.Allow.Add("orders.v1.create")
		uc.Sub.Allow.Add(broker.InboxPrefix(key) + ".>")
		uc.Expires = time.Now().Add(time.Hour).Unix()
		uc.IssuerAccount = pub.Users
		return uc
	}
	ours := env.Keys.UsersSigningKeyForTest()
	sign := func(uc *jwt.UserClaims) string {
		s, err := uc.Encode(ours)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := sign(claims())
	tests := []struct {
		name string
		jwt  string
	}{
		{"foreign_signing_key", foreignSigned(t, claims(), pub.Users)},
		{"expired", func() string {
			uc := claims()
			uc.Expires = time.Now().Add(-time.Minute).Unix()
			return sign(uc)
		}()},
		{"not_yet_valid", func() string {
			uc := claims()
			uc.NotBefore = time.Now().Add(time.Hour).Unix()
			return sign(uc)
		}()},
		{"widened_payload_same_signature", tamper(t, valid, func(uc *jwt.UserClaims) { uc.Pub.Allow = jwt.StringList{">"} })},
		{"widened_and_resigned_by_other_key", func() string {
			uc := claims()
			uc.Pub.Allow = jwt.StringList{">"}
			return foreignSigned(t, uc, pub.Users)
		}()},
		{"bearer", func() string {
			uc := claims()
			uc.BearerToken = true
			return sign(uc)
		}()},
		{"other_account", func() string {
			uc := claims()
			uc.IssuerAccount = pub.Broker // claims the broker account with our users key
			return sign(uc)
		}()},
	}
	// Control: the same claims, properly signed, connect.
	if _, err := env.Connect(t, nats.UserJWTAndSeed(valid, string(seed))); err != nil {
		t.Fatalf("valid credential refused: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nc, err := env.Connect(t, nats.UserJWTAndSeed(tc.jwt, string(seed)), nats.CustomInboxPrefix(broker.InboxPrefix(key)))
			if err == nil {
				nc.Close()
				t.Fatal("server accepted the credential")
			}
			if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("connect error = %v, want an authorization violation", err)
			}
		})
	}
}

func TestServerEnforcesAllowLists(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create", "orders.v1.cancel"}})
	got := serveEcho(t, env, "orders.v1.cancel")
	u := env.MintUser(t, "support", []string{"orders.v1.create"}, time.Minute)
	other := env.MintUser(t, "sales", []string{"orders.v1.create"}, time.Minute)
	errs := make(chan error, 8)
	uc := env.MustConnect(t, u.Option(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))

	if err := uc.Publish("orders.v1.cancel", []byte(`{"id":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !strings.Contains(err.Error(), "Permissions Violation for Publish") {
		t.Errorf("publish outside the allow-list: async error %v", err)
	}
	if _, err := uc.Subscribe(broker.InboxPrefix(other.Key)+".>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !strings.Contains(err.Error(), "Permissions Violation for Subscription") {
		t.Errorf("subscribe to another user's inbox: async error %v", err)
	}
	// A request the user may make still works, so nothing above reached the broker.
	if _, err := uc.Request("orders.v1.create", nil, 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("allowed request: %v, want no responders (nobody serves create)", err)
	}
	select {
	case m := <-got:
		t.Errorf("broker received a denied publish on %s", m.Subject)
	default:
	}
}

func TestEmitStreamReachesUsers(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}, Emits: []string{"orders.v1.created"}})
	kp, key := newUserKey(t)
	m, err := env.Minter.MintUser(t.Context(), broker.UserSpec{
		UserKey: key, Name: "listener", Pub: []string{"orders.v1.create"},
		Sub: []string{broker.InboxPrefix(key) + ".>", "orders.v1.created"}, Expires: time.Now().Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	uc := env.MustConnect(t, nats.UserJWTAndSeed(m.JWT, string(seed)))
	sub, err := uc.SubscribeSync("orders.v1.created")
	if err != nil {
		t.Fatal(err)
	}
	if err := uc.Flush(); err != nil {
		t.Fatal(err)
	}
	bc := env.BrokerConn(t)
	if err := bc.Publish("orders.v1.created", []byte(`{"id":7}`)); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("emit event not delivered to the users account: %v", err)
	}
	if string(msg.Data) != `{"id":7}` {
		t.Errorf("event = %q", msg.Data)
	}
}

var _ = natsauth.AsyncSubjects

func TestJetStreamOnlyInBrokerAccount(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}, JetStream: true})
	bc := env.BrokerConn(t)
	m, err := bc.Request("$JS.API.INFO", nil, 5*time.Second)
	if err != nil {
		t.Fatalf("JetStream API in the broker account: %v", err)
	}
	var info struct {
		Error *struct{ Code int } `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &info); err != nil || info.Error != nil {
		t.Errorf("broker account JetStream info = %s", m.Data)
	}
	// Users reach JetStream only through the async import: their account has none.
	u := env.MintUser(t, "alice", []string{"$JS.API.>"}, time.Minute)
	uc := env.MustConnect(t, u.Option())
	m, err = uc.Request("$JS.API.INFO", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var uinfo struct {
		Error *struct {
			ErrCode int `json:"err_code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &uinfo); err != nil || uinfo.Error == nil || uinfo.Error.ErrCode != 10039 {
		t.Errorf("users account JetStream info = %s, want JetStream not enabled (10039)", m.Data)
	}
}

// TestAsyncPublishReachesBrokerStream: a user publishes a durable async
// request under its own prefix; it crosses the import into a JetStream stream
// of the broker account and the user gets the PubAck.
func TestAsyncPublishReachesBrokerStream(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}, JetStream: true})
	bjs, err := jetstream.New(env.BrokerConn(t))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := bjs.CreateStream(t.Context(), jetstream.StreamConfig{Name: "SQLGATE_ASYNC", Subjects: []string{natsauth.AsyncSubjects}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatalf("create stream in the broker account: %v", err)
	}
	u := env.MintUser(t, "alice", nil, time.Minute)
	kp, key := u.KP, u.Key
	m, err := env.Minter.MintUser(t.Context(), broker.UserSpec{
		UserKey: key, Name: "alice", Pub: []string{broker.AsyncPrefix(key) + ".>"},
		Sub: []string{broker.InboxPrefix(key) + ".>"}, Expires: time.Now().Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	errs := make(chan error, 4)
	uc := env.MustConnect(t, nats.UserJWTAndSeed(m.JWT, string(seed)), nats.CustomInboxPrefix(broker.InboxPrefix(key)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	ack, err := uc.Request(broker.AsyncPrefix(key)+".orders.v1.create", []byte(`{"amount":1}`), 5*time.Second)
	if err != nil {
		t.Fatalf("async publish: %v", err)
	}
	var pa struct {
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
	}
	if err := json.Unmarshal(ack.Data, &pa); err != nil || pa.Stream != "SQLGATE_ASYNC" || pa.Seq != 1 {
		t.Fatalf("PubAck = %s", ack.Data)
	}
	info, err := stream.Info(t.Context())
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream state %+v, %v", info, err)
	}
	// Another user's prefix is refused by the server.
	other := env.MintUser(t, "bob", nil, time.Minute)
	if err := uc.Publish(broker.AsyncPrefix(other.Key)+".orders.v1.create", nil); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("publish under another user's async prefix: %v, want a permissions violation", err)
	}
}

// TestLoadAccountsClosesStartupRace: connects that race the server's first,
// lazy load of the users account were accepted before its limits applied
// (here: a bearer JWT despite disallow_bearer; revoked users likewise).
// natsauthtest.Start calls LoadAccounts, so none may get through.
func TestLoadAccountsClosesStartupRace(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ten servers")
	}
	t.Parallel()
	var accepted atomic.Int32
	for range 10 {
		env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}})
		kp, key := newUserKey(t)
		seed, _ := kp.Seed()
		uc := jwt.NewUserClaims(key)
		uc.BearerToken = true
		uc.Expires = time.Now().Add(time.Hour).Unix()
		uc.IssuerAccount = env.Keys.Public().Users
		bearer, err := uc.Encode(env.Keys.UsersSigningKeyForTest())
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				nc, err := nats.Connect(env.URL, nats.UserJWTAndSeed(bearer, string(seed)), nats.MaxReconnects(0))
				if err == nil {
					accepted.Add(1)
					nc.Close()
				}
			})
		}
		wg.Wait()
		env.Server.Shutdown()
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("%d bearer connects accepted while disallowed", n)
	}
}

// writeTestTLS writes a CA and a server certificate for 127.0.0.1 (PEM,
// 0600) into dir and returns their paths.
func writeTestTLS(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sqlgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	for path, block := range map[string]*pem.Block{
		caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: srvDER}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// TestWriteSetupTLSAndModes checks the files nats-setup writes for a NATS
// host: with a certificate and key the client listener requires TLS (OIDC
// access tokens travel in CONNECT) and a tls:// client that trusts the CA
// connects; the output directory and every public file are readable by the
// nats-server user whatever the umask, and system-user.creds (a secret)
// stays 0600. Not parallel: it sets the process's umask.
func TestWriteSetupTLSAndModes(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestTLS(t, dir)
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	conf, err := natsauth.WriteSetup(out, keys, natsauth.SetupConfig{Server: natsauth.ServerConfig{
		Host: "127.0.0.1", Port: 4222, TLSCertFile: certFile, TLSKeyFile: keyFile, Subjects: []string{"orders.v1.get"},
	}, SystemCreds: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{
		".": 0o755, "accounts": 0o755, "nats-server.conf": 0o644, "operator.jwt": 0o644, "accounts/SQLGATE_USERS.jwt": 0o644,
		"sentinel.creds": 0o644, "system-user.creds": 0o600,
	} {
		if fi, err := os.Stat(filepath.Join(out, name)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %04o", name, fi.Mode(), err, want)
		}
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("the TLS configuration does not load: %v", err)
	}
	if opts.TLSConfig == nil || opts.AllowNonTLS {
		t.Fatalf("TLSConfig %v, AllowNonTLS %v: want TLS required", opts.TLSConfig, opts.AllowNonTLS)
	}
	opts.Port, opts.NoLog, opts.NoSigs = -1, true, true
	opts.JetStream = false
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	addr := ns.Addr().String()
	// The listener's INFO says TLS is required before anything is sent.
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	info, err := bufio.NewReader(c).ReadString('\n')
	_ = c.Close()
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Errorf("INFO %q (%v): want tls_required", info, err)
	}
	// Past the TLS handshake, the server refuses a client without
	// credentials: an authorization error, not a certificate one.
	if _, err := nats.Connect("tls://"+addr, nats.RootCAs(caFile), nats.Timeout(5*time.Second)); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("tls:// with the CA: err = %v, want past TLS to an authorization error", err)
	}
	if _, err := nats.Connect("tls://"+addr, nats.Timeout(5*time.Second)); err == nil || !strings.Contains(err.Error(), "x509") {
		t.Errorf("tls:// without the CA: err = %v, want a certificate error", err)
	}

	// Without a certificate: no tls block, and a comment says what that means.
	plain := natsauth.ServerConfig{Host: "0.0.0.0", Port: 4222, ResolverDir: "/var/lib/nats/jwt"}
	text, err := plain.Render(mustJWTs(t, keys))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text, "tls:") || !strings.Contains(text, "# No TLS: clients send OIDC access tokens in the clear") {
		t.Errorf("configuration without TLS:\n%s", text)
	}
	for _, bad := range []natsauth.ServerConfig{
		{ResolverDir: "/x", TLSCertFile: certFile},
		{ResolverDir: "/x", TLSCertFile: "server.crt", TLSKeyFile: "server.key"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: accepted", bad)
		}
	}
}

func mustJWTs(t *testing.T, keys *natsauth.Keys) *natsauth.AccountJWTs {
	t.Helper()
	j, err := keys.AccountJWTs(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return j
}
