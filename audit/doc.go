// Package audit is sqlgate's evidence log: versioned canonical [Record]s
// appended to an RFC 6962 Merkle tree (golang.org/x/mod/sumdb/tlog), group
// committed so that a caller's append returns only once it is durable, and
// covered by Ed25519 signed checkpoints in the C2SP signed-note format
// (golang.org/x/mod/sumdb/note). Verification needs only public keys, so an
// auditor can check an exported log offline: [Verify] reads any [Source] (the
// control database, a [Bundle] file, the broker's API), [VerifyProof] checks a
// single record's receipt, and checkpoint copies kept by a [Sink] outside the
// operator's reach expose truncation and forks. Storage is behind [Store]; the
// control-database implementation is audit/sqlstore. The record schema and
// formats are documented in docs/audit.md.
package audit
