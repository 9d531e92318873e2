package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
)

// Authorizer decides. Implementations must fail closed: whenever err != nil
// the returned decision has Allow == false. Safe for concurrent use.
type Authorizer interface {
	Decide(ctx context.Context, entry policy.Entry, in *policy.Input) (policy.Decision, error)
}

// Recorder appends audit records. Append returns only once the record is
// durable; an error means it is not, and the caller must not proceed with
// the action the record describes. Safe for concurrent use.
type Recorder interface {
	Append(ctx context.Context, r *audit.Record) (int64, error)
	// AppendWithInput also stores the decision input beside the record for
	// policy replay (its keyed hash is set in r.InputHMAC).
	AppendWithInput(ctx context.Context, r *audit.Record, input []byte) (int64, error)
	// Enqueue appends without waiting for durability; then is called once
	// the record is durable (index) or failed (-1, err). then must not
	// block.
	Enqueue(ctx context.Context, r *audit.Record, then func(index int64, err error)) error
	// HashParams returns the keyed hash of each parameter value, "redacted"
	// for the names in redact.
	HashParams(params map[string]any, redact []string) map[string]string
	// SealIdempotencyKey returns what the records of a call hold of the
	// key its idempotency record is stored under: the same value for the
	// same key, that only the log's parameter key opens ([audit.SealKey]).
	SealIdempotencyKey(key string) string
}

// Executor runs routed calls against one database. Execute runs the call in
// exactly one SQL transaction that also holds the idempotency record:
//
//   - If no record exists for c.IdempotencyKey, it inserts one, sets the
//     session context (correlation id, principal, decision id), runs the
//     procedure or statement with bound parameters, stores the result in the
//     record and commits. Result.Replayed is false.
//   - If a committed record with the same RequestHash exists, it executes
//     nothing and returns the stored result with Replayed true.
//   - If a record exists with another RequestHash it returns [ErrConflict].
//   - If the key is in flight in another transaction, it waits (bounded by
//     ctx) for that transaction and then behaves as above.
//
// Errors: [ErrConflict]; *[DBError] for SQL errors (transaction rolled back);
// [ErrUnavailable] (wrapped) when the database cannot be reached or ctx
// expired; [ErrTooManyRows] when the result exceeds c.MaxRows (rolled back).
// Errors never contain parameter values or connection secrets. Safe for
// concurrent use.
type Executor interface {
	Execute(ctx context.Context, c *Call) (*Result, error)
	// Lookup returns the stored result for an idempotency key (crash recovery,
	// and a call whose commit was not confirmed: did it commit?), with the
	// record's request hash and decision id. found is false when no committed
	// record exists.
	Lookup(ctx context.Context, key string) (res *Result, found bool, err error)
	// Describe names the server and database for audit records.
	Describe() DatabaseInfo
}

// DatabaseInfo identifies a target database in audit records.
type DatabaseInfo struct {
	// Dialect is "sqlserver", "postgres" or "sqlite".
	Dialect  string
	Server   string
	Database string
}

// Call is one routed call, validated and authorized.
type Call struct {
	Route *route.Route
	// Params are the typed values from [route.Route.Decode].
	Params map[string]any
	// IdempotencyKey is never empty: scoped to the principal, the client's
	// Idempotency-Key or Nats-Msg-Id (an async message without one: its
	// place in the stream), else a new id of its own.
	IdempotencyKey string
	// RequestHash is the hex SHA-256 of the route subject and the canonical
	// parameters; the same key with another hash is a conflict.
	RequestHash   string
	CorrelationID string
	// Principal is the readable principal label for the SQL session context.
	Principal  string
	DecisionID string
	// MaxRows caps the rows the call may return across result sets.
	MaxRows int
}

// RowLimit is the most rows the call may return across its result sets:
// MaxRows when set, else the route's, else [route.DefaultMaxRows].
func (c *Call) RowLimit() int {
	switch {
	case c.MaxRows > 0:
		return c.MaxRows
	case c.Route != nil && c.Route.MaxRows > 0:
		return c.Route.MaxRows
	default:
		return route.DefaultMaxRows
	}
}

// Result is what a call produced.
type Result struct {
	// JSON is the reply envelope's "result" object:
	// {"rows":[...], "output":{...}, "return_value":0, "rows_affected":1}
	// ("result_sets" is added when a procedure returned more than one).
	JSON json.RawMessage
	// Rows counts returned rows across result sets.
	Rows         int64
	RowsAffected int64
	// TransactionID is the database's id of the transaction that committed
	// the call (CURRENT_TRANSACTION_ID(), txid_current(), or the adapter's own
	// for SQLite).
	TransactionID string
	Replayed      bool
	// CommittedAt is when the idempotency record was committed (replays:
	// when the original committed).
	CommittedAt time.Time
	// RequestHash and DecisionID are the stored record's, set by
	// [Executor.Lookup] and on every replay (Replayed true): they tell
	// whether the record is a given call's own (its decision: a commit
	// whose acknowledgement was lost) or an earlier call's under the same
	// key.
	RequestHash, DecisionID string
	// WithoutResult marks a record that committed without a result: the
	// routed procedure committed the call's transaction itself (a SQL
	// Server procedure's COMMIT), so its work and the idempotency record
	// are committed and JSON is empty. The broker records the commit and
	// answers an error, on the call and on every replay of it.
	WithoutResult bool
}

// Sentinel errors of the request path.
var (
	// ErrConflict: an idempotency key was reused with a different payload.
	ErrConflict = errors.New("idempotency key reused with a different request")
	// ErrUnavailable: the database (or audit log) could not be reached.
	ErrUnavailable = errors.New("unavailable")
	// ErrTooManyRows: the result exceeded the max_rows obligation.
	ErrTooManyRows = errors.New("result exceeds max_rows")
	// ErrNotFound: no such route, lease or issuance.
	ErrNotFound = errors.New("not found")
)

// DBError is a SQL error reported by the database, scrubbed of secrets.
type DBError struct {
	// Number is the vendor error number (SQL Server error number, PostgreSQL
	// SQLSTATE as a number where numeric, SQLite extended result code).
	Number int
	// State is the SQLSTATE where the dialect has one.
	State string
	// Message is the server's message with secrets and values scrubbed.
	Message string
}

// Error implements error.
func (e *DBError) Error() string {
	// PostgreSQL's number is its SQLSTATE read as a number (0 when it has
	// letters): the state alone says it.
	if e.State != "" && (e.Number == 0 || strconv.Itoa(e.Number) == e.State) {
		return fmt.Sprintf("sql error %s: %s", e.State, e.Message)
	}
	if e.State != "" {
		return fmt.Sprintf("sql error %d (%s): %s", e.Number, e.State, e.Message)
	}
	return fmt.Sprintf("sql error %d: %s", e.Number, e.Message)
}

// Issuance records that a NATS user public key was issued to a principal: by
// `POST nats/creds` (the client generated the key pair) or by the auth
// callout (the server generated the key).
type Issuance struct {
	UserKey   string
	Principal identity.Principal
	// SigningKey is the account signing key that signed the user JWT.
	SigningKey string
	// Account is the account public key the user belongs to.
	Account   string
	Via       string // "creds" or "callout"
	IssuedAt  time.Time
	ExpiresAt time.Time
	// RevokedAt is zero unless the credential was revoked.
	RevokedAt time.Time
	// DecisionID and Pub record what policy granted.
	DecisionID string
	Pub        []string
}

// Active reports whether the issuance is usable at t.
func (i Issuance) Active(t time.Time) bool {
	return i.RevokedAt.IsZero() && t.Before(i.ExpiresAt)
}

// Registry stores issuances in the control database so that several sqlgated
// instances share them. Get is on the request path: implementations cache.
// Get and Lookup return [ErrNotFound] for unknown keys. Safe for concurrent
// use.
type Registry interface {
	// Put stores an issuance. It must refuse, atomically and with an error
	// wrapping [ErrInvalid], to replace an issuance of another principal or
	// a revoked one: a revoked key is never issued again.
	Put(ctx context.Context, iss Issuance) error
	Get(ctx context.Context, userKey string) (Issuance, error)
	// Lookup is Get without the cache: it sees another instance's
	// revocation at once.
	Lookup(ctx context.Context, userKey string) (Issuance, error)
	// Revoke marks the key revoked at t; revoking a revoked key is a no-op.
	Revoke(ctx context.Context, userKey string, t time.Time) error
	// Withdraw removes the unrevoked issuance of userKey that decisionID
	// recorded, whose JWT never left sqlgated (refused after the Put); the
	// key stays usable (not revoked). An issuance of the key recorded by
	// another decision since is left alone.
	Withdraw(ctx context.Context, userKey, decisionID string) error
	// ByPrincipal lists the issuances of a principal (by Principal.ID()),
	// newest first.
	ByPrincipal(ctx context.Context, principalID string) ([]Issuance, error)
	// RevokedActive lists the issuances revoked and not expired at t: the
	// revocations the NATS servers must still enforce.
	RevokedActive(ctx context.Context, t time.Time) ([]Issuance, error)
	// Prune deletes issuances that expired before t.
	Prune(ctx context.Context, before time.Time) (int, error)
}

// ListCursor is a position in a principal's credentials listed newest
// first: by issue time, then by key (a NATS user key or a lease id), both
// descending. Keys compare bytewise.
type ListCursor struct {
	IssuedAt int64 // Unix nanoseconds
	Key      string
}

// ListFilter selects a principal's credentials by whether they are live at
// [ListPage.At].
type ListFilter int

// The filters of [ListPage].
const (
	// ListAll lists every credential.
	ListAll ListFilter = iota
	// ListLive lists the credentials live at At: a NATS credential not
	// revoked and not expired, a SQL lease in state active and not
	// expired.
	ListLive
	// ListEnded lists the others.
	ListEnded
)

// MaxListPage bounds [ListPage.Limit].
const MaxListPage = 10000

// ListPage asks for one page of a principal's credentials, newest first:
// at most Limit (1 to [MaxListPage]) of those older than Before (nil: from
// the newest) that Filter selects. The stores read at most Limit rows, so
// that a principal holding many credentials costs a listing no more memory
// than a page.
type ListPage struct {
	Before *ListCursor
	Limit  int
	Filter ListFilter
	At     time.Time // for ListLive and ListEnded
}

// Check returns an error wrapping [ErrInvalid] when p is not a page a store
// can read.
func (p ListPage) Check() error {
	switch {
	case p.Limit < 1 || p.Limit > MaxListPage:
		return fmt.Errorf("%w: page limit %d is not between 1 and %d", ErrInvalid, p.Limit, MaxListPage)
	case p.Filter < ListAll || p.Filter > ListEnded:
		return fmt.Errorf("%w: unknown list filter %d", ErrInvalid, p.Filter)
	case p.Filter != ListAll && p.At.IsZero():
		return fmt.Errorf("%w: a live or ended listing needs its time", ErrInvalid)
	}
	return nil
}
