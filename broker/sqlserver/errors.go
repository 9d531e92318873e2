package sqlserver

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"regexp"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/internal/scrub"
	"github.com/sqlgate/sqlgate/broker/route"
)

// SQL Server error numbers the adapter branches on.
const (
	errDeadlock  = 1205
	errTranCount = 266
)

// unavailableNumbers are errors that mean the database cannot serve the
// call now (login, database state, Azure SQL availability and throttling,
// transport), not that the call is wrong.
var unavailableNumbers = map[int32]bool{
	233: true, 4060: true, 4221: true, 10053: true, 10054: true, 10060: true, 10928: true, 10929: true,
	18452: true, 18456: true, 40197: true, 40501: true, 40613: true, 40143: true, 40540: true,
	49918: true, 49919: true, 49920: true, 615: true, 921: true, 926: true, 942: true, 983: true,
}

// classify maps an error to the broker's vocabulary: sentinels and invalid
// input pass through; an expired ctx, a connection failure or an
// availability error becomes broker.ErrUnavailable; other server errors a
// scrubbed *broker.DBError with the error number and state.
func (e *Executor) classify(ctx context.Context, err error, c *broker.Call) error {
	var (
		me  mssql.Error
		mep *mssql.Error
		inv *route.InvalidError
	)
	switch {
	case errors.Is(err, broker.ErrConflict), errors.Is(err, broker.ErrTooManyRows), errors.Is(err, broker.ErrUnavailable), errors.As(err, &inv):
		return err
	case ctx.Err() != nil:
		return e.unavailable(ctx.Err())
	case errors.As(err, &me):
		return e.dbError(me, c)
	case errors.As(err, &mep):
		return e.dbError(*mep, c)
	case errors.Is(err, errClosed), errors.Is(err, driver.ErrBadConn), isNetError(err):
		return e.unavailable(errors.New("connection failed"))
	default:
		// database/sql and driver failures other than SQL errors (closed
		// pool, broken stream): the database cannot be used. Their text may
		// name the server, so it is not passed on.
		return e.unavailable(errors.New("driver error"))
	}
}

func (e *Executor) dbError(me mssql.Error, c *broker.Call) error {
	me = cause(me)
	if unavailableNumbers[me.Number] {
		return e.unavailable(fmt.Errorf("server error %d", me.Number))
	}
	return &broker.DBError{Number: int(me.Number), State: fmt.Sprint(me.State), Message: scrub.Message(withoutData(me), c)}
}

// quotedData lists the server messages that quote data, by error number,
// with the pattern of the quoted part. What they quote is not always a
// parameter value the scrubber could find whole: 2628 cuts the value to the
// column's length, a duplicate key may be computed or span several columns,
// a conversion may quote an expression's result. So the quoted part is
// replaced whatever it holds. (8152, "String or binary data would be
// truncated.", and 8114, "Error converting data type %ls to %ls.", the
// messages 2628 and 245 detail, quote nothing.)
var quotedData = map[int32]struct {
	re   *regexp.Regexp
	repl string
}{
	// String or binary data would be truncated in table '%.*ls', column '%.*ls'. Truncated value: '%.*ls'.
	2628: {regexp.MustCompile(`(?s)(Truncated value: )'.*'`), "${1}[redacted]"},
	// Violation of %ls constraint '%.*ls'. Cannot insert duplicate key in object '%.*ls'. The duplicate key value is %ls.
	2627: {dupKey, dupKeyRepl},
	// Cannot insert duplicate key row in object '%.*ls' with unique index '%.*ls'. The duplicate key value is %ls.
	2601: {dupKey, dupKeyRepl},
	// The CREATE UNIQUE INDEX statement terminated because a duplicate key was found ... The duplicate key value is %ls.
	1505: {dupKey, dupKeyRepl},
	// Conversion failed when converting the %ls value '%.*ls' to data type %ls.
	245: {regexp.MustCompile(`(?s)( value )'.*'( to data type )`), "${1}[redacted]${2}"},
	// The conversion of the %ls value '%.*ls' overflowed an %hs column. Use a larger integer column.
	244: {overflowed, overflowedRepl},
	// The conversion of the %ls value '%.*ls' overflowed an int column.
	248: {overflowed, overflowedRepl},
	// Arithmetic overflow error for data type %ls, value = %ld.
	220: {arithValue, arithValueRepl},
	// Arithmetic overflow error for type %ls, value = %f.
	232: {arithValue, arithValueRepl},
}

var (
	dupKey         = regexp.MustCompile(`(?s)(The duplicate key value is )\(.*\)`)
	dupKeyRepl     = "${1}([redacted])"
	overflowed     = regexp.MustCompile(`(?s)( value )'.*'( overflowed )`)
	overflowedRepl = "${1}[redacted]${2}"
	arithValue     = regexp.MustCompile(`(?s)(, value = ).*`)
	arithValueRepl = "${1}[redacted]."
)

// withoutData returns the server's message with the data it quotes
// replaced (see quotedData). A message of one of those numbers that does
// not have the expected English form (SET LANGUAGE translates server
// messages) is withheld whole.
func withoutData(me mssql.Error) string {
	p, ok := quotedData[me.Number]
	switch {
	case !ok:
		return me.Message
	case !p.re.MatchString(me.Message):
		return fmt.Sprintf("server error %d: message withheld, it quotes data", me.Number)
	}
	return p.re.ReplaceAllString(me.Message, p.repl)
}

func (e *Executor) unavailable(cause error) error {
	return fmt.Errorf("%w: sqlserver database %s: %w", broker.ErrUnavailable, e.cfg.Name, cause)
}

// cause picks the error that explains a failure: the driver reports the
// last error of a request, which after a rollback inside a module can be
// 266 (transaction count mismatch) rather than the error that caused it.
func cause(me mssql.Error) mssql.Error {
	for _, e := range me.All {
		if e.Number != errTranCount {
			return e
		}
	}
	return me
}

// serverError reports whether err is (or wraps) a SQL Server error, and
// sets *me to it.
func serverError(err error, me *mssql.Error) bool {
	var mep *mssql.Error
	switch {
	case errors.As(err, me):
		return true
	case errors.As(err, &mep) && mep != nil:
		*me = *mep
		return true
	}
	return false
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// retryable reports deadlocks (the server chose this call as the victim
// and rolled its transaction back).
func retryable(err error) bool {
	var (
		me  mssql.Error
		mep *mssql.Error
	)
	switch {
	case errors.As(err, &me):
		return cause(me).Number == errDeadlock
	case errors.As(err, &mep):
		return cause(*mep).Number == errDeadlock
	}
	return false
}
