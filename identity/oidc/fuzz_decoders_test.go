package oidc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// fuzzWebLogin is a WebLogin of a test provider and login cookies it sealed,
// by cookie name.
func fuzzWebLogin(f *testing.F) (*WebLogin, map[string]string) {
	e := newEnv(f, envOpt{})
	wl, err := NewWebLogin(WebLoginConfig{
		Verifier: e.v, Issuer: "test", RedirectURL: "http://127.0.0.1:1/auth/callback",
		CookieKey: []byte("0123456789abcdef0123456789abcdef"),
	})
	if err != nil {
		f.Fatal(err)
	}
	// Sealed here rather than by Start, whose states and nonces are random:
	// the fuzzing engine computes the seeds in one process and runs them
	// in others, which must know the same genuine cookies.
	sealed := map[string]string{}
	for i, ret := range []string{"/", "/audit?x=1"} {
		st := loginState{
			State: fmt.Sprintf("state-%d-0123456789abcdef", i), Nonce: "nonce", Verifier: "verifier",
			ReturnTo: ret, Expires: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Unix(),
		}
		plain, _ := json.Marshal(st)
		nonce := bytes.Repeat([]byte{byte(i + 1)}, wl.aead.NonceSize())
		name := wl.cookieName(st.State)
		sealed[name] = base64.RawURLEncoding.EncodeToString(wl.aead.Seal(nonce, nonce, plain, []byte(name)))
	}
	return wl, sealed
}

// FuzzWebLoginCookie presents arbitrary login cookies (name and value) and
// genuine cookies with one bit flipped. A cookie opens only if WebLogin
// sealed exactly those bytes under exactly that name: a tampered, renamed or
// forged cookie is refused with an error, never a panic.
func FuzzWebLoginCookie(f *testing.F) {
	wl, sealed := fuzzWebLogin(f)
	for name, value := range sealed {
		f.Add(name, value, uint16(0))
		f.Add(name, value, uint16(len(value)*3))
		f.Add(name+"x", value, uint16(1))
		f.Add(name, value[:len(value)-2], uint16(7))
		f.Add(name, value+"A", uint16(9))
		f.Add(name, strings.ToUpper(value), uint16(11))
	}
	f.Add("sqlgate_login_0123456789abcdef", "", uint16(0))
	f.Add("sqlgate_login_0123456789abcdef", "!!!", uint16(0))
	f.Add("", strings.Repeat("A", 64), uint16(0))
	f.Fuzz(func(t *testing.T, name, value string, flip uint16) {
		st, err := wl.open(name, value)
		if err == nil {
			raw, _ := base64.RawURLEncoding.DecodeString(value)
			good, _ := base64.RawURLEncoding.DecodeString(sealed[name])
			if sealed[name] == "" || !bytes.Equal(raw, good) {
				t.Fatalf("opened a cookie WebLogin did not seal: %q=%q -> %+v", name, value, st)
			}
			if st.State == "" || st.Nonce == "" || st.Verifier == "" || wl.cookieName(st.State) != name {
				t.Fatalf("opened cookie %q holds an incomplete or misnamed state %+v", name, st)
			}
		}
		// The same genuine cookie with one bit flipped never opens.
		for n, v := range sealed {
			raw, _ := base64.RawURLEncoding.DecodeString(v)
			bit := int(flip) % (len(raw) * 8)
			raw[bit/8] ^= 1 << (bit % 8)
			if st, err := wl.open(n, base64.RawURLEncoding.EncodeToString(raw)); err == nil {
				t.Fatalf("cookie %s with bit %d flipped opened: %+v", n, bit, st)
			}
		}
	})
}

// FuzzWebLoginCookiePlaintext seals arbitrary plaintexts with the login
// key, as if the key had sealed them, to reach the JSON decoding behind the
// authentication: malformed or expired states are refused with an error,
// and an accepted state has not expired and round-trips.
func FuzzWebLoginCookiePlaintext(f *testing.F) {
	wl, _ := fuzzWebLogin(f)
	now := wl.now().Unix()
	good, _ := json.Marshal(loginState{State: "s", Nonce: "n", Verifier: "v", ReturnTo: "/", Expires: now + 600})
	f.Add(good)
	expired, _ := json.Marshal(loginState{State: "s", Nonce: "n", Verifier: "v", ReturnTo: "/", Expires: now - 1})
	f.Add(expired)
	f.Add([]byte(`{"s":"a","e":9223372036854775807}`))
	f.Add([]byte(`{"s":"a","e":1e400}`))
	f.Add([]byte(`{"s":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Add([]byte(`[`))
	const name = "sqlgate_login_0123456789abcdef"
	f.Fuzz(func(t *testing.T, plain []byte) {
		nonce := make([]byte, wl.aead.NonceSize())
		_, _ = rand.Read(nonce)
		value := base64.RawURLEncoding.EncodeToString(wl.aead.Seal(nonce, nonce, plain, []byte(name)))
		st, err := wl.open(name, value)
		if err != nil {
			if strings.Contains(err.Error(), string(plain)) && len(plain) >= 8 {
				t.Fatalf("refusal %q echoes the cookie content", err)
			}
			return
		}
		if st.Expires < now {
			t.Fatalf("accepted an expired state %+v", st)
		}
		again, _ := json.Marshal(st)
		value = base64.RawURLEncoding.EncodeToString(wl.aead.Seal(nonce, nonce, again, []byte(name)))
		if st2, err := wl.open(name, value); err != nil || st2 != st {
			t.Fatalf("accepted state %+v does not round-trip: %+v, %v", st, st2, err)
		}
	})
}

type bodyTransport []byte

func (b bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Header: http.Header{},
		Body: io.NopCloser(bytes.NewReader(b)), Request: r,
	}, nil
}

func fetchJWKS(t *testing.T, body []byte) ([]jose.JSONWebKey, error) {
	ks := staticKeySet()
	ks.url = "https://idp.example/keys"
	ks.client = &http.Client{Transport: bodyTransport(body)}
	return ks.fetch(t.Context())
}

// FuzzJWKS parses arbitrary key-set documents. Only public RSA, ECDSA and
// Ed25519 keys are kept (private parts dropped, symmetric keys never), a
// document that is not a JSON object with a keys array is an error (and
// only such a document), and the kept keys round-trip: the
// key set they publish again parses to the same keys.
func FuzzJWKS(f *testing.F) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	jwks := func(keys ...jose.JSONWebKey) []byte {
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(jwks(jose.JSONWebKey{Key: &foreignKey.PublicKey, KeyID: "rsa", Algorithm: "RS256", Use: "sig"},
		jose.JSONWebKey{Key: &p256.PublicKey, KeyID: "p256"}, jose.JSONWebKey{Key: edPub, KeyID: "ed"}))
	f.Add(jwks(jose.JSONWebKey{Key: foreignKey, KeyID: "private-rsa"}, jose.JSONWebKey{Key: p256, KeyID: "private-ec"},
		jose.JSONWebKey{Key: edPriv, KeyID: "private-ed"}))
	f.Add(jwks(jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hmac"}))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQ","e":"AQAB"},{"kty":"EC","crv":"P-256","x":"AA","y":"AA"},{"kty":"OKP","crv":"Ed25519","x":""}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}, 1, null, "x", {"kty":"RSA","x5c":["AAAA"]}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`{"keys":{}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := fetchJWKS(t, body)
		var probe struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if wellFormed := json.Unmarshal(body, &probe) == nil; wellFormed != (err == nil) {
			t.Fatalf("key set %q: fetch error %v, but the document is well formed: %v", body, err, wellFormed)
		}
		if err != nil {
			return
		}
		for _, k := range keys {
			if !k.Valid() || !k.IsPublic() {
				t.Fatalf("kept an invalid or private key %+v", k)
			}
			switch k.Key.(type) {
			case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			default:
				t.Fatalf("kept a %T key", k.Key)
			}
		}
		again, err := fetchJWKS(t, jwks(keys...))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("kept keys do not round-trip: %d keys, then %d (%v)", len(keys), len(again), err)
		}
		for i := range keys {
			a, errA := keys[i].Thumbprint(crypto.SHA256)
			b, errB := again[i].Thumbprint(crypto.SHA256)
			if errA != nil || errB != nil || !bytes.Equal(a, b) || keys[i].KeyID != again[i].KeyID {
				t.Fatalf("key %d changed in the round trip", i)
			}
		}
	})
}

// FuzzTokenStoreLoad loads arbitrary token cache files (mode 0600). A file
// that does not decode is refused without quoting its content (it holds
// tokens); an accepted one saves and loads back the same.
func FuzzTokenStoreLoad(f *testing.F) {
	good, _ := json.MarshalIndent(Tokens{
		Issuer: "https://idp.example", ClientID: "cli", Grant: "device_code",
		AccessToken: "at-0123456789", RefreshToken: "rt-0123456789", Expiry: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC),
	}, "", "  ")
	f.Add(good)
	f.Add([]byte(`{"issuer":"x","access_token":"y","expiry":"2030-01-02T03:04:05+02:00","use_id_token":true}`))
	f.Add([]byte(`{"issuer":"x","unknown":1}`))
	f.Add([]byte(`{"expiry":"yesterday"}`))
	f.Add([]byte(`{"access_token":"secret-secret-secret"`))
	f.Add([]byte(`{} trailing`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	dir := f.TempDir()
	s := NewTokenStore(dir)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, "fuzz.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		tok, err := s.Load("fuzz")
		if err != nil {
			if len(data) >= 8 && strings.Contains(err.Error(), string(data)) {
				t.Fatalf("refusal %q quotes the file", err)
			}
			return
		}
		if err := s.Save("fuzz", tok); err != nil {
			t.Fatalf("Save of loaded tokens: %v", err)
		}
		again, err := s.Load("fuzz")
		if err != nil {
			t.Fatalf("saved tokens do not load: %v", err)
		}
		a, _ := json.Marshal(tok)
		b, _ := json.Marshal(again)
		if !bytes.Equal(a, b) {
			t.Fatalf("tokens changed in a save and load:\n%s\n%s", a, b)
		}
	})
}
