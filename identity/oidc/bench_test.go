package oidc

import (
	"testing"

	"github.com/sqlgate/sqlgate/identity/devidp"
)

// Measured on the project's 2-vCPU machine (Go 1.26.8), -benchtime=2s,
// shared with other work (load average 4-7), three runs each:
//
//	BenchmarkVerify              70-111 µs/op  19184 B/op  233 allocs/op (before: 113 µs, 28232 B, 318 allocs)
//	BenchmarkVerifyCached        2.3-3.0 µs/op  1328 B/op    4 allocs/op
//	BenchmarkVerifyRejectForged  45-53 µs/op   ~14000 B/op 182 allocs/op
//
// "before" is the first version, which let the key set parse the token a
// second time with go-jose.

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
