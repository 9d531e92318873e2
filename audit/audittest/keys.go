package audittest

import (
	"bytes"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
)

// Key returns a deterministic checkpoint signing key pair for origin, derived
// from seed. Test use only: anyone can recompute the private key.
func Key(t testing.TB, origin string, seed byte) (audit.Signer, string) {
	t.Helper()
	skey, vkey, err := audit.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)), origin)
	if err != nil {
		t.Fatalf("GenerateKey(%q) = %v", origin, err)
	}
	s, err := audit.NewSigner(skey)
	if err != nil {
		t.Fatalf("NewSigner = %v", err)
	}
	return s, vkey
}

// ParamKey returns a fixed parameter HMAC key with id "test-1". Test use only.
func ParamKey() audit.ParamKey {
	return audit.ParamKey{ID: "test-1", Secret: []byte("test-only-param-key-0123456789ab")}
}

// Config returns a log configuration for origin with a deterministic key
// (seed 1) and [ParamKey].
func Config(t testing.TB, origin string) audit.Config {
	t.Helper()
	s, _ := Key(t, origin, 1)
	return audit.Config{Origin: origin, Instance: "test", Signer: s, ParamKey: ParamKey()}
}
