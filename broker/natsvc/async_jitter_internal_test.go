package natsvc

import (
	"testing"
	"time"
)

// TestAsyncRetryDelayJitter: the consumer's back-off of a request the database could
// not take is spread at random over the last quarter of the 1 s, 2 s, 4 s,
// ... delay, so that requests that failed together (the calls of one batch)
// are not delivered together again.
func TestAsyncRetryDelayJitter(t *testing.T) {
	var cfg AsyncConfig
	cfg.setDefaults()
	for _, delivered := range []uint64{1, 2, 3, 6, 7, 100} {
		base := retryDelay(delivered)
		seen := map[time.Duration]bool{}
		for range 100 {
			d := cfg.retryDelay(delivered)
			if d < base-base/4 || d > base {
				t.Fatalf("delay after delivery %d = %s, want between %s and %s", delivered, d, base-base/4, base)
			}
			seen[d] = true
		}
		if len(seen) < 50 {
			t.Errorf("delay after delivery %d took %d values in 100 draws, want them spread", delivered, len(seen))
		}
	}
}
