// Package tlsproblem says why a database driver's connection error is a
// TLS failure, for the adapters' Open: retrying does not cure one (the
// connection string or the server's certificate must change), so it is a
// configuration error, not an outage. The messages name no host.
package tlsproblem

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
)

// Of says why err is a TLS failure that crypto/tls or crypto/x509 reports,
// "" when it is not one. authority and host, when set, name the
// connection-string setting that fixes an untrusted authority or a
// certificate for another host; they are appended in parentheses.
func Of(err error, authority, host string) string {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		alert    tls.AlertError
		header   tls.RecordHeaderError
	)
	hint := func(s, setting string) string {
		if setting == "" {
			return s
		}
		return s + " (" + setting + ")"
	}
	switch {
	case err == nil:
		return ""
	case errors.As(err, &unknown):
		return hint("the server's certificate is not signed by a trusted authority", authority)
	case errors.As(err, &hostname):
		return hint("the server's certificate does not name the host of the connection string", host)
	case errors.As(err, &invalid):
		return "the server's certificate is not valid (expired, not yet valid, or not for a server)"
	case errors.As(err, &verify):
		return "the server's certificate was not accepted"
	case errors.As(err, &alert):
		return "the server ended the TLS handshake (" + alert.Error() + ")"
	case errors.As(err, &header):
		return "the server does not speak TLS"
	}
	return ""
}
