package evidence

// SetSweepEvery changes how often expired credentials are dropped while the
// log is read, and returns a function that restores it.
func SetSweepEvery(n int) func() {
	old := sweepEvery
	sweepEvery = n
	return func() { sweepEvery = old }
}
