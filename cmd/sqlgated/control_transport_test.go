package main

import (
	"errors"
	"os"
	"strings"
	"testing"

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

// TestControlAllowInsecureTransportSQLServerOnly checks that the opt-out is
// refused where it would mean nothing.
func TestControlAllowInsecureTransportSQLServerOnly(t *testing.T) {
	base, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	from := "  dialect: postgres\n"
	if !strings.Contains(string(base), from) {
		t.Fatalf("example lacks %q", from)
	}
	_, err = parseConfig([]byte(strings.Replace(string(base), from, from+"  allowInsecureTransport: true\n", 1)))
	if err == nil || !strings.Contains(err.Error(), "control.allowInsecureTransport applies to the sqlserver dialect only") {
		t.Errorf("parseConfig = %v, want the refusal", err)
	}
	_, err = parseConfig([]byte(strings.Replace(string(base), from, "  dialect: sqlserver\n  allowInsecureTransport: true\n", 1)))
	if err != nil && strings.Contains(err.Error(), "allowInsecureTransport") {
		t.Errorf("parseConfig(sqlserver) = %v", err)
	}
}
