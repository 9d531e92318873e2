// Package logsample bounds how often a log line about something anyone can
// cause (a made-up token, a server-published message, a full table) is
// written: one line per interval, which counts the ones held back.
package logsample

import (
	"sync"
	"time"
)

// Sampler lets at most one log line through per interval and counts the
// others. The zero value is ready; it is safe for concurrent use.
type Sampler struct {
	mu         sync.Mutex
	next       time.Time
	suppressed int64
}

// Allow reports whether a line may be logged at now, given at most one per
// every, and how many were held back since the previous line let through.
func (s *Sampler) Allow(now time.Time, every time.Duration) (ok bool, suppressed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.next) {
		s.suppressed++
		return false, 0
	}
	suppressed, s.suppressed = s.suppressed, 0
	s.next = now.Add(every)
	return true, suppressed
}

// Reset lets the next line through, whenever it comes.
func (s *Sampler) Reset() {
	s.mu.Lock()
	s.next, s.suppressed = time.Time{}, 0
	s.mu.Unlock()
}
