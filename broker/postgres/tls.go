package postgres

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrInsecureTransport is the error [CheckTransport] wraps when a
// connection string would let pgx reach a host other than this machine
// without TLS, or over TLS without checking the server's certificate.
var ErrInsecureTransport = errors.New("the connection string does not require TLS with a checked server certificate for a host that is not this machine")

// InsecureTransportOption is the configuration key that accepts such a
// connection string anyway (for a test server).
const InsecureTransportOption = "allowInsecureTransport"

// CheckTransport reports whether a libpq connection string (keyword/value
// or URL) makes pgx protect every connection to a host other than this
// machine with TLS and a checked server certificate: sslmode=verify-full
// (or sslrootcert=system, which implies it), or sslmode=verify-ca (the
// chain is checked, not the host name; sslmode=require with an sslrootcert
// behaves the same). A Unix socket, localhost and loopback addresses are
// this machine and need nothing. Every host of a multi-host string is
// checked.
//
// What pgx does otherwise, like libpq: without sslmode (or with
// PGSSLMODE unset) it uses prefer, which tries TLS without checking the
// certificate and falls back to plain text when the server (or anyone in
// the path) declines TLS; allow tries plain text first; disable never uses
// TLS; require uses TLS but accepts any certificate, so a machine in the
// path can stand in for the server and read the password exchange and
// every call.
//
// The string is read with pgconn.ParseConfig, the driver's own parser, so
// the PG* environment variables, a service file and ~/.postgresql/root.crt
// count as the driver will use them; it reads the files the string names.
// Errors never quote the string or its hosts (it may hold a password).
// allowInsecure (the [InsecureTransportOption] setting) accepts a string
// that parses but does not protect the connection.
func CheckTransport(dsn string, allowInsecure bool) error {
	cc, err := pgconn.ParseConfig(dsn)
	if err != nil {
		// The parser's message may quote the connection string.
		return errors.New("the connection string is not valid (see libpq connection strings)")
	}
	if allowInsecure {
		return nil
	}
	return checkTransport(cc)
}

// checkTransport checks a parsed configuration: its first host and every
// fallback (other hosts, and the plain-text attempt of sslmode=prefer).
func checkTransport(cc *pgconn.Config) error {
	targets := append([]*pgconn.FallbackConfig{{Host: cc.Host, Port: cc.Port, TLSConfig: cc.TLSConfig}}, cc.Fallbacks...)
	var plain, unchecked bool
	for _, t := range targets {
		switch {
		case localHost(t.Host):
		case t.TLSConfig == nil:
			plain = true
		case !verifiesServer(t.TLSConfig):
			unchecked = true
		}
	}
	var why string
	switch {
	case plain:
		why = "sslmode is disable, allow or prefer (prefer is the default when sslmode is not set), so pgx may connect without TLS, " +
			"and anyone in the network path who declines TLS reads the login and every call"
	case unchecked:
		why = "sslmode=require (like prefer and allow) does not check the server's certificate, so anyone in the network path can pose as the server and read the login and every call"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s; set sslmode=verify-full (with sslrootcert=FILE for a private CA, or sslrootcert=system) or sslmode=verify-ca; %s: true accepts it, for a test server only",
		ErrInsecureTransport, why, InsecureTransportOption)
}

// verifiesServer reports a TLS configuration that checks the server's
// certificate: Go's own check (verify-full: the chain and the host name),
// or pgx's chain check without the name (verify-ca).
func verifiesServer(c *tls.Config) bool {
	if !c.InsecureSkipVerify {
		return c.ServerName != ""
	}
	return c.VerifyPeerCertificate != nil
}

// localHost reports a host that is this machine: a Unix socket directory,
// localhost or a loopback address.
func localHost(host string) bool {
	if network, _ := pgconn.NetworkAddress(host, 0); network == "unix" {
		return true
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
