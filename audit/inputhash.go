package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// inputHashDomain starts the message of every decision-input HMAC, so that
// it never equals the HMAC of a parameter value under the same key.
const inputHashDomain = "sqlgate decision input v1\x00"

// HashInput returns the keyed hash of a decision input (the sidecar
// [Log.AppendWithInput] stores) for [Record.InputHMAC]:
// "hmac-sha256:<key id>:<hex>" of HMAC-SHA-256 under the parameter key of
// "sqlgate decision input v1", a zero byte and the input's bytes. Like the
// parameter hashes, it can only be recomputed, or a guess of the input
// confirmed, with the key.
func HashInput(key ParamKey, input []byte) string {
	return hashInput(hmac.New(sha256.New, key.Secret), key.ID, input)
}

// inputDomain is inputHashDomain as bytes (a conversion at each call would
// allocate: the HMAC's Write is an interface method).
var inputDomain = []byte(inputHashDomain)

// hashInput is [HashInput] with m, the HMAC of the key named id in its
// initial state.
func hashInput(m hash.Hash, id string, input []byte) string {
	m.Write(inputDomain)
	m.Write(input)
	return keyedSum(m, id)
}

// ErrUnknownParamKey is returned (wrapped) by [CheckInput] when a keyed
// hash names a parameter key id that is not among the keys given.
var ErrUnknownParamKey = errors.New("unknown parameter key id")

// CheckInput reports whether input is the decision input that r's hash
// names: with [Record.InputHMAC], its keyed hash under the key of keys
// whose id the hash names; with [Record.InputSHA256] (records written
// before the keyed hash), its SHA-256. It returns an error when r names
// neither, when the keyed hash is malformed, or when it names a key not in
// keys ([ErrUnknownParamKey]).
func CheckInput(keys []ParamKey, r *Record, input []byte) (bool, error) {
	switch {
	case r.InputHMAC != "":
		k, err := keyOf(keys, r.InputHMAC)
		if err != nil {
			return false, fmt.Errorf("check input: input_hmac: %w", err)
		}
		return hmac.Equal([]byte(HashInput(k, input)), []byte(r.InputHMAC)), nil
	case r.InputSHA256 != "":
		sum := sha256.Sum256(input)
		return hmac.Equal([]byte(hex.EncodeToString(sum[:])), []byte(r.InputSHA256)), nil
	}
	return false, errors.New("check input: the record names no decision input")
}
