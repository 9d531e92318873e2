package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"
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
	sl := sealerOf(key)
	m := sl.get()
	defer sl.pool.Put(m)
	m.iv.Write([]byte(k))
	var iv [sealedIVSize]byte
	copy(iv[:], m.iv.Sum(m.sum[:0])) // xor reuses m.sum
	out := make([]byte, 0, len(sealedKeyPrefix)+len(key.ID)+1+2*(sealedIVSize+len(k)))
	out = append(out, sealedKeyPrefix...)
	out = append(out, key.ID...)
	out = append(out, ':')
	out = hex.AppendEncode(out, iv[:])
	return string(hex.AppendEncode(out, m.xor(iv[:], []byte(k))))
}

// sealer holds the keys a parameter key derives for sealing, and HMAC
// states of them for reuse: a call seals its key on the request path.
type sealer struct {
	ivKey, streamKey []byte
	pool             sync.Pool // of *sealMACs
}

type sealMACs struct {
	iv, stream hash.Hash
	sum        [sha256.Size]byte
}

// sealers caches a sealer per parameter key (id and secret).
var sealers sync.Map

func sealerOf(key ParamKey) *sealer {
	id := key.ID + "\x00" + string(key.Secret)
	if sl, ok := sealers.Load(id); ok {
		return sl.(*sealer)
	}
	ivKey, streamKey := sealKeys(key)
	sl, _ := sealers.LoadOrStore(id, &sealer{ivKey: ivKey, streamKey: streamKey})
	return sl.(*sealer)
}

func (sl *sealer) get() *sealMACs {
	if m, ok := sl.pool.Get().(*sealMACs); ok {
		m.iv.Reset()
		return m
	}
	return &sealMACs{iv: hmac.New(sha256.New, sl.ivKey), stream: hmac.New(sha256.New, sl.streamKey)}
}

// xor returns b XORed with the stream HMAC-SHA-256(streamKey, iv ‖
// counter) for counter 0, 1, …
func (m *sealMACs) xor(iv, b []byte) []byte {
	out := make([]byte, len(b))
	var ctr [4]byte
	for i := 0; i < len(b); i += sha256.Size {
		m.stream.Reset()
		m.stream.Write(iv)
		binary.BigEndian.PutUint32(ctr[:], uint32(i/sha256.Size))
		m.stream.Write(ctr[:])
		block := m.stream.Sum(m.sum[:0])
		for j := i; j < len(b) && j < i+sha256.Size; j++ {
			out[j] = b[j] ^ block[j-i]
		}
	}
	return out
}

// OpenKey returns the idempotency key a record's [Record.IdempotencyKey]
// holds: the key [SealKey] sealed, under the key of keys its value names,
// or the value itself when it is not sealed (records written before keys
// were sealed held the key in the clear). Every key of keys with the id
// the value names is tried (sealing again under it authenticates the
// result): keys that share an id (a key recreated with the id of the one
// before; [Config.Validate] refuses them) each open what they sealed. It fails when the value
// names a key not in keys (wrapping [ErrUnknownParamKey]) or was not
// sealed under any key of keys of that id (altered, or sealed by another
// key of the same id, which keys lack).
func OpenKey(keys []ParamKey, v string) (string, error) {
	rest, ok := strings.CutPrefix(v, sealedKeyPrefix)
	if !ok {
		return v, nil
	}
	id, body, ok := strings.Cut(rest, ":")
	if !ok {
		return "", errors.New("open idempotency key: malformed sealed key")
	}
	if !slices.ContainsFunc(keys, func(k ParamKey) bool { return k.ID == id }) {
		return "", fmt.Errorf("open idempotency key: %w %q", ErrUnknownParamKey, id)
	}
	raw, err := hex.DecodeString(body)
	if err != nil || len(raw) < sealedIVSize {
		return "", errors.New("open idempotency key: malformed sealed key")
	}
	for i := range keys {
		if keys[i].ID != id {
			continue
		}
		sl := sealerOf(keys[i])
		m := sl.get()
		k := string(m.xor(raw[:sealedIVSize], raw[sealedIVSize:]))
		sl.pool.Put(m)
		if hmac.Equal([]byte(SealKey(keys[i], k)), []byte(v)) {
			return k, nil
		}
	}
	return "", fmt.Errorf("open idempotency key: not sealed under a parameter key of id %q held (altered, or sealed by another key of that id)", id)
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

// SealIdempotencyKey is [SealKey] under the configured ParamKey.
func (l *Log) SealIdempotencyKey(k string) string { return SealKey(l.cfg.ParamKey, k) }

// OpenIdempotencyKey is [OpenKey] with the configured ParamKey and
// PreviousParamKeys.
func (l *Log) OpenIdempotencyKey(v string) (string, error) {
	return OpenKey(append([]ParamKey{l.cfg.ParamKey}, l.cfg.PreviousParamKeys...), v)
}
