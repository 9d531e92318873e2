package audit

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// fuzzParamKeys are the parameter keys the fuzz targets read with: two
// generations, as a verifier holding a rotated key has.
var fuzzParamKeys = []ParamKey{
	testParamKey,
	{ID: "k2", Secret: []byte("fedcba9876543210fedcba9876543210")},
}

// FuzzOpenKey reads arbitrary values of a record's idempotency_key (the
// log is read back from a database or a bundle the verifier does not
// trust). A value that is not sealed is the key as it is; a sealed one
// opens only when it is exactly what SealKey writes for the key it opens
// to, under the parameter key its id names (nothing altered passes); one
// naming a key not held is ErrUnknownParamKey; nothing panics. Whatever a
// client sends as Idempotency-Key seals and opens back to itself.
func FuzzOpenKey(f *testing.F) {
	for _, k := range []string{"order-42", "", "x", strings.Repeat("k", 256), "nats-msg-id-sha256-00", "é\x00\xff", "sealed:k1:00"} {
		for _, pk := range fuzzParamKeys {
			s := SealKey(pk, k)
			f.Add(s, k)
			f.Add(s[:len(s)-1], k)                      // cut
			f.Add(s[:len(s)-2]+"00", k)                 // altered
			f.Add(strings.ToUpper(s), k)                // hex case
			f.Add(strings.Replace(s, ":k", ":x", 1), k) // another key id
		}
		f.Add(k, k)
	}
	f.Add("sealed:", "")
	f.Add("sealed:k1", "")
	f.Add("sealed:k1:", "")
	f.Add("sealed:k1:zz", "")
	f.Add("sealed::"+strings.Repeat("0", 32), "")
	f.Fuzz(func(t *testing.T, v, clientKey string) {
		got, err := OpenKey(fuzzParamKeys, v)
		rest, sealed := strings.CutPrefix(v, sealedKeyPrefix)
		switch {
		case !sealed:
			if err != nil || got != v {
				t.Fatalf("OpenKey(%q) = %q, %v: a value that is not sealed is the key itself", v, got, err)
			}
		case err != nil:
			id, _, named := strings.Cut(rest, ":")
			unknown := named
			for _, k := range fuzzParamKeys {
				unknown = unknown && k.ID != id
			}
			if errors.Is(err, ErrUnknownParamKey) != unknown {
				t.Fatalf("OpenKey(%q): %v (names a key id not held: %v)", v, err, unknown)
			}
			if got != "" {
				t.Fatalf("OpenKey(%q) failed with %v but returned %q", v, err, got)
			}
		default:
			id, _, _ := strings.Cut(rest, ":")
			var again string
			for _, k := range fuzzParamKeys {
				if k.ID == id {
					again = SealKey(k, got)
				}
			}
			if again != v {
				t.Fatalf("OpenKey(%q) = %q, which seals to %q: an altered value opened", v, got, again)
			}
		}
		for _, pk := range fuzzParamKeys {
			s := SealKey(pk, clientKey)
			if back, err := OpenKey(fuzzParamKeys, s); err != nil || back != clientKey {
				t.Fatalf("OpenKey(SealKey(%s, %q)) = %q, %v", pk.ID, clientKey, back, err)
			}
			if strings.Contains(s, clientKey) && len(clientKey) >= 4 {
				t.Fatalf("SealKey(%s, %q) = %q shows the key", pk.ID, clientKey, s)
			}
		}
	})
}

// FuzzCheckParam reads arbitrary values of a record's params (the keyed
// hashes a verifier checks a claimed value against). Only the exact
// HashValue of the value under the key the hash names matches; a hash
// naming a key not held is ErrUnknownParamKey; nothing panics.
func FuzzCheckParam(f *testing.F) {
	for _, v := range []string{"Ada", "", "12.50", "\x00"} {
		for _, pk := range fuzzParamKeys {
			h := HashValue(pk, v)
			f.Add(h, v)
			f.Add(strings.ToUpper(h), v)
			f.Add(h+"0", v)
			f.Add(strings.Replace(h, ":"+pk.ID+":", ":k3:", 1), v)
		}
	}
	f.Add("hmac-sha256:", "")
	f.Add("hmac-sha256:k1", "")
	f.Add("redacted", "x")
	f.Fuzz(func(t *testing.T, hashed, v string) {
		ok, err := CheckParam(fuzzParamKeys, v, hashed)
		if err != nil {
			if ok {
				t.Fatalf("CheckParam(%q) = true with error %v", hashed, err)
			}
			if _, kerr := keyOf(fuzzParamKeys, hashed); kerr == nil {
				t.Fatalf("CheckParam(%q): %v, though it names a key held", hashed, err)
			}
			return
		}
		k, kerr := keyOf(fuzzParamKeys, hashed)
		if kerr != nil {
			t.Fatalf("CheckParam(%q) checked a hash naming no key held: %v", hashed, kerr)
		}
		if want := HashValue(k, v); ok != (hashed == want) {
			t.Fatalf("CheckParam(%q, %q) = %v; HashValue = %q", v, hashed, ok, want)
		}
	})
}

// FuzzSigningKeys reads arbitrary checkpoint signing keys (a private key
// file, read by NewSigner) and verifier keys (--key, --keys-file, the
// configuration, read by NewVerifiers). A signer's errors never show the
// key; an accepted signer's verifier key is one NewVerifiers reads and
// that verifies what it signed; an accepted verifier key's id is its name
// and hash; nothing panics.
func FuzzSigningKeys(f *testing.F) {
	s, vkey := testKey(f, "sqlgate.example/a", 1)
	skey, _, err := GenerateKey(strings.NewReader(strings.Repeat("\x02", 64)), "sqlgate.example/b")
	if err != nil {
		f.Fatal(err)
	}
	for _, k := range []string{
		skey, vkey, s.VerifierKey(), " " + skey + "\n", skey[:len(skey)-4], strings.Replace(skey, "PRIVATE+KEY+", "", 1),
		"PRIVATE+KEY+a+00000000+AQ==", "a+00000000+AQ==", "a+b+c", "+++", "",
	} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if sg, err := NewSigner(key); err != nil {
			secret := strings.TrimSpace(key)
			if i := strings.LastIndexByte(secret, '+'); i >= 0 {
				secret = secret[i+1:]
			}
			if len(secret) >= 8 && strings.Contains(err.Error(), secret) {
				t.Fatalf("NewSigner error %q shows the key", err)
			}
		} else {
			vs, err := NewVerifiers(sg.VerifierKey())
			if err != nil {
				t.Fatalf("the verifier key %q of an accepted signer does not parse: %v", sg.VerifierKey(), err)
			}
			msg, err := note.Sign(&note.Note{Text: "x\n"}, sg)
			if err != nil {
				t.Fatalf("an accepted signer does not sign: %v", err)
			}
			if _, err := note.Open(msg, vs); err != nil {
				t.Fatalf("what an accepted signer signed does not verify with its verifier key: %v", err)
			}
		}
		vs, err := NewVerifiers(key)
		if err != nil {
			return
		}
		k := strings.TrimSpace(key)
		v, err := note.NewVerifier(k)
		if err != nil {
			t.Fatalf("NewVerifiers accepted %q, which note does not read: %v", key, err)
		}
		if got, err := vs.Verifier(v.Name(), v.KeyHash()); err != nil || got == nil {
			t.Fatalf("NewVerifiers(%q) does not hold its key: %v", key, err)
		}
		// The id reports and problems name the key by: the key's name
		// and hash (the hash's hex may be written in either case).
		if id, want := keyID(k), fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash()); !strings.EqualFold(id, want) {
			t.Fatalf("keyID(%q) = %q, want %q", k, id, want)
		}
	})
}
