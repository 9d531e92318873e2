package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/internal/scrub"
	"github.com/sqlgate/sqlgate/broker/route"
)

// classify maps an error to the broker's vocabulary: sentinels and invalid
// input pass through; an expired ctx, a cancelled statement or an
// unreachable server become broker.ErrUnavailable; other server errors a
// scrubbed *broker.DBError.
func (e *Executor) classify(ctx context.Context, err error, c *broker.Call) error {
	var (
		pe  *pgconn.PgError
		inv *route.InvalidError
	)
	switch {
	case errors.Is(err, broker.ErrConflict), errors.Is(err, broker.ErrTooManyRows), errors.Is(err, broker.ErrUnavailable), errors.As(err, &inv):
		return err
	case ctx.Err() != nil:
		return e.unavailable(ctx.Err())
	case errors.As(err, &pe):
		if unavailableState(pe.Code) {
			return e.unavailable(fmt.Errorf("server error %s", pe.Code))
		}
		n, _ := strconv.Atoi(pe.Code)
		return &broker.DBError{Number: n, State: pe.Code, Message: scrub.Message(pe.Message, c)}
	case errors.Is(err, errClosed):
		return e.unavailable(err)
	case isConnError(err):
		return e.unavailable(errors.New(connProblem(err)))
	default:
		// Driver-side failures (a value pgx cannot encode for the parameter's
		// type, a result it cannot decode) may quote values: scrubbed.
		return fmt.Errorf("postgres database %s: %s", e.cfg.Name, scrub.Message(err.Error(), c))
	}
}

func (e *Executor) unavailable(cause error) error {
	return fmt.Errorf("%w: postgres database %s: %w", broker.ErrUnavailable, e.cfg.Name, cause)
}

// unavailableState reports SQLSTATEs that mean the database cannot serve
// the call now rather than that the call is wrong: connection exceptions
// (08), cancelled statements (57014), shutdown (57P01-57P03), insufficient
// resources (53), cannot connect now.
func unavailableState(code string) bool {
	switch {
	case len(code) == 5 && (code[:2] == "08" || code[:2] == "53"):
		return true
	case code == "57014", code == "57P01", code == "57P02", code == "57P03", code == "3D000", code == "28000", code == "28P01":
		return true
	}
	return false
}

// retryable reports serialization failures and deadlocks.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// isConnError reports failures of the connection rather than of the call:
// it could not be made, timed out, or was lost. A connection the server (or
// the network) closed while a reply was awaited reads io.ErrUnexpectedEOF
// (pgx turns the socket's EOF into it), and later use of that connection
// fails with pgconn.ErrConnClosed.
func isConnError(err error) bool {
	var (
		ne net.Error
		ce *pgconn.ConnectError
	)
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, pgconn.ErrConnClosed) ||
		isClosedPool(err)
}

func isClosedPool(err error) bool {
	return err != nil && err.Error() == "closed pool"
}

// connProblem names a connection failure without the connection string,
// user or host.
func connProblem(err error) string {
	var (
		pe *pgconn.PgError
		ne net.Error
		oe *net.OpError
	)
	switch {
	case errors.As(err, &pe):
		switch pe.Code {
		case "28P01", "28000":
			return "authentication failed"
		case "3D000":
			return "database does not exist"
		}
		return "server refused the connection (" + pe.Code + ")"
	case errors.As(err, &oe) && oe.Op == "dial":
		return "cannot connect"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case isClosedPool(err):
		return "pool closed"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, pgconn.ErrConnClosed):
		return "connection lost"
	default:
		return "connection failed"
	}
}
