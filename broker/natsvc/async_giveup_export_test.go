package natsvc

import "time"

// SetSweepAfter makes the stream checks of the consumer of c give up a
// message past the delivery limit once it has been below the consumer's
// ack floor for d, instead of sweepAfter.
func SetSweepAfter(c *AsyncConfig, d time.Duration) { c.sweepAfter = d }

// AdvisoriesDraining reports whether the subscription to the delivery
// limit advisories is draining: Stop has begun, and the advisories it
// received are still being handled.
func (a *Async) AdvisoriesDraining() bool { return a.pastLimit.IsDraining() }
