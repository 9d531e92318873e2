package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/sqlgate/sqlgate/broker/internal/tlsproblem"
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
	if why := tlsproblem.Of(err, "sslrootcert", ""); why != "" || err == nil {
		return why
	}
	if strings.Contains(err.Error(), pgxRefusedTLS) {
		return "the server declined TLS (ssl is off on the server, and sslmode requires it)"
	}
	return ""
}
