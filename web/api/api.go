// Package api holds the JSON wire types of sqlgate's HTTP API (`/api/v1`) and
// a typed [Client] that the CLI and Go services use. It depends on the
// standard library only, so that clients link nothing of the daemon.
package api

import (
	"encoding/json"
	"time"
)

// Prefix is the path prefix of every API endpoint.
const Prefix = "/api/v1"

// Error is the body of every non-2xx response.
type Error struct {
	Code      string   `json:"code"`
	Message   string   `json:"message"`
	Reasons   []string `json:"reasons,omitempty"`
	RequestID string   `json:"request_id,omitempty"`
}

// WhoAmI is the response of `GET whoami`.
type WhoAmI struct {
	Issuer   string    `json:"issuer"`
	Subject  string    `json:"subject"`
	ObjectID string    `json:"object_id,omitempty"`
	Email    string    `json:"email,omitempty"`
	Name     string    `json:"name,omitempty"`
	Groups   []string  `json:"groups"`
	Roles    []string  `json:"roles"`
	Tenant   string    `json:"tenant,omitempty"`
	MFA      bool      `json:"mfa"`
	Expiry   time.Time `json:"expiry,omitzero"`
}

// Route is one entry of `GET routes`.
type Route struct {
	Subject     string          `json:"subject"`
	Description string          `json:"description,omitempty"`
	Kind        string          `json:"kind"`
	Target      string          `json:"target"`
	Database    string          `json:"database"`
	Mode        string          `json:"mode"`
	TimeoutMS   int64           `json:"timeout_ms"`
	MaxPayload  int             `json:"max_payload"`
	Emit        string          `json:"emit,omitempty"`
	Tags        []string        `json:"tags"`
	Params      json.RawMessage `json:"params"`
}

// Routes is the response of `GET routes`: the routes the caller may call.
type Routes struct {
	Routes         []Route `json:"routes"`
	PolicyRevision string  `json:"policy_revision"`
}

// NATSCredsRequest is the body of `POST nats/creds`. Only the public key of a
// key pair the client generated travels.
type NATSCredsRequest struct {
	PublicKey string `json:"public_key"`
	// TTLSeconds asks for a lifetime; policy and configuration cap it (0: default).
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// NATSCreds is the response of `POST nats/creds`.
type NATSCreds struct {
	JWT       string    `json:"jwt"`
	ExpiresAt time.Time `json:"expires_at"`
	// InboxPrefix is the only inbox prefix the credential may subscribe under
	// (`_INBOX_<user public key>`); clients must use it for replies.
	InboxPrefix string `json:"inbox_prefix"`
	// NATSURL is the NATS URL the broker advertises.
	NATSURL string `json:"nats_url"`
	// Pub lists the subjects the credential may publish to.
	Pub []string `json:"pub"`
	// Sub lists the subjects the credential may subscribe to: its inbox
	// prefix, its async reply prefix (with async routes) and the emit
	// subjects policy grants (follow-up events).
	Sub            []string `json:"sub"`
	DecisionID     string   `json:"decision_id"`
	PolicyRevision string   `json:"policy_revision"`
	// Capped is set when the requested TTL was reduced, with the reason.
	Capped string `json:"capped,omitempty"`
}

// SQLCredsRequest is the body of `POST sql/creds`.
type SQLCredsRequest struct {
	Database   string `json:"database"`
	Role       string `json:"role"`
	TTLSeconds int64  `json:"ttl_seconds,omitempty"`
}

// SQLCreds is the response of `POST sql/creds`. The password is shown once.
type SQLCreds struct {
	LeaseID   string    `json:"lease_id"`
	Database  string    `json:"database"`
	Role      string    `json:"role"`
	Username  string    `json:"username"`
	Password  string    `json:"password"`
	DSN       string    `json:"dsn,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	MaxExpiry time.Time `json:"max_expires_at"`
	Capped    string    `json:"capped,omitempty"`
}

// Lease is one entry of `GET leases`.
type Lease struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"` // "nats" or "sql"
	Principal string    `json:"principal"`
	Database  string    `json:"database,omitempty"`
	Role      string    `json:"role,omitempty"`
	Username  string    `json:"username,omitempty"`
	UserKey   string    `json:"user_key,omitempty"`
	State     string    `json:"state"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// LastError is why the last revocation attempt of a lease still
	// revoking failed (SQL leases; scrubbed by the database adapter, no
	// secrets), empty when none failed yet.
	LastError string `json:"last_error,omitempty"`
}

// Leases is the response of `GET leases`.
type Leases struct {
	Leases []Lease `json:"leases"`
	// Next is the cursor of the following page, present only when more
	// leases follow.
	Next string `json:"next,omitempty"`
}

// ErrorResponse is the body of every non-2xx response.
type ErrorResponse struct {
	Error Error `json:"error"`
}

// Discovery is the unauthenticated response of `GET config`: what a client
// needs to sign in and connect. It contains no secrets.
type Discovery struct {
	// Issuer is the OIDC issuer URL the CLI signs in with.
	Issuer string `json:"issuer"`
	// ClientID is the public (PKCE) OIDC client of the CLI.
	ClientID string `json:"client_id"`
	// Audience is the access-token audience sqlgate accepts. It is
	// informational: the CLI does not send it to the IdP, so an IdP that
	// needs the audience asked for gets it through a scope (Entra
	// `api://.../.default`, an Okta custom server's scopes).
	Audience string `json:"audience,omitempty"`
	// Scopes are requested by user sign-ins.
	Scopes []string `json:"scopes"`
	// ServiceScopes are requested by client credentials sign-ins
	// (`sqlgate login --client-credentials`, whose --scope overrides them).
	// When absent the CLI derives them from Scopes
	// (oidc.DefaultServiceScopes: Entra's api://<app>/.default).
	ServiceScopes []string `json:"service_scopes,omitempty"`
	// AuthContext is the Microsoft Entra authentication context (such as
	// c1) that user sign-ins ask for as an essential acrs claim with the
	// OpenID Connect claims parameter: the first mfaACRValues of the
	// entra issuer the CLI signs in with (oidc.SignInAuthContext). Entra
	// puts acrs, sqlgate's only MFA evidence in its v2.0 tokens, in a
	// token only when asked. Absent: nothing is asked for.
	AuthContext string `json:"auth_context,omitempty"`
	NATSURL     string `json:"nats_url"`
	// Version is the broker's version.
	Version string `json:"version"`
}

// Display returns the e-mail if known, else the subject.
func (w *WhoAmI) Display() string {
	if w.Email != "" {
		return w.Email
	}
	return w.Subject
}

// LeaseRenewRequest is the body of `POST leases/{id}/renew` (may be empty).
type LeaseRenewRequest struct {
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// LeaseRenewal is the response of `POST leases/{id}/renew`.
type LeaseRenewal struct {
	Lease
	MaxExpiry time.Time `json:"max_expires_at"`
	// Capped explains an expiry earlier than asked for.
	Capped     string `json:"capped,omitempty"`
	DecisionID string `json:"decision_id"`
}

// RevokeAllRequest is the body of `POST leases/revoke-all` (admins).
type RevokeAllRequest struct {
	// Principal is the principal's id: "<issuer> <subject>".
	Principal string `json:"principal"`
	Reason    string `json:"reason,omitempty"`
}

// RevokeAllResult is the response of `POST leases/revoke-all`.
type RevokeAllResult struct {
	Principal string `json:"principal"`
	// NATSRevoked are the NATS user keys revoked.
	NATSRevoked []string `json:"nats_revoked"`
	// Leases are the SQL leases revoked, or still revoking (pending).
	Leases  []Lease `json:"leases"`
	Pending int     `json:"pending"`
	// SessionsEnded counts the principal's dashboard sessions ended.
	SessionsEnded int64 `json:"sessions_ended"`
	// UnknownPrincipal says that nothing sqlgate keeps names the principal:
	// no NATS credential or SQL lease (current or past, as long as they are
	// kept) and no dashboard session. Its sign-in cutoff is recorded all
	// the same (someone may be offboarded before they ever signed in), but
	// a mistyped id (a subject that is an e-mail address, a wrong tenant)
	// leaves the person it should name with their access: check the id.
	UnknownPrincipal bool `json:"unknown_principal"`
}
