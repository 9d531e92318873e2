package sqlite

import (
	"context"
	"errors"
	"fmt"

	"modernc.org/sqlite"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/internal/scrub"
	"github.com/sqlgate/sqlgate/broker/route"
)

// Primary SQLite result codes the adapter branches on.
const (
	codeBusy      = 5
	codeLocked    = 6
	codeInterrupt = 9
	codeIOErr     = 10
	codeCorrupt   = 11
	codeFull      = 13
	codeCantOpen  = 14
	codeNotADB    = 26
)

// classify maps an error from the driver to the broker's vocabulary:
// sentinels pass through, an expired ctx or an unreachable database becomes
// broker.ErrUnavailable, a SQLite error a scrubbed *broker.DBError.
func (e *Executor) classify(ctx context.Context, err error, c *broker.Call) error {
	var (
		se  *sqlite.Error
		inv *route.InvalidError
	)
	switch {
	case errors.Is(err, broker.ErrConflict), errors.Is(err, broker.ErrTooManyRows), errors.As(err, &inv):
		return err
	case ctx.Err() != nil:
		return e.unavailable(ctx.Err())
	case errors.As(err, &se):
		switch se.Code() & 0xff {
		case codeBusy, codeLocked, codeIOErr, codeCantOpen, codeCorrupt, codeNotADB, codeInterrupt:
			return e.unavailable(fmt.Errorf("sqlite result code %d", se.Code()))
		}
		return &broker.DBError{Number: se.Code(), Message: scrub.Message(se.Error(), c)}
	case errors.Is(err, errClosed):
		return e.unavailable(err)
	default:
		// database/sql and driver failures (closed pool, bad connection):
		// the database cannot be used.
		return e.unavailable(errors.New(scrub.Message(err.Error(), c)))
	}
}

func (e *Executor) unavailable(cause error) error {
	return fmt.Errorf("%w: sqlite database %s: %w", broker.ErrUnavailable, e.cfg.Name, cause)
}

// retryable reports whether a failed attempt may be retried: the database
// was busy (another process held the lock past the busy timeout).
func retryable(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case codeBusy, codeLocked:
			return true
		}
	}
	return false
}
