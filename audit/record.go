package audit

import (
	"time"
)

// SchemaVersion is the version of the record schema written by this package.
const SchemaVersion = 1

// Kind says what a record is evidence of.
type Kind string

const (
	// KindIntent is written (durably) before a routed call executes.
	KindIntent Kind = "intent"
	// KindOutcome is written after the SQL transaction ended; it links to its
	// intent by IntentIndex and CorrelationID.
	KindOutcome Kind = "outcome"
	// KindDecision records a policy decision that did not lead to execution
	// (a deny, a refused credential, a refused auth callout).
	KindDecision Kind = "decision"
	// KindCredential records the issue, renewal or revocation of a NATS or
	// SQL credential.
	KindCredential Kind = "credential"
	// KindAdmin records a policy change, key rotation or configuration change.
	KindAdmin Kind = "admin"
	// KindHeartbeat proves the log was alive while idle.
	KindHeartbeat Kind = "heartbeat"
)

// Admin actions the log writes itself; [Log.Append] refuses them from
// callers. Each names, in [Admin.Detail], the verifier key that signs the
// checkpoints from that record on: the log's first key ("log_start", index
// 0) or the key it changed to ("key_rotation", the first record under that
// key, a new key or an earlier one). From the log's first checkpoint that
// says it records every key change (see docs/audit.md, "Keys and
// rotation"), [Verify] refuses a checkpoint signed by any other key
// ([ProblemRetiredKey]); versions up to e8247d9 wrote "key_rotation" only
// for a key new to the log, so before that checkpoint a log may go back to
// an earlier key without a record.
const (
	AdminLogStart    = "log_start"
	AdminKeyRotation = "key_rotation"
)

// AdminStartup is the admin action sqlgated appends at every start, before
// it serves, with Actor.Transport "system": its [Admin.Detail] names the
// sqlgated version, the SHA-256 of the route catalog it serves and the
// number of routes (see docs/audit.md). Callers write it; [Log.Append]
// accepts it.
const AdminStartup = "startup"

// Valid reports whether k is one of the kinds of schema v1.
func (k Kind) Valid() bool {
	switch k {
	case KindIntent, KindOutcome, KindDecision, KindCredential, KindAdmin, KindHeartbeat:
		return true
	}
	return false
}

// Record is one entry of the audit log. Its canonical encoding (see
// [Record.MarshalCanonical]) is the Merkle leaf; field order and names are
// part of schema v1 and documented in docs/audit.md. There are no floats:
// durations are integer microseconds, times are UTC RFC 3339 with nanoseconds.
//
// The log fills V, Index, Origin and Instance on append (and Time when it is
// zero); callers fill the rest.
type Record struct {
	// V is the schema version, always [SchemaVersion].
	V int `json:"v"`
	// Index is the record's position in its origin's log: 0, 1, 2, ... with no
	// gaps. Index 0 is always the admin "log_start" record, so an IntentIndex
	// of 0 never names an intent.
	Index int64 `json:"index"`
	// Kind says what the record is evidence of.
	Kind Kind `json:"kind"`
	// Time is when the event happened (UTC; the broker's clock).
	Time time.Time `json:"time"`
	// Origin names the log (one per sqlgated instance), e.g.
	// "sqlgate.example/instance-1". It is also the checkpoint signing key name.
	Origin string `json:"origin"`
	// Instance names the sqlgated process that wrote the record.
	Instance string `json:"instance"`

	// CorrelationID ties the records of one request together (and is set in
	// the SQL session context, so SQL Server Audit sees it too).
	CorrelationID string `json:"correlation_id,omitempty"`
	// IntentIndex links an outcome to its intent.
	IntentIndex int64 `json:"intent_index,omitempty"`

	// Actor is who caused the record (nil for heartbeats).
	Actor *Actor `json:"actor,omitempty"`

	// DecisionID identifies the policy decision.
	DecisionID string `json:"decision_id,omitempty"`
	// Entry is the policy entry point asked ("call", "nats", "sql_credentials").
	Entry string `json:"entry,omitempty"`
	// PolicyRevision is the SHA-256 of the loaded policy modules and data.
	PolicyRevision string `json:"policy_revision,omitempty"`
	// Allow is the decision's verdict; nil when no decision was made.
	Allow *bool `json:"allow,omitempty"`
	// Reasons are the decision's reasons (shown to the caller on a deny).
	Reasons []string `json:"reasons,omitempty"`
	// InputSHA256 is the hex SHA-256 of the stored decision input, as
	// records written before [Record.InputHMAC] carry it. The log no longer
	// writes it: the input holds parameter values, the principal's claims
	// and the request time, so an unkeyed hash let anyone holding the
	// record confirm guesses of them. Records that have it keep verifying
	// and replaying.
	InputSHA256 string `json:"input_sha256,omitempty"`
	// InputHMAC is the keyed hash of the stored decision input (kept beside
	// the log for policy replay, with redacted parameters removed),
	// "hmac-sha256:<param key id>:<hex>" under the parameter key (see
	// [HashInput]). The input itself is not part of the leaf and may be
	// pruned. A record carries at most one of InputSHA256 and InputHMAC.
	InputHMAC string `json:"input_hmac,omitempty"`

	// Route is the route's NATS subject, e.g. "orders.v1.create".
	Route string `json:"route,omitempty"`
	// TargetKind is "procedure" or "statement".
	TargetKind string `json:"target_kind,omitempty"`
	// Target is the procedure name or the statement's configured name.
	Target string `json:"target,omitempty"`
	// Params maps each parameter name to a keyed hash of its value
	// ("hmac-sha256:<key id>:<hex>") or to "redacted". See [Log.HashParams].
	Params map[string]string `json:"params,omitempty"`
	// IdempotencyKey is the request's idempotency key.
	IdempotencyKey string `json:"idempotency_key,omitempty"`

	// SQL is the database side of an outcome.
	SQL *SQL `json:"sql,omitempty"`
	// Result is the broker-side result of an outcome.
	Result *Result `json:"result,omitempty"`
	// Credential describes a credential event.
	Credential *Credential `json:"credential,omitempty"`
	// Admin describes an administrative change.
	Admin *Admin `json:"admin,omitempty"`
}

// Actor is who caused the record.
type Actor struct {
	// Issuer is the OIDC issuer that vouched for the principal.
	Issuer string `json:"issuer,omitempty"`
	// Subject is the issuer's subject identifier.
	Subject string `json:"subject,omitempty"`
	// ObjectID is the directory object id (Entra oid, Okta uid).
	ObjectID string `json:"object_id,omitempty"`
	// Email is the e-mail address or UPN.
	Email string `json:"email,omitempty"`
	// MFA reports whether the token carried multi-factor evidence.
	MFA bool `json:"mfa"`
	// NATSUserKey is the public key of the NATS user that sent the request.
	NATSUserKey string `json:"nats_user_key,omitempty"`
	// SQLLogin is the short-lived SQL login involved, if any.
	SQLLogin string `json:"sql_login,omitempty"`
	// Transport is "nats", "nats-async", "http" or "system".
	Transport string `json:"transport,omitempty"`
	// ClientHost is the client's address as seen by the broker or NATS.
	ClientHost string `json:"client_host,omitempty"`
	// Tenant is the directory tenant (Entra tid).
	Tenant string `json:"tenant,omitempty"`
}

// SQL holds the database side of an outcome.
type SQL struct {
	// Server names the SQL server (e.g. @@SERVERNAME or host).
	Server string `json:"server,omitempty"`
	// Database is the target database name.
	Database string `json:"database,omitempty"`
	// TransactionID is the database's transaction id read inside the
	// transaction (CURRENT_TRANSACTION_ID(), txid_current()).
	TransactionID string `json:"transaction_id,omitempty"`
	// Outcome is "commit", "rollback", "none" (nothing ran) or "unknown"
	// (the call failed and the database could not say whether it committed).
	Outcome string `json:"outcome"`
	// Rows is the number of result rows returned.
	Rows int64 `json:"rows"`
	// RowsAffected is the number of rows the call changed.
	RowsAffected int64 `json:"rows_affected"`
	// ErrorNumber is the database error number, 0 when none.
	ErrorNumber int `json:"error_number,omitempty"`
}

// Result is the broker-side result of a call.
type Result struct {
	// Status is "ok" or the reply's error code.
	Status string `json:"status"`
	// Replayed is true when an idempotency key returned a stored result.
	Replayed bool `json:"replayed,omitempty"`
	// Recovered is true for an outcome written by crash recovery.
	Recovered bool `json:"recovered,omitempty"`
	// DurationUS is the call's duration in microseconds.
	DurationUS int64 `json:"duration_us"`
}

// Credential describes a credential event.
type Credential struct {
	// Type is "nats" or "sql"; "signin" for an offboarding's cutoff of the
	// principal's sign-ins (action "revoke").
	Type string `json:"type"`
	// Action is "issue", "renew", "revoke", "revoke_failed" or "expire".
	Action string `json:"action"`
	// LeaseID identifies the credential lease.
	LeaseID string `json:"lease_id,omitempty"`
	// UserKey is the NATS user public key.
	UserKey string `json:"user_key,omitempty"`
	// Login is the SQL login name.
	Login string `json:"login,omitempty"`
	// Database is the database the SQL credential is for.
	Database string `json:"database,omitempty"`
	// Role is the database role granted.
	Role string `json:"role,omitempty"`
	// Via says how the credential was obtained ("api", "callout", ...).
	Via string `json:"via,omitempty"`
	// ExpiresAt is the credential's expiry.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Detail is free text without secrets.
	Detail string `json:"detail,omitempty"`
}

// Admin describes an administrative change.
type Admin struct {
	// Action is "log_start", "key_rotation", "startup" ([AdminStartup]),
	// "policy_load" or "policy_load_failed".
	// "log_start" and "key_rotation" are written by the log only (see
	// [AdminLogStart], [AdminKeyRotation]).
	Action string `json:"action"`
	// Detail is free text without secrets (for "log_start" and
	// "key_rotation": the checkpoint verifier key now in use).
	Detail string `json:"detail,omitempty"`
}
