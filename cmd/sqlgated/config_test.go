package main

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/broker/sqlserver"
	"github.com/sqlgate/sqlgate/internal/yamlstrict"
)

func TestExampleConfig(t *testing.T) {
	cfg, err := loadConfig("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatalf("deploy/examples/sqlgated.yaml: %v", err)
	}
	if cfg.Instance != "sqlgate-1" || len(cfg.Databases) != 2 || cfg.Identity.Web == nil || len(cfg.Identity.Issuers) != 2 {
		t.Errorf("example config decoded as %+v", cfg)
	}
	if r := cfg.Databases[0].idempotencyRetention(); r != defaultIdempotencyRetention {
		t.Errorf("orders idempotencyRetention = %s, want %s", r, defaultIdempotencyRetention)
	}
	if r := cfg.Databases[1].idempotencyRetention(); r != defaultIdempotencyRetention {
		t.Errorf("billing (unset) idempotencyRetention = %s, want the default %s", r, defaultIdempotencyRetention)
	}
	if _, err := route.LoadFile("../../deploy/examples/routes.yaml"); err != nil {
		t.Errorf("deploy/examples/routes.yaml: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	base, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, testVerifierKey, err := audit.GenerateKey(rand.Reader, "sqlgate.example.com/sqlgate-0")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to string
		want           []string
	}{
		{"unknown_key", "instance: sqlgate-1", "instance: sqlgate-1\nlisten: 1", []string{`unknown key "listen"`}},
		{"typo_nested", "  keysDir:", "  keyDir:", []string{`unknown key "keyDir"`}},
		{"inline_secret_rejected", "      clientSecretFile: /etc/sqlgate/secrets/entra-client-secret\n      groupMap", "      clientSecret: hunter2\n      groupMap", []string{`unknown key "clientSecret" (secrets are never inline: use clientSecretFile or clientSecretEnv)`}},
		{"secret_in_a_wrong_place_not_echoed", "  checkpointInterval: 1s", "  checkpointInterval: hunter2-password", []string{"cannot unmarshal !!str into time.Duration"}},
		{"all_problems_at_once", "routes: /etc/sqlgate/routes.yaml", "routes: \"\"", []string{"routes: the route catalog file is required"}},
		{"two_dialects", "      allowedRoles: [reader]\n\ncontrol:", "      allowedRoles: [reader]\n    sqlite:\n      name: x\n      path: /tmp/x\n\ncontrol:", []string{"databases[1]: set exactly one of sqlite, postgres and sqlserver"}},
		{"logins_on_wrong_dialect", "    postgresLogins:", "    sqlserverLogins:", []string{"sqlserverLogins needs a sqlserver database"}},
		{"short_idempotency_retention", "idempotencyRetention: 168h", "idempotencyRetention: 1h", []string{"databases[0]: idempotencyRetention must be 0 (keep forever) or at least 24h0m0s, not 1h0m0s"}},
		{"negative_idempotency_retention", "idempotencyRetention: 168h", "idempotencyRetention: -1h", []string{"idempotencyRetention must be 0"}},
		{"bad_control", "  dialect: postgres", "  dialect: oracle", []string{"control.dialect must be sqlite, postgres or sqlserver"}},
		{"bad_previous_key", "  signingKeyFile: /etc/sqlgate/secrets/audit-signing.key", "  signingKeyFile: /etc/sqlgate/secrets/audit-signing.key\n  previousVerifierKeys: [hunter2-not-a-key]", []string{`audit.previousVerifierKeys[0] is not a verifier key`}},
		// A private key pasted where the public one goes is named as such,
		// never printed.
		{"private_key_as_previous_key", "  signingKeyFile: /etc/sqlgate/secrets/audit-signing.key", "  signingKeyFile: /etc/sqlgate/secrets/audit-signing.key\n  previousVerifierKeys:\n    - " + testVerifierKey + "\n    - \"PRIVATE+KEY+sqlgate/x+0123abcd+hunter2AAAAsecretsecret\"", []string{`audit.previousVerifierKeys[1] is a private signing key, not a public verifier key`}},
		{"inline_postgres_dsn", "      dsnEnv: SQLGATE_BILLING_DSN", "      dsn: postgres://broker:hunter2@db/billing", []string{"databases[1]: postgres.dsn: secrets are never inline (a connection string may hold a password): use dsnFile or dsnEnv"}},
		{"inline_sqlserver_dsn", "      dsnFile: /etc/sqlgate/secrets/orders.dsn", "      dsn: sqlserver://sa:hunter2@sql1?database=orders", []string{"databases[0]: sqlserver.dsn: secrets are never inline"}},
		{"postgres_logins_validated", "      allowedRoles: [reader]", "      allowedRoles: [\"\"]\n      terminateTimeout: -1s\n      clientPort: 70000", []string{
			`databases[1]: postgresLogins: allowedRoles: "" is not a valid role name`, "databases[1]: postgresLogins: terminateTimeout must not be negative", "databases[1]: postgresLogins: clientPort must be a port number",
		}},
		{"bad_origin", "  origin: sqlgate.example.com/sqlgate-1", "  origin: \"has space+plus\"", []string{`audit.origin "has space+plus" must be non-empty printable text without spaces or '+'`}},
		// Every sqlgate login's token would be refused as from an unknown issuer.
		{"cli_issuer_unknown", "    issuer: https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0\n    clientID: 22222222", "    issuer: https://login.example.org/v2.0\n    clientID: 22222222", []string{`identity.cli.issuer "https://login.example.org/v2.0" is none of identity.issuers`}},
		{"web_issuer_unknown", "    issuer: entra\n    clientID", "    issuer: nosuchissuer\n    clientID", []string{`identity.web.issuer "nosuchissuer" names no entry of identity.issuers (names: entra, okta-contractors)`}},
		{"short_audit_retention", "  retention: 8760h", "  retention: 1h", []string{"audit.retention must be 0 (keep forever) or at least 24h0m0s, not 1h0m0s"}},
		{"negative_input_retention", "  inputRetention: 2160h", "  inputRetention: -5m", []string{"audit.inputRetention must be 0 (keep forever) or at least 24h0m0s, not -5m0s"}},
		{"negative_audit_durations", "  checkpointInterval: 1s\n  heartbeat: 5m", "  checkpointInterval: -1s\n  heartbeat: -5m", []string{"audit.heartbeat must not be negative", "audit.checkpointInterval must not be negative"}},
		{"negative_credential_durations", "  sqlTTL: 15m\n  reaperInterval: 30s", "  sqlTTL: -1m\n  reaperInterval: -30s", []string{"credentials.sqlTTL must not be negative", "credentials.reaperInterval must not be negative"}},
		{"short_lease_retention", "  leaseRetention: 720h", "  leaseRetention: 1h", []string{"credentials.leaseRetention must be 0 (keep forever) or at least 24h0m0s, not 1h0m0s"}},
		{"negative_lease_retention", "  leaseRetention: 720h", "  leaseRetention: -1h", []string{"credentials.leaseRetention must be 0 (keep forever) or at least 24h0m0s, not -1h0m0s"}},
		{"negative_eval_timeout", "  evalTimeout: 100ms", "  evalTimeout: -100ms", []string{"policy.evalTimeout must not be negative"}},
		{"nats_ttl_above_max", "  natsTTL: 15m", "  natsTTL: 5h", []string{"credentials.natsTTL 5h0m0s is above credentials.maxTTL 1h0m0s"}},
		{"sql_ttl_above_default_max", "  maxTTL: 1h\n  sqlTTL: 15m", "  sqlTTL: 2h", []string{"credentials.sqlTTL 2h0m0s is above credentials.maxTTL 1h0m0s"}},
		// serve refused these at start, after --check had passed them.
		{"bad_login_prefix", "  reaperInterval: 30s", "  reaperInterval: 30s\n  loginPrefix: SG-", []string{`credentials.loginPrefix "SG-" must be 1 to 16 characters a-z, 0-9 or _`}},
		{"negative_queue_len", "  queueLen: 1024", "  queueLen: -1", []string{"nats.queueLen must not be negative, not -1"}},
		{"negative_workers", "  workers: 128", "  workers: -4", []string{"nats.workers must not be negative, not -4"}},
		// Queued requests are given up once an outage outlasts it.
		{"async_max_age_too_short", "  queueLen: 1024", "  queueLen: 1024\n  asyncMaxAge: 30s", []string{"nats.asyncMaxAge must be at least 1m0s, not 30s"}},
		{"negative_async_max_age", "  queueLen: 1024", "  queueLen: 1024\n  asyncMaxAge: -24h", []string{"nats.asyncMaxAge must be at least 1m0s, not -24h0m0s"}},
		// A database's own login prefix the lease manager never uses: every
		// issuance would fail.
		{"per_database_login_prefix", "      allowedRoles: [reader]", "      allowedRoles: [reader]\n      loginPrefix: pg_", []string{
			`databases[1]: postgresLogins.loginPrefix "pg_" differs from credentials.loginPrefix "sg_"`, "remove postgresLogins.loginPrefix",
		}},
		// Tokens in the clear across the network, unless opted out.
		{"plaintext_nats", "  url: tls://nats.example.com:4222", "  url: nats://sqlgate:hunter2@nats.example.com:4222,tls://nats2.example.com:4222", []string{
			"nats.url: nats://nats.example.com:4222 would be reached without TLS", "nats.allowPlaintext: true",
		}},
		{"plaintext_nats_without_scheme", "  url: tls://nats.example.com:4222", "  url: nats.example.com:4222", []string{"nats.url: nats://nats.example.com:4222 would be reached without TLS"}},
		{"plaintext_advertise_url", "  advertiseURL: tls://nats.example.com:4222", "  advertiseURL: ws://nats.example.com:8080", []string{"nats.advertiseURL: ws://nats.example.com:8080 would be reached without TLS"}},
		{"websocket_advertise_url", "  advertiseURL: tls://nats.example.com:4222", "  advertiseURL: wss://nats.example.com:8443", []string{"nats.advertiseURL: wss:// is a websocket URL", "plain NATS clients only"}},
		{"plaintext_public_url", "  publicURL: https://sqlgate.example.com", "  publicURL: http://sqlgate.example.com", []string{"http.publicURL: sqlgate.example.com is plain HTTP", "http.allowPlaintext: true"}},
		{"origin_and_prefix", "  origin: sqlgate.example.com/sqlgate-1", "  origin: sqlgate.example.com/sqlgate-1\n  originPrefix: prod", []string{"audit.origin and audit.originPrefix: set one"}},
		{"metrics_listen_no_port", "  metricsListen: 0.0.0.0:9090", "  metricsListen: \"9090\"", []string{`http.metricsListen must be host:port or :port (e.g. ":9090"), not "9090"`}},
		{"metrics_listen_on_api_port", "  metricsListen: 0.0.0.0:9090", "  metricsListen: 0.0.0.0:8443", []string{"http.metricsListen must differ from http.listen (0.0.0.0:8443)"}},
		{"web_without_secret", "    clientSecretFile: /etc/sqlgate/secrets/entra-client-secret\n    cookieKeyFile", "    cookieKeyFile", []string{"identity.web needs exactly one of clientSecretFile and clientSecretEnv"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := string(base)
			if !strings.Contains(text, tc.from) {
				t.Fatalf("example lacks %q", tc.from)
			}
			_, err := parseConfig([]byte(strings.Replace(text, tc.from, tc.to, 1)))
			if err == nil {
				t.Fatal("parseConfig succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %v\nwant it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Error("error echoes a secret")
			}
		})
	}
	// Several problems come back together.
	_, err = parseConfig([]byte("instance: x\n"))
	if err == nil || strings.Count(err.Error(), "\n") < 4 {
		t.Errorf("empty config: %v, want every problem listed", err)
	}
}

// TestAsyncMaxAgeConfig: nats.asyncMaxAge is read as a duration.
func TestAsyncMaxAgeConfig(t *testing.T) {
	base, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig([]byte(strings.Replace(string(base), "  queueLen: 1024", "  queueLen: 1024\n  asyncMaxAge: 72h", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.AsyncMaxAge != 72*time.Hour {
		t.Errorf("nats.asyncMaxAge = %s, want 72h", cfg.NATS.AsyncMaxAge)
	}
}

// TestAuditOriginRule pins the configuration's origin check to the audit
// log's: an origin --check accepts is one the log accepts at start, and
// one it refuses the log refuses too.
func TestAuditOriginRule(t *testing.T) {
	for _, origin := range []string{
		"sqlgate/sqlgate-1", "sqlgate.example.com/prod-sqlgate-0", "ünïcode/ok", strings.Repeat("a", 256),
		"", "has space", "has+plus", "has space+plus", "tab\there", "new\nline", "ctrl\x00", strings.Repeat("a", 257), "bad\xffutf8",
	} {
		got := validAuditOrigin(origin) == nil
		c := audit.Config{Origin: origin}
		verr := c.Validate() // no signer: only the origin error matters here
		want := verr == nil || !strings.Contains(verr.Error(), "audit: origin")
		if got != want {
			t.Errorf("validAuditOrigin(%q) accepts = %v, audit.Config.Validate accepts = %v (%v)", origin, got, want, verr)
		}
	}
}

// TestPlaintextOptOut checks what the plaintext refusal lets through: a
// loopback NATS server or dashboard (development, tests, a sidecar), and
// either on any host with its explicit opt-out.
func TestPlaintextOptOut(t *testing.T) {
	base, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]*strings.Replacer{
		"loopback": strings.NewReplacer("url: tls://nats.example.com:4222", "url: nats://127.0.0.1:4222,localhost:4223,nats://[::1]:4224",
			"advertiseURL: tls://nats.example.com:4222", "advertiseURL: nats://127.0.0.1:4222",
			"publicURL: https://sqlgate.example.com", "publicURL: http://localhost:8470"),
		"opt-out": strings.NewReplacer("url: tls://nats.example.com:4222", "url: nats://nats.example.com:4222\n  allowPlaintext: true",
			"advertiseURL: tls://nats.example.com:4222", "advertiseURL: nats://nats.example.com:4222",
			"publicURL: https://sqlgate.example.com", "publicURL: http://sqlgate.example.com\n  allowPlaintext: true"),
	} {
		if _, err := parseConfig([]byte(edit.Replace(string(base)))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestAuditOriginPrefix checks that audit.originPrefix starts the default
// origin (the Helm chart's auditOriginPrefix), and that the default stays
// sqlgate/<instance>, the origin existing logs were written under.
func TestAuditOriginPrefix(t *testing.T) {
	base, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string]string{"": "sqlgate/sqlgate-1", "  originPrefix: eu-prod\n": "eu-prod/sqlgate-1"} {
		text := regexp.MustCompile(`(?m)^  origin: .*\n`).ReplaceAllLiteralString(string(base), prefix)
		cfg, err := parseConfig([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Audit.Origin != want {
			t.Errorf("originPrefix %q: origin %q, want %q", prefix, cfg.Audit.Origin, want)
		}
	}
}

// TestLoginPrefixRule pins the configuration's credentials.loginPrefix
// check to the lease manager's, which refuses the prefix at start.
func TestLoginPrefixRule(t *testing.T) {
	for _, p := range []string{"sg_", "a", "abcdefghijklmnop", "x9_", "", "SG_", "sg-", "9sg", "_sg", "abcdefghijklmnopq", "sg ", "sé"} {
		_, err := broker.NewLeases(broker.LeasesConfig{LoginPrefix: p})
		leases := err == nil || !strings.Contains(err.Error(), "loginPrefix")
		if p == "" {
			leases = false // NewLeases fills in the default; validLoginPrefix sees it filled in
		}
		if got := validLoginPrefix(p); got != leases {
			t.Errorf("validLoginPrefix(%q) = %v, broker.NewLeases accepts it: %v", p, got, leases)
		}
	}
}

// An onBehalfOf SQL Server database has no login of sqlgate's own: it keeps
// its idempotency records unless an explicit retention asks for the
// impossible, which is refused.
func TestIdempotencyRetentionOnBehalfOf(t *testing.T) {
	obo := DatabaseConfig{SQLServer: &sqlserver.Config{
		Name: "orders", DSNEnv: "ORDERS_DSN", PasswordEnv: "SECRET",
		AzureAD: &sqlserver.AzureAD{Mode: sqlserver.ModeOnBehalfOf, ClientID: "app", TenantID: "tenant"},
	}}
	if _, err := obo.validate(); err != nil {
		t.Fatalf("onBehalfOf database without a retention: %v", err)
	}
	if r := obo.idempotencyRetention(); r != 0 {
		t.Errorf("onBehalfOf idempotencyRetention = %s, want 0 (not pruned)", r)
	}
	week := defaultIdempotencyRetention
	obo.IdempotencyRetention = &week
	if _, err := obo.validate(); err == nil || !strings.Contains(err.Error(), "no login of sqlgate's own") {
		t.Errorf("onBehalfOf database with a retention: %v, want it refused", err)
	}
}

// FuzzConfig feeds the configuration decoder arbitrary YAML: it never
// panics, and a configuration it accepts stays valid with its defaults.
func FuzzConfig(f *testing.F) {
	base, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(base)
	f.Add([]byte("instance: a\ndatabases: [{sqlite: {name: d, path: x.db}}]\n"))
	f.Add([]byte("databases: &d [*d]"))
	f.Add([]byte("databases:\n  - sqlite: {name: d, path: x.db}\n    idempotencyRetention: -1h\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(data)
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted configuration no longer validates: %v", err)
		}
		for i, d := range cfg.Databases {
			if r := d.idempotencyRetention(); r < 0 || (r > 0 && r < 24*time.Hour) {
				t.Fatalf("database %d: retention %s accepted", i, r)
			}
		}
	})
}

// TestMetricsListenConfig: http.metricsListen is read, and unset by
// default (/metrics stays on the API's port). The example, which listens
// on every address, sets it: /metrics, unauthenticated, stays off its
// public port.
func TestMetricsListenConfig(t *testing.T) {
	example, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parseConfig(example)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.MetricsListen == "" || cfg.HTTP.MetricsListen == cfg.HTTP.Listen {
		t.Errorf("the example serves /metrics on its API port %s (metricsListen %q)", cfg.HTTP.Listen, cfg.HTTP.MetricsListen)
	}
	var base []string
	for line := range strings.SplitSeq(string(example), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "metricsListen:") {
			base = append(base, line)
		}
	}
	cfg, err = parseConfig([]byte(strings.Join(base, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.MetricsListen != "" {
		t.Errorf("default metricsListen %q, want unset", cfg.HTTP.MetricsListen)
	}
	cfg, err = parseConfig([]byte(strings.Replace(strings.Join(base, "\n"), "  listen: 0.0.0.0:8443", "  listen: 0.0.0.0:8443\n  metricsListen: \":9090\"", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.MetricsListen != ":9090" {
		t.Errorf("metricsListen %q, want :9090", cfg.HTTP.MetricsListen)
	}
}

// TestMetricsListener: with a metrics listener, sqlgated serves /metrics
// there (and nothing else), and until shutdown.
func TestMetricsListener(t *testing.T) {
	var lc net.ListenConfig
	apiLn, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsLn, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &app{cfg: runtimeConfig{Listener: apiLn, MetricsListener: metricsLn}, log: slog.New(slog.DiscardHandler), metrics: prometheus.NewRegistry()}
	a.metrics.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "sqlgate_test_total", Help: "test"}))
	a.group, a.groupCtx = errgroup.WithContext(t.Context())
	a.serveHTTP()
	defer a.shutdown(context.Background())
	get := func(url string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + metricsLn.Addr().String() + "/metrics"); code != 200 || !strings.Contains(body, "sqlgate_test_total") {
		t.Errorf("GET /metrics on the metrics listener = %d %q", code, body)
	}
	if code, _ := get("http://" + metricsLn.Addr().String() + "/api/v1/whoami"); code != 404 {
		t.Errorf("the metrics listener answers an API path with %d, want 404", code)
	}
}

// TestLeaseRetentionConfig: credentials.leaseRetention reaches the lease
// manager as its Retention: unset is the broker's default, 0 keeps final
// leases forever, a duration is kept as given.
func TestLeaseRetentionConfig(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want time.Duration
	}{
		{"", 0},
		{"  leaseRetention: 0s\n", -1},
		{"  leaseRetention: 72h\n", 72 * time.Hour},
	} {
		var c struct {
			Credentials CredentialsConfig `yaml:"credentials"`
		}
		if err := yamlstrict.Decode([]byte("credentials:\n  sqlTTL: 15m\n"+tc.yaml), &c, nil); err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := c.Credentials.leaseRetention(); got != tc.want {
			t.Errorf("%q: Retention = %s, want %s", tc.yaml, got, tc.want)
		}
	}
}
