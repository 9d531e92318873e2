package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// openError classifies a failure of [Open]'s first statements as classify
// does, except a TLS failure: the server declined TLS or its certificate
// was not accepted. Retrying does not cure that (the connection string or
// the server's certificate must change), so it is a configuration error,
// not [broker.ErrUnavailable]: the daemon refuses to start with it rather
// than wait for the database. The message names no host.
func (e *Executor) openError(ctx context.Context, err error) error {
	if why := tlsProblem(err); why != "" {
		return fmt.Errorf("postgres database %s: TLS: %s", e.cfg.Name, why)
	}
	return e.classify(ctx, err, nil)
}

// pgxRefusedTLS is pgconn's message when the server answers the TLS request
// with N (sslmode require or verify-*: TLS is off on the server).
const pgxRefusedTLS = "server refused TLS connection"

// tlsProblem says why err is a TLS failure, "" when it is not one.
func tlsProblem(err error) string {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		alert     tls.AlertError
		header    tls.RecordHeaderError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &authority):
		return "the server's certificate is not signed by a trusted authority (sslrootcert)"
	case errors.As(err, &hostname):
		return "the server's certificate does not name the host of the connection string"
	case errors.As(err, &invalid):
		return "the server's certificate is not valid (expired, not yet valid, or not for a server)"
	case errors.As(err, &verify):
		return "the server's certificate was not accepted"
	case errors.As(err, &alert):
		return "the server ended the TLS handshake (" + alert.Error() + ")"
	case errors.As(err, &header):
		return "the server does not speak TLS"
	case strings.Contains(err.Error(), pgxRefusedTLS):
		return "the server declined TLS (ssl is off on the server, and sslmode requires it)"
	}
	return ""
}
