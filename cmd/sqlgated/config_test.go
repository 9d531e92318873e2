package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/broker/sqlserver"
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
		{"bad_previous_key", "  signingKeyFile: /etc/sqlgate/secrets/audit-signing.key", "  signingKeyFile: /etc/sqlgate/secrets/audit-signing.key\n  previousVerifierKeys: [not-a-key]", []string{`audit.previousVerifierKeys: "not-a-key" is not a verifier key`}},
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

// An onBehalfOf SQL Server database has no login of sqlgate's own: it keeps
// its idempotency records unless an explicit retention asks for the
// impossible, which is refused.
func TestIdempotencyRetentionOnBehalfOf(t *testing.T) {
	obo := DatabaseConfig{SQLServer: &sqlserver.Config{
		Name: "orders", DSN: "sqlserver://sql1.example.com?database=orders", PasswordEnv: "SECRET",
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
