// Package control is sqlgate's control database for the broker's shared
// state: the issuance registry (which principal a NATS user key was issued
// to) and credential leases. Several sqlgated instances share one control
// database, so every method reads through to SQL where another instance may
// have written. It works over database/sql for the sqlite, postgres and
// sqlserver dialects; the caller opens the *sql.DB with its driver.
package control
