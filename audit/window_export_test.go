package audit

import "testing"

// The package's tests verify with windows of one or two checkpoints, so
// that every verification test also takes the scan from one window of
// checkpoints to the next (verify_stream.go).
func init() { minWindow, minWindowRecords, maxWindow = 1, 1, 2 }

// UseVerifyWindow sets the window bounds of Verify until the test ends;
// DefaultVerifyWindow are those of the package outside its tests.
func UseVerifyWindow(t testing.TB, w [3]int) {
	old := [3]int{minWindow, int(minWindowRecords), maxWindow}
	minWindow, minWindowRecords, maxWindow = w[0], int64(w[1]), w[2]
	t.Cleanup(func() { minWindow, minWindowRecords, maxWindow = old[0], int64(old[1]), old[2] })
}

// DefaultVerifyWindow are the window bounds outside the tests.
var DefaultVerifyWindow = [3]int{1024, 4096, 8192}
