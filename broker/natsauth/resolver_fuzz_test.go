package natsauth

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// FuzzStoredRevocations reads arbitrary users account files in a full
// resolver's directory (written by nats-server, on a host sqlgated does not
// control) for the revocations sqlgated keeps at start. Revocations are
// read only from a JWT of the users account that our operator key signed
// (the signature checks out against the operator's public key), and only
// those within the horizon; anything else is no revocation and no error;
// nothing panics.
func FuzzStoredRevocations(f *testing.F) {
	keys, other := fixedKeys(f, 1), fixedKeys(f, 100)
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	horizon := time.Hour
	revs := jwt.RevocationList{}
	upub, _ := fixedPair(f, nkeys.PrefixByteUser, 200).PublicKey()
	revs[upub] = now.Add(-time.Minute).Unix()
	revs[jwt.All] = now.Add(-2 * time.Hour).Unix()
	for _, k := range []*Keys{keys, other} {
		for _, r := range []jwt.RevocationList{revs, nil} {
			s, err := encode(k.usersAccountClaims([]string{"orders.v1.create"}, nil, r), k.operator, "users account")
			if err != nil {
				f.Fatal(err)
			}
			f.Add([]byte(s))
			f.Add([]byte(" \n" + s + "\n"))
			f.Add([]byte(s[:len(s)-3]))
		}
	}
	sys, err := keys.accountJWTs(nil, nil, revs)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(sys.System))
	f.Add([]byte("a.b.c"))
	f.Add([]byte(""))
	dir := f.TempDir()
	path := filepath.Join(dir, keys.pub.Users+".jwt")
	seeded := 0
	operator, err := nkeys.FromPublicKey(keys.pub.Operator)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got jwt.RevocationList
		if seeded < 20 {
			// The file as the resolver wrote it, for the first inputs (the
			// seeds); then what storedRevocations does with its content.
			seeded++
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			var err error
			if got, err = storedRevocations(keys, dir, horizon, now); err != nil {
				t.Fatalf("storedRevocations of %q: %v (a file's content is never an error)", data, err)
			}
		} else if ac := ourUsersAccount(keys, string(data)); ac != nil {
			got = pruneRevocations(ac.Revocations, now.Add(-horizon))
		}
		if len(got) == 0 {
			return
		}
		parts := strings.Split(strings.TrimSpace(string(data)), ".")
		if len(parts) != 3 {
			t.Fatalf("revocations %v from %q, which is not a JWT", got, data)
		}
		sig, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil || operator.Verify([]byte(parts[0]+"."+parts[1]), sig) != nil {
			t.Fatalf("revocations %v from %q, which our operator did not sign", got, data)
		}
		ac, err := jwt.DecodeAccountClaims(strings.TrimSpace(string(data)))
		if err != nil || ac.Subject != keys.pub.Users {
			t.Fatalf("revocations %v from %q, which is not the users account (%v)", got, data, err)
		}
		for k, at := range got {
			if at < now.Add(-horizon).Unix() || ac.Revocations[k] != at {
				t.Fatalf("revocation %s at %d: not one of the file's within the horizon", k, at)
			}
		}
	})
}

// fixedPair is a key pair from a fixed seed: the fuzzing engine computes
// the seeds in one process and runs them in others.
func fixedPair(tb testing.TB, prefix nkeys.PrefixByte, b byte) nkeys.KeyPair {
	tb.Helper()
	var kp nkeys.KeyPair
	var err error
	if prefix == nkeys.PrefixByteCurve {
		kp, err = nkeys.CreateCurveKeysWithRand(bytes.NewReader(bytes.Repeat([]byte{b}, 32)))
	} else {
		kp, err = nkeys.FromRawSeed(prefix, bytes.Repeat([]byte{b}, 32))
	}
	if err != nil {
		tb.Fatal(err)
	}
	return kp
}

// fixedKeys are the keys of a deployment made from fixed seeds.
func fixedKeys(tb testing.TB, b byte) *Keys {
	tb.Helper()
	seeds := map[string][][]byte{}
	for i, r := range roles {
		seed, err := fixedPair(tb, r.prefix, b+byte(i)).Seed()
		if err != nil {
			tb.Fatal(err)
		}
		seeds[r.name] = [][]byte{seed}
	}
	k, err := keysFromSeeds(seeds)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
