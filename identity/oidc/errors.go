package oidc

import (
	"errors"
	"fmt"
)

// Reasons carried by the [*identity.AuthError] values this package returns.
// They are stable: logs, metrics and tests match on them.
const (
	ReasonMissingToken        = "missing_token"
	ReasonTokenTooLarge       = "token_too_large"
	ReasonMalformedToken      = "malformed_token"
	ReasonAlgorithmNotAllowed = "algorithm_not_allowed"
	ReasonUnknownIssuer       = "unknown_issuer"
	ReasonUnknownKeyID        = "unknown_kid"
	ReasonInvalidSignature    = "invalid_signature"
	ReasonKeysUnavailable     = "jwks_unavailable"
	ReasonAudienceMismatch    = "audience_mismatch"
	ReasonExpired             = "token_expired"
	ReasonNotYetValid         = "token_not_yet_valid"
	ReasonIssuedInFuture      = "issued_in_future"
	ReasonMissingClaim        = "missing_claim"
	ReasonInvalidClaim        = "invalid_claim"
	ReasonTenantNotAllowed    = "tenant_not_allowed"
	ReasonClientNotAllowed    = "client_not_allowed"
	ReasonGroupsOverage       = "groups_overage"
	ReasonGroupsLookupFailed  = "groups_lookup_failed"

	// Web login.
	ReasonLoginStateMissing  = "login_state_missing"
	ReasonLoginStateInvalid  = "login_state_invalid"
	ReasonStateMismatch      = "state_mismatch"
	ReasonIDPError           = "idp_error"
	ReasonCodeExchangeFailed = "code_exchange_failed"
	ReasonMissingIDToken     = "missing_id_token"
	ReasonNonceMismatch      = "nonce_mismatch"
	ReasonWrongIssuer        = "wrong_issuer"
	ReasonTooManyLogins      = "too_many_logins"
)

// Errors of the client-side sign-in flows. Callers branch on them with
// errors.Is to tell the user what to do.
var (
	// ErrLoginExpired means the stored sign-in can no longer be renewed
	// (no refresh token, or the provider refused it): sign in again.
	ErrLoginExpired = errors.New("login expired: sign in again")
	// ErrIDPUnreachable means the identity provider could not be reached
	// or answered with a server error: try again later.
	ErrIDPUnreachable = errors.New("identity provider unreachable")
	// ErrAccessDenied means the user or the provider declined the sign-in.
	ErrAccessDenied = errors.New("sign-in denied")
	// ErrDeviceCodeExpired means the device code expired before the user
	// completed the sign-in.
	ErrDeviceCodeExpired = errors.New("device code expired before the sign-in was completed")
	// ErrNoTokens means the token store holds nothing under that name.
	ErrNoTokens = errors.New("not signed in")
	// ErrTooManyLogins means the dashboard's sign-in refused to start or
	// complete because too many sign-ins are in progress (see
	// [WebLogin]): try again in a few minutes.
	ErrTooManyLogins = errors.New("too many sign-ins in progress; try again in a few minutes")
)

// UnreachableError wraps a transport failure or a server error from the
// identity provider. It matches [ErrIDPUnreachable].
type UnreachableError struct {
	// URL is the endpoint that failed (never carries a secret).
	URL string
	Err error
}

// Error implements error.
func (e *UnreachableError) Error() string {
	return fmt.Sprintf("identity provider unreachable (%s): %v", e.URL, e.Err)
}

// Unwrap returns the cause.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Is makes UnreachableError match [ErrIDPUnreachable].
func (e *UnreachableError) Is(target error) bool { return target == ErrIDPUnreachable }

// OAuthError is an error response of the provider's token or device
// endpoint (RFC 6749 section 5.2).
type OAuthError struct {
	Code        string
	Description string
}

// Error implements error.
func (e *OAuthError) Error() string {
	if e.Description != "" {
		return fmt.Sprintf("identity provider refused: %s: %s", e.Code, e.Description)
	}
	return "identity provider refused: " + e.Code
}
