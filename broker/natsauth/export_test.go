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
