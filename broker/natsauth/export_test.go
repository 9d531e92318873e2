package natsauth

import (
	"crypto/sha512"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// Test-only access to internals.

// UsersSigningKeyForTest returns the active users signing key pair.
func (k *Keys) UsersSigningKeyForTest() nkeys.KeyPair { return k.usersSigning[0] }

// SetNowForTest replaces the revoker's clock.
func (r *Revoker) SetNowForTest(now func() time.Time) { r.now = now }

// SetLogClockForTest replaces the clock of the callout's log samples.
func (c *Callout) SetLogClockForTest(now func() time.Time) { c.logNow = now }

// BackdatedAccountJWTForTest re-signs the account JWT s with the operator
// key as issued d earlier, as jwt's Encode would have then (it always
// stamps the current second): what an instance that started d before
// pushed. Two encodings within one second are byte-identical, which a
// server takes as no update at all.
func (k *Keys) BackdatedAccountJWTForTest(s string, d time.Duration) (string, error) {
	ac, err := jwt.DecodeAccountClaims(s)
	if err != nil {
		return "", err
	}
	ac.IssuedAt -= int64(d / time.Second)
	ac.ID = ""
	cd, err := json.Marshal(&ac.ClaimsData)
	if err != nil {
		return "", err
	}
	sum := sha512.Sum512_256(cd)
	ac.ID = base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:])
	header, err := json.Marshal(&jwt.Header{Type: jwt.TokenTypeJwt, Algorithm: jwt.AlgorithmNkey})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(ac)
	if err != nil {
		return "", err
	}
	toSign := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := k.operator.Sign([]byte(toSign))
	if err != nil {
		return "", err
	}
	return toSign + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
