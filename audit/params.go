package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ParamRedacted is the value [Log.HashParams] records for a redacted
// parameter.
const ParamRedacted = "redacted"

// paramHashPrefix starts every keyed parameter hash.
const paramHashPrefix = "hmac-sha256:"

// ParamKey is an HMAC-SHA-256 key for parameter values. It is separate from
// the checkpoint signing key. ID is recorded in every hash it makes
// ("hmac-sha256:<id>:<hex>"), so after a rotation old records still name the
// key that can check them: keep retired keys (see [CheckParam]).
type ParamKey struct {
	// ID names the key; letters, digits, '-', '_' and '.' only.
	ID string
	// Secret is the key material, at least 16 bytes (32 recommended).
	Secret []byte
}

// String redacts the secret.
func (k ParamKey) String() string { return "ParamKey{ID:" + k.ID + ", Secret:redacted}" }

// GoString redacts the secret.
func (k ParamKey) GoString() string { return k.String() }

// LogValue redacts the secret.
func (k ParamKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Validate reports whether the key can be used.
func (k ParamKey) Validate() error {
	var errs []error
	if k.ID == "" {
		errs = append(errs, errors.New("param key: empty id"))
	}
	for _, c := range k.ID {
		if !validKeyIDChar(c) {
			errs = append(errs, fmt.Errorf("param key %q: id may hold only letters, digits, '-', '_', '.'", k.ID))
			break
		}
	}
	if len(k.Secret) < 16 {
		errs = append(errs, fmt.Errorf("param key %q: secret shorter than 16 bytes", k.ID))
	}
	return errors.Join(errs...)
}

func validKeyIDChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// HashValue returns the keyed hash of one parameter value:
// "hmac-sha256:<key id>:<hex>" over the canonical JSON encoding of v (see
// [CanonicalValue]). Values that cannot be encoded hash as the string
// "unencodable:<Go type>" so the record still shows that a value was there.
func HashValue(key ParamKey, v any) string {
	var e encoder
	return hashValue(hmac.New(sha256.New, key.Secret), key.ID, &e, v)
}

// hashValue is [HashValue] with m, the HMAC of the key named id in its
// initial state, and e, an encoder whose buffer it may reuse.
func hashValue(m hash.Hash, id string, e *encoder, v any) string {
	*e = encoder{b: e.b[:0]}
	e.value(v, 0)
	enc := e.b
	if e.err != nil {
		enc = []byte("unencodable:" + reflect.TypeOf(v).String())
	}
	m.Write(enc)
	return keyedSum(m, id)
}

// keyedSum returns "hmac-sha256:<id>:<hex>" of the HMAC m.
func keyedSum(m hash.Hash, id string) string {
	var sum [sha256.Size]byte
	out := make([]byte, 0, len(paramHashPrefix)+len(id)+1+2*sha256.Size)
	out = append(out, paramHashPrefix...)
	out = append(out, id...)
	out = append(out, ':')
	out = hex.AppendEncode(out, m.Sum(sum[:0]))
	return string(out)
}

// paramHasher makes the keyed hashes of one [ParamKey] ([HashParams],
// [HashInput]) with HMAC states it reuses: setting up an HMAC (two hash
// states and a block for each key pad) costs more than hashing a short
// parameter value. The hashes are those of the package functions.
type paramHasher struct {
	key  ParamKey
	pool sync.Pool // of *paramMAC
}

type paramMAC struct {
	m hash.Hash // keyed with key.Secret, reset before each use
	e encoder
}

// maxPooledEncoding bounds the encoding buffer a pooled state keeps.
const maxPooledEncoding = 64 << 10

func (h *paramHasher) get() *paramMAC {
	if s, ok := h.pool.Get().(*paramMAC); ok {
		s.m.Reset()
		return s
	}
	return &paramMAC{m: hmac.New(sha256.New, h.key.Secret)}
}

func (h *paramHasher) put(s *paramMAC) {
	if cap(s.e.b) > maxPooledEncoding {
		s.e.b = nil
	}
	s.e.err = nil
	h.pool.Put(s)
}

// params is [HashParams] under h's key.
func (h *paramHasher) params(params map[string]any, redact []string) map[string]string {
	if len(params) == 0 {
		return nil
	}
	s := h.get()
	defer h.put(s)
	out := make(map[string]string, len(params))
	first := true
	for name, v := range params {
		if slices.Contains(redact, name) {
			out[name] = ParamRedacted
			continue
		}
		if !first {
			s.m.Reset()
		}
		first = false
		out[name] = hashValue(s.m, h.key.ID, &s.e, v)
	}
	return out
}

// input is [HashInput] under h's key.
func (h *paramHasher) input(input []byte) string {
	s := h.get()
	defer h.put(s)
	return hashInput(s.m, h.key.ID, input)
}

// CheckParam reports whether hashed (a value of [Record.Params]) is the
// keyed hash of v under one of keys, chosen by the key id in hashed. It
// returns an error when hashed is malformed or names a key not in keys.
func CheckParam(keys []ParamKey, v any, hashed string) (bool, error) {
	k, err := keyOf(keys, hashed)
	if err != nil {
		return false, fmt.Errorf("check param: %w", err)
	}
	return hmac.Equal([]byte(HashValue(k, v)), []byte(hashed)), nil
}

// keyOf returns the key of keys whose id the keyed hash hashed
// ("hmac-sha256:<id>:<hex>") names: an error wrapping [ErrUnknownParamKey]
// when none does, another when hashed is not a keyed hash.
func keyOf(keys []ParamKey, hashed string) (ParamKey, error) {
	rest, ok := strings.CutPrefix(hashed, paramHashPrefix)
	if !ok {
		return ParamKey{}, errors.New("not a keyed hash")
	}
	id, _, ok := strings.Cut(rest, ":")
	if !ok {
		return ParamKey{}, errors.New("malformed keyed hash")
	}
	i := slices.IndexFunc(keys, func(k ParamKey) bool { return k.ID == id })
	if i < 0 {
		return ParamKey{}, fmt.Errorf("%w %q", ErrUnknownParamKey, id)
	}
	return keys[i], nil
}

// HashParams returns [HashValue] of every parameter with key, and
// [ParamRedacted] for the names listed in redact.
func HashParams(key ParamKey, params map[string]any, redact []string) map[string]string {
	h := paramHasher{key: key}
	return h.params(params, redact)
}

// CanonicalValue encodes a parameter value as canonical JSON: object keys
// sorted bytewise, no whitespace, strings escaped as in records, integral
// numbers in plain decimal (1, 1.0 and 1e0 all encode as 1), other numbers in
// Go's shortest 'g' form, times as UTC RFC 3339, byte slices as base64
// strings. It accepts what encoding/json decodes into (map[string]any, []any,
// string, float64, json.Number, bool, nil) plus Go integers, time.Time and
// []byte; other types go through encoding/json first.
func CanonicalValue(v any) ([]byte, error) {
	e := encoder{}
	e.value(v, 0)
	if e.err != nil {
		return nil, e.err
	}
	return e.b, nil
}

const maxValueDepth = 64

func (e *encoder) value(v any, depth int) {
	if depth > maxValueDepth {
		e.fail("value nested too deeply")
		return
	}
	switch x := v.(type) {
	case nil:
		e.b = append(e.b, "null"...)
	case bool:
		e.b = strconv.AppendBool(e.b, x)
	case string:
		e.string(x)
	case json.Number:
		e.number(string(x))
	case float64:
		e.float(x)
	case float32:
		e.float(float64(x))
	case int:
		e.b = strconv.AppendInt(e.b, int64(x), 10)
	case int8:
		e.b = strconv.AppendInt(e.b, int64(x), 10)
	case int16:
		e.b = strconv.AppendInt(e.b, int64(x), 10)
	case int32:
		e.b = strconv.AppendInt(e.b, int64(x), 10)
	case int64:
		e.b = strconv.AppendInt(e.b, x, 10)
	case uint:
		e.b = strconv.AppendUint(e.b, uint64(x), 10)
	case uint8:
		e.b = strconv.AppendUint(e.b, uint64(x), 10)
	case uint16:
		e.b = strconv.AppendUint(e.b, uint64(x), 10)
	case uint32:
		e.b = strconv.AppendUint(e.b, uint64(x), 10)
	case uint64:
		e.b = strconv.AppendUint(e.b, x, 10)
	case time.Time:
		e.b = appendTime(e.b, x, e)
	case []byte:
		e.string(base64.StdEncoding.EncodeToString(x))
	case []any:
		e.b = append(e.b, '[')
		for i, el := range x {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.value(el, depth+1)
		}
		e.b = append(e.b, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		e.b = append(e.b, '{')
		for i, k := range keys {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.string(k)
			e.b = append(e.b, ':')
			e.value(x[k], depth+1)
		}
		e.b = append(e.b, '}')
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			e.fail("encode %T: %w", v, err)
			return
		}
		var generic any
		d := json.NewDecoder(strings.NewReader(string(raw)))
		d.UseNumber()
		if err := d.Decode(&generic); err != nil {
			e.fail("encode %T: %w", v, err)
			return
		}
		e.value(generic, depth+1)
	}
}

func (e *encoder) float(f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		e.fail("number is not finite")
		return
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
		e.b = strconv.AppendInt(e.b, int64(f), 10)
		return
	}
	e.b = strconv.AppendFloat(e.b, f, 'g', -1, 64)
}

// number canonicalizes a JSON number literal: plain integers print as
// decimal integers (any size), other literals as [encoder.float] of their
// float64 value, so 1, 1.0 and 1e0 agree.
func (e *encoder) number(s string) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		e.b = strconv.AppendInt(e.b, n, 10)
		return
	}
	if isPlainInteger(s) {
		e.b = append(e.b, s...)
		return
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		e.fail("invalid number")
		return
	}
	e.float(f)
}

// isPlainInteger reports whether s is a JSON integer literal: an optional
// minus, then "0" or a non-zero digit followed by digits.
func isPlainInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" || s[0] == '0' && len(s) > 1 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
