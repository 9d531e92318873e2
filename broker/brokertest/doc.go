// Package brokertest holds what lets the broker's ports be tested without
// their real implementations and keeps those implementations honest: the
// conformance suite every [broker.Executor] runs ([RunExecutorTests]) and an
// in-memory fake executor ([Fake]) that passes the same suite.
//
// # The test schema
//
// The suite drives an orders-like schema through routes whose subjects are
// the Subject* constants. Each adapter creates the schema in its dialect (its
// own testdata) and maps every subject to a procedure or statement in
// [Harness.Targets]; the suite owns the parameter schemas, so every dialect is
// called with the same payloads:
//
//	table orders: id (auto-assigned integer key), customer (text, not null),
//	  amount (decimal(12,2), not null, CHECK amount > 0), quantity (bigint),
//	  express (boolean), note (text, nullable), status (text, default 'open'),
//	  created_by and correlation_id (stamped from the session context: the
//	  call's principal and correlation id)
//
//	SubjectCreate     {customer, amount, quantity, express, note?} -> one row {id}
//	SubjectGet        {id} -> one row {id, customer, amount, quantity, express,
//	                  note, status, created_by, correlation_id}
//	SubjectCancel     {id} -> sets status 'cancelled'
//	SubjectCancelAll  {} -> sets status 'cancelled' on every open order and
//	                  returns one row {id} per order it changed
//	SubjectCount      {} -> one row {n}: the number of orders
//	SubjectSession    {} -> one row {correlation_id, principal, decision_id}
//	                  as the SQL that runs sees them (session context or
//	                  session placeholders)
//	SubjectSlowCreate {customer, seconds} -> inserts an order, then runs for
//	                  about `seconds` seconds (interruptible) before it finishes
package brokertest
