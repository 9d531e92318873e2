package postgres_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/postgres"
)

// cleanPGEnv keeps the machine's PG* variables and ~/.postgresql out of
// the parser's view, so each case is judged on its string alone.
func cleanPGEnv(t *testing.T) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	for _, v := range []string{"PGHOST", "PGPORT", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLNEGOTIATION", "PGSERVICE", "PGSERVICEFILE", "PGPASSFILE"} {
		t.Setenv(v, "")
	}
}

// caFile writes a self-signed CA certificate (PEM) and returns its path.
func caFile(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sqlgate test CA"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<33, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "root.crt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheckTransport checks which connection strings reach a host other
// than this machine over TLS with a checked certificate, and that a
// refusal never quotes the string.
func TestCheckTransport(t *testing.T) {
	cleanPGEnv(t)
	ca := caFile(t)
	for _, tc := range []struct {
		name, dsn string
		allow     bool
		want      string // "" accepted; "plain", "unchecked" refused; "invalid" not parsed
	}{
		// This machine needs nothing (CI connects to 127.0.0.1 with sslmode=disable).
		{"loopback_disable", "postgres://postgres:hunter2@127.0.0.1:5432/ci?sslmode=disable", false, ""},
		{"loopback_default", "host=127.0.0.1 dbname=orders user=sqlgate password=hunter2", false, ""},
		{"localhost_default", "postgres://sqlgate:hunter2@localhost/orders", false, ""},
		{"ipv6_loopback", "host=::1 dbname=orders sslmode=disable", false, ""},
		{"unix_socket", "host=/var/run/postgresql dbname=orders", false, ""},
		{"no_host", "dbname=orders", false, ""},
		// Another host.
		{"remote_default", "postgres://sqlgate:hunter2@db.example.com/orders", false, "plain"},
		{"remote_prefer", "host=db.example.com password=hunter2 sslmode=prefer", false, "plain"},
		{"remote_allow", "host=db.example.com password=hunter2 sslmode=allow", false, "plain"},
		{"remote_disable", "postgres://sqlgate:hunter2@10.0.0.7:5432/orders?sslmode=disable", false, "plain"},
		{"remote_require", "postgres://sqlgate:hunter2@db.example.com/orders?sslmode=require", false, "unchecked"},
		{"remote_direct", "host=db.example.com password=hunter2 sslnegotiation=direct", false, "unchecked"},
		{"remote_verify_full", "postgres://sqlgate:hunter2@db.example.com/orders?sslmode=verify-full", false, ""},
		{"remote_verify_full_ip", "host=10.0.0.7 password=hunter2 sslmode=verify-full sslrootcert=" + ca, false, ""},
		{"remote_verify_ca", "host=db.example.com password=hunter2 sslmode=verify-ca sslrootcert=" + ca, false, ""},
		{"remote_require_rootcert", "host=db.example.com password=hunter2 sslmode=require sslrootcert=" + ca, false, ""},
		{"remote_rootcert_system", "host=db.example.com password=hunter2 sslrootcert=system", false, ""},
		// Every host of a multi-host string.
		{"fallback_remote_plain", "host=127.0.0.1,db.example.com password=hunter2 sslmode=disable", false, "plain"},
		{"fallback_remote_url", "postgres://sqlgate:hunter2@localhost:5432,db.example.com:5432/orders", false, "plain"},
		{"fallbacks_verified", "host=localhost,db.example.com,db2.example.com password=hunter2 sslmode=verify-full", false, ""},
		// The opt-out.
		{"opted_out_disable", "postgres://sqlgate:hunter2@db.example.com/orders?sslmode=disable", true, ""},
		{"opted_out_require", "host=db.example.com password=hunter2 sslmode=require", true, ""},
		{"invalid", "host=db.example.com password=hunter2 port=notaport", true, "invalid"},
		{"invalid_sslmode", "host=db.example.com password=hunter2 sslmode=maybe", false, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := postgres.CheckTransport(tc.dsn, tc.allow)
			switch tc.want {
			case "":
				if err != nil {
					t.Fatalf("CheckTransport = %v, want nil", err)
				}
				return
			case "invalid":
				if err == nil || errors.Is(err, postgres.ErrInsecureTransport) || !strings.Contains(err.Error(), "not valid") {
					t.Fatalf("CheckTransport = %v, want the string refused as not valid", err)
				}
			default:
				if !errors.Is(err, postgres.ErrInsecureTransport) {
					t.Fatalf("CheckTransport = %v, want ErrInsecureTransport", err)
				}
				why := map[string]string{"plain": "may connect without TLS", "unchecked": "does not check the server's certificate"}[tc.want]
				if !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), "allowInsecureTransport") {
					t.Errorf("CheckTransport = %v, want it to say %q and name the opt-out", err, why)
				}
			}
			for _, s := range []string{"hunter2", "example.com", "10.0.0.7"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("the refusal quotes the connection string (%s): %v", s, err)
				}
			}
		})
	}
}

// TestCheckTransportEnvironment checks that the PG* variables count as pgx
// will use them: PGSSLMODE applies when the string sets no sslmode, and
// PGHOST when it names no host.
func TestCheckTransportEnvironment(t *testing.T) {
	cleanPGEnv(t)
	t.Setenv("PGSSLMODE", "verify-full")
	if err := postgres.CheckTransport("host=db.example.com dbname=orders", false); err != nil {
		t.Errorf("PGSSLMODE=verify-full: %v, want nil", err)
	}
	if err := postgres.CheckTransport("host=db.example.com dbname=orders sslmode=disable", false); !errors.Is(err, postgres.ErrInsecureTransport) {
		t.Errorf("PGSSLMODE=verify-full, sslmode=disable: %v, want ErrInsecureTransport", err)
	}
	t.Setenv("PGSSLMODE", "")
	t.Setenv("PGHOST", "db.example.com")
	if err := postgres.CheckTransport("dbname=orders", false); !errors.Is(err, postgres.ErrInsecureTransport) {
		t.Errorf("PGHOST=db.example.com: %v, want ErrInsecureTransport", err)
	}
}

// TestConfigValidateTransport checks the inline DSN at Validate (what
// sqlgated serve --check runs).
func TestConfigValidateTransport(t *testing.T) {
	cleanPGEnv(t)
	remote := "postgres://sqlgate:hunter2@db.example.com/orders?sslmode=require"
	if err := (&postgres.Config{Name: "orders", DSN: remote}).Validate(); !errors.Is(err, postgres.ErrInsecureTransport) ||
		strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "dsn: ") {
		t.Errorf("Validate(remote, require) = %v, want dsn: ErrInsecureTransport without the DSN", err)
	}
	if err := (&postgres.Config{Name: "orders", DSN: remote, AllowInsecureTransport: true}).Validate(); err != nil {
		t.Errorf("Validate(remote, require, allowInsecureTransport) = %v, want nil", err)
	}
	for _, dsn := range []string{"postgres://postgres@127.0.0.1:5432/ci?sslmode=disable", "postgres://sqlgate@db.example.com/orders?sslmode=verify-full"} {
		if err := (&postgres.Config{Name: "orders", DSN: dsn}).Validate(); err != nil {
			t.Errorf("Validate(%s) = %v, want nil", dsn, err)
		}
	}
	// A referenced DSN is not read by Validate (Open checks it).
	if err := (&postgres.Config{Name: "orders", DSNEnv: "SQLGATE_TEST_PG_UNSET"}).Validate(); err != nil {
		t.Errorf("Validate(dsnEnv) = %v, want nil", err)
	}
}

// TestOpenTransport checks the DSN Open resolves from a file or a
// variable: an unprotected one to another host is refused before any
// connection is made, the opt-out lets Open go on to connect, and a
// loopback address needs no TLS.
func TestOpenTransport(t *testing.T) {
	cleanPGEnv(t)
	var dials []string
	postgres.SetDialHook(func(_ context.Context, _, addr string) (net.Conn, error) {
		dials = append(dials, addr)
		return nil, errors.New("test: no network")
	})
	t.Cleanup(func() { postgres.SetDialHook(nil) })
	file := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(file, []byte("host=192.0.2.7 dbname=orders user=sqlgate password=hunter2 connect_timeout=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := postgres.Open(t.Context(), postgres.Config{Name: "orders", DSNFile: file, MinConns: 0, MaxConns: 1})
	if !errors.Is(err, postgres.ErrInsecureTransport) || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "192.0.2.7") {
		t.Fatalf("Open(remote, no sslmode) = %v, want ErrInsecureTransport without the DSN", err)
	}
	if len(dials) != 0 {
		t.Fatalf("Open dialled %v before refusing", dials)
	}
	t.Setenv("SQLGATE_TEST_PG_DSN", "postgres://sqlgate:hunter2@192.0.2.7/orders?sslmode=require")
	if _, err := postgres.Open(t.Context(), postgres.Config{Name: "orders", DSNEnv: "SQLGATE_TEST_PG_DSN", MaxConns: 1}); !errors.Is(err, postgres.ErrInsecureTransport) {
		t.Fatalf("Open(remote, require) = %v, want ErrInsecureTransport", err)
	}
	if len(dials) != 0 {
		t.Fatalf("Open dialled %v before refusing", dials)
	}
	// Accepted: Open connects (and fails on this test's dialer).
	for _, cfg := range []postgres.Config{
		{Name: "orders", DSNEnv: "SQLGATE_TEST_PG_DSN", MaxConns: 1, AllowInsecureTransport: true},
		{Name: "orders", DSN: "postgres://sqlgate:hunter2@127.0.0.1:1/orders?sslmode=disable", MaxConns: 1},
	} {
		dials = nil
		_, err := postgres.Open(t.Context(), cfg)
		if !errors.Is(err, broker.ErrUnavailable) || errors.Is(err, postgres.ErrInsecureTransport) || len(dials) == 0 {
			t.Errorf("Open(%s) = %v after %d dials, want it to connect (and fail unavailable)", cfg.String(), err, len(dials))
		}
	}
}
