package audit

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds the strict record parser behind [DecodeRecord]. It reads
// only the subset of JSON that the canonical encoder writes (objects with
// known keys in schema order, strings, integers, booleans, one array of
// strings, one object of strings) and is several times faster than
// encoding/json, which matters because the verifier decodes every record.
// Whatever it accepts is re-encoded and compared byte for byte, so it need
// not detect every non-canonical detail itself; it must only never accept
// malformed JSON and never panic.

// errSyntax is wrapped by the parser's errors.
var errSyntax = errors.New("invalid record JSON")

type parser struct {
	d   []byte
	i   int
	err error
	// spare, when set, provides the nested structs, map and slice the
	// record points to, so a decoder that does not keep records allocates
	// them once.
	spare *spare
}

// paramSlots is the first spare.last slot used for parameter names.
const paramSlots = 32

// spare holds reusable parts of a decoded record.
type spare struct {
	actor   Actor
	sql     SQL
	result  Result
	cred    Credential
	admin   Admin
	params  map[string]string
	reasons []string
	// last holds, per field slot, the previous record's value of fields
	// that usually repeat (origin, kind, route, ...), to reuse it without
	// allocating.
	last [64]string
}

// strSafe marks the bytes a JSON string may hold without ending or escaping.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (p *parser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%w at byte %d: %s", errSyntax, p.i, fmt.Sprintf(format, args...))
	}
}

func (p *parser) ok() bool { return p.err == nil }

func (p *parser) expect(c byte) {
	if p.err != nil {
		return
	}
	if p.i >= len(p.d) || p.d[p.i] != c {
		p.fail("want %q", c)
		return
	}
	p.i++
}

// next reports whether another member follows in an object whose first
// member has been read: it consumes ',' and returns true, or leaves '}'.
func (p *parser) more() bool {
	if p.err != nil || p.i >= len(p.d) {
		p.fail("unexpected end")
		return false
	}
	switch p.d[p.i] {
	case ',':
		p.i++
		return true
	case '}':
		return false
	}
	p.fail("want ',' or '}'")
	return false
}

// key reads `"name":` where name is plain ASCII without escapes and returns
// the name bytes (aliasing the input).
func (p *parser) key() []byte {
	p.expect('"')
	if p.err != nil {
		return nil
	}
	start := p.i
	for p.i < len(p.d) {
		c := p.d[p.i]
		if c == '"' {
			k := p.d[start:p.i]
			p.i++
			p.expect(':')
			return k
		}
		if c < 0x20 || c == '\\' || c >= utf8.RuneSelf {
			p.fail("unexpected character in key")
			return nil
		}
		p.i++
	}
	p.fail("unterminated key")
	return nil
}

// order enforces strictly increasing field positions inside one object,
// which rejects duplicates and reordering early.
func (p *parser) order(last *int, pos int, key []byte) {
	if pos <= *last {
		p.fail("field %q out of order or repeated", key)
	}
	*last = pos
}

func (p *parser) str() string {
	b := p.strBytes()
	if p.err != nil {
		return ""
	}
	return string(b)
}

// istr reads a string that usually repeats between records; slot names
// the field (or the parameter position) whose previous value it may reuse.
func (p *parser) istr(slot int) string {
	b := p.strBytes()
	if p.err != nil {
		return ""
	}
	if p.spare == nil || slot >= len(p.spare.last) {
		return string(b)
	}
	if last := p.spare.last[slot]; last == string(b) {
		return last
	}
	v := string(b)
	p.spare.last[slot] = v
	return v
}

// strBytes reads a JSON string and returns its decoded bytes. Without
// escapes the result aliases the input.
func (p *parser) strBytes() []byte {
	p.expect('"')
	if p.err != nil {
		return nil
	}
	start := p.i
	for p.i < len(p.d) && strSafe[p.d[p.i]] {
		p.i++
	}
	if p.i >= len(p.d) {
		p.fail("unterminated string")
		return nil
	}
	switch p.d[p.i] {
	case '"':
		s := p.d[start:p.i]
		p.i++
		return s
	case '\\':
		return p.strEscaped(start)
	}
	p.fail("control character in string")
	return nil
}

func (p *parser) strEscaped(start int) []byte {
	out := append([]byte(nil), p.d[start:p.i]...)
	for p.i < len(p.d) {
		c := p.d[p.i]
		switch {
		case c == '"':
			p.i++
			return out
		case c < 0x20:
			p.fail("control character in string")
			return nil
		case c != '\\':
			out = append(out, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.d) {
			break
		}
		p.i++
		switch p.d[p.i] {
		case '"':
			out = append(out, '"')
		case '\\':
			out = append(out, '\\')
		case '/':
			out = append(out, '/')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := p.hex4()
			if p.err != nil {
				return nil
			}
			if utf16.IsSurrogate(r) {
				// Canonical strings never escape surrogates; refuse
				// rather than reassemble pairs.
				p.fail("escaped surrogate")
				return nil
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			p.fail("invalid escape")
			return nil
		}
		p.i++
	}
	p.fail("unterminated string")
	return nil
}

// hex4 reads the 4 hex digits after `\u` (p.i is on 'u').
func (p *parser) hex4() rune {
	if p.i+4 >= len(p.d) {
		p.fail("short \\u escape")
		return 0
	}
	var r rune
	for _, c := range p.d[p.i+1 : p.i+5] {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			p.fail("invalid \\u escape")
			return 0
		}
		r = r<<4 | rune(v)
	}
	p.i += 5
	return r
}

// int reads a JSON integer (no fraction or exponent) that fits in int64.
func (p *parser) int() int64 {
	if p.err != nil {
		return 0
	}
	neg := false
	if p.i < len(p.d) && p.d[p.i] == '-' {
		neg = true
		p.i++
	}
	start := p.i
	var u uint64
	for p.i < len(p.d) {
		c := p.d[p.i]
		if c < '0' || c > '9' {
			break
		}
		if u > (1<<63)/10 {
			p.fail("integer overflow")
			return 0
		}
		u = u*10 + uint64(c-'0')
		p.i++
	}
	if p.i == start {
		p.fail("want integer")
		return 0
	}
	if p.i-start > 1 && p.d[start] == '0' {
		p.fail("leading zero")
		return 0
	}
	if neg {
		if u > 1<<63 {
			p.fail("integer overflow")
			return 0
		}
		return -int64(u)
	}
	if u > 1<<63-1 {
		p.fail("integer overflow")
		return 0
	}
	return int64(u)
}

func (p *parser) bool() bool {
	if p.err != nil {
		return false
	}
	rest := p.d[p.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.i += 4
		return true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.i += 5
		return false
	}
	p.fail("want boolean")
	return false
}

func (p *parser) time() time.Time {
	b := p.strBytes()
	if p.err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		p.fail("invalid time")
		return time.Time{}
	}
	return t
}

func (p *parser) strings() []string {
	p.expect('[')
	var out []string
	if p.spare != nil {
		out = p.spare.reasons[:0]
		defer func() { p.spare.reasons = out[:0] }()
	}
	if p.err == nil && p.i < len(p.d) && p.d[p.i] == ']' {
		p.i++
		return out
	}
	for p.err == nil {
		out = append(out, p.str())
		if p.err != nil || p.i >= len(p.d) {
			p.fail("unterminated array")
			return nil
		}
		if p.d[p.i] == ']' {
			p.i++
			return out
		}
		p.expect(',')
	}
	return nil
}

func (p *parser) stringMap() map[string]string {
	p.expect('{')
	var m map[string]string
	if p.spare != nil {
		if p.spare.params == nil {
			p.spare.params = make(map[string]string)
		}
		m = p.spare.params
		clear(m)
	} else {
		m = make(map[string]string)
	}
	if p.err == nil && p.i < len(p.d) && p.d[p.i] == '}' {
		p.i++
		return m
	}
	for n := paramSlots; p.err == nil; n++ {
		k := p.istr(n)
		p.expect(':')
		v := p.str()
		if _, dup := m[k]; dup {
			p.fail("duplicate parameter")
			return nil
		}
		m[k] = v
		if !p.more() {
			p.i++
			return m
		}
	}
	return nil
}

// object parses `{...}` calling field for each key; field returns the key's
// schema position (or -1 for an unknown key) after parsing its value.
func (p *parser) object(field func(key []byte) int) {
	p.expect('{')
	if p.err != nil {
		return
	}
	if p.i < len(p.d) && p.d[p.i] == '}' {
		p.i++
		return
	}
	last := -1
	for p.err == nil {
		k := p.key()
		if p.err != nil {
			return
		}
		pos := field(k)
		if pos < 0 {
			p.fail("unknown field %q", k)
			return
		}
		p.order(&last, pos, k)
		if !p.more() {
			p.i++
			return
		}
	}
}

func (p *parser) newActor() *Actor {
	if p.spare == nil {
		return new(Actor)
	}
	p.spare.actor = Actor{}
	return &p.spare.actor
}

func (p *parser) newSQL() *SQL {
	if p.spare == nil {
		return new(SQL)
	}
	p.spare.sql = SQL{}
	return &p.spare.sql
}

func (p *parser) newResult() *Result {
	if p.spare == nil {
		return new(Result)
	}
	p.spare.result = Result{}
	return &p.spare.result
}

func (p *parser) newCredential() *Credential {
	if p.spare == nil {
		return new(Credential)
	}
	p.spare.cred = Credential{}
	return &p.spare.cred
}

func (p *parser) newAdmin() *Admin {
	if p.spare == nil {
		return new(Admin)
	}
	p.spare.admin = Admin{}
	return &p.spare.admin
}

func (p *parser) record(r *Record) {
	p.object(func(k []byte) int {
		switch string(k) {
		case "v":
			r.V = int(p.int())
			return 0
		case "index":
			r.Index = p.int()
			return 1
		case "kind":
			r.Kind = Kind(p.istr(0))
			return 2
		case "time":
			r.Time = p.time()
			return 3
		case "origin":
			r.Origin = p.istr(1)
			return 4
		case "instance":
			r.Instance = p.istr(2)
			return 5
		case "correlation_id":
			r.CorrelationID = p.str()
			return 6
		case "intent_index":
			r.IntentIndex = p.int()
			return 7
		case "actor":
			r.Actor = p.newActor()
			p.actor(r.Actor)
			return 8
		case "decision_id":
			r.DecisionID = p.str()
			return 9
		case "entry":
			r.Entry = p.istr(3)
			return 10
		case "policy_revision":
			r.PolicyRevision = p.istr(4)
			return 11
		case "allow":
			v := p.bool()
			r.Allow = &v
			return 12
		case "reasons":
			r.Reasons = p.strings()
			return 13
		case "input_sha256":
			r.InputSHA256 = p.str()
			return 14
		case "input_hmac":
			r.InputHMAC = p.str()
			return 15
		case "route":
			r.Route = p.istr(5)
			return 16
		case "target_kind":
			r.TargetKind = p.istr(6)
			return 17
		case "target":
			r.Target = p.istr(7)
			return 18
		case "params":
			r.Params = p.stringMap()
			return 19
		case "idempotency_key":
			r.IdempotencyKey = p.str()
			return 20
		case "sql":
			r.SQL = p.newSQL()
			p.sql(r.SQL)
			return 21
		case "result":
			r.Result = p.newResult()
			p.result(r.Result)
			return 22
		case "credential":
			r.Credential = p.newCredential()
			p.credential(r.Credential)
			return 23
		case "admin":
			r.Admin = p.newAdmin()
			p.admin(r.Admin)
			return 24
		}
		return -1
	})
}

func (p *parser) actor(a *Actor) {
	p.object(func(k []byte) int {
		switch string(k) {
		case "issuer":
			a.Issuer = p.istr(8)
			return 0
		case "subject":
			a.Subject = p.str()
			return 1
		case "object_id":
			a.ObjectID = p.str()
			return 2
		case "email":
			a.Email = p.str()
			return 3
		case "mfa":
			a.MFA = p.bool()
			return 4
		case "nats_user_key":
			a.NATSUserKey = p.str()
			return 5
		case "sql_login":
			a.SQLLogin = p.str()
			return 6
		case "transport":
			a.Transport = p.istr(9)
			return 7
		case "client_host":
			a.ClientHost = p.str()
			return 8
		case "tenant":
			a.Tenant = p.istr(10)
			return 9
		}
		return -1
	})
}

func (p *parser) sql(s *SQL) {
	p.object(func(k []byte) int {
		switch string(k) {
		case "server":
			s.Server = p.istr(11)
			return 0
		case "database":
			s.Database = p.istr(12)
			return 1
		case "transaction_id":
			s.TransactionID = p.str()
			return 2
		case "outcome":
			s.Outcome = p.istr(13)
			return 3
		case "rows":
			s.Rows = p.int()
			return 4
		case "rows_affected":
			s.RowsAffected = p.int()
			return 5
		case "error_number":
			n := p.int()
			if int64(int(n)) != n {
				p.fail("error_number overflow")
			}
			s.ErrorNumber = int(n)
			return 6
		}
		return -1
	})
}

func (p *parser) result(s *Result) {
	p.object(func(k []byte) int {
		switch string(k) {
		case "status":
			s.Status = p.istr(14)
			return 0
		case "replayed":
			s.Replayed = p.bool()
			return 1
		case "recovered":
			s.Recovered = p.bool()
			return 2
		case "duration_us":
			s.DurationUS = p.int()
			return 3
		}
		return -1
	})
}

func (p *parser) credential(c *Credential) {
	p.object(func(k []byte) int {
		switch string(k) {
		case "type":
			c.Type = p.istr(15)
			return 0
		case "action":
			c.Action = p.istr(16)
			return 1
		case "lease_id":
			c.LeaseID = p.str()
			return 2
		case "user_key":
			c.UserKey = p.str()
			return 3
		case "login":
			c.Login = p.str()
			return 4
		case "database":
			c.Database = p.istr(17)
			return 5
		case "role":
			c.Role = p.istr(18)
			return 6
		case "via":
			c.Via = p.istr(19)
			return 7
		case "expires_at":
			c.ExpiresAt = p.time()
			return 8
		case "detail":
			c.Detail = p.str()
			return 9
		}
		return -1
	})
}

func (p *parser) admin(a *Admin) {
	p.object(func(k []byte) int {
		switch string(k) {
		case "action":
			a.Action = p.istr(20)
			return 0
		case "detail":
			a.Detail = p.str()
			return 1
		}
		return -1
	})
}
