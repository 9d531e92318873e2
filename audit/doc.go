// Package audit is sqlgate's evidence log: versioned canonical [Record]s
// appended to an RFC 6962 Merkle tree (golang.org/x/mod/sumdb/tlog), group
// committed so that a caller's append returns only once it is durable, and
// covered by Ed25519 signed checkpoints in the C2SP signed-note format
// (golang.org/x/mod/sumdb/note). Verification needs only public keys, so an
// auditor can check an exported log offline. Storage is behind [Store]; the
// control-database implementation is audit/sqlstore.
package audit
