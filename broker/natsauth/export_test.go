package natsauth

import (
	"time"

	"github.com/nats-io/nkeys"
)

// Test-only access to internals.

// UsersSigningKeyForTest returns the active users signing key pair.
func (k *Keys) UsersSigningKeyForTest() nkeys.KeyPair { return k.usersSigning[0] }

// SetNowForTest replaces the revoker's clock.
func (r *Revoker) SetNowForTest(now func() time.Time) { r.now = now }

// DecodeCalloutRequestForTest runs the callout request decoder.
func DecodeCalloutRequestForTest(k *Keys, data []byte, serverXKey string, now time.Time, maxToken int) (userKey, token string, err error) {
	d := newRequestDecoder(k, maxToken, 0)
	req, err := d.decode(data, serverXKey, now)
	if err != nil {
		return "", "", err
	}
	token, err = d.token(req.claims)
	return req.claims.UserNkey, token, err
}
