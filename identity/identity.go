// Package identity is sqlgate's core vocabulary for who is asking: the
// [Principal] that every layer (policy input, audit records, broker calls, web
// sessions) carries, the errors that say a caller could not be identified, and
// context helpers. It depends on the standard library only.
package identity

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
)

// Principal is a verified identity: a person or a service that signed in with
// the company's identity provider. It is built only from verified tokens (see
// identity/oidc) or from the issuance registry that remembers which principal
// a NATS credential was issued to.
type Principal struct {
	// Issuer is the OIDC issuer URL that vouched for the principal.
	Issuer string `json:"issuer"`
	// Subject is the issuer's stable, case-sensitive subject identifier.
	Subject string `json:"subject"`
	// ObjectID is the directory object id: Entra `oid`, Okta `uid`.
	ObjectID string `json:"object_id,omitempty"`
	// Email is the e-mail address or UPN (`preferred_username`, `upn`).
	Email string `json:"email,omitempty"`
	// Name is the display name.
	Name string `json:"name,omitempty"`
	// Groups are policy-facing group names (after the configured mapping).
	Groups []string `json:"groups,omitempty"`
	// Roles are application roles (Entra app roles, Okta custom claims).
	Roles []string `json:"roles,omitempty"`
	// Scopes are OAuth scopes granted to the token (`scp`, `scope`).
	Scopes []string `json:"scopes,omitempty"`
	// Tenant is the directory tenant (Entra `tid`).
	Tenant string `json:"tenant,omitempty"`
	// AuthTime is when the user last authenticated interactively.
	AuthTime time.Time `json:"auth_time,omitzero"`
	// IssuedAt is when the token that proved this identity was issued
	// (`iat`; zero when the token has none). With AuthTime it dates the
	// sign-in: an offboarding refuses new credentials to sign-ins before it.
	IssuedAt time.Time `json:"issued_at,omitzero"`
	// AMR and ACR are the authentication methods and context class.
	AMR []string `json:"amr,omitempty"`
	ACR string   `json:"acr,omitempty"`
	// MFA reports whether the token carries evidence of multi-factor
	// authentication (an `amr` of mfa/otp/hwk/swk/fido, or a configured acr).
	MFA bool `json:"mfa"`
	// Service is true for principals that signed in with client credentials.
	Service bool `json:"service,omitempty"`
	// TokenID is the verified token's `jti` or `uti`, when present.
	TokenID string `json:"token_id,omitempty"`
	// Expiry is when the token that proved this identity expires. Credentials
	// issued to the principal never outlive it.
	Expiry time.Time `json:"expiry,omitzero"`
}

// ID returns a stable, unique key for the principal: the issuer and the
// subject joined by a space (neither may contain one in practice; the pair is
// what OIDC guarantees to be unique).
func (p Principal) ID() string { return p.Issuer + " " + p.Subject }

// PrincipalIDShape describes what [CheckPrincipalID] accepts.
const PrincipalIDShape = `"<issuer> <subject>": the identity provider's issuer URL, a space, the subject (as whoami shows them)`

// CheckPrincipalID reports why id cannot be a [Principal.ID] (callers say
// what is expected, [PrincipalIDShape]): it must be
// "<issuer> <subject>", the issuer an absolute http(s) URL without user,
// query or fragment, the subject non-empty and without surrounding space or
// control characters. An e-mail address or a bare subject names no
// principal: offboarding it would leave the real one signed in.
func CheckPrincipalID(id string) error {
	iss, sub, ok := strings.Cut(id, " ")
	if !ok || sub == "" {
		return fmt.Errorf("%q has no space between an issuer and a subject", id)
	}
	u, err := url.Parse(iss)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(iss, "#") || strings.HasSuffix(iss, "?") {
		return fmt.Errorf("the issuer %q is not an absolute http(s) URL", iss)
	}
	if strings.TrimSpace(sub) != sub || strings.IndexFunc(id, unicode.IsControl) >= 0 {
		return fmt.Errorf("the subject %q has surrounding space or control characters", sub)
	}
	return nil
}

// Display returns a human-readable label: the e-mail if known, else the subject.
func (p Principal) Display() string {
	if p.Email != "" {
		return p.Email
	}
	return p.Subject
}

// InGroup reports whether the principal is a member of group g.
func (p Principal) InGroup(g string) bool { return slices.Contains(p.Groups, g) }

// Valid reports whether the principal carries the minimum a decision needs:
// an issuer and a subject.
func (p Principal) Valid() bool { return p.Issuer != "" && p.Subject != "" }

// ErrUnauthenticated is the sentinel for every failure to establish who is
// asking: a missing, forged, expired or revoked token or credential. Callers
// branch on it with errors.Is and answer `unauthenticated` (401).
var ErrUnauthenticated = errors.New("unauthenticated")

// AuthError says why authentication failed. Reason is safe to log and never
// echoes the token; callers show clients only "unauthenticated".
type AuthError struct {
	Reason string
	Err    error
}

// Error implements error.
func (e *AuthError) Error() string {
	if e.Err != nil {
		return "unauthenticated: " + e.Reason + ": " + e.Err.Error()
	}
	return "unauthenticated: " + e.Reason
}

// Unwrap returns the underlying error.
func (e *AuthError) Unwrap() error { return e.Err }

// Is makes every AuthError match [ErrUnauthenticated].
func (e *AuthError) Is(target error) bool { return target == ErrUnauthenticated }

// Unauthenticated returns an [AuthError] with the given reason.
func Unauthenticated(reason string, err error) error { return &AuthError{Reason: reason, Err: err} }

type ctxKey struct{}

// NewContext returns a copy of ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the principal carried by ctx, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}
