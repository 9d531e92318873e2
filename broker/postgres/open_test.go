package postgres_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/postgres"
	"github.com/sqlgate/sqlgate/internal/testnet"
)

// TestOpenUnreachableIsUnavailable: a server that cannot be reached is
// broker.ErrUnavailable (the daemon starts and opens the database later),
// and Describe names the database without connecting, as the executor
// would.
func TestOpenUnreachableIsUnavailable(t *testing.T) {
	addr := testnet.FreeAddr(t) // nothing listens: connection refused
	host, port, _ := net.SplitHostPort(addr)
	cfg := postgres.Config{Name: "later", DSN: "host=" + host + " port=" + port + " user=sqlgate dbname=app sslmode=disable"}
	_, err := postgres.Open(t.Context(), cfg)
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Open on a closed port: err = %v, want broker.ErrUnavailable", err)
	}
	info, err := postgres.Describe(cfg)
	if err != nil || info != (broker.DatabaseInfo{Dialect: "postgres", Server: host, Database: "later"}) {
		t.Errorf("Describe = %+v, %v", info, err)
	}
	if _, err := postgres.Describe(postgres.Config{Name: "bad", DSN: "host=x port=notaport"}); err == nil || strings.Contains(err.Error(), "notaport") {
		t.Errorf("Describe of an invalid connection string: err = %v, want one that does not quote it", err)
	}
}

// TestDescribeMatchesOpen: Describe reports what the opened executor
// reports (audit records and crash recovery match on it).
func TestDescribeMatchesOpen(t *testing.T) {
	cfg := postgres.Config{Name: "test", DSN: newSchema(t), MaxConns: 2, CreateIdempotencyTable: true}
	e, err := postgres.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	info, err := postgres.Describe(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Describe(); info != got {
		t.Errorf("Describe = %+v, the opened executor's = %+v", info, got)
	}
}

// TestOpenTLSFailureIsConfiguration: a server that declines TLS, or whose
// certificate is not trusted, is a configuration error, not
// broker.ErrUnavailable: waiting for the database would not cure it, so
// the daemon refuses to start. The message names no host.
func TestOpenTLSFailureIsConfiguration(t *testing.T) {
	dir := t.TempDir()
	serverCert, _ := selfSigned(t, "server")
	_, otherCA := selfSigned(t, "another CA")
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, otherCA, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, sslmode, want string
		answer              func(net.Conn)
	}{
		{"declined", "require", "declined TLS", func(c net.Conn) { _, _ = c.Write([]byte{'N'}) }},
		{"untrusted", "verify-full sslrootcert=" + rootFile, "not signed by a trusted authority", func(c net.Conn) {
			_, _ = c.Write([]byte{'S'})
			_ = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}).Handshake()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeTLSServer(t, tc.answer)
			host, port, _ := net.SplitHostPort(addr)
			_, err := postgres.Open(t.Context(), postgres.Config{Name: "tls", DSN: "host=" + host + " port=" + port + " user=sqlgate dbname=app sslmode=" + tc.sslmode})
			switch {
			case err == nil:
				t.Fatal("Open succeeded")
			case errors.Is(err, broker.ErrUnavailable):
				t.Fatalf("Open: err = %v, a TLS failure must not be broker.ErrUnavailable", err)
			case !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), host):
				t.Errorf("Open: err = %v, want %q and no host", err, tc.want)
			}
		})
	}
}

// fakeTLSServer accepts connections, reads each one's SSLRequest and lets
// answer reply.
func fakeTLSServer(t *testing.T, answer func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req := make([]byte, 8)
				if _, err := io.ReadFull(c, req); err != nil {
					return
				}
				answer(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// selfSigned returns a self-signed certificate for 127.0.0.1 and its PEM.
func selfSigned(t *testing.T, cn string) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestOpenSilentServerIsUnavailable: a server that accepts the connection
// and never answers (a half-dead host, a blackholing proxy) is
// ErrUnavailable once the default connection timeout passes, even for a
// caller without a deadline: Open set none, and waited forever there (the
// pool's own attempts for a minute each), holding the daemon's start.
func TestOpenSilentServerIsUnavailable(t *testing.T) {
	old := postgres.SetDefaultConnectTimeout(time.Second)
	t.Cleanup(func() { postgres.SetDefaultConnectTimeout(old) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // accepted, never answered
			mu.Unlock()
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	done := make(chan error, 1)
	go func() {
		_, err := postgres.Open(t.Context(), postgres.Config{Name: "silent", DSN: "host=" + host + " port=" + port + " user=sqlgate dbname=app sslmode=disable", MaxConns: 4})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, broker.ErrUnavailable) {
			t.Errorf("Open on a silent server: err = %v, want broker.ErrUnavailable", err)
		}
	case <-time.After(50 * time.Second):
		t.Fatal("Open on a silent server did not return: no connection timeout")
	}
}
