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

// Record is one entry of the audit log. Its canonical encoding (see
// [Record.MarshalCanonical]) is the Merkle leaf; field order and names are
// part of schema v1 and documented in docs/audit.md. There are no floats:
// durations are integer microseconds, times are UTC RFC 3339 with nanoseconds.
type Record struct {
	V      int       `json:"v"`
	Index  int64     `json:"index"`
	Kind   Kind      `json:"kind"`
	Time   time.Time `json:"time"`
	Origin string    `json:"origin"`
	// Instance names the sqlgated process that wrote the record.
	Instance string `json:"instance"`

	CorrelationID string `json:"correlation_id,omitempty"`
	// IntentIndex links an outcome to its intent.
	IntentIndex int64 `json:"intent_index,omitempty"`

	Actor *Actor `json:"actor,omitempty"`

	// Decision facts.
	DecisionID     string   `json:"decision_id,omitempty"`
	Entry          string   `json:"entry,omitempty"`
	PolicyRevision string   `json:"policy_revision,omitempty"`
	Allow          *bool    `json:"allow,omitempty"`
	Reasons        []string `json:"reasons,omitempty"`
	// InputSHA256 is the hex SHA-256 of the stored decision input (kept beside
	// the log for policy replay, with redacted parameters removed).
	InputSHA256 string `json:"input_sha256,omitempty"`

	// Call facts.
	Route      string `json:"route,omitempty"`
	TargetKind string `json:"target_kind,omitempty"`
	Target     string `json:"target,omitempty"`
	// Params maps each parameter name to a keyed hash of its value
	// ("hmac-sha256:<key id>:<hex>") or to "redacted".
	Params         map[string]string `json:"params,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`

	SQL        *SQL        `json:"sql,omitempty"`
	Result     *Result     `json:"result,omitempty"`
	Credential *Credential `json:"credential,omitempty"`
	Admin      *Admin      `json:"admin,omitempty"`
}

// Actor is who caused the record.
type Actor struct {
	Issuer      string `json:"issuer,omitempty"`
	Subject     string `json:"subject,omitempty"`
	ObjectID    string `json:"object_id,omitempty"`
	Email       string `json:"email,omitempty"`
	MFA         bool   `json:"mfa"`
	NATSUserKey string `json:"nats_user_key,omitempty"`
	SQLLogin    string `json:"sql_login,omitempty"`
	// Transport is "nats", "http" or "system".
	Transport  string `json:"transport,omitempty"`
	ClientHost string `json:"client_host,omitempty"`
}

// SQL holds the database side of an outcome.
type SQL struct {
	Server        string `json:"server,omitempty"`
	Database      string `json:"database,omitempty"`
	TransactionID string `json:"transaction_id,omitempty"`
	// Outcome is "commit", "rollback" or "none" (nothing ran).
	Outcome      string `json:"outcome"`
	Rows         int64  `json:"rows"`
	RowsAffected int64  `json:"rows_affected"`
	ErrorNumber  int    `json:"error_number,omitempty"`
}

// Result is the broker-side result of a call.
type Result struct {
	// Status is "ok" or the reply's error code.
	Status     string `json:"status"`
	Replayed   bool   `json:"replayed,omitempty"`
	Recovered  bool   `json:"recovered,omitempty"`
	DurationUS int64  `json:"duration_us"`
}

// Credential describes a credential event.
type Credential struct {
	// Type is "nats" or "sql"; Action is "issue", "renew", "revoke",
	// "revoke_failed" or "expire".
	Type      string    `json:"type"`
	Action    string    `json:"action"`
	LeaseID   string    `json:"lease_id,omitempty"`
	UserKey   string    `json:"user_key,omitempty"`
	Login     string    `json:"login,omitempty"`
	Database  string    `json:"database,omitempty"`
	Role      string    `json:"role,omitempty"`
	Via       string    `json:"via,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Detail    string    `json:"detail,omitempty"`
}

// Admin describes an administrative change.
type Admin struct {
	// Action is e.g. "policy_load", "policy_load_failed", "key_rotation",
	// "config_change", "startup", "recovery".
	Action string `json:"action"`
	Detail string `json:"detail,omitempty"`
}
