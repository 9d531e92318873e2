package natsclient

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestLateRefusalIsPinnedOnItsAttempt: nats.go delivers a refusal after it
// queued it, by when a fresh credential may have been presented. The late
// refusal of the old credential must not count against the fresh one (nor
// make the client fetch yet another); a refusal of the fresh one does.
func TestLateRefusalIsPinnedOnItsAttempt(t *testing.T) {
	t.Parallel()
	now := time.Now()
	old := &Creds{JWT: "old", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	fresh := &Creds{JWT: "fresh", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	c := &Client{kick: make(chan struct{}, 1), up: make(chan struct{})}
	c.creds.Store(old)
	present := func(want *Creds) {
		t.Helper()
		if jwt, err := c.userJWT(); err != nil || jwt != want.JWT {
			t.Fatalf("userJWT = %q, %v; want %q", jwt, err, want.JWT)
		}
	}
	refused := func() (*Creds, int, bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		select {
		case <-c.kick:
			return c.refused, c.refusals, true
		default:
			return c.refused, c.refusals, false
		}
	}

	present(old) // refused; nats.go queues the error
	c.creds.Store(fresh)
	present(fresh) // the refresh loop's fetch, presented before the error is delivered
	c.asyncError(nats.ErrAuthorization)
	if p, n, kicked := refused(); p != old || n != 1 || !kicked {
		t.Fatalf("late refusal pinned on %q (%d refusals)", p.JWT, n)
	}
	// The refresh loop ignores it: the refused credential is replaced.
	if c.refused == c.creds.Load() {
		t.Fatal("the refresh loop would replace the fresh credential for the old one's refusal")
	}
	c.asyncError(nats.ErrAuthorization) // now the fresh one's refusal
	if p, n, _ := refused(); p != fresh || n != 2 {
		t.Fatalf("refusal of the fresh credential pinned on %q (%d refusals)", p.JWT, n)
	}

	// Once connected, a refusal is the connection's credential's, whatever
	// was presented meanwhile; its expiry is no refusal.
	present(fresh)
	c.connectedCB()
	if p, n, _ := refused(); p != nil || n != 0 {
		t.Fatalf("after connecting: refused %v, %d refusals; want none", p, n)
	}
	c.asyncError(nats.ErrAuthExpired)
	if p, n, kicked := refused(); p != nil || n != 0 || kicked {
		t.Fatalf("expiry counted as a refusal of %v (%d)", p, n)
	}
	c.asyncError(nats.ErrAuthRevoked)
	if p, n, _ := refused(); p != fresh || n != 1 {
		t.Fatalf("refusal of the connection pinned on %v (%d refusals)", p, n)
	}
}

// TestConnectForgetsUnreportedAttempts: nats.go reports no error for some
// failed connect attempts (a non-auth -ERR, a write error); the attempt
// that connected is the newest, and the stale ones must not pin a later
// refusal on an older credential.
func TestConnectForgetsUnreportedAttempts(t *testing.T) {
	t.Parallel()
	now := time.Now()
	a := &Creds{JWT: "a", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	b := &Creds{JWT: "b", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	c := &Client{kick: make(chan struct{}, 1), up: make(chan struct{}), down: make(chan struct{})}
	c.creds.Store(a)
	_, _ = c.userJWT() // fails with "maximum connections": no callback
	c.creds.Store(b)
	_, _ = c.userJWT() // connects
	c.connectedCB()
	c.mu.Lock()
	connected, pending := c.connected, len(c.attempts)
	c.mu.Unlock()
	if connected != b || pending != 0 {
		t.Fatalf("after connecting: connected %q, %d attempts pending; want b and none", connected.JWT, pending)
	}
	// Down again, and b is refused: the refusal is b's.
	c.disconnected(nil, nil)
	_, _ = c.userJWT()
	c.asyncError(nats.ErrAuthorization)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refused != b || c.refusals != 1 {
		t.Fatalf("refusal pinned on %v (%d refusals), want b", c.refused, c.refusals)
	}
}

// TestRefusalStreakGap: refusals further apart than refusalStreakGap (an
// outage in between) start a new streak, so that a client does not stop at
// the first refusals after a long outage as if they had persisted.
func TestRefusalStreakGap(t *testing.T) {
	t.Parallel()
	now := time.Now()
	a := &Creds{JWT: "a", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	b := &Creds{JWT: "b", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	c := &Client{kick: make(chan struct{}, 1), up: make(chan struct{})}
	c.creds.Store(a)
	_, _ = c.userJWT()
	c.asyncError(nats.ErrAuthorization)
	c.mu.Lock()
	// The refusal of a was three minutes ago.
	c.refusedSince = now.Add(-3 * time.Minute)
	c.lastRefusal = c.refusedSince
	c.mu.Unlock()
	c.creds.Store(b)
	_, _ = c.userJWT()
	c.asyncError(nats.ErrAuthorization)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refused != b || c.refusals != 1 || time.Since(c.refusedSince) > time.Minute {
		t.Fatalf("after a refusal three minutes later: %d refusals since %s; want a new streak of 1", c.refusals, c.refusedSince)
	}
}
