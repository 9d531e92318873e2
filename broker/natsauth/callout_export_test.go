package natsauth

// QueuedForTest returns the number of requests waiting for a worker.
func (c *Callout) QueuedForTest() int { return len(c.jobs) }
