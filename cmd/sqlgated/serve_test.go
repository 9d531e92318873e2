package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sqlgate/sqlgate/broker/natsclient"
	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/internal/testnet"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// serveStack is `sqlgated serve` running from a config file against a
// nats-server that runs the nats-setup output and an external IdP.
type serveStack struct {
	dir     string
	base    string
	natsURL string
	s       *devStack   // login and NATS helpers
	logs    *syncBuffer // what serve logged at warn and above
}

var (
	natsServerOnce sync.Once
	natsServerBin  string
	errNATSServer  error
)

// natsServerBinary builds nats-server (the version go.mod pins) from the
// module cache, once per test binary.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsServerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "nats-server-bin-") //nolint:usetesting // shared by the tests of this package, built once
		if err != nil {
			errNATSServer = err
			return
		}
		natsServerBin = filepath.Join(dir, "nats-server")
		if out, err := exec.Command("go", "build", "-o", natsServerBin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
			errNATSServer = fmt.Errorf("%w: %s", err, out)
		}
	})
	if errNATSServer != nil {
		t.Fatalf("build nats-server: %v", errNATSServer)
	}
	return natsServerBin
}

// serveDeps is what `sqlgated serve` runs against in these tests: a
// nats-server running the nats-setup output (keys in dir/keys), an external
// OpenID provider with alice (group sales), the route catalog in
// dir/routes.yaml and a copy of the default policy in dir/policy.
type serveDeps struct {
	dir      string
	natsAddr string
	idp      *devidptest.Server
}

// startServeDeps starts a serveDeps. policyEdit, if set, edits the copied
// policy's data.yaml.
func startServeDeps(ctx context.Context, t *testing.T, routesYAML []byte, natsListen string, policyEdit func(string) string) *serveDeps {
	t.Helper()
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(routes, routesYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	natsAddr := testnet.FreeAddr(t)
	if natsListen == "" {
		natsListen = natsAddr
	}
	var out strings.Builder
	if err := run(ctx, []string{"nats-setup", "--out", filepath.Join(dir, "nats"), "--keys", filepath.Join(dir, "keys"), "--routes", routes, "--listen", natsListen}, &out, &out); err != nil {
		t.Fatalf("nats-setup: %v\n%s", err, out.String())
	}
	// An external nats-server process runs the emitted configuration, as
	// an operator would run it.
	conf := filepath.Join(dir, "nats", "nats-server.conf")
	if _, err := server.ProcessConfigFile(conf); err != nil {
		t.Fatalf("the emitted nats-server.conf does not load: %v", err)
	}
	ns := exec.CommandContext(ctx, natsServerBinary(t), "-c", conf)
	var nsOut syncBuffer
	ns.Stdout, ns.Stderr = &nsOut, &nsOut
	if err := ns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ns.Process.Signal(os.Interrupt)
		_ = ns.Wait()
	})

	idp := devidptest.Start(t, devidp.WithUsers(devidp.User{Username: "alice", Password: "alice-pw", Email: "alice@example.com", Groups: []string{"sales"}}),
		devidp.WithClients(devidp.Client{ID: "sqlgate-cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}))
	policyDir := filepath.Join(dir, "policy")
	if err := os.CopyFS(policyDir, rules.FS); err != nil {
		t.Fatal(err)
	}
	if policyEdit != nil {
		data, err := os.ReadFile(filepath.Join(policyDir, "data.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(policyDir, "data.yaml"), []byte(policyEdit(string(data))), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &serveDeps{dir: dir, natsAddr: natsAddr, idp: idp}
}

// userStack returns the login and NATS helpers for a sqlgated at base.
func (d *serveDeps) userStack(base string) *devStack {
	return &devStack{st: devState{
		HTTPURL: base, Issuer: d.idp.Issuer(), CLI: "sqlgate-cli", Users: []devUser{{Name: "alice", Password: "alice-pw"}},
	}}
}

// serveConfig is the test configuration of `sqlgated serve`: routes,
// policy, NATS keys (dir/keys), a SQLite control database and the audit
// keys under dir.
func serveConfig(dir, httpAddr, natsAddr, issuer, databases string) string {
	return fmt.Sprintf(`
instance: test-1
routes: %[1]s/routes.yaml
http:
  listen: %[2]s
  auditorGroups: [auditors]
nats:
  url: nats://%[3]s
  keysDir: %[1]s/keys
identity:
  issuers:
    - name: dev
      issuer: %[4]s
      audiences: [sqlgate, sqlgate-cli]
  cli:
    issuer: %[4]s
    clientID: sqlgate-cli
policy:
  dir: %[1]s/policy
databases:
%[5]s
control:
  dialect: sqlite
  path: %[1]s/control.db
audit:
  signingKeyFile: %[1]s/secrets/audit-signing.key
  paramKeyFile: %[1]s/secrets/audit-param.key
credentials:
  reaperInterval: 500ms
`, dir, httpAddr, natsAddr, issuer, databases)
}

// startServe starts serveDeps and `sqlgated serve` on them. databases is
// the YAML of the databases section; cfgEdits change the configuration
// file's text.
func startServe(t *testing.T, routesYAML []byte, databases string, policyEdit func(string) string, cfgEdits ...func(string) string) *serveStack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	deps := startServeDeps(ctx, t, routesYAML, "", policyEdit)
	dir, natsAddr, idp := deps.dir, deps.natsAddr, deps.idp
	httpAddr := testnet.FreeAddr(t)
	cfg := serveConfig(dir, httpAddr, natsAddr, idp.Issuer(), databases)
	for _, edit := range cfgEdits {
		cfg = edit(cfg)
	}
	cfgPath := filepath.Join(dir, "sqlgated.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	done := make(chan struct{})
	var serveErr error
	go func() {
		serveErr = run(ctx, []string{"serve", "--config", cfgPath, "--log-level", "warn"}, logs, logs)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if serveErr != nil && !t.Failed() {
			t.Errorf("serve: %v\n%s", serveErr, logs)
		}
	})
	base := "http://" + httpAddr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("sqlgated serve exited: %v\n%s", serveErr, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sqlgated serve not ready:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &serveStack{dir: dir, base: base, natsURL: "nats://" + natsAddr, s: deps.userStack(base), logs: logs}
}

// startDemoServe is startServe with the demo routes over a fresh demo
// SQLite database.
func startDemoServe(t *testing.T, cfgEdits ...func(string) string) *serveStack {
	t.Helper()
	dir := t.TempDir()
	if err := createDemoDB(t.Context(), filepath.Join(dir, "orders.db")); err != nil {
		t.Fatal(err)
	}
	return startServe(t, demoRoutes, fmt.Sprintf("  - sqlite:\n      name: orders\n      path: %s/orders.db", dir), nil, cfgEdits...)
}

// TestServeMetricsListen: with http.metricsListen, serve answers /metrics
// there and not on the API port, which may face the users.
func TestServeMetricsListen(t *testing.T) {
	if testing.Short() {
		t.Skip("serve end to end: skipped with -short")
	}
	metricsAddr := testnet.FreeAddr(t)
	listen := regexp.MustCompile(`(?m)^(  listen: .*)$`)
	st := startDemoServe(t, func(cfg string) string {
		return listen.ReplaceAllString(cfg, "$1\n  metricsListen: "+metricsAddr)
	})
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(st.base + "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the API port = %d, want 404", code)
	}
	if code, body := get("http://" + metricsAddr + "/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics on the metrics port = %d, want 200 with the metrics", code)
	}
}

// TestServeWithEmittedNATSConfig is the operator's journey: nats-setup
// writes the NATS configuration, a nats-server runs it, sqlgated serve runs
// from a config file against it and an external OpenID provider, and a user
// signs in, gets a credential and calls a route.
func TestServeWithEmittedNATSConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("serve end to end: skipped with -short")
	}
	st := startDemoServe(t)
	alice, _ := st.s.login(t, "alice")
	nc, _, _ := st.s.natsUser(t, alice, 0)
	env, _ := request(t, nc, "orders.v1.create", `{"customer":"serve","amount":5}`, nil)
	if !env.OK {
		t.Fatalf("create through serve: %+v", env)
	}
	if env, _ := request(t, nc, "orders.v1.get", `{"id":1}`, nil); !env.OK || rows(t, env)[0]["customer"] != "serve" {
		t.Errorf("get through serve: %+v", env)
	}
	// A client that holds only an OIDC token connects through the auth
	// callout with the sentinel credentials nats-setup wrote.
	sentinel, err := os.ReadFile(filepath.Join(st.dir, "nats", "sentinel.creds"))
	if err != nil {
		t.Fatal(err)
	}
	_, token := st.s.login(t, "alice")
	cc, err := natsclient.ConnectCallout(t.Context(), natsclient.CalloutConfig{
		NATSURL: st.natsURL, SentinelCreds: sentinel,
		Token: func(context.Context) (string, error) { return token, nil },
	})
	if err != nil {
		t.Fatalf("callout connect to the external server: %v", err)
	}
	defer cc.Close()
	msg, err := cc.Request(t.Context(), "orders.v1.get", []byte(`{"id":1}`), nil)
	switch {
	case err != nil:
		t.Errorf("request through the callout: %v", err)
	case !strings.Contains(string(msg.Data), `"customer":"serve"`):
		t.Errorf("request through the callout = %s", msg.Data)
	}
	for _, f := range []string{"secrets/audit-signing.key", "secrets/audit-param.key"} {
		if fi, err := os.Stat(filepath.Join(st.dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want a 0600 file created on first start", f, err)
		}
	}
}

// TestSemver checks that every build version gives the micro service a
// version it accepts: `make image` stamps `git describe` output, such as a
// bare commit id, which is no semver, and micro then refused to start.
func TestSemver(t *testing.T) {
	// The SemVer 2.0 expression, as nats.go/micro checks it.
	valid := regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
	for in, want := range map[string]string{
		"0.1.0-dev":               "0.1.0-dev",
		"v1.2.3":                  "1.2.3",
		"v1.2":                    "1.2.0",
		"v0.1.0-3-g92a8718-dirty": "0.1.0-3-g92a8718-dirty",
		"92a8718-dirty":           "0.0.0-92a8718-dirty",
		"92a8718":                 "0.0.0-92a8718",
		"feature/x y":             "0.0.0-feature-x-y",
		"0123":                    "0.0.0-dev", // a numeric pre-release may not start with 0
		"":                        "0.0.0-dev",
	} {
		got := semver(in)
		if got != want || !valid.MatchString(got) {
			t.Errorf("semver(%q) = %q, want %q (valid: %v)", in, got, want, valid.MatchString(got))
		}
	}
}

// TestServeStartupErrors checks that a failure while sqlgated serve opens
// its resources is reported as an error naming the cause, after what was
// already opened is closed. It panicked instead: the cleanup read the named
// result the error return had just set to nil (found running the Helm
// chart's pod with unreadable NATS seeds).
func TestServeStartupErrors(t *testing.T) {
	dir := t.TempDir()
	if err := createDemoDB(t.Context(), filepath.Join(dir, "orders.db")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "routes.yaml"), demoRoutes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "policy"), rules.FS); err != nil {
		t.Fatal(err)
	}
	// No NATS keys in dir/keys: serve fails after opening the databases.
	cfg := serveConfig(dir, "127.0.0.1:0", "127.0.0.1:1", "https://idp.invalid", "  - sqlite:\n      name: orders\n      path: "+dir+"/orders.db")
	path := filepath.Join(dir, "sqlgated.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := run(t.Context(), []string{"serve", "--config", path}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "keys", "operator.nk")) {
		t.Fatalf("serve with a missing NATS keys directory: err = %v, want one naming it\n%s", err, out.String())
	}
}

// TestNATSSetupMissingFlags checks that nats-setup names exactly the
// required flags that are missing.
func TestNATSSetupMissingFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing --out, --keys, --routes (--out, --keys and --routes are all required)"},
		{[]string{"--out", t.TempDir()}, "missing --keys, --routes ("},
		{[]string{"--out", t.TempDir(), "--keys", t.TempDir()}, "missing --routes ("},
	} {
		var out strings.Builder
		err := run(t.Context(), append([]string{"nats-setup"}, tc.args...), &out, &out)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("nats-setup %q: err = %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
}

// TestSecondInstanceRefused checks that a second sqlgated on the same state
// is refused at start, with a message that says why: a second `serve` with
// the same audit origin in the same control database (it would append
// indexes the first already wrote), and a second `dev` on the same data
// directory. The first keeps serving.
func TestSecondInstanceRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("serve end to end: skipped with -short")
	}
	st := startDemoServe(t)
	cfg, err := os.ReadFile(filepath.Join(st.dir, "sqlgated.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The same configuration on another HTTP port.
	listen := regexp.MustCompile(`(?m)^  listen: .*$`)
	second := filepath.Join(t.TempDir(), "sqlgated.yaml")
	if err := os.WriteFile(second, listen.ReplaceAll(cfg, []byte("  listen: "+testnet.FreeAddr(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	// Bounded: a second instance that is not refused runs until this ends.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out strings.Builder
	err = run(ctx, []string{"serve", "--config", second, "--log-level", "error"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "is in use by another running sqlgated: give each instance its own audit.origin") {
		t.Errorf("second serve: err = %v, want the origin refused\n%s", err, out.String())
	}
	if resp, err := http.Get(st.base + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("the first instance stopped being ready: %v", err)
	} else {
		resp.Body.Close()
	}

	devDir := t.TempDir()
	first := startDev(t, devDir)
	err = run(ctx, []string{"dev", "--data-dir", devDir, "--http", "127.0.0.1:0", "--nats", "127.0.0.1:0"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "another sqlgated dev is running with the data directory") {
		t.Errorf("second dev: err = %v, want the data directory refused", err)
	}
	first.stop()
	startDev(t, devDir) // the lock went with the first
}

// TestServeHTTPSPublicURLAnyCase: a publicURL whose scheme is written in
// capitals is still https to browsers, so the API sends HSTS as it does for
// "https://" (the check was case-sensitive and turned HSTS and Secure
// cookies off).
func TestServeHTTPSPublicURLAnyCase(t *testing.T) {
	if testing.Short() {
		t.Skip("serve end to end: skipped with -short")
	}
	listen := regexp.MustCompile(`(?m)^(  listen: .*)$`)
	st := startDemoServe(t, func(cfg string) string {
		return listen.ReplaceAllString(cfg, "$1\n  publicURL: HTTPS://sqlgate.corp.example")
	})
	resp, err := http.Get(st.base + "/api/v1/whoami")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hsts := resp.Header.Get("Strict-Transport-Security"); hsts == "" {
		t.Errorf("publicURL HTTPS://…: no Strict-Transport-Security header (status %d)", resp.StatusCode)
	}
}
