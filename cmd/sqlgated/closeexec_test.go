package main

import (
	"testing"

	"github.com/sqlgate/sqlgate/broker"
)

type closeErrExec struct {
	broker.Executor
	closed *bool
}

func (x closeErrExec) Close() error { *x.closed = true; return nil }

type closeExec struct {
	broker.Executor
	closed *bool
}

func (x closeExec) Close() { *x.closed = true }

// TestCloseExecutors: every executor's pool is closed at stop, whichever
// form its Close has; the PostgreSQL executor's returns nothing, and its
// pool was left open.
func TestCloseExecutors(t *testing.T) {
	var a, b bool
	closeExecutors(map[string]broker.Executor{"sqlite": closeErrExec{closed: &a}, "postgres": closeExec{closed: &b}})
	if !a || !b {
		t.Errorf("closed: Close() error form %v, Close() form %v; want both", a, b)
	}
}
