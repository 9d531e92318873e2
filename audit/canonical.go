package audit

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// ErrNotCanonical is returned (wrapped) by [DecodeRecord] for input that is
// valid JSON but not the canonical encoding of the record it describes:
// whitespace, another field order, unknown or duplicate fields, escapes other
// than the canonical ones, empty optional values, non-UTC times.
var ErrNotCanonical = errors.New("record is not in canonical form")

// MarshalCanonical returns the canonical encoding of r: the bytes that are
// hashed into the Merkle tree. It is JSON with a fixed field order (the order
// of the struct fields), no insignificant whitespace, optional fields omitted
// when empty, parameter names sorted bytewise, strings escaped minimally
// (only '"', '\\' and control characters; \b \f \n \r \t short forms, other
// controls as lowercase \u00xx), integers in decimal, and times in UTC RFC 3339
// with the shortest nanosecond fraction. It fails for records that schema v1
// does not allow (unknown kind or version, negative index, zero time, invalid
// UTF-8, ...).
func (r *Record) MarshalCanonical() ([]byte, error) {
	return r.AppendCanonical(nil)
}

// AppendCanonical appends the canonical encoding of r to b (see
// [Record.MarshalCanonical]). On error b is returned unchanged in length.
func (r *Record) AppendCanonical(b []byte) ([]byte, error) {
	start := len(b)
	e := encoder{b: b}
	r.encode(&e)
	if e.err != nil {
		return b[:start], fmt.Errorf("encode record %d: %w", r.Index, e.err)
	}
	return e.b, nil
}

// DecodeRecord parses the canonical encoding of a record. It rejects anything
// that [Record.MarshalCanonical] would not produce byte for byte: unknown
// fields, trailing data, whitespace, other field orders, duplicate fields,
// non-UTC or non-shortest times, unknown kinds or versions, empty optional
// values. Errors wrap [ErrNotCanonical] when the JSON was readable but not
// canonical.
func DecodeRecord(data []byte) (*Record, error) {
	var d recordDecoder
	r := new(Record)
	if err := d.decode(r, data); err != nil {
		return nil, err
	}
	return r, nil
}

// recordDecoder decodes many records reusing its buffers; not safe for
// concurrent use.
type recordDecoder struct {
	scratch []byte
	// spare, when set, makes decoded records share nested structs with
	// each other: only for callers that drop each record before decoding
	// the next.
	spare *spare
}

func (d *recordDecoder) decode(r *Record, data []byte) error {
	*r = Record{}
	p := parser{d: data, spare: d.spare}
	p.record(r)
	if p.err == nil && p.i != len(data) {
		p.fail("trailing data")
	}
	if p.err != nil {
		return fmt.Errorf("decode record: %w", p.err)
	}
	e := encoder{b: d.scratch[:0]}
	r.encode(&e)
	d.scratch = e.b
	if e.err != nil {
		return fmt.Errorf("decode record: %w", e.err)
	}
	if !bytes.Equal(e.b, data) {
		return fmt.Errorf("decode record: %w (first difference at byte %d)", ErrNotCanonical, firstDiff(e.b, data))
	}
	return nil
}

func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// Schema errors reported by the encoder.
var (
	errInvalidUTF8 = errors.New("string is not valid UTF-8")
)

// encoder appends canonical JSON to b and remembers the first error.
type encoder struct {
	b     []byte
	err   error
	first bool // no field written yet in the current object
}

func (e *encoder) fail(format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf(format, args...)
	}
}

func (e *encoder) open() {
	e.b = append(e.b, '{')
	e.first = true
}

func (e *encoder) close() {
	e.b = append(e.b, '}')
	e.first = false
}

// key writes a member name given already quoted with its colon
// (`"name":`), preceded by a comma unless it is the object's first member.
// Names are constants of ours and need no escaping.
func (e *encoder) key(quoted string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.b = append(e.b, quoted...)
}

func (e *encoder) str(name, v string) {
	e.key(name)
	e.string(v)
}

func (e *encoder) optStr(name, v string) {
	if v != "" {
		e.str(name, v)
	}
}

func (e *encoder) int(name string, v int64) {
	e.key(name)
	e.b = strconv.AppendInt(e.b, v, 10)
}

func (e *encoder) optInt(name string, v int64) {
	if v != 0 {
		e.int(name, v)
	}
}

func (e *encoder) bool(name string, v bool) {
	e.key(name)
	e.b = strconv.AppendBool(e.b, v)
}

func (e *encoder) optBool(name string, v bool) {
	if v {
		e.bool(name, v)
	}
}

func (e *encoder) time(name string, t time.Time) {
	e.key(name)
	e.b = appendTime(e.b, t, e)
}

func appendTime(b []byte, t time.Time, e *encoder) []byte {
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		e.fail("time year %d outside [0,9999]", y)
		return b
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// plain marks the ASCII bytes a canonical string holds unescaped.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// string appends s as a canonical JSON string.
func (e *encoder) string(s string) {
	b := append(e.b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"':
				b = append(b, '\\', '"')
			case '\\':
				b = append(b, '\\', '\\')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			e.fail("%w", errInvalidUTF8)
			e.b = b
			return
		}
		i += size
	}
	b = append(b, s[start:]...)
	e.b = append(b, '"')
}

func (r *Record) encode(e *encoder) {
	if r.V != SchemaVersion {
		e.fail("unsupported schema version %d", r.V)
	}
	if r.Index < 0 {
		e.fail("negative index %d", r.Index)
	}
	if !r.Kind.Valid() {
		e.fail("unknown kind %q", r.Kind)
	}
	if r.Time.IsZero() {
		e.fail("zero time")
	}
	if r.Origin == "" {
		e.fail("empty origin")
	}
	if r.IntentIndex < 0 {
		e.fail("negative intent_index %d", r.IntentIndex)
	}
	if r.InputSHA256 != "" && r.InputHMAC != "" {
		e.fail("input_sha256 and input_hmac both set")
	}
	e.open()
	e.int(`"v":`, int64(r.V))
	e.int(`"index":`, r.Index)
	e.str(`"kind":`, string(r.Kind))
	e.time(`"time":`, r.Time)
	e.str(`"origin":`, r.Origin)
	e.str(`"instance":`, r.Instance)
	e.optStr(`"correlation_id":`, r.CorrelationID)
	e.optInt(`"intent_index":`, r.IntentIndex)
	if a := r.Actor; a != nil {
		e.key(`"actor":`)
		e.open()
		e.optStr(`"issuer":`, a.Issuer)
		e.optStr(`"subject":`, a.Subject)
		e.optStr(`"object_id":`, a.ObjectID)
		e.optStr(`"email":`, a.Email)
		e.bool(`"mfa":`, a.MFA)
		e.optStr(`"nats_user_key":`, a.NATSUserKey)
		e.optStr(`"sql_login":`, a.SQLLogin)
		e.optStr(`"transport":`, a.Transport)
		e.optStr(`"client_host":`, a.ClientHost)
		e.optStr(`"tenant":`, a.Tenant)
		e.close()
	}
	e.optStr(`"decision_id":`, r.DecisionID)
	e.optStr(`"entry":`, r.Entry)
	e.optStr(`"policy_revision":`, r.PolicyRevision)
	if r.Allow != nil {
		e.bool(`"allow":`, *r.Allow)
	}
	if len(r.Reasons) > 0 {
		e.key(`"reasons":`)
		e.b = append(e.b, '[')
		for i, s := range r.Reasons {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.string(s)
		}
		e.b = append(e.b, ']')
	}
	e.optStr(`"input_sha256":`, r.InputSHA256)
	e.optStr(`"input_hmac":`, r.InputHMAC)
	e.optStr(`"route":`, r.Route)
	e.optStr(`"target_kind":`, r.TargetKind)
	e.optStr(`"target":`, r.Target)
	if len(r.Params) > 0 {
		e.key(`"params":`)
		e.encodeParams(r.Params)
	}
	e.optStr(`"idempotency_key":`, r.IdempotencyKey)
	if s := r.SQL; s != nil {
		e.key(`"sql":`)
		e.open()
		e.optStr(`"server":`, s.Server)
		e.optStr(`"database":`, s.Database)
		e.optStr(`"transaction_id":`, s.TransactionID)
		e.str(`"outcome":`, s.Outcome)
		e.int(`"rows":`, s.Rows)
		e.int(`"rows_affected":`, s.RowsAffected)
		e.optInt(`"error_number":`, int64(s.ErrorNumber))
		e.close()
	}
	if s := r.Result; s != nil {
		e.key(`"result":`)
		e.open()
		e.str(`"status":`, s.Status)
		e.optBool(`"replayed":`, s.Replayed)
		e.optBool(`"recovered":`, s.Recovered)
		e.int(`"duration_us":`, s.DurationUS)
		e.close()
	}
	if c := r.Credential; c != nil {
		e.key(`"credential":`)
		e.open()
		e.str(`"type":`, c.Type)
		e.str(`"action":`, c.Action)
		e.optStr(`"lease_id":`, c.LeaseID)
		e.optStr(`"user_key":`, c.UserKey)
		e.optStr(`"login":`, c.Login)
		e.optStr(`"database":`, c.Database)
		e.optStr(`"role":`, c.Role)
		e.optStr(`"via":`, c.Via)
		if !c.ExpiresAt.IsZero() {
			e.time(`"expires_at":`, c.ExpiresAt)
		}
		e.optStr(`"detail":`, c.Detail)
		e.close()
	}
	if a := r.Admin; a != nil {
		e.key(`"admin":`)
		e.open()
		e.str(`"action":`, a.Action)
		e.optStr(`"detail":`, a.Detail)
		e.close()
	}
	e.close()
}

// encodeParams writes the map with keys sorted bytewise. Small maps are
// sorted in a stack array to avoid allocating.
func (e *encoder) encodeParams(m map[string]string) {
	var arr [16]string
	keys := arr[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.open()
	for _, k := range keys {
		if !e.first {
			e.b = append(e.b, ',')
		}
		e.first = false
		e.string(k)
		e.b = append(e.b, ':')
		e.string(m[k])
	}
	e.close()
}
