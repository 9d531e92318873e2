package broker

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/sqlgate/sqlgate/identity"
)

// Request is one routed call as a transport delivers it.
type Request struct {
	Subject string
	Payload []byte
	// Headers the client may set.
	CorrelationID  string
	IdempotencyKey string
	Traceparent    string
	// Reason is the `Sqlgate-Reason` header (break-glass justification).
	Reason   string
	Caller   Caller
	Received time.Time
}

// TransportAsync is the Transport of a request consumed from the durable
// async stream. JetStream does not keep `Nats-Request-Info`, so the caller is
// attested by the subject the message was published to,
// `sqlgate.async.<user key>.<route subject>` ([AsyncPrefix]): sqlgate's user
// JWTs let a user publish only under its own key, and the NATS server
// enforces that. The credential's signer is then the one the issuance
// registry recorded, and its expiry is checked at the time the stream
// received the message ([Request.Received]); a revocation is checked at
// consumption, so a revoked credential's queued requests are refused.
const TransportAsync = "nats-async"

// Caller is what the transport attests about the sender. NATS transports fill
// it only from server-attested data (`Nats-Request-Info` added when the
// request crossed the service import); a transport that cannot attest the
// sender leaves Attested false and the request is refused as unauthenticated.
type Caller struct {
	// Transport is "nats", [TransportAsync] or "http".
	Transport string
	// Attested is true only when the fields below came from the NATS server
	// (or Principal from a verified token).
	Attested bool
	// UserKey is the NATS user public key; IssuerKey the key that signed the
	// user JWT; Account the account the user connected to.
	UserKey   string
	IssuerKey string
	Account   string
	Name      string
	Tags      []string
	Host      string
	Lang      string
	Version   string
	// Principal is set by transports that verified an OIDC token themselves
	// (HTTP); NATS callers are resolved through the issuance registry.
	Principal *identity.Principal
}

// Error codes of the reply envelope (DESIGN section 3).
const (
	CodeInvalidRequest  = "invalid_request"
	CodeUnauthenticated = "unauthenticated"
	CodeForbidden       = "forbidden"
	CodeNotFound        = "not_found"
	CodeConflict        = "conflict"
	CodeTooLarge        = "too_large"
	CodeRateLimited     = "rate_limited"
	CodeDBError         = "db_error"
	CodeUnavailable     = "unavailable"
	CodeInternal        = "internal"
)

// Status returns the HTTP-style status of an error code (also used as the
// micro `Nats-Service-Error-Code`).
func Status(code string) int {
	switch code {
	case CodeInvalidRequest:
		return 400
	case CodeUnauthenticated:
		return 401
	case CodeForbidden:
		return 403
	case CodeNotFound:
		return 404
	case CodeConflict:
		return 409
	case CodeTooLarge:
		return 413
	case CodeRateLimited:
		return 429
	case CodeDBError:
		return 502
	case CodeUnavailable:
		return 503
	default:
		return 500
	}
}

// Reply is the envelope sent back to the requester, errors included.
type Reply struct {
	OK            bool
	CorrelationID string
	// Result is the adapter's result object (ok replies).
	Result           json.RawMessage
	AuditIndex       int64 // -1: no audit reference
	SQLTransactionID string
	Replayed         bool
	// TimedOut, on an error reply, says the call ran into its timeout (the
	// route's or the policy's): not sent, but a retry that runs the same
	// call again is likely to time out again (the async consumer gives such
	// a request a few attempts, not until it is old).
	TimedOut bool
	Error    *ReplyError
	// Emit, when set on an ok reply, is published after the reply.
	Emit *Event
}

// ReplyError is the error part of the envelope.
type ReplyError struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Reasons []string `json:"reasons,omitempty"`
}

// Event is a follow-up event published after commit. A transport publishes
// it with headers that tell it from anything else on Subject: NATS does not
// check the permission of a reply subject, so any user may name an emit
// subject as the reply subject of a request and have the reply published
// there. Replies never carry the Route header (natsvc's Sqlgate-Event).
type Event struct {
	Subject string
	// Route is the subject of the route whose call committed (the
	// Sqlgate-Event header).
	Route string
	// ID is unique to the committed call: its decision id (Nats-Msg-Id, so
	// that a JetStream stream capturing Subject drops a duplicate).
	ID string
	// CorrelationID is the call's correlation id.
	CorrelationID string
	Data          []byte
}

// MarshalJSON encodes the envelope exactly as DESIGN section 3 shows it.
func (r *Reply) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// AppendJSON appends the envelope's JSON encoding to b.
func (r *Reply) AppendJSON(b []byte) []byte {
	b = append(b, `{"ok":`...)
	b = strconv.AppendBool(b, r.OK)
	b = append(b, `,"correlation_id":`...)
	b = appendString(b, r.CorrelationID)
	if r.OK {
		b = append(b, `,"result":`...)
		if len(r.Result) == 0 {
			b = append(b, "{}"...)
		} else {
			b = append(b, r.Result...)
		}
		if r.AuditIndex >= 0 {
			b = append(b, `,"audit":{"index":`...)
			b = strconv.AppendInt(b, r.AuditIndex, 10)
			b = append(b, '}')
		}
		if r.SQLTransactionID != "" {
			b = append(b, `,"sql_transaction_id":`...)
			b = appendString(b, r.SQLTransactionID)
		}
		b = append(b, `,"replayed":`...)
		b = strconv.AppendBool(b, r.Replayed)
	} else if r.Error != nil {
		e, _ := json.Marshal(r.Error)
		b = append(b, `,"error":`...)
		b = append(b, e...)
		if r.AuditIndex >= 0 {
			b = append(b, `,"audit":{"index":`...)
			b = strconv.AppendInt(b, r.AuditIndex, 10)
			b = append(b, '}')
		}
	}
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s)
	return append(b, q...)
}
