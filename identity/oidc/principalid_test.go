package oidc

import (
	"errors"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/identity"
)

// TestVerifyRefusesUnnameableSubject: a signed token whose subject has
// surrounding space or a control character is refused (unauthenticated,
// invalid_claim, naming the subject), since no principal ID could name its
// principal for a revoke-all; subjects such an ID can hold sign in.
func TestVerifyRefusesUnnameableSubject(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpt{config: func(c *Config) { c.CacheEntries = -1 }})
	mint := func(sub string) string {
		c := e.claims("alice")
		c["sub"] = sub
		return e.mint(c)
	}
	for _, sub := range []string{" ", " alice", "alice ", "a\tb", "al\x00ice", "alice\n"} {
		tok := mint(sub)
		p, err := e.v.Verify(t.Context(), tok)
		if err == nil {
			t.Errorf("Verify accepted subject %q: principal ID %q, which revoke-all refuses (%v)",
				sub, p.ID(), identity.CheckPrincipalID(p.ID()))
			continue
		}
		if !errors.Is(err, identity.ErrUnauthenticated) || reasonOf(err) != ReasonInvalidClaim {
			t.Errorf("subject %q: Verify error %v (reason %q), want unauthenticated %s", sub, err, reasonOf(err), ReasonInvalidClaim)
		}
		if !strings.Contains(err.Error(), "subject") {
			t.Errorf("subject %q: error %q does not say the subject is the problem", sub, err)
		}
		assertNoTokenLeak(t, tok, err.Error(), e.logs.String())
	}
	for _, sub := range []string{"alice", "a b", "é", "a/b?c#d"} {
		p, err := e.v.Verify(t.Context(), mint(sub))
		if err != nil {
			t.Errorf("subject %q refused: %v", sub, err)
			continue
		}
		if err := identity.CheckPrincipalID(p.ID()); err != nil {
			t.Errorf("subject %q: principal ID %q: %v", sub, p.ID(), err)
		}
	}
}
