package sqlserver

import (
	"context"
	"fmt"
	"strings"

	"github.com/sqlgate/sqlgate/broker/internal/tlsproblem"
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
	if why := tlsproblem.Of(err, "", "hostnameincertificate"); why != "" || err == nil {
		return why
	}
	if strings.Contains(err.Error(), driverTLSFailed) {
		return "the handshake failed (the server's certificate was not accepted, or the server refused the TLS settings)"
	}
	return ""
}
