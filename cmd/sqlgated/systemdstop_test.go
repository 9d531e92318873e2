package main

import (
	"os"
	"slices"
	"testing"
)

// TestSystemdUnitStopBudget checks that the unit tells ExecStartPre's
// serve --check its stop budget (SQLGATE_STOP_BUDGET) as TimeoutStopSec
// sets it: --check used to compare a stop's worst case with a fixed 90s,
// whatever TimeoutStopSec said.
func TestSystemdUnitStopBudget(t *testing.T) {
	unit, err := os.ReadFile("../../deploy/systemd/sqlgated.service")
	if err != nil {
		t.Fatal(err)
	}
	stop := unitValues(unit, "TimeoutStopSec")
	if len(stop) != 1 {
		t.Fatalf("TimeoutStopSec = %q, want one", stop)
	}
	want := stopBudgetEnv + "=" + stop[0] + "s"
	if got := unitValues(unit, "Environment"); !slices.Contains(got, want) {
		t.Errorf("Environment = %q, want %s", got, want)
	}
	if _, err := stopBudget(stop[0] + "s"); err != nil {
		t.Errorf("the unit's stop budget: %v", err)
	}
}
