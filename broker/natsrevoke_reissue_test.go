package broker_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/identity"
)

// TestRevokeReachesKeyReissuedShorter: a client that refreshes its NATS
// credential on the same key with a shorter TTL still holds the first,
// longer-lived JWT. Once the short one has expired, a revoke-all
// (offboarding) still revokes the key on the NATS servers, and a
// revocation whose push failed is still re-applied from the registry: the
// key is live until the last of its JWTs expires.
func TestRevokeReachesKeyReissuedShorter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		failFirst int // pushes to the servers that fail
	}{
		{"revoke-all", 0},
		{"revocation re-applied after a failed push", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			keys, err := natsauth.GenerateKeys()
			if err != nil {
				t.Fatal(err)
			}
			pub := keys.Public()
			rev := newFlakyRevoker(tc.failFirst)
			clock := &testClock{base: time.Now().Truncate(time.Second)}
			svc := e.serviceWith(t, func(c *broker.Config) {
				c.Minter, c.UsersAccount, c.SigningKeys = natsauth.NewMinter(keys), pub.Users, pub.UsersSigning
				c.Revoker, c.Now, c.MaxTTL = rev, clock.now, time.Hour
			})
			leases := e.leasesOver(t, svc)
			ctx := t.Context()
			key := userKey(t)
			first, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: alice, UserKey: key, Via: "creds"})
			if err != nil {
				t.Fatal(err)
			}
			uc, err := jwt.DecodeUserClaims(first.JWT)
			if err != nil {
				t.Fatal(err)
			}
			refreshed, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: alice, UserKey: key, Via: "creds", TTL: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			clock.advance(5 * time.Second)
			if !refreshed.ExpiresAt.Before(clock.now()) || !clock.now().Before(time.Unix(uc.Expires, 0)) {
				t.Fatalf("test setup: want the refreshed JWT (%s) expired and the first (%s) valid at %s",
					refreshed.ExpiresAt, time.Unix(uc.Expires, 0), clock.now())
			}

			if tc.failFirst == 0 {
				admin := identity.Principal{Issuer: "https://idp.test", Subject: "dana", Groups: []string{"admins"}}
				res, err := leases.RevokeAll(ctx, admin, alice.ID(), "left the company")
				if err != nil {
					t.Fatalf("RevokeAll: %v", err)
				}
				if !slices.Contains(res.NATSKeys, key) {
					t.Errorf("RevokeAll NATSKeys = %v, want the key whose first JWT is still valid", res.NATSKeys)
				}
			} else {
				if err := svc.RevokeNATS(ctx, alice, []string{key}, "lost laptop"); !errors.Is(err, broker.ErrUnavailable) {
					t.Fatalf("RevokeNATS with the servers unreachable = %v, want ErrUnavailable", err)
				}
				if _, err := svc.ReapplyRevocations(ctx); err != nil {
					t.Fatalf("ReapplyRevocations: %v", err)
				}
			}
			if _, enforced := rev.state(key); !enforced {
				t.Errorf("the key is not revoked on the NATS servers, and its first JWT is valid until %s", time.Unix(uc.Expires, 0))
			}
		})
	}
}
