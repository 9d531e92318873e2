package opa

import "testing"

// TestSettler: a reload waits until two reads of the policy files, a
// Debounce apart, find the same content, so a file still being written (a
// truncate, then a slow write) is not loaded half-written.
func TestSettler(t *testing.T) {
	var s settler
	for i, step := range []struct {
		digest string
		want   bool
	}{
		{"a", false}, // the first read after a change: wait
		{"a", true},  // unchanged a Debounce later: load
		{"a", false}, // the next change starts over
		{"b", false}, // still being written
		{"c", false},
		{"c", true},
	} {
		if got := s.settled(step.digest); got != step.want {
			t.Fatalf("step %d: settled(%q) = %v, want %v", i, step.digest, got, step.want)
		}
	}
}
