package sqlserver

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/internal/testnet"
)

// TestOpenErrorTLS: at Open a TLS failure is a configuration error (the
// daemon refuses to start), not broker.ErrUnavailable (it would wait for
// the database), and its message names no host; a network failure stays
// unavailable.
func TestOpenErrorTLS(t *testing.T) {
	e := &Executor{cfg: Config{Name: "app"}}
	for _, err := range []error{
		fmt.Errorf("TLS Handshake failed: %w", x509.UnknownAuthorityError{}),
		fmt.Errorf("TLS Handshake failed: %w", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "db.internal.example"}),
		// TDS 7 wraps the handshake's error as text only.
		errors.New("TLS Handshake failed: x509: certificate is valid for other.example, not db.internal.example"),
	} {
		got := e.openError(t.Context(), err)
		if errors.Is(got, broker.ErrUnavailable) || !strings.Contains(got.Error(), "TLS") || strings.Contains(got.Error(), "example") {
			t.Errorf("openError(%v) = %v, want a TLS configuration error that names no host", err, got)
		}
	}
	if got := e.openError(t.Context(), &net.OpError{Op: "dial", Err: errors.New("connection refused")}); !errors.Is(got, broker.ErrUnavailable) {
		t.Errorf("openError(connection refused) = %v, want broker.ErrUnavailable", got)
	}
}

// TestOpenUnreachableIsUnavailable: a server that cannot be reached is
// broker.ErrUnavailable (the daemon starts and opens the database later),
// and Describe names it without connecting, as the executor would.
func TestOpenUnreachableIsUnavailable(t *testing.T) {
	addr := testnet.FreeAddr(t) // nothing listens: connection refused
	cfg := Config{Name: "later", DSN: "sqlserver://sqlgate:pw@" + addr + "?database=app&encrypt=strict"}
	if _, err := Open(t.Context(), cfg); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Open on a closed port: err = %v, want broker.ErrUnavailable", err)
	}
	host, _, _ := net.SplitHostPort(addr)
	if info, err := Describe(cfg); err != nil || info != (broker.DatabaseInfo{Dialect: "sqlserver", Server: host, Database: "app"}) {
		t.Errorf("Describe = %+v, %v", info, err)
	}
}
