package audittest

import (
	"sync"
	"time"
)

// Clock is a settable clock for [audit.Config].Now. The log reads it on its
// own goroutines (a batch's commit time, the stall check), so a test that
// moves time between appends must not do it through a variable the Now
// function captures: that is a data race.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock that reads t until it is moved.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
