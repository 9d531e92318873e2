package sqlserver

import (
	"errors"
	"strings"
	"testing"
)

// CheckTransport judges a connection string as go-mssqldb will use it, in
// every DSN form.
func TestCheckTransport(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, dsn string
		ok        bool
		why       string
	}{
		{"url_strict", "sqlserver://u:hunter2@db.example.com?database=orders&encrypt=strict", true, ""},
		{"url_true", "sqlserver://u:hunter2@db.example.com?database=orders&encrypt=true", true, ""},
		{"ado_true", "server=db.example.com;user id=u;password=hunter2;Encrypt=True", true, ""},
		{"ado_mandatory", "server=db.example.com;password=hunter2;encrypt=mandatory;TrustServerCertificate=false", true, ""},
		{"odbc_yes", "odbc:server=db.example.com;pwd=hunter2;encrypt=yes", true, ""},
		// strict checks the certificate whatever TrustServerCertificate says.
		{"strict_overrides_trust", "server=db.example.com;password=hunter2;encrypt=strict;TrustServerCertificate=true", true, ""},
		{"url_missing", "sqlserver://u:hunter2@db.example.com?database=orders", false, "does not set encrypt"},
		{"ado_missing", "server=db.example.com;user id=u;password=hunter2", false, "does not set encrypt"},
		{"odbc_missing", "odbc:server=db.example.com;pwd=hunter2", false, "does not set encrypt"},
		{"false", "server=db.example.com;password=hunter2;encrypt=false", false, "encrypt=false"},
		{"no", "odbc:server=db.example.com;pwd=hunter2;encrypt=no", false, "encrypt=false"},
		{"optional", "sqlserver://db.example.com?encrypt=optional&password=hunter2", false, "encrypt=false"},
		{"disable", "server=db.example.com;password=hunter2;encrypt=DISABLE", false, "encrypt=disable"},
		{"trust", "sqlserver://u:hunter2@db.example.com?encrypt=true&TrustServerCertificate=true", false, "TrustServerCertificate=true"},
		{"trust_ado_synonym", "server=db.example.com;password=hunter2;encrypt=true;trust server certificate=yes", false, "TrustServerCertificate=true"},
		{"trust_without_encrypt", "server=db.example.com;password=hunter2;TrustServerCertificate=true", false, "does not set encrypt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTransport(tc.dsn, false)
			if tc.ok {
				if err != nil {
					t.Fatalf("CheckTransport = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInsecureTransport) || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "allowInsecureTransport") {
				t.Fatalf("CheckTransport = %v, want ErrInsecureTransport saying %q and naming the opt-out", err, tc.why)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("CheckTransport = %v, quotes the connection string", err)
			}
			if err := CheckTransport(tc.dsn, true); err != nil {
				t.Errorf("CheckTransport(allowInsecure) = %v, want nil", err)
			}
		})
	}
	for _, bad := range []string{"server=x;encrypt=maybe;password=hunter2", "server=x;encrypt=true;certificate=/nonexistent/hunter2.pem"} {
		for _, allow := range []bool{false, true} {
			err := CheckTransport(bad, allow)
			if err == nil || errors.Is(err, ErrInsecureTransport) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("CheckTransport(invalid, %v) = %v, want a parse error that does not quote the string", allow, err)
			}
		}
	}
}
