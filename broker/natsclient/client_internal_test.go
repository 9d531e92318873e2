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
	c.connectedCB(false)
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
