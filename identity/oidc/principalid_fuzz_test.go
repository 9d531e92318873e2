package oidc

import (
	"testing"

	"github.com/sqlgate/sqlgate/identity"
)

// FuzzVerifiedPrincipalID signs tokens whose subject is arbitrary, as an
// identity provider may issue them (a subject claim mapped to a user-set
// attribute included). Every principal the verifier accepts can be named
// by its ID where sqlgate asks for one (the broker's revoke-all, sqlgate
// leases revoke-all --principal): the ID passes identity.CheckPrincipalID,
// so no signed-in principal is out of reach of offboarding.
func FuzzVerifiedPrincipalID(f *testing.F) {
	for _, s := range []string{"alice", "00u1a2b3c4", "a b", "https://idp.example/ x", "é", "a/b?c#d", " ", " alice", "alice ", "a\tb"} {
		f.Add(s)
	}
	e := newEnv(f, envOpt{config: func(c *Config) { c.CacheEntries = -1 }})
	f.Fuzz(func(t *testing.T, sub string) {
		c, err := e.idp.AccessTokenClaims("alice", "")
		if err != nil {
			t.Fatal(err)
		}
		c["sub"] = sub
		tok, err := e.idp.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.v.Verify(t.Context(), tok)
		if err != nil {
			return
		}
		if err := identity.CheckPrincipalID(p.ID()); err != nil {
			t.Fatalf("the verifier accepted subject %q, whose principal ID %q cannot be named: %v", sub, p.ID(), err)
		}
	})
}
