package sqlserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
	// Strings that look like a URL or ODBC string but that go-mssqldb reads
	// as ADO: refused whatever allowInsecure says.
	for _, lookalike := range []string{
		"SQLSERVER://broker:hunter2@db.example.com:1433?app=1;encrypt=strict;",
		"SqlServer://broker:hunter2@db.example.com?encrypt=strict",
		" sqlserver://broker:hunter2@db.example.com?encrypt=strict",
		"ODBC:server=db.example.com;pwd=hunter2;encrypt=yes",
	} {
		for _, allow := range []bool{false, true} {
			err := CheckTransport(lookalike, allow)
			if err == nil || !strings.Contains(err.Error(), "exactly") || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("CheckTransport(%q, %v) = %v, want refused as read as ADO, without quoting the string", lookalike, allow, err)
			}
		}
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

// tdsLogin7 is the TDS packet type of the login message (MS-TDS 2.2.3.1.1).
const tdsLogin7 = 0x10

// loginServer is a fake SQL Server that completes the login, answers every
// SQL batch with DONE (Open's ping and table check) and counts the
// connections it accepted and the LOGIN7 messages it read. With tlsConfig
// it speaks TDS 8.0 (encrypt=strict: TLS from the first byte); without, it
// answers PRELOGIN with "encryption not supported", as the capture server
// the reviewer used did: a client that goes on sends its login in clear.
func loginServer(t *testing.T, tlsConfig *tls.Config) (addr string, counts func() (conns, logins int)) {
	t.Helper()
	var ln net.Listener
	var err error
	if tlsConfig != nil {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", tlsConfig)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu            sync.Mutex
		conns, logins int
	)
	serve := func(c net.Conn) {
		defer func() { _ = c.Close() }()
		for {
			typ, err := readTDSMessage(c)
			if err != nil {
				return
			}
			var reply []byte
			switch typ {
			case tdsPrelogin:
				reply = fakePrelogin
			case tdsLogin7:
				mu.Lock()
				logins++
				mu.Unlock()
				reply = fakeLoginAck
			case tdsSQLBatch:
				reply = fakeDone
			default:
				return
			}
			if _, err := c.Write(reply); err != nil {
				return
			}
		}
	}
	serveFake(t, ln, func(c net.Conn) {
		mu.Lock()
		conns++
		mu.Unlock()
		serve(c)
	})
	return ln.Addr().String(), func() (int, int) { mu.Lock(); defer mu.Unlock(); return conns, logins }
}

// tdsPrelogin is the TDS packet type of PRELOGIN.
const tdsPrelogin = 0x12

// selfSigned returns a server TLS configuration for 127.0.0.1 and the
// certificate's PEM file, which a DSN names with certificate= to trust it.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "server.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:   []string{"tds/8.0"},
	}, path
}

// Open refuses a connection string that would let the login go out in
// clear text before it dials, and accepts one that requires TLS with the
// certificate checked; against a server without TLS, encrypt=true stops
// the driver before the login.
func TestOpenRequiresTLS(t *testing.T) { // not parallel: t.Setenv
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dsn := func(addr, params string) string {
		host, port, _ := net.SplitHostPort(addr)
		return fmt.Sprintf("server=%s;port=%s;user id=u;password=hunter2;dial timeout=5;%s", host, port, params)
	}

	t.Run("no_encrypt_refused", func(t *testing.T) {
		addr, counts := loginServer(t, nil)
		_, err := Open(ctx, Config{Name: "orders", DSN: dsn(addr, "database=orders")})
		if !errors.Is(err, ErrInsecureTransport) || !strings.Contains(err.Error(), "does not set encrypt") || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("Open(no encrypt) = %v, want ErrInsecureTransport saying encrypt is not set", err)
		}
		// A DSN from a file or variable is only read by Open: refused there.
		t.Setenv("SQLGATE_TEST_TLS_DSN", dsn(addr, "database=orders"))
		_, err = Open(ctx, Config{Name: "orders", DSNEnv: "SQLGATE_TEST_TLS_DSN"})
		if !errors.Is(err, ErrInsecureTransport) {
			t.Fatalf("Open(no encrypt, from the environment) = %v, want ErrInsecureTransport", err)
		}
		if conns, _ := counts(); conns != 0 {
			t.Errorf("the server was dialed %d times, want none", conns)
		}
	})

	// What the refusal prevents, with the opt-out: the server receives the
	// login in clear text.
	t.Run("no_encrypt_allowed_sends_login_in_clear", func(t *testing.T) {
		addr, counts := loginServer(t, nil)
		e, err := Open(ctx, Config{Name: "orders", DSN: dsn(addr, "database=orders"), AllowInsecureTransport: true})
		if err != nil {
			t.Fatalf("Open(no encrypt, allowInsecureTransport) = %v", err)
		}
		_ = e.Close()
		if _, logins := counts(); logins == 0 {
			t.Error("the plain-text server received no login")
		}
	})

	t.Run("encrypt_true_without_server_tls", func(t *testing.T) {
		addr, counts := loginServer(t, nil)
		_, err := Open(ctx, Config{Name: "orders", DSN: dsn(addr, "encrypt=true")})
		if err == nil || errors.Is(err, ErrInsecureTransport) {
			t.Fatalf("Open(encrypt=true, server without TLS) = %v, want a connection failure", err)
		}
		if conns, logins := counts(); conns == 0 || logins != 0 {
			t.Errorf("server saw %d connections and %d logins, want the connection and no login", conns, logins)
		}
	})

	t.Run("strict_with_checked_certificate", func(t *testing.T) {
		cfg, certFile := selfSigned(t)
		addr, counts := loginServer(t, cfg)
		e, err := Open(ctx, Config{Name: "orders", DSN: dsn(addr, "encrypt=strict;certificate="+certFile)})
		if err != nil {
			t.Fatalf("Open(encrypt=strict, trusted certificate) = %v", err)
		}
		_ = e.Close()
		if _, logins := counts(); logins == 0 {
			t.Error("the TLS server received no login")
		}
	})

	t.Run("strict_with_unknown_certificate", func(t *testing.T) {
		cfg, _ := selfSigned(t)
		addr, counts := loginServer(t, cfg)
		_, err := Open(ctx, Config{Name: "orders", DSN: dsn(addr, "encrypt=strict")})
		if err == nil {
			t.Fatal("Open(encrypt=strict) accepted a certificate nobody vouches for")
		}
		if _, logins := counts(); logins != 0 {
			t.Errorf("the server received %d logins over an unchecked TLS connection", logins)
		}
	})
}
