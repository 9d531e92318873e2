package devidp

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	jose "github.com/go-jose/go-jose/v4"
)

// rsaBits is the size of generated signing keys.
const rsaBits = 2048

// signingKey is one RSA key with its JWK thumbprint as key id.
type signingKey struct {
	priv *rsa.PrivateKey
	kid  string
}

func newSigningKey(priv *rsa.PrivateKey) (*signingKey, error) {
	if priv == nil {
		return nil, errors.New("nil signing key")
	}
	if priv.N.BitLen() < 2048 {
		return nil, fmt.Errorf("signing key has %d bits, want at least 2048", priv.N.BitLen())
	}
	kid, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	return &signingKey{priv: priv, kid: kid}, nil
}

func generateKey() (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return newSigningKey(priv)
}

// thumbprint returns the RFC 7638 SHA-256 thumbprint of pub, base64url
// encoded: a stable key id that survives restarts.
func thumbprint(pub *rsa.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// jwks renders the public half of keys as a JSON Web Key Set.
func jwks(keys []*signingKey) ([]byte, error) {
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key:       &k.priv.PublicKey,
			KeyID:     k.kid,
			Algorithm: string(jose.RS256),
			Use:       "sig",
		})
	}
	return json.Marshal(set)
}

// loadKeys reads the PEM key file at path: one or more PKCS#8 "PRIVATE KEY"
// blocks, the active key first. A missing file yields (nil, nil).
func loadKeys(path string) ([]*signingKey, error) {
	data, err := os.ReadFile(path) //nolint:gosec // G304: the caller (the daemon) names its key file
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	var keys []*signingKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("key file %s: unexpected PEM block %q", path, block.Type)
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", path, err)
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key file %s: %T is not an RSA key", path, k)
		}
		sk, err := newSigningKey(rk)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", path, err)
		}
		keys = append(keys, sk)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("key file %s: no private key", path)
	}
	return keys, nil
}

// saveKeys writes keys to path atomically with mode 0600, creating the
// directory with mode 0700 when missing.
func saveKeys(path string, keys []*signingKey) error {
	var buf []byte
	for _, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.priv)
		if err != nil {
			return fmt.Errorf("encode signing key: %w", err)
		}
		buf = append(buf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create key directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".devidp-key-*")
	if err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // no-op after a successful rename
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if _, err := f.Write(buf); err != nil {
		_ = f.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write key file: %w", err)
	}
	return nil
}

// signJWT signs claims as a compact RS256 JWS with the given header fields
// (alg, kid and typ are set unless header overrides them).
func signJWT(key *rsa.PrivateKey, kid string, header map[string]any, claims map[string]any) (string, error) {
	h := map[string]any{"alg": "RS256", "typ": "JWT", "kid": kid}
	for k, v := range header {
		if v == nil {
			delete(h, k)
			continue
		}
		h[k] = v
	}
	hb, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("encode JWT header: %w", err)
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode JWT claims: %w", err)
	}
	signing := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("sign JWT: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
