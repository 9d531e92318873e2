package web

import (
	"context"
	"errors"
	"net/http"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/web/api"
)

// HTTPError is an error with a status and a message that is safe to show.
// Err, if set, is logged but never shown.
type HTTPError struct {
	Status  int
	Code    string
	Msg     string
	Reasons []string
	Err     error
}

// Error implements error.
func (e *HTTPError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Unwrap returns the underlying error.
func (e *HTTPError) Unwrap() error { return e.Err }

func badRequest(msg string) error {
	return &HTTPError{Status: http.StatusBadRequest, Code: broker.CodeInvalidRequest, Msg: msg}
}

// noPolicyMessage answers a request that needed a policy decision while no
// policy is loaded (the first load failed and none has loaded since).
const noPolicyMessage = "no policy is loaded, so every request is denied until it loads; " +
	"the dashboard's policy page (for admins and auditors) and the sqlgated log say why"

// auditUnavailableMessage answers a request the audit log could not serve
// because the log or its store failed: the control database unreachable, a
// log that refuses writes (audit fails closed; then it cannot sign the
// checkpoint a download or a verification ends at). The cause (hosts, SQL
// errors, origins) is in the sqlgated log, never in the answer.
const auditUnavailableMessage = "the audit log is unavailable: this instance cannot read or write it now " +
	"(the sqlgated log says why); try again later"

// auditError marks an error of the [AuditService]. One that no other case
// of publicError classifies (not found, a bad request, an [HTTPError]) is
// the audit log or its store failing: 503 unavailable, like every other
// outage, not 500.
type auditError struct{ err error }

func (e *auditError) Error() string { return e.err.Error() }
func (e *auditError) Unwrap() error { return e.err }

// auditFailure marks err, an error of the AuditService, as the audit log's.
func auditFailure(err error) error {
	if err == nil {
		return nil
	}
	return &auditError{err: err}
}

// idpOutages are the identity/oidc refusal reasons (ReasonKeysUnavailable,
// ReasonGroupsLookupFailed) that blame the identity provider, not the
// token: the client should try again, not sign in again.
var idpOutages = map[string]bool{"jwks_unavailable": true, "groups_lookup_failed": true}

// publicError maps any error to the status and body a client may see. It is
// the only place where errors become responses.
func publicError(err error) (int, api.Error) {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status, api.Error{Code: he.Code, Message: he.Msg, Reasons: he.Reasons}
	}
	var denied *broker.DeniedError
	var invalid *route.InvalidError
	var dbe *broker.DBError
	var signIn *broker.SignInRevokedError
	var authErr *identity.AuthError
	var auditErr *auditError
	switch {
	case errors.As(err, &dbe):
		return http.StatusBadGateway, api.Error{Code: broker.CodeDBError, Message: dbe.Error()}
	case errors.As(err, &denied):
		return http.StatusForbidden, api.Error{Code: broker.CodeForbidden, Message: "denied by policy", Reasons: denied.Reasons}
	case errors.As(err, &signIn):
		// Offboarding: the user must sign in again (and is told so).
		return http.StatusUnauthorized, api.Error{Code: broker.CodeUnauthenticated, Message: signIn.Error()}
	case errors.As(err, &authErr) && idpOutages[authErr.Reason]:
		// Refused all the same (fail closed), but not the token's fault.
		return http.StatusServiceUnavailable, api.Error{Code: broker.CodeUnavailable, Message: "identity provider unreachable; try again"}
	case errors.Is(err, identity.ErrUnauthenticated):
		return http.StatusUnauthorized, api.Error{Code: broker.CodeUnauthenticated, Message: "authentication required or token invalid"}
	case errors.As(err, &invalid):
		return http.StatusBadRequest, api.Error{Code: broker.CodeInvalidRequest, Message: invalid.Error()}
	case errors.Is(err, broker.ErrInvalid):
		return http.StatusBadRequest, api.Error{Code: broker.CodeInvalidRequest, Message: err.Error()}
	case errors.Is(err, broker.ErrNotFound):
		return http.StatusNotFound, api.Error{Code: broker.CodeNotFound, Message: "not found"}
	case errors.Is(err, broker.ErrDenied):
		return http.StatusForbidden, api.Error{Code: broker.CodeForbidden, Message: "denied by policy"}
	case errors.Is(err, policy.ErrNoPolicy):
		// Before ErrUnavailable, which wraps it on some paths. That no policy
		// is loaded is safe to tell a signed-in caller; why it failed to load
		// (file names, parse errors) is for the policy page and the log.
		return http.StatusServiceUnavailable, api.Error{Code: broker.CodeUnavailable, Message: noPolicyMessage}
	case errors.As(err, &auditErr):
		return http.StatusServiceUnavailable, api.Error{Code: broker.CodeUnavailable, Message: auditUnavailableMessage}
	case errors.Is(err, broker.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, api.Error{Code: broker.CodeUnavailable, Message: "a backing service is unavailable; try again"}
	default:
		return http.StatusInternalServerError, api.Error{Code: broker.CodeInternal, Message: "internal error"}
	}
}
