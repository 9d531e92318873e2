package oidc

import (
	"testing"

	"github.com/sqlgate/sqlgate/identity/devidp"
)

// Measured on the project's 2-vCPU machine (Go 1.26.8), -benchtime=2s:
// see the package's docs/identity.md section "Cost" for the figures.

// BenchmarkVerify is one full verification of an RS256 Entra-shaped access
// token with a warm key set and the verified-token cache off.
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b, envOpt{shape: devidp.ShapeEntra, config: func(c *Config) { c.CacheEntries = -1 }})
	tok := e.tokenFor("alice")
	ctx := b.Context()
	if _, err := e.v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		if _, err := e.v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached is a repeat of an already verified token.
func BenchmarkVerifyCached(b *testing.B) {
	e := newEnv(b, envOpt{shape: devidp.ShapeEntra})
	tok := e.tokenFor("alice")
	ctx := b.Context()
	if _, err := e.v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyRejectForged is the cost of refusing a token signed by an
// unknown key once the refresh interval holds further fetches back.
func BenchmarkVerifyRejectForged(b *testing.B) {
	e := newEnv(b, envOpt{config: func(c *Config) { c.CacheEntries = -1 }})
	tok := e.mint(e.claims("alice"), devidp.MintKey(foreignKey))
	ctx := b.Context()
	_, _ = e.v.Verify(ctx, tok) // spends the one refresh
	e.logs = &syncBuffer{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.v.Verify(ctx, tok); err == nil {
			b.Fatal("forged token accepted")
		}
	}
}
