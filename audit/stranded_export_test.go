package audit

// SetStrandedLimit bounds the intents l keeps for [Log.Stranded] to n
// instead of 65536.
func SetStrandedLimit(l *Log, n int) {
	l.strand.mu.Lock()
	defer l.strand.mu.Unlock()
	l.strand.limit = n
}
