package web

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/policy"
)

// AuditService is what the audit pages and endpoints need from the audit
// log (wired in cmd/sqlgated over audit.Log and its store).
type AuditService interface {
	// Recent returns up to n newest records, newest first.
	Recent(ctx context.Context, n int) ([]audit.Record, error)
	// Record returns one record by index.
	Record(ctx context.Context, index int64) (*audit.Record, error)
	// Checkpoint returns the latest signed checkpoint (C2SP signed note).
	Checkpoint(ctx context.Context) ([]byte, error)
	// Verify verifies the whole log (or a range) and returns the report as
	// text and JSON, and whether the log is intact.
	Verify(ctx context.Context, from, to int64) (report VerifyReport, err error)
	// Proof returns the inclusion proof of one record as JSON.
	Proof(ctx context.Context, index int64) (json.RawMessage, error)
	// Inputs writes the stored decision inputs of records at or after since
	// as JSON lines {"record": <record>, "input": <input document>}, for
	// policy replay. Redacted parameters are not in the inputs.
	Inputs(ctx context.Context, since time.Time, w io.Writer) error
	// Export writes an offline-verifiable bundle of the records in [from, to)
	// (to <= 0: up to the latest) with checkpoints and public keys, and
	// consistency proofs from the tree sizes proofs (the auditor's trusted
	// checkpoint copies) to each origin's first exported record.
	Export(ctx context.Context, w io.Writer, from, to int64, proofs []int64) error
	// Evidence writes the SOC 2 evidence archive (zip, audit/evidence) of
	// the period [from, to), verified against the keys the configuration trusts; it
	// writes nothing when the log does not verify.
	Evidence(ctx context.Context, w io.Writer, from, to time.Time) error
}

// VerifyReport is a verification result.
type VerifyReport struct {
	OK   bool
	Text string
	JSON json.RawMessage
}

// PolicyService is what the policy page and endpoint need from the engine.
type PolicyService interface {
	Status() PolicyStatus
	// Eval evaluates an input document for an entry point; with explain it
	// also returns which rules fired.
	Eval(ctx context.Context, entry policy.Entry, input []byte, explain bool) (policy.Decision, string, error)
}

// PolicyStatus describes the serving policy. LastError (why the last load
// failed, with files and lines) and Source (the policy directory) are shown
// only to the admin and auditor groups; everyone else sees ReloadFailed.
type PolicyStatus struct {
	Revision     string    `json:"revision"`
	LoadedAt     time.Time `json:"loaded_at"`
	ReloadFailed bool      `json:"reload_failed,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
	Source       string    `json:"source,omitempty"`
}
