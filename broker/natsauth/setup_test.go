package natsauth_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/internal/testnet"
)

func TestWriteSetupFiles(t *testing.T) {
	t.Parallel()
	keys, _ := natsauth.GenerateKeys()
	dir := t.TempDir()
	conf, err := natsauth.WriteSetup(dir, keys, natsauth.SetupConfig{Server: natsauth.ServerConfig{
		Port: 4222, Subjects: []string{"orders.v1.create"}, Emits: []string{"orders.v1.created"},
	}})
	if err != nil {
		t.Fatalf("WriteSetup: %v", err)
	}
	text, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"max_control_line: 32768", "type: full", "resolver_preload", "system_account: \"" + keys.Public().System + "\"",
		"jetstream", keys.Public().Users,
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("config lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "system-user.creds")); err == nil {
		t.Error("system-user.creds written without SystemCreds")
	}
	// The written files hold no seed of the operator or the accounts.
	seedDir := t.TempDir()
	if err := keys.WriteKeys(seedDir); err != nil {
		t.Fatal(err)
	}
	var written []byte
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			written = append(written, b...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range natsauth.KeyNames() {
		if name == "sentinel" {
			continue // the sentinel creds are meant to be distributed
		}
		seed, _ := os.ReadFile(filepath.Join(seedDir, name+".nk"))
		if strings.Contains(string(written), strings.TrimSpace(string(seed))) {
			t.Errorf("setup output contains the %s seed", name)
		}
	}
	// nats-server parses it, in operator mode with our operator.
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server cannot parse the emitted config: %v", err)
	}
	if len(opts.TrustedOperators) != 1 || opts.TrustedOperators[0].Subject != keys.Public().Operator {
		t.Errorf("trusted operators = %v", opts.TrustedOperators)
	}
	if opts.MaxControlLine != natsauth.DefaultMaxControlLine || opts.SystemAccount != keys.Public().System || opts.JetStream != true {
		t.Errorf("options: max_control_line %d, system account %s, jetstream %v", opts.MaxControlLine, opts.SystemAccount, opts.JetStream)
	}
	auth, err := os.ReadFile(filepath.Join(dir, "accounts", natsauth.AuthAccountName+".jwt"))
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(strings.TrimSpace(string(auth)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ac.Authorization.AuthUsers, jwt.StringList{keys.Public().CalloutUser}) || ac.Authorization.XKey != keys.Public().XKey ||
		!slices.Equal(ac.Authorization.AllowedAccounts, jwt.StringList{keys.Public().Users}) {
		t.Errorf("auth account callout = %+v", ac.Authorization)
	}
}

func TestAccountJWTs(t *testing.T) {
	t.Parallel()
	keys, _ := natsauth.GenerateKeys()
	jwts, err := keys.AccountJWTs([]string{"orders.v1.get", "orders.v1.create"}, []string{"orders.v1.created"})
	if err != nil {
		t.Fatal(err)
	}
	pub := keys.Public()
	b, _ := jwt.DecodeAccountClaims(jwts.Broker)
	u, _ := jwt.DecodeAccountClaims(jwts.Users)
	if b == nil || u == nil {
		t.Fatal("account JWTs do not decode")
	}
	type exp struct {
		subject string
		typ     jwt.ExportType
	}
	var gotExports []exp
	for _, e := range b.Exports {
		gotExports = append(gotExports, exp{string(e.Subject), e.Type})
		if e.Type == jwt.Service && e.ResponseType != jwt.ResponseTypeSingleton {
			t.Errorf("export %s response type %q, want singleton", e.Subject, e.ResponseType)
		}
	}
	wantExports := []exp{
		{"orders.v1.create", jwt.Service},
		{"orders.v1.get", jwt.Service},
		{natsauth.AsyncSubjects, jwt.Service},
		{"orders.v1.created", jwt.Stream},
		{broker.ReplySubjects, jwt.Stream},
	}
	cmpExp := func(a, b exp) int { return strings.Compare(a.subject, b.subject) }
	slices.SortFunc(gotExports, cmpExp)
	slices.SortFunc(wantExports, cmpExp)
	if !slices.Equal(gotExports, wantExports) {
		t.Errorf("broker exports = %v, want %v", gotExports, wantExports)
	}
	if !b.Limits.IsJSEnabled() {
		t.Error("broker account has JetStream disabled")
	}
	if len(u.Imports) != 5 {
		t.Errorf("users imports = %d, want 5", len(u.Imports))
	}
	for _, i := range u.Imports {
		if i.Account != pub.Broker || (i.Type == jwt.Service && !i.Share) {
			t.Errorf("import %+v: want from the broker account, services shared", i)
		}
	}
	if !u.Limits.DisallowBearer || !u.SigningKeys.Contains(pub.UsersSigning[0]) {
		t.Errorf("users account: disallow bearer %v, signing keys %v", u.Limits.DisallowBearer, u.SigningKeys.Keys())
	}
	for pubKey, j := range jwts.Preload() {
		ac, err := jwt.DecodeAccountClaims(j)
		if err != nil || ac.Subject != pubKey || ac.Issuer != pub.Operator {
			t.Errorf("preload %s: %v issuer %v", pubKey, err, ac)
		}
	}
}

// buildNATSServer builds the nats-server binary of go.mod from the module
// cache, or skips.
func buildNATSServer(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs an external nats-server; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build nats-server with: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("cannot build nats-server from the module cache: %v\n%s", err, out)
	}
	return bin
}

// TestExternalServerWithEmittedConfig runs a real nats-server process on the
// configuration WriteSetup emits and drives the whole flow against it: auth
// callout with a token, a request across the import, revocation.
func TestExternalServerWithEmittedConfig(t *testing.T) {
	bin := buildNATSServer(t)
	keys, _ := natsauth.GenerateKeys()
	dir := t.TempDir()
	port := testnet.FreePort(t)
	subjects := []string{"orders.v1.create"}
	conf, err := natsauth.WriteSetup(dir, keys, natsauth.SetupConfig{Server: natsauth.ServerConfig{
		Host: "127.0.0.1", Port: port, Subjects: subjects,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	connect := func(opts ...nats.Option) (*nats.Conn, error) {
		nc, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(0)}, opts...)...)
		if err == nil {
			t.Cleanup(nc.Close)
		}
		return nc, err
	}
	var sys *nats.Conn
	for deadline := time.Now().Add(15 * time.Second); ; {
		if sys, err = connect(keys.SystemUser()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("external nats-server not reachable: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	bc, err := connect(keys.BrokerUser())
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *nats.Msg, 4)
	if _, err := bc.Subscribe("orders.v1.create", func(m *nats.Msg) { got <- m; _ = m.Respond([]byte("ok")) }); err != nil {
		t.Fatal(err)
	}
	if err := bc.Flush(); err != nil {
		t.Fatal(err)
	}
	cc, err := connect(keys.CalloutUser())
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeVerifier{minter: natsauth.NewMinter(keys), pub: subjects}
	co, err := natsauth.StartCallout(t.Context(), cc, keys, natsauth.CalloutConfig{}, h)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = co.Stop() }()

	// Pushing by hand with the system creds nats-setup can write.
	if _, err := natsauth.WriteSetup(filepath.Join(dir, "again"), keys, natsauth.SetupConfig{SystemCreds: true, Server: natsauth.ServerConfig{Subjects: subjects}}); err != nil {
		t.Fatal(err)
	}
	sysCreds := filepath.Join(dir, "again", "system-user.creds")
	if fi, err := os.Stat(sysCreds); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("system-user.creds: %v %v", fi, err)
	}
	manual, err := connect(nats.UserCredentials(sysCreds))
	if err != nil {
		t.Fatal(err)
	}
	usersJWT, _ := os.ReadFile(filepath.Join(dir, "again", "accounts", natsauth.UsersAccountName+".jwt"))
	m, err := manual.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(strings.TrimSpace(string(usersJWT))), 5*time.Second)
	if err != nil || !strings.Contains(string(m.Data), "jwt updated") {
		t.Fatalf("manual claims update: %v %s", err, m.Data)
	}

	creds := filepath.Join(dir, "sentinel.creds")
	closed := make(chan struct{})
	uc, err := connect(nats.UserCredentials(creds), nats.Token(goodToken),
		nats.CustomInboxPrefix(principalInbox("https://idp.test", "00uAlice")),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatalf("connect through the callout of an external server: %v", err)
	}
	if _, err := uc.Request("orders.v1.create", []byte(`{}`), 5*time.Second); err != nil {
		t.Fatalf("request: %v", err)
	}
	m = <-got
	var ci requestInfo
	if err := json.Unmarshal([]byte(m.Header.Get("Nats-Request-Info")), &ci); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	userKey := h.requests[0].UserKey
	h.mu.Unlock()
	if ci.Account != keys.Public().Users || !slices.Contains(ci.Tags, natsauth.UserKeyTagPrefix+strings.ToLower(userKey)) {
		t.Errorf("Nats-Request-Info = %+v", ci)
	}
	if _, err := connect(nats.UserCredentials(creds), nats.Token("forged")); err == nil {
		t.Error("external server accepted a forged token")
	}

	start := time.Now()
	if err := natsauth.NewRevoker(sys, keys, natsauth.RevokerConfig{Subjects: subjects}).RevokeUsers(t.Context(), []string{userKey}, time.Now()); err != nil {
		t.Fatalf("RevokeUsers on the external server: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(time.Second - time.Since(start)):
		t.Fatal("external server kept the revoked callout user connected for 1s")
	}
}
