package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker/natsauth"
)

// exampleSecrets writes under dir what deploy/examples/sqlgated.yaml
// references besides the audit keys (serve creates those): the secret
// files in dir/secrets (0600), fresh NATS seeds in dir/secrets/nats and the
// HTTP TLS pair in dir/tls, and sets the example's *Env variable. It
// returns the replacer from the example's paths to these.
func exampleSecrets(t *testing.T, dir string) *strings.Replacer {
	t.Helper()
	secrets, tlsDir := filepath.Join(dir, "secrets"), filepath.Join(dir, "tls")
	for name, content := range map[string]string{
		"entra-client-secret": "placeholder client secret",
		"cookie.key":          "placeholder cookie key of 32 bytes or more",
		"orders.dsn":          "sqlserver://sqlgate-broker@sql1.example.com?database=orders&encrypt=strict",
		"orders.password":     "placeholder password",
		"control.dsn":         "postgres://sqlgate@control-db.example.com/sqlgate?sslmode=verify-full",
	} {
		writeFile(t, filepath.Join(secrets, name), content+"\n", 0o600)
	}
	// A certificate and key that load: serve --check loads them as serve
	// does.
	writeTestTLS(t, filepath.Join(tlsDir, "ca.crt"), filepath.Join(tlsDir, "tls.crt"), filepath.Join(tlsDir, "tls.key"))
	if err := os.Chmod(filepath.Join(tlsDir, "tls.crt"), 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.WriteKeys(filepath.Join(secrets, "nats")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SQLGATE_BILLING_DSN", "postgres://sqlgate-broker@billing-db.example.com/billing?sslmode=verify-full")
	return strings.NewReplacer(
		"/etc/sqlgate/secrets/", secrets+"/",
		"keysDir: /etc/sqlgate/nats", "keysDir: "+filepath.Join(secrets, "nats"),
		"/etc/sqlgate/tls/", tlsDir+"/",
	)
}

// TestServeCheckMissingSecrets checks that --check (the unit's
// ExecStartPre, the chart's init container) refuses what serve needs and
// does not find, every one at once: a secret file missing, unreadable or
// empty, an *Env variable unset or empty, a NATS seed neither in
// nats.keysDir nor in its variable, a file serve reads that is missing. It
// used to pass them, and serve then refused to start. No message quotes a
// secret.
func TestServeCheckMissingSecrets(t *testing.T) {
	const secretText = "hunter2-secret-value"
	type want struct{ key, text string }
	for _, tc := range []struct {
		name  string
		edit  func(t *testing.T, text, secrets string) string
		wants func(secrets string) []want
		// absent must not be in the error: a reference that is fine.
		absent string
	}{
		{
			name: "missing files",
			edit: func(t *testing.T, text, secrets string) string {
				for _, name := range []string{"control.dsn", "cookie.key", "entra-client-secret", "orders.password", "nats/operator.nk", "nats/users-signing.nk"} {
					if err := os.Remove(filepath.Join(secrets, name)); err != nil {
						t.Fatal(err)
					}
				}
				return text
			},
			wants: func(s string) []want {
				return []want{
					{"control.dsnFile", s + "/control.dsn does not exist"},
					{"identity.web.cookieKeyFile", s + "/cookie.key does not exist"},
					{"identity.web.clientSecretFile", s + "/entra-client-secret does not exist"},
					{"identity.issuers[0].clientSecretFile", s + "/entra-client-secret does not exist"},
					{"databases[0].sqlserver.passwordFile", s + "/orders.password does not exist"},
					{"nats.keysDir", s + "/nats/operator.nk does not exist (write the seeds with sqlgated nats-setup --keys " + s + "/nats, or set SQLGATE_NATS_OPERATOR_SEED)"},
					{"nats.keysDir", s + "/nats/users-signing.nk does not exist (write the seeds with sqlgated nats-setup --keys " + s + "/nats, or set SQLGATE_NATS_USERS_SIGNING_SEED)"},
				}
			},
		},
		{
			name: "empty files",
			edit: func(t *testing.T, text, secrets string) string {
				writeFile(t, filepath.Join(secrets, "orders.dsn"), "", 0o600)
				writeFile(t, filepath.Join(secrets, "cookie.key"), " \n\n", 0o600)
				writeFile(t, filepath.Join(secrets, "nats/xkey.nk"), "\n", 0o600)
				// Serve creates a missing audit key, but not over an empty one.
				writeFile(t, filepath.Join(secrets, "audit-param.key"), "", 0o600)
				return text
			},
			wants: func(s string) []want {
				return []want{
					{"databases[0].sqlserver.dsnFile", s + "/orders.dsn is empty"},
					{"identity.web.cookieKeyFile", s + "/cookie.key is empty"},
					{"nats.keysDir", s + "/nats/xkey.nk is empty"},
					{"audit.paramKeyFile", s + "/audit-param.key is empty"},
				}
			},
		},
		{
			name: "unreadable file",
			edit: func(t *testing.T, text, secrets string) string {
				if os.Geteuid() == 0 {
					t.Skip("root reads a file of mode 0000")
				}
				writeFile(t, filepath.Join(secrets, "control.dsn"), secretText, 0o000)
				return text
			},
			wants: func(s string) []want {
				return []want{{"control.dsnFile", "open " + s + "/control.dsn: permission denied"}}
			},
		},
		{
			name: "a directory for a file",
			edit: func(t *testing.T, text, secrets string) string {
				if err := os.Remove(filepath.Join(secrets, "orders.password")); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(filepath.Join(secrets, "orders.password"), 0o700); err != nil {
					t.Fatal(err)
				}
				return text
			},
			wants: func(s string) []want {
				return []want{{"databases[0].sqlserver.passwordFile", "read " + s + "/orders.password: is a directory"}}
			},
		},
		{
			name: "unset and empty variables",
			edit: func(t *testing.T, text, secrets string) string {
				t.Setenv("SQLGATE_BILLING_DSN", "") // restored after the test
				if err := os.Unsetenv("SQLGATE_BILLING_DSN"); err != nil {
					t.Fatal(err)
				}
				t.Setenv("SQLGATE_TEST_CONTROL_DSN", "")
				return strings.Replace(text, "  dsnFile: "+secrets+"/control.dsn", "  dsnEnv: SQLGATE_TEST_CONTROL_DSN", 1)
			},
			wants: func(string) []want {
				return []want{
					{"databases[1].postgres.dsnEnv", "environment variable SQLGATE_BILLING_DSN is unset or empty (under systemd, set it in /etc/sqlgate/sqlgated.env; in the Helm chart, with env or envFrom)"},
					{"control.dsnEnv", "environment variable SQLGATE_TEST_CONTROL_DSN is unset or empty"},
				}
			},
		},
		{
			name: "client secret variables",
			edit: func(t *testing.T, text, secrets string) string {
				t.Setenv("SQLGATE_TEST_WEB_SECRET", "")
				t.Setenv("SQLGATE_TEST_OKTA_SECRET", secretText) // set: not reported
				text = strings.Replace(text, "    clientSecretFile: "+secrets+"/entra-client-secret\n    cookieKeyFile", "    clientSecretEnv: SQLGATE_TEST_WEB_SECRET\n    cookieKeyFile", 1)
				return strings.Replace(text, "      audiences: [api://sqlgate]\n      clockSkew: 2m", "      audiences: [api://sqlgate]\n      clientSecretEnv: SQLGATE_TEST_OKTA_SECRET\n      clockSkew: 2m", 1)
			},
			wants: func(string) []want {
				return []want{{"identity.web.clientSecretEnv", "environment variable SQLGATE_TEST_WEB_SECRET is unset or empty"}}
			},
			absent: "SQLGATE_TEST_OKTA_SECRET",
		},
		{
			name: "missing plain files",
			edit: func(t *testing.T, text, secrets string) string {
				tlsDir := filepath.Join(filepath.Dir(secrets), "tls")
				if err := os.Remove(filepath.Join(tlsDir, "tls.crt")); err != nil {
					t.Fatal(err)
				}
				return strings.Replace(text, "  # caFile: "+tlsDir+"/nats-ca.crt ", "  caFile: "+tlsDir+"/nats-ca.crt #", 1)
			},
			wants: func(s string) []want {
				tlsDir := filepath.Join(filepath.Dir(s), "tls")
				return []want{
					{"http.tlsCertFile", tlsDir + "/tls.crt does not exist"},
					{"nats.caFile", tlsDir + "/nats-ca.crt does not exist"},
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, secrets, err := checkWith(t, func(text, secrets string) string { return tc.edit(t, text, secrets) })
			if err == nil {
				t.Fatalf("serve --check passed:\n%s", out)
			}
			for _, w := range tc.wants(secrets) {
				if !strings.Contains(err.Error(), w.key+": "+w.text) {
					t.Errorf("serve --check: %v\nwant it to contain %q", err, w.key+": "+w.text)
				}
			}
			if tc.absent != "" && strings.Contains(err.Error(), tc.absent) {
				t.Errorf("serve --check: %v\nwant no mention of %s", err, tc.absent)
			}
			if strings.Contains(err.Error(), secretText) || strings.Contains(out, secretText) {
				t.Error("serve --check quotes a secret")
			}
			if strings.Contains(out, "are valid") {
				t.Errorf("serve --check printed %q", out)
			}
		})
	}
}

// TestServeCheckSecretsFromEnv checks that a NATS seed in its variable needs
// no file in nats.keysDir, and that the audit keys serve creates may be
// missing while their directory can be created, but not when it cannot.
func TestServeCheckSecretsFromEnv(t *testing.T) {
	out, _, err := checkWith(t, func(text, secrets string) string {
		b, err := os.ReadFile(filepath.Join(secrets, "nats", "broker.nk"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(secrets, "nats", "broker.nk")); err != nil {
			t.Fatal(err)
		}
		t.Setenv(natsauth.EnvName("broker"), strings.TrimSpace(string(b)))
		// The audit keys in a directory that does not exist yet.
		return strings.NewReplacer(secrets+"/audit-signing.key", secrets+"/new/audit-signing.key", secrets+"/audit-param.key", secrets+"/new/audit-param.key").Replace(text)
	})
	if err != nil {
		t.Fatalf("the broker seed in %s and audit keys to create: %v\n%s", natsauth.EnvName("broker"), err, out)
	}

	var signing string
	_, _, err = checkWith(t, func(text, secrets string) string {
		file := filepath.Join(secrets, "not-a-dir")
		writeFile(t, file, "x", 0o600)
		signing = filepath.Join(file, "audit-signing.key")
		return strings.Replace(text, secrets+"/audit-signing.key", signing, 1)
	})
	if want := "audit.signingKeyFile: " + signing + " does not exist and cannot be created: "; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a signing key under a file: err = %v, want %q", err, want)
	}
	if os.Geteuid() == 0 {
		return // root may write a directory of mode 0500
	}
	var param string
	_, _, err = checkWith(t, func(text, secrets string) string {
		ro := filepath.Join(secrets, "read-only")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		param = filepath.Join(ro, "keys", "audit-param.key")
		return strings.Replace(text, secrets+"/audit-param.key", param, 1)
	})
	if want := "audit.paramKeyFile: " + param + " does not exist and cannot be created at the first start: "; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("a parameter key in a read-only directory: err = %v, want %q", err, want)
	}
}
