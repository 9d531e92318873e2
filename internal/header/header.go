// Package header holds the rule the broker applies to the request headers
// a client sets (Correlation-Id, Idempotency-Key), so that the CLI refuses
// what the broker would refuse before sending it.
package header

// Longest values the broker accepts.
const (
	MaxCorrelationID  = 128
	MaxIdempotencyKey = 256
)

// Valid reports whether s is 1 to maxLen printable ASCII characters without
// spaces.
func Valid(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
