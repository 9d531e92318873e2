package main

import (
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// TestServeCheckRefusesWhatServeRefusesAtStart checks that --check refuses
// what serve refused only at start, some of it after the audit log had
// opened (every failed start appended to the log and its write-once sink):
// a dashboard client id the issuer does not accept as an audience, a
// cookie key under 32 bytes, an HTTP certificate or key that does not load,
// a NATS seed in its variable that is no seed. serve refuses the same
// before it opens anything.
func TestServeCheckRefusesWhatServeRefusesAtStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, text, secrets string) string
		want string
	}{
		{
			name: "web client not an audience",
			edit: func(t *testing.T, text, _ string) string {
				from := "    issuer: entra\n    clientID: 11111111-1111-1111-1111-111111111111\n"
				if !strings.Contains(text, from) {
					t.Fatalf("the example no longer has %q", from)
				}
				return strings.Replace(text, from, "    issuer: entra\n    clientID: 44444444-4444-4444-4444-444444444444\n", 1)
			},
			want: `identity.web.clientID "44444444-4444-4444-4444-444444444444" is not among the audiences of issuer "entra"`,
		},
		{
			name: "short cookie key",
			edit: func(t *testing.T, text, secrets string) string {
				writeFile(t, filepath.Join(secrets, "cookie.key"), "hunter2-short", 0o600)
				return text
			},
			want: "identity.web.cookieKeyFile: %s/cookie.key holds 13 bytes, and the cookie key needs at least 32",
		},
		{
			name: "HTTP certificate that does not load",
			edit: func(t *testing.T, text, secrets string) string {
				writeFile(t, filepath.Join(filepath.Dir(secrets), "tls", "tls.crt"), "not a certificate\n", 0o644)
				return text
			},
			want: "http.tlsCertFile and http.tlsKeyFile: tls: failed to find any PEM data in certificate input",
		},
		{
			name: "HTTP key of another certificate",
			edit: func(t *testing.T, text, secrets string) string {
				dir := t.TempDir()
				writeTestTLS(t, filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
				b, err := os.ReadFile(filepath.Join(dir, "tls.key"))
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(filepath.Dir(secrets), "tls", "tls.key"), string(b), 0o600)
				return text
			},
			want: "http.tlsCertFile and http.tlsKeyFile: tls: private key does not match public key",
		},
		{
			name: "broker seed in its variable",
			edit: func(t *testing.T, text, _ string) string {
				t.Setenv("SQLGATE_NATS_BROKER_SEED", "hunter2-not-a-seed")
				return text
			},
			want: "NATS keys (nats.keysDir or the SQLGATE_NATS_*_SEED variables): broker key 1: not a valid seed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dir string
			out, secrets, err := checkWith(t, func(text, secrets string) string {
				dir = secrets
				return tc.edit(t, text, secrets)
			})
			want := strings.ReplaceAll(tc.want, "%s", secrets)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("serve --check: %v\n%s\nwant it to contain %q", err, out, want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Error("the error quotes a secret")
			}
			// serve itself, with the same configuration: refused before it
			// opens anything (the audit signing key, created at a first
			// start, is not).
			config := filepath.Join(filepath.Dir(dir), "sqlgated.yaml")
			var sb strings.Builder
			err = run(t.Context(), []string{"serve", "--config", config}, &sb, &sb)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("serve: %v, want it to contain %q", err, want)
			}
			if _, err := os.Stat(filepath.Join(dir, "audit-signing.key")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("serve refused its configuration after it created the audit signing key (%v)", err)
			}
		})
	}
}

// TestWebClientAudienceRule keeps IssuerConfig.AcceptsWebClient, which --check applies,
// equal to the rule of oidc.NewWebLogin, which serve applies once the
// issuers are discovered: the dashboard's client id must be one of its
// issuer's audiences.
func TestWebClientAudienceRule(t *testing.T) {
	idp := devidptest.Start(t)
	ic := oidc.IssuerConfig{Name: "dev", Issuer: idp.Issuer(), Audiences: []string{"sqlgate", "sqlgate-web"}}
	v, err := oidc.Open(t.Context(), oidc.Config{Issuers: []oidc.IssuerConfig{ic}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	for _, client := range []string{"sqlgate-web", "sqlgate", "sqlgate-cli", "SQLGATE-WEB", "sqlgate-web ", "api://sqlgate"} {
		_, err := oidc.NewWebLogin(oidc.WebLoginConfig{
			Verifier: v, Issuer: "dev", ClientID: client, ClientSecret: "s", CookieKey: key, RedirectURL: "http://127.0.0.1:8470/auth/callback",
		})
		refused := err != nil && strings.Contains(err.Error(), "audiences")
		if refused == ic.AcceptsWebClient(client) {
			t.Errorf("client id %q: NewWebLogin: %v; AcceptsWebClient: %v", client, err, ic.AcceptsWebClient(client))
		}
	}
}

// TestStartRefusesIdentityBeforeTheAuditLog checks that an identity
// provider that cannot be reached, and a dashboard sign-in it refuses, stop
// the start before the audit log opens: every failed start used to append
// to the log (and to its write-once sink) first.
func TestStartRefusesIdentityBeforeTheAuditLog(t *testing.T) {
	idp := devidptest.Start(t)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		identity oidc.Config
		web      *oidc.WebLoginConfig
		want     string
	}{
		{
			name:     "issuer unreachable",
			identity: oidc.Config{Issuers: []oidc.IssuerConfig{{Name: "dev", Issuer: "http://127.0.0.1:1/idp", Audiences: []string{"sqlgate"}}}},
			want:     "identity: ",
		},
		{
			name:     "web client not an audience",
			identity: oidc.Config{Issuers: []oidc.IssuerConfig{{Name: "dev", Issuer: idp.Issuer(), Audiences: []string{"sqlgate"}}}},
			web:      &oidc.WebLoginConfig{Issuer: "dev", ClientID: "sqlgate-web", ClientSecret: "s", CookieKey: key, RedirectURL: "http://127.0.0.1:8470/auth/callback"},
			want:     "dashboard sign-in: ",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			controlPath := filepath.Join(dir, "control.db")
			db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(controlPath))
			if err != nil {
				t.Fatal(err)
			}
			skey, _, err := audit.GenerateKey(rand.Reader, "sqlgate/test-1")
			if err != nil {
				t.Fatal(err)
			}
			signer, err := audit.NewSigner(skey)
			if err != nil {
				t.Fatal(err)
			}
			var lc net.ListenConfig
			ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			catalog, err := route.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			policyDir := filepath.Join(dir, "policy")
			if err := os.CopyFS(policyDir, rules.FS); err != nil {
				t.Fatal(err)
			}
			logs := &syncBuffer{}
			_, err = start(t.Context(), runtimeConfig{
				Instance: "test-1", Logger: slog.New(slog.NewTextHandler(logs, nil)), Listener: ln, AuditorGroups: []string{"auditors"}, Catalog: catalog,
				ControlDB: db, ControlDialect: sqlstore.SQLite,
				Audit:    audit.Config{Origin: "sqlgate/test-1", Instance: "test-1", Signer: signer, ParamKey: audit.ParamKey{ID: "k1", Secret: key}},
				Identity: tc.identity, WebLogin: tc.web, PolicyDir: policyDir,
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("start: %v, want an error starting with %q", err, tc.want)
			}
			if strings.Contains(logs.String(), "audit log open") {
				t.Errorf("the audit log opened before the start was refused:\n%s", logs)
			}
			check, err := sql.Open("sqlite", sqlstore.SQLiteDSN(controlPath))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = check.Close() }()
			var tables int
			if err := check.QueryRowContext(t.Context(), "SELECT count(*) FROM sqlite_master").Scan(&tables); err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Errorf("the refused start wrote %d tables to the control database", tables)
			}
		})
	}
}

// TestDashboardRedirectURL checks the dashboard's OIDC redirect URL serve
// derives from http.publicURL: with or without a trailing slash, the same
// <publicURL>/auth/callback (the one to register at the provider). A
// trailing slash made it host//auth/callback, which the provider refused
// as unregistered.
func TestDashboardRedirectURL(t *testing.T) {
	dir := t.TempDir()
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.WriteKeys(filepath.Join(dir, "nats")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "cookie.key"), "a cookie key of thirty-two bytes or more", 0o600)
	writeFile(t, filepath.Join(dir, "web-secret"), "hunter2", 0o600)
	if err := createDemoDB(t.Context(), filepath.Join(dir, "orders.db")); err != nil {
		t.Fatal(err)
	}
	catalog, err := route.Parse(demoRoutes)
	if err != nil {
		t.Fatal(err)
	}
	for _, publicURL := range []string{"https://sqlgate.example.com", "https://sqlgate.example.com/", "https://sqlgate.example.com//"} {
		cfg, err := decodeConfig(fmt.Appendf(nil, `
routes: %[1]s/routes.yaml
http:
  listen: 127.0.0.1:0
  publicURL: %[2]s
  auditorGroups: [auditors]
nats:
  url: nats://127.0.0.1:4222
  keysDir: %[1]s/nats
identity:
  issuers:
    - {name: dev, issuer: https://idp.example.com, audiences: [sqlgate-web]}
  cli: {issuer: https://idp.example.com, clientID: sqlgate-cli}
  web: {issuer: dev, clientID: sqlgate-web, clientSecretFile: %[1]s/web-secret, cookieKeyFile: %[1]s/cookie.key}
policy: {dir: %[1]s/policy}
databases:
  - sqlite: {name: orders, path: %[1]s/orders.db}
control: {dialect: sqlite, path: %[1]s/control.db}
audit: {signingKeyFile: %[1]s/audit-signing.key, paramKeyFile: %[1]s/audit-param.key}
`, dir, publicURL))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := resolveServe(t.Context(), cfg, catalog, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		_ = rc.Listener.Close()
		closeExecutors(rc.Executors)
		_ = rc.ControlDB.Close()
		if got, want := rc.WebLogin.RedirectURL, "https://sqlgate.example.com/auth/callback"; got != want {
			t.Errorf("http.publicURL %s: redirect URL %s, want %s", publicURL, got, want)
		}
	}
}
