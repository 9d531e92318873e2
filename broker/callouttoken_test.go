package broker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/natsauth"
)

// countingTokens is the control registry recording each read of the
// callout token refusals: the hashes it asked for.
type countingTokens struct {
	*control.Registry
	mu    sync.Mutex
	reads [][]string
}

func (c *countingTokens) CalloutTokenRefused(ctx context.Context, hashes ...string) (bool, error) {
	c.mu.Lock()
	c.reads = append(c.reads, slices.Clone(hashes))
	c.mu.Unlock()
	return c.Registry.CalloutTokenRefused(ctx, hashes...)
}

// TestCalloutReadsTokenRefusalsOncePerCheck: a callout checks its token's
// refusals twice (before the issuance, and after it against a concurrent
// revocation), each in one read of the control database asking for the
// hash of the token's signed part and the legacy hash of the whole token
// together: two reads per connect, not four.
func TestCalloutReadsTokenRefusalsOncePerCheck(t *testing.T) {
	e := newEnv(t)
	p := alice
	p.Expiry = time.Now().Add(time.Hour)
	const signed = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"
	const tok = signed + ".c2lnbmF0dXJl"
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub := keys.Public()
	reg := &countingTokens{Registry: e.registry}
	svc := e.serviceWith(t, func(c *broker.Config) {
		c.Minter, c.UsersAccount, c.SigningKeys, c.MaxTTL = natsauth.NewMinter(keys), pub.Users, pub.UsersSigning, time.Hour
		c.Verifier, c.Registry = tokens{tok: p}, reg
	})
	if _, err := svc.Callout(t.Context(), broker.CalloutRequest{Token: tok, UserKey: userKey(t)}); err != nil {
		t.Fatalf("Callout: %v", err)
	}
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	want := []string{hash(signed), hash(tok)}
	if len(reg.reads) != 2 || !slices.Equal(reg.reads[0], want) || !slices.Equal(reg.reads[1], want) {
		t.Errorf("token refusal reads = %v, want 2 of %v", reg.reads, want)
	}
}
