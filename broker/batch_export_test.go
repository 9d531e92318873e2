package broker

// BatchQueued returns how many calls wait in the batch queue of the route
// subject (0 for a route without a batcher).
func BatchQueued(s *Service, subject string) int {
	b := s.routes[subject].batch
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// Batches reports whether the route subject has a batcher that still
// batches (the executor did not say it cannot).
func Batches(s *Service, subject string) bool {
	b := s.routes[subject].batch
	return b != nil && !b.unbatched.Load()
}
