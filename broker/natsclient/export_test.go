package natsclient

import "time"

// WithRetry returns cfg with the refusal rule and the backoff replaced: the
// client stops once refusals continued for window and at least attempts
// times, and waits backoff after every failure.
func WithRetry(cfg Config, window time.Duration, attempts int, backoff time.Duration) Config {
	cfg.retry = &retryConfig{window: window, attempts: attempts, backoff: func(int) time.Duration { return backoff }}
	return cfg
}

// WhoAmI is whoAmI for the tests.
var WhoAmI = whoAmI
