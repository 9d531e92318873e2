package audit

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func testKey(t testing.TB, origin string, seed byte) (Signer, string) {
	t.Helper()
	skey, vkey, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)), origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	if s.VerifierKey() != vkey {
		t.Fatalf("NewSigner(skey).VerifierKey() = %q, want %q", s.VerifierKey(), vkey)
	}
	return s, vkey
}

func signedCheckpoint(t testing.TB, s Signer, origin string, size int64, root tlog.Hash) []byte {
	t.Helper()
	msg, err := note.Sign(&note.Note{Text: string(checkpointBody(origin, size, root, testTime))}, s)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func TestCheckpointRoundTrip(t *testing.T) {
	s, vkey := testKey(t, "sqlgate.example/a", 1)
	root := tlog.RecordHash([]byte("x"))
	msg := signedCheckpoint(t, s, "sqlgate.example/a", 42, root)
	want := "sqlgate.example/a\n42\n" + root.String() + "\ntime 2026-11-27T10:00:00.123456789Z\n\n— sqlgate.example/a "
	if !strings.HasPrefix(string(msg), want) {
		t.Fatalf("checkpoint =\n%s\nwant prefix\n%s", msg, want)
	}
	v, err := NewVerifiers(vkey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCheckpoint(msg, v)
	if err != nil {
		t.Fatalf("OpenCheckpoint = %v", err)
	}
	if c.Origin != "sqlgate.example/a" || c.Size != 42 || c.Root != root || !c.Time.Equal(testTime) || c.KeyID != keyID(vkey) {
		t.Errorf("OpenCheckpoint = %+v", c)
	}
	// ParseCheckpoint takes the signed note too (signatures unchecked).
	if p, err := ParseCheckpoint(msg); err != nil || p.Size != 42 || p.Root != root {
		t.Errorf("ParseCheckpoint(signed note) = %+v, %v", p, err)
	}
}

func TestOpenCheckpointRejects(t *testing.T) {
	s, vkey := testKey(t, "o", 1)
	_, otherVkey := testKey(t, "o", 2)
	wrongName, wrongNameVkey := testKey(t, "p", 3)
	root := tlog.RecordHash([]byte("x"))
	good := signedCheckpoint(t, s, "o", 5, root)
	trusted, _ := NewVerifiers(vkey)
	tests := []struct {
		name string
		msg  []byte
		keys []string
		want error
	}{
		{"unknown_key", good, []string{otherVkey}, ErrUnknownKey},
		{"no_keys", good, nil, ErrUnknownKey},
		{"flipped_signature", flipSig(good), []string{vkey}, ErrBadSignature},
		{"edited_size", bytes.Replace(good, []byte("\n5\n"), []byte("\n6\n"), 1), []string{vkey}, ErrBadSignature},
		{"signed_by_other_name", signedCheckpoint(t, wrongName, "o", 5, root), []string{vkey, wrongNameVkey}, ErrUnknownKey},
		{"not_a_note", []byte("hello"), []string{vkey}, ErrMalformedCheckpoint},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewVerifiers(tc.keys...)
			if err != nil {
				t.Fatal(err)
			}
			c, err := OpenCheckpoint(tc.msg, v)
			if !errors.Is(err, tc.want) {
				t.Errorf("OpenCheckpoint = %+v, %v; want %v", c, err, tc.want)
			}
		})
	}
	if _, err := OpenCheckpoint(good, trusted); err != nil {
		t.Errorf("good checkpoint: %v", err)
	}
}

func flipSig(msg []byte) []byte {
	out := bytes.Clone(msg)
	i := bytes.LastIndex(out, []byte(" ")) + 10
	if out[i] == 'A' {
		out[i] = 'B'
	} else {
		out[i] = 'A'
	}
	return out
}

var parseCases = []struct {
	name string
	in   string
	ok   bool
}{
	{"minimal", "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", true},
	{"with_time", "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\ntime 2026-11-27T10:00:00Z\n", true},
	{"unknown_extension", "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nfoo bar\n", true},
	{"no_newline", "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", false},
	{"two_lines", "o\n1\n", false},
	{"negative_size", "o\n-1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", false},
	{"leading_zero", "o\n01\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", false},
	{"short_root", "o\n1\nAAAA\n", false},
	{"bad_base64", "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF!=\n", false},
	{"empty_origin", "\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", false},
	{"space_in_origin", "a b\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", false},
	{"empty_signature_block", "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n", true},
	{"empty_extension", "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nx\n\n\n", false},
	{"bad_time", "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\ntime yesterday\n", false},
	{"non_utc_time", "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\ntime 2026-11-27T10:00:00+01:00\n", false},
	{"two_times", "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\ntime 2026-11-27T10:00:00Z\ntime 2026-11-27T10:00:00Z\n", false},
	{"invalid_utf8", "o\xff\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", false},
}

func TestParseCheckpoint(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCheckpoint([]byte(tc.in))
			if (err == nil) != tc.ok {
				t.Fatalf("ParseCheckpoint(%q) = %+v, %v; want ok=%v", tc.in, c, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrMalformedCheckpoint) {
				t.Errorf("error %v does not wrap ErrMalformedCheckpoint", err)
			}
		})
	}
}

func TestNewSignerRejectsAndDoesNotLeak(t *testing.T) {
	skey, _, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{9}, 64)), "o")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "PRIVATE+KEY+o+00000000+AAAA", skey[:len(skey)-4] + "!!!!", strings.Replace(skey, "PRIVATE", "PUBLIC", 1)} {
		_, err := NewSigner(bad)
		if err == nil {
			t.Errorf("NewSigner(%.20q...) = nil error", bad)
			continue
		}
		secret := skey[strings.LastIndex(skey, "+")+1:]
		if strings.Contains(err.Error(), secret[:10]) {
			t.Errorf("error leaks key material: %v", err)
		}
	}
	if _, _, err := GenerateKey(bytes.NewReader(make([]byte, 64)), "bad origin"); err == nil {
		t.Error("GenerateKey with a space in the origin = nil error")
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.in))
	}
	s, vkey := testKey(f, "o", 1)
	f.Add(signedCheckpoint(f, s, "o", 7, tlog.RecordHash(nil)))
	verifiers, _ := NewVerifiers(vkey)
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseCheckpoint(data); err == nil {
			if c.Size < 0 || !validOrigin(c.Origin) {
				t.Fatalf("ParseCheckpoint accepted %+v", c)
			}
			// Formatting what was parsed yields a prefix of the input.
			body := checkpointBody(c.Origin, c.Size, c.Root, c.Time)
			if c.Time.IsZero() && !bytes.HasPrefix(data, body) {
				t.Fatalf("re-formatted body %q is not a prefix of %q", body, data)
			}
		}
		if c, err := OpenCheckpoint(data, verifiers); err == nil {
			if c.KeyID == "" || c.Origin != "o" {
				t.Fatalf("OpenCheckpoint accepted %+v", c)
			}
		}
	})
}

// TestNewSignerKeyWithPlusInBase64 covers private keys whose base64 part
// contains '+' (the key name never does).
func TestNewSignerKeyWithPlusInBase64(t *testing.T) {
	found := 0
	for seed := range 64 {
		skey, vkey, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{byte(seed)}, 64)), "sqlgate.test/plus")
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.SplitN(skey, "+", 5)
		if !strings.Contains(parts[4], "+") {
			continue
		}
		found++
		s, err := NewSigner(skey)
		if err != nil {
			t.Fatalf("NewSigner(key with '+' in base64) = %v", err)
		}
		if s.VerifierKey() != vkey {
			t.Errorf("VerifierKey = %q, want %q", s.VerifierKey(), vkey)
		}
	}
	if found == 0 {
		t.Fatal("no seed gave a key with '+' in its base64; widen the search")
	}
}
