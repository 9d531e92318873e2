package sqlserver

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/microsoft/go-mssqldb/msdsn"
)

// ErrInsecureTransport is the error [CheckTransport] wraps when a
// connection string would let go-mssqldb send the login or the session
// without TLS, or over TLS without checking the server's certificate.
var ErrInsecureTransport = errors.New("the connection string does not require TLS with a checked server certificate")

// InsecureTransportOption is the configuration key that accepts such a
// connection string anyway (for a local test server).
const InsecureTransportOption = "allowInsecureTransport"

// CheckTransport reports whether a go-mssqldb connection string (URL, ADO
// or ODBC form) makes the driver encrypt the whole session and check the
// server's certificate: encrypt=strict (TDS 8.0: TLS before the first
// byte of TDS) or encrypt=true (TLS negotiated in TDS, required), with
// TrustServerCertificate not set to true. A pinned certificate
// (serverCertificate=) or a CA file (certificate=) are checks too.
//
// What go-mssqldb v1.11 does otherwise: without encrypt, it encrypts the
// login packet only, only when the server offers TLS, and without
// checking the certificate (TrustServerCertificate then defaults to
// true); a server — or anyone in the path — that answers "encryption not
// supported" receives the login, password included, in clear text
// (obfuscated by a fixed XOR). encrypt=false, no or optional do the same
// with the certificate checked; encrypt=disable encrypts nothing;
// TrustServerCertificate=true accepts any certificate, so a machine in
// the path can stand in for the server.
//
// The string is read with msdsn.Parse, the driver's own parser, so
// synonyms (trust server certificate, yes/no/mandatory) and every DSN form
// are judged as the driver will use them. Parse reads the certificate
// files the string names. Errors never quote the string (it may hold a
// password). allowInsecure (the [InsecureTransportOption] setting) accepts
// a string that parses but does not protect the session.
//
// A string that looks like a URL or ODBC string but that go-mssqldb reads
// as ADO (a scheme not in lower case, leading spaces) is refused: the
// driver would not read what it seems to say.
func CheckTransport(dsn string, allowInsecure bool) error {
	if err := checkForm(dsn); err != nil {
		return err
	}
	p, err := msdsn.Parse(dsn)
	if err != nil {
		// The parser's message may quote the connection string.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return errors.New("the connection string names a certificate file that cannot be read")
		}
		return errors.New("the connection string is not valid (see go-mssqldb connection string syntax)")
	}
	if allowInsecure {
		return nil
	}
	_, set := p.Parameters[msdsn.Encrypt]
	var why string
	switch {
	case !set:
		why = "it does not set encrypt, so go-mssqldb encrypts at most the login, only if the server offers TLS, without checking its certificate, and sends the password in clear text to a server that does not"
	case p.Encryption == msdsn.EncryptionDisabled:
		why = "encrypt=disable sends the login and every call in clear text"
	case p.Encryption == msdsn.EncryptionOff:
		why = "encrypt=false (or no, optional) encrypts at most the login, only if the server offers TLS, and sends the password in clear text to a server that does not"
	case p.Encryption != msdsn.EncryptionRequired && p.Encryption != msdsn.EncryptionStrict:
		why = fmt.Sprintf("its encryption setting (%d) is not one sqlgate knows", p.Encryption)
	case p.TrustServerCertificate:
		why = "TrustServerCertificate=true accepts any server certificate, so anyone in the network path can pose as the server and read the login"
	case p.TLSConfig == nil:
		why = "the driver has no TLS configuration for it"
	case p.TLSConfig.InsecureSkipVerify && p.TLSConfig.VerifyPeerCertificate == nil:
		why = "the server certificate would not be checked"
	default:
		return nil
	}
	return fmt.Errorf("%w: %s; set encrypt=strict (SQL Server 2022 and later, Azure SQL) or encrypt=true, and leave TrustServerCertificate unset (use hostNameInCertificate or certificate= for a private CA); %s: true accepts it, for a local test server only",
		ErrInsecureTransport, why, InsecureTransportOption)
}

// The prefixes go-mssqldb tells connection string forms by (msdsn, case
// sensitive); anything else is an ADO string.
const (
	urlScheme  = "sqlserver://"
	odbcPrefix = "odbc:"
)

// checkForm refuses a string that looks like a URL or ODBC string but is
// ADO to the driver: SQLSERVER://host?...;encrypt=strict is a key named
// "SQLSERVER://host?..." and whatever ;-separated pairs follow.
func checkForm(dsn string) error {
	t := strings.TrimSpace(dsn)
	for _, prefix := range []string{urlScheme, odbcPrefix} {
		if len(t) >= len(prefix) && strings.EqualFold(t[:len(prefix)], prefix) && !strings.HasPrefix(dsn, prefix) {
			return fmt.Errorf("the connection string must start with %s exactly (lower case, no leading space): go-mssqldb reads any other spelling as an ADO string (key=value;...)", prefix)
		}
	}
	return nil
}
