package main

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/broker/sqlserver"
)

// TestControlSQLServerTransport checks that a SQL Server control database
// is opened only over TLS with a checked certificate, unless
// control.allowInsecureTransport says otherwise, and that the refusal
// never quotes the connection string.
func TestControlSQLServerTransport(t *testing.T) {
	for _, tc := range []struct {
		name, dsn string
		allow     bool
		refused   bool
	}{
		{"no_encrypt", "sqlserver://sqlgate:hunter2@sql1.example.com?database=control", false, true},
		{"encrypt_false", "sqlserver://sqlgate:hunter2@sql1.example.com?database=control&encrypt=false", false, true},
		{"trust_server_certificate", "sqlserver://sqlgate:hunter2@sql1.example.com?database=control&encrypt=true&TrustServerCertificate=true", false, true},
		{"ado_no_encrypt", "server=sql1.example.com;database=control;user id=sqlgate;password=hunter2", false, true},
		{"strict", "sqlserver://sqlgate:hunter2@sql1.example.com?database=control&encrypt=strict", false, false},
		{"encrypt_true", "server=sql1.example.com;database=control;user id=sqlgate;password=hunter2;encrypt=true", false, false},
		{"opted_out", "sqlserver://sqlgate:hunter2@localhost?database=control", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SQLGATE_TEST_CONTROL_DSN", tc.dsn)
			db, dialect, err := openControl(ControlConfig{Dialect: "sqlserver", DSNEnv: "SQLGATE_TEST_CONTROL_DSN", AllowInsecureTransport: tc.allow})
			if db != nil {
				_ = db.Close()
			}
			if !tc.refused {
				if err != nil || dialect != "sqlserver" {
					t.Fatalf("openControl = %q, %v; want it opened", dialect, err)
				}
				return
			}
			if !errors.Is(err, sqlserver.ErrInsecureTransport) {
				t.Fatalf("openControl = %v, want ErrInsecureTransport", err)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "sql1.example.com") {
				t.Errorf("the refusal quotes the connection string: %v", err)
			}
		})
	}
}

// TestControlPostgresTransport checks that a PostgreSQL control database
// on another host is opened only with sslmode verify-full or verify-ca,
// unless control.allowInsecureTransport says otherwise; this machine needs
// no TLS (CI connects to 127.0.0.1 with sslmode=disable). The refusal never
// quotes the connection string.
func TestControlPostgresTransport(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	t.Setenv("PGHOST", "")
	for _, tc := range []struct {
		name, dsn string
		allow     bool
		refused   bool
	}{
		{"loopback_disable", "postgres://postgres:hunter2@127.0.0.1:5432/control?sslmode=disable", false, false},
		{"localhost_default", "host=localhost dbname=control user=sqlgate password=hunter2", false, false},
		{"unix_socket", "host=/var/run/postgresql dbname=control", false, false},
		{"remote_default", "postgres://sqlgate:hunter2@pg1.example.com/control", false, true},
		{"remote_disable", "host=pg1.example.com dbname=control password=hunter2 sslmode=disable", false, true},
		{"remote_prefer", "postgres://sqlgate:hunter2@pg1.example.com/control?sslmode=prefer", false, true},
		{"remote_require", "postgres://sqlgate:hunter2@pg1.example.com/control?sslmode=require", false, true},
		{"remote_fallback", "postgres://sqlgate:hunter2@127.0.0.1,pg1.example.com/control?sslmode=disable", false, true},
		{"remote_verify_full", "postgres://sqlgate:hunter2@pg1.example.com/control?sslmode=verify-full", false, false},
		{"opted_out", "postgres://sqlgate:hunter2@pg1.example.com/control?sslmode=disable", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SQLGATE_TEST_CONTROL_DSN", tc.dsn)
			db, dialect, err := openControl(ControlConfig{Dialect: "postgres", DSNEnv: "SQLGATE_TEST_CONTROL_DSN", AllowInsecureTransport: tc.allow})
			if db != nil {
				_ = db.Close()
			}
			if !tc.refused {
				if err != nil || dialect != "postgres" {
					t.Fatalf("openControl = %q, %v; want it opened", dialect, err)
				}
				return
			}
			if !errors.Is(err, postgres.ErrInsecureTransport) {
				t.Fatalf("openControl = %v, want ErrInsecureTransport", err)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "pg1.example.com") {
				t.Errorf("the refusal quotes the connection string: %v", err)
			}
		})
	}
}

// TestServeCheckControlTransport checks that serve --check refuses a
// control database connection string it can read (here control.dsnEnv)
// that serve would refuse, without quoting it, and passes the ones serve
// accepts.
func TestServeCheckControlTransport(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	t.Setenv("PGHOST", "")
	config, _ := checkableExample(t)
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	control := regexp.MustCompile(`(?m)^control:\n  dialect: postgres\n  dsnFile: .*$`)
	if !control.Match(b) {
		t.Fatal("the example's control section is no longer dialect: postgres with a dsnFile")
	}
	for _, tc := range []struct {
		name, dsn string
		allow     bool
		refused   bool
	}{
		{"remote_default", "postgres://sqlgate:hunter2@pg1.example.com/control", false, true},
		{"remote_require", "postgres://sqlgate:hunter2@pg1.example.com/control?sslmode=require", false, true},
		{"remote_verify_full", "postgres://sqlgate:hunter2@pg1.example.com/control?sslmode=verify-full", false, false},
		{"loopback_disable", "postgres://postgres@127.0.0.1:5432/control?sslmode=disable", false, false},
		{"opted_out", "postgres://sqlgate:hunter2@pg1.example.com/control?sslmode=disable", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			section := "control:\n  dialect: postgres\n  dsnEnv: SQLGATE_TEST_CONTROL_DSN"
			if tc.allow {
				section += "\n  allowInsecureTransport: true"
			}
			if err := os.WriteFile(config, control.ReplaceAll(b, []byte(section)), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("SQLGATE_TEST_CONTROL_DSN", tc.dsn)
			var out strings.Builder
			err := run(t.Context(), []string{"serve", "--config", config, "--check"}, &out, &out)
			if !tc.refused {
				if err != nil {
					t.Fatalf("serve --check = %v\n%s", err, out.String())
				}
				return
			}
			if !errors.Is(err, postgres.ErrInsecureTransport) || !strings.Contains(err.Error(), "control database DSN") {
				t.Fatalf("serve --check = %v, want the control DSN refused (ErrInsecureTransport)", err)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "pg1.example.com") {
				t.Errorf("the refusal quotes the connection string: %v", err)
			}
		})
	}
}

// TestControlAllowInsecureTransportDialects checks that the opt-out is
// refused where it would mean nothing (SQLite) and accepted for
// PostgreSQL and SQL Server.
func TestControlAllowInsecureTransportDialects(t *testing.T) {
	base, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	from := "  dialect: postgres\n  dsnFile: /etc/sqlgate/secrets/control.dsn\n"
	if !strings.Contains(string(base), from) {
		t.Fatalf("example lacks %q", from)
	}
	_, err = parseConfig([]byte(strings.Replace(string(base), from, "  dialect: sqlite\n  path: /var/lib/sqlgate/control.db\n  allowInsecureTransport: true\n", 1)))
	if err == nil || !strings.Contains(err.Error(), "control.allowInsecureTransport applies to the postgres and sqlserver dialects only") {
		t.Errorf("parseConfig(sqlite) = %v, want the refusal", err)
	}
	for _, dialect := range []string{"postgres", "sqlserver"} {
		_, err = parseConfig([]byte(strings.Replace(string(base), from, "  dialect: "+dialect+"\n  dsnFile: /etc/sqlgate/secrets/control.dsn\n  allowInsecureTransport: true\n", 1)))
		if err != nil && strings.Contains(err.Error(), "allowInsecureTransport") {
			t.Errorf("parseConfig(%s) = %v", dialect, err)
		}
	}
}

// TestServeCheckReferencedConnectionStrings: serve --check refuses what
// serve would refuse at start in a connection string it reads from a file
// or the environment: a target database's that does not require TLS to
// another host (it passed, and serve then stopped on it), and a control
// connection string that does not parse (here, a CA file that is not
// mounted). Neither message quotes the string.
func TestServeCheckReferencedConnectionStrings(t *testing.T) {
	t.Setenv("PGSSLMODE", "")
	t.Setenv("PGHOST", "")
	config, _ := checkableExample(t)
	check := func() error {
		var out strings.Builder
		return run(t.Context(), []string{"serve", "--config", config, "--check"}, &out, &out)
	}
	t.Setenv("SQLGATE_BILLING_DSN", "postgres://sqlgate-broker:hunter2@billing-db.example.com/billing?sslmode=require")
	err := check()
	if !errors.Is(err, postgres.ErrInsecureTransport) || !strings.Contains(err.Error(), "databases billing") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("billing without a checked certificate: serve --check = %v; want it refused, named, not quoted", err)
	}
	t.Setenv("SQLGATE_BILLING_DSN", "postgres://sqlgate-broker:hunter2@billing-db.example.com/billing?sslmode=verify-full")
	if err := check(); err != nil {
		t.Fatalf("billing with sslmode=verify-full: serve --check = %v", err)
	}

	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	control := regexp.MustCompile(`(?m)^control:\n  dialect: postgres\n  dsnFile: .*$`)
	section := "control:\n  dialect: postgres\n  dsnEnv: SQLGATE_TEST_CONTROL_DSN"
	if err := os.WriteFile(config, control.ReplaceAll(b, []byte(section)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SQLGATE_TEST_CONTROL_DSN", "postgres://sqlgate:hunter2@pg1.example.com/control?sslmode=verify-full&sslrootcert="+filepath.Join(t.TempDir(), "missing-ca.pem"))
	if err := check(); err == nil || !strings.Contains(err.Error(), "control database DSN") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("control connection string naming a missing CA file: serve --check = %v; want it refused, not quoted", err)
	}
}
