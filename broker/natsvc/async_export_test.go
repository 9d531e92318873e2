package natsvc

import "time"

// SetAsyncClock makes the consumer of c read the time from now and back off
// by delay between the attempts of a request the database could not take.
func SetAsyncClock(c *AsyncConfig, now func() time.Time, delay func(delivered uint64) time.Duration) {
	c.now, c.retryDelay = now, delay
}

// RetryDelay is the back-off between attempts after the delivered-th.
var RetryDelay = retryDelay
