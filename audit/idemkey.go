package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// sealedKeyPrefix starts every sealed idempotency key.
const sealedKeyPrefix = "sealed:"

// sealedIVSize is the length of a sealed key's synthetic IV.
const sealedIVSize = 16

// Domains of the two keys a parameter key derives for sealing, so that no
// sealed value is a parameter or input hash under the same key.
var (
	sealIVDomain     = []byte("sqlgate idempotency key v1 iv\x00")
	sealStreamDomain = []byte("sqlgate idempotency key v1 stream\x00")
)

// SealKey returns what a record's [Record.IdempotencyKey] holds for the
// key a call's idempotency record is stored under in its target database:
// "sealed:<key id>:<hex>", the key encrypted deterministically under the
// parameter key (SIV: a 16-byte IV that is the HMAC-SHA-256 of the key,
// then the key XORed with an HMAC-SHA-256 stream from that IV, under two
// keys derived from the parameter key). The same key always seals to the
// same value under one parameter key, so the intent, the outcome and the
// replays of a key stay equal in the log and in the evidence; without the
// parameter key nobody can tell which key it is or confirm a guess of the
// client's Idempotency-Key, unlike a plain hash of the principal and the
// client's key, whose parts are in the same record. [OpenKey] gives the
// key back (crash recovery looks the call up in its target database).
func SealKey(key ParamKey, k string) string {
	ivKey, streamKey := sealKeys(key)
	m := hmac.New(sha256.New, ivKey)
	m.Write([]byte(k))
	iv := m.Sum(nil)[:sealedIVSize]
	out := make([]byte, 0, len(sealedKeyPrefix)+len(key.ID)+1+2*(sealedIVSize+len(k)))
	out = append(out, sealedKeyPrefix...)
	out = append(out, key.ID...)
	out = append(out, ':')
	out = hex.AppendEncode(out, iv)
	return string(hex.AppendEncode(out, sealXOR(streamKey, iv, []byte(k))))
}

// OpenKey returns the idempotency key a record's [Record.IdempotencyKey]
// holds: the key [SealKey] sealed, under the key of keys its value names,
// or the value itself when it is not sealed (records written before keys
// were sealed held the key in the clear). It fails when the value names a
// key not in keys (wrapping [ErrUnknownParamKey]) or was not sealed under
// it (altered, or another key of the same id).
func OpenKey(keys []ParamKey, v string) (string, error) {
	rest, ok := strings.CutPrefix(v, sealedKeyPrefix)
	if !ok {
		return v, nil
	}
	id, body, ok := strings.Cut(rest, ":")
	if !ok {
		return "", errors.New("open idempotency key: malformed sealed key")
	}
	var key *ParamKey
	for i := range keys {
		if keys[i].ID == id {
			key = &keys[i]
			break
		}
	}
	if key == nil {
		return "", fmt.Errorf("open idempotency key: %w %q", ErrUnknownParamKey, id)
	}
	raw, err := hex.DecodeString(body)
	if err != nil || len(raw) < sealedIVSize {
		return "", errors.New("open idempotency key: malformed sealed key")
	}
	_, streamKey := sealKeys(*key)
	k := string(sealXOR(streamKey, raw[:sealedIVSize], raw[sealedIVSize:]))
	if !hmac.Equal([]byte(SealKey(*key, k)), []byte(v)) {
		return "", fmt.Errorf("open idempotency key: not sealed under parameter key %q (altered?)", id)
	}
	return k, nil
}

// sealKeys derives the IV key and the stream key of a parameter key.
func sealKeys(key ParamKey) (ivKey, streamKey []byte) {
	m := hmac.New(sha256.New, key.Secret)
	m.Write(sealIVDomain)
	ivKey = m.Sum(nil)
	m.Reset()
	m.Write(sealStreamDomain)
	return ivKey, m.Sum(nil)
}

// sealXOR returns b XORed with the stream HMAC-SHA-256(streamKey, iv ‖
// counter) for counter 0, 1, …
func sealXOR(streamKey, iv, b []byte) []byte {
	out := make([]byte, len(b))
	m := hmac.New(sha256.New, streamKey)
	var block [sha256.Size]byte
	var ctr [4]byte
	for i := 0; i < len(b); i += sha256.Size {
		m.Reset()
		m.Write(iv)
		binary.BigEndian.PutUint32(ctr[:], uint32(i/sha256.Size))
		m.Write(ctr[:])
		m.Sum(block[:0])
		for j := i; j < len(b) && j < i+sha256.Size; j++ {
			out[j] = b[j] ^ block[j-i]
		}
	}
	return out
}

// SealIdempotencyKey is [SealKey] under the configured ParamKey.
func (l *Log) SealIdempotencyKey(k string) string { return SealKey(l.cfg.ParamKey, k) }

// OpenIdempotencyKey is [OpenKey] with the configured ParamKey and
// PreviousParamKeys.
func (l *Log) OpenIdempotencyKey(v string) (string, error) {
	return OpenKey(append([]ParamKey{l.cfg.ParamKey}, l.cfg.PreviousParamKeys...), v)
}
