// Package audittest helps test code that writes or reads sqlgate audit logs:
// an in-memory [Store] (an audit.Store and audit.Source, with hooks to make
// writes fail and to tamper with the stored log), deterministic keys for
// tests, and [RunStoreTests], the conformance suite every audit.Store
// implementation runs.
package audittest
