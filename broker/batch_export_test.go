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
