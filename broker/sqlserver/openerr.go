package sqlserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// openError classifies a failure of [Open]'s first round trips as classify
// does, except a TLS failure: the server's certificate was not accepted or
// the handshake failed. Retrying does not cure that (the connection string
// or the server's certificate must change), so it is a configuration error,
// not [broker.ErrUnavailable]: the daemon refuses to start with it rather
// than wait for the database. The message names no host.
func (e *Executor) openError(ctx context.Context, err error) error {
	if why := tlsProblem(err); why != "" {
		return fmt.Errorf("sqlserver database %s: TLS: %s", e.cfg.Name, why)
	}
	return e.classify(ctx, err, nil)
}

// driverTLSFailed starts the driver's message for a failed TLS handshake;
// with TDS 7 it carries the cause as text only.
const driverTLSFailed = "TLS Handshake failed"

// tlsProblem says why err is a TLS failure, "" when it is not one.
func tlsProblem(err error) string {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		alert     tls.AlertError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &authority):
		return "the server's certificate is not signed by a trusted authority"
	case errors.As(err, &hostname):
		return "the server's certificate does not name the host of the connection string (hostnameincertificate)"
	case errors.As(err, &invalid):
		return "the server's certificate is not valid (expired, not yet valid, or not for a server)"
	case errors.As(err, &verify):
		return "the server's certificate was not accepted"
	case errors.As(err, &alert):
		return "the server ended the TLS handshake (" + alert.Error() + ")"
	case strings.Contains(err.Error(), driverTLSFailed):
		return "the handshake failed (the server's certificate was not accepted, or the server refused the TLS settings)"
	}
	return ""
}
