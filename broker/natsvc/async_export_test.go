package natsvc

import "time"

// SetAsyncClock makes the consumer of c read the time from now and back off
// by delay between the attempts of a request the database could not take.
func SetAsyncClock(c *AsyncConfig, now func() time.Time, delay func(delivered uint64) time.Duration) {
	c.now, c.retryDelay = now, delay
}

// RetryDelay is the back-off between attempts after the delivered-th.
var RetryDelay = retryDelay

// SetOtherRouteDelay makes the consumer of c return a message for a route
// it does not serve to the stream with delay instead of otherRouteDelay.
func SetOtherRouteDelay(c *AsyncConfig, delay func(delivered uint64) time.Duration) {
	c.otherRouteDelay = delay
}

// OtherRouteDelay is the delay before a message for a route the consumer
// does not serve is delivered again.
var OtherRouteDelay = otherRouteDelay
