package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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
	m := hmac.New(sha256.New, key.Secret)
	m.Write([]byte(inputHashDomain))
	m.Write(input)
	var sum [sha256.Size]byte
	out := make([]byte, 0, len(paramHashPrefix)+len(key.ID)+1+2*sha256.Size)
	out = append(out, paramHashPrefix...)
	out = append(out, key.ID...)
	out = append(out, ':')
	out = hex.AppendEncode(out, m.Sum(sum[:0]))
	return string(out)
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
