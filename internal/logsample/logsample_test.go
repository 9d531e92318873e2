package logsample

import (
	"testing"
	"time"
)

// TestSampler: one line per interval gets through, and it counts the lines
// held back since the previous one.
func TestSampler(t *testing.T) {
	var s Sampler
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if ok, n := s.Allow(t0, 10*time.Second); !ok || n != 0 {
		t.Fatalf("first line: %v %d, want let through, none held back", ok, n)
	}
	for i := range 3 {
		if ok, _ := s.Allow(t0.Add(time.Duration(i+1)*time.Second), 10*time.Second); ok {
			t.Fatalf("line %d within the interval let through", i+2)
		}
	}
	if ok, n := s.Allow(t0.Add(10*time.Second), 10*time.Second); !ok || n != 3 {
		t.Errorf("after the interval: %v %d, want let through counting 3", ok, n)
	}
	s.Reset()
	if ok, n := s.Allow(t0.Add(11*time.Second), 10*time.Second); !ok || n != 0 {
		t.Errorf("after Reset: %v %d, want let through", ok, n)
	}
}
