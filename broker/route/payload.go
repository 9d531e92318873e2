package route

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/sqlgate/sqlgate/internal/utf8cut"
)

// maxDepth bounds nesting in payloads; route parameters are scalars, so a
// deep document is an attack or a mistake.
const maxDepth = 16

// InvalidError says why a payload was rejected. Field names the offending
// parameter ("" for the document as a whole); Message never contains the
// parameter's value. Error quotes at most maxQuoted bytes of Field.
type InvalidError struct {
	Field   string
	Message string
}

// Error implements error.
func (e *InvalidError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return fmt.Sprintf("field %q: %s", cut(e.Field, maxQuoted), e.Message)
}

// maxQuoted bounds, in bytes, the client's text (a field name) that an
// error message quotes: a name can be as long as the payload, and a reply
// quoting it whole, in its body and in the Nats-Service-Error header, can
// exceed the NATS server's max_payload and never reach the caller.
const maxQuoted = 128

// maxSchemaMessage bounds a message the schema validator wrote, whose parts
// this package does not choose (an enum's allowed values, a media type's
// parse error).
const maxSchemaMessage = 256

// cut is s cut to at most n bytes, between characters, with "…" appended
// when anything was cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return utf8cut.Cut(s, n) + "…"
}

// TooLargeError says a payload exceeded the route's MaxPayload.
type TooLargeError struct {
	Size, Max int
}

// Error implements error.
func (e *TooLargeError) Error() string {
	return fmt.Sprintf("payload of %d bytes exceeds the route limit of %d bytes", e.Size, e.Max)
}

// Decode checks the payload's size, parses it strictly as one JSON object,
// validates it against the route's schema and returns the parameters with
// typed values: string, int64 (JSON Schema "integer"), json.Number
// ("number", kept exact), bool, or nil. No string may contain the NUL
// character (U+0000): PostgreSQL cannot store it in text, and the dialects
// would disagree on it. No string or name may escape a UTF-16 surrogate
// outside a high+low pair ([ParseObject]). Errors are *TooLargeError or
// *InvalidError.
func (r *Route) Decode(payload []byte) (map[string]any, error) {
	if len(payload) > r.MaxPayload {
		return nil, &TooLargeError{Size: len(payload), Max: r.MaxPayload}
	}
	doc, err := ParseObject(payload)
	if err != nil {
		return nil, err
	}
	if err := r.schema.Validate(doc); err != nil {
		return nil, schemaError(err)
	}
	if err := rejectNUL(doc, ""); err != nil {
		return nil, err
	}
	for name, v := range doc {
		p, ok := r.byName[name]
		if !ok {
			continue // additionalProperties allowed by the route; passed through untyped
		}
		if n, isNum := v.(json.Number); isNum && p.Type == "integer" {
			i, err := n.Int64()
			if err != nil {
				return nil, &InvalidError{Field: name, Message: "must be an integer between -2^63 and 2^63-1 written without fraction or exponent"}
			}
			doc[name] = i
		}
	}
	return doc, nil
}

// rejectNUL returns an InvalidError naming the first field (in key order)
// whose string value, at any depth, contains U+0000.
func rejectNUL(v any, field string) error {
	switch x := v.(type) {
	case string:
		if strings.IndexByte(x, 0) >= 0 {
			return &InvalidError{Field: field, Message: "must not contain the NUL character (U+0000)"}
		}
	case []any:
		for _, el := range x {
			if err := rejectNUL(el, field); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if err := rejectNUL(x[k], joinField(field, k)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ParseObject parses data as exactly one JSON object: valid UTF-8, no
// duplicate keys at any depth, no trailing data, no escaped UTF-16
// surrogate outside a high+low pair, numbers kept as json.Number.
func ParseObject(data []byte) (map[string]any, error) {
	if !utf8.Valid(data) {
		return nil, &InvalidError{Message: "payload is not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, &InvalidError{Message: "payload is not JSON: " + jsonProblem(err)}
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, &InvalidError{Message: "payload must be a JSON object"}
	}
	// Only a document that writes \u somewhere can escape a surrogate; the
	// others skip the check.
	p := &parser{dec: dec, data: data, escapes: bytes.Contains(data, []byte(`\u`))}
	obj, err := p.object("", 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &InvalidError{Message: "trailing data after the JSON object"}
	}
	return obj, nil
}

// parser reads one object's tokens from dec, which decodes data.
type parser struct {
	dec     *json.Decoder
	data    []byte
	escapes bool // data contains `\u`
}

// unpairedMsg says why a string with a lone surrogate escape is refused.
// encoding/json decodes such an escape to U+FFFD without error, so
// "\ud800", "\udfff" and "\ufffd" would all be the same string: stored
// as a character the client did not send, and the same idempotency key with
// another of them replayed instead of a conflict.
const unpairedMsg = "contains an escaped UTF-16 surrogate (\\uD800 to \\uDFFF) that is not a high+low pair"

// token returns the next token and, when it is a string, whether its JSON
// text escapes a lone surrogate.
func (p *parser) token() (tok json.Token, unpaired bool, err error) {
	start := p.dec.InputOffset()
	tok, err = p.dec.Token()
	if err != nil || !p.escapes {
		return tok, false, err
	}
	if _, ok := tok.(string); ok {
		// data[start:end] is the string's text, after any separator and
		// whitespace, which hold no backslash.
		unpaired = loneSurrogate(p.data[start:p.dec.InputOffset()])
	}
	return tok, unpaired, nil
}

func (p *parser) object(path string, depth int) (map[string]any, error) {
	if depth > maxDepth {
		return nil, &InvalidError{Field: path, Message: fmt.Sprintf("nesting deeper than %d levels", maxDepth)}
	}
	obj := map[string]any{}
	for p.dec.More() {
		tok, unpaired, err := p.token()
		if err != nil {
			return nil, &InvalidError{Field: path, Message: "malformed JSON: " + jsonProblem(err)}
		}
		key, ok := tok.(string)
		if !ok {
			return nil, &InvalidError{Field: path, Message: "malformed JSON object"}
		}
		field := key
		if path != "" {
			field = path + "." + key
		}
		if unpaired {
			return nil, &InvalidError{Field: field, Message: "the name " + unpairedMsg}
		}
		if _, dup := obj[key]; dup {
			return nil, &InvalidError{Field: field, Message: "duplicate key"}
		}
		v, err := p.value(field, depth)
		if err != nil {
			return nil, err
		}
		obj[key] = v
	}
	if _, err := p.dec.Token(); err != nil { // closing '}'
		return nil, &InvalidError{Field: path, Message: "malformed JSON: " + jsonProblem(err)}
	}
	return obj, nil
}

func (p *parser) value(path string, depth int) (any, error) {
	tok, unpaired, err := p.token()
	if err != nil {
		return nil, &InvalidError{Field: path, Message: "malformed JSON: " + jsonProblem(err)}
	}
	if unpaired {
		return nil, &InvalidError{Field: path, Message: unpairedMsg}
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return p.object(path, depth+1)
		case '[':
			if depth+1 > maxDepth {
				return nil, &InvalidError{Field: path, Message: fmt.Sprintf("nesting deeper than %d levels", maxDepth)}
			}
			arr := []any{}
			for p.dec.More() {
				v, err := p.value(path, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := p.dec.Token(); err != nil {
				return nil, &InvalidError{Field: path, Message: "malformed JSON: " + jsonProblem(err)}
			}
			return arr, nil
		}
		return nil, &InvalidError{Field: path, Message: "malformed JSON"}
	case json.Number:
		if !saneExponent(t) {
			return nil, &InvalidError{Field: path, Message: fmt.Sprintf("number out of range: the exponent must be within ±%d", maxExponent)}
		}
		return t, nil
	default:
		return t, nil
	}
}

// loneSurrogate reports whether the JSON string text s (well-formed: the
// decoder accepted it) has a \u escape of a UTF-16 surrogate that is not a
// high surrogate (D800-DBFF) immediately followed by the escape of a low
// one (DC00-DFFF).
func loneSurrogate(s []byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		i++ // the escaped byte
		if i >= len(s) || s[i] != 'u' {
			continue
		}
		r := hex4(s[i+1:])
		i += 4
		switch {
		case r < 0xD800 || r > 0xDFFF:
		case r >= 0xDC00:
			return true // a low surrogate first
		case i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u':
			if lo := hex4(s[i+3:]); lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 6
		default:
			return true
		}
	}
	return false
}

// hex4 is the value of the 4 hex digits that start s, or -1.
func hex4(s []byte) rune {
	if len(s) < 4 {
		return -1
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// maxExponent bounds the exponent written in a JSON number. Valid JSON such
// as 1e999999999 parses, but neither the schema validator nor the policy
// engine can hold it as a number, and no SQL type can either (float(53) ends
// near 1e308).
const maxExponent = 400

// saneExponent reports whether n's written exponent, if any, is within
// ±maxExponent. n is valid JSON number syntax.
func saneExponent(n json.Number) bool {
	i := strings.IndexAny(string(n), "eE")
	if i < 0 {
		return true
	}
	e, err := strconv.Atoi(string(n[i+1:]))
	return err == nil && e >= -maxExponent && e <= maxExponent
}

// jsonProblem describes a JSON syntax error without quoting the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return "syntax error"
}

var printer = message.NewPrinter(language.English)

// schemaError turns a validation failure into an InvalidError naming the
// first offending field. Messages come from the schema keywords (type,
// bounds, lengths), never from the value itself, except that enum/const
// messages may list the allowed values, which come from the catalog.
func schemaError(err error) error {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return &InvalidError{Message: "invalid parameters"}
	}
	leaf := ve
	for len(leaf.Causes) > 0 {
		leaf = leaf.Causes[0]
	}
	field := strings.Join(leaf.InstanceLocation, ".")
	switch k := leaf.ErrorKind.(type) {
	case *kind.AdditionalProperties:
		if len(k.Properties) > 0 {
			return &InvalidError{Field: joinField(field, k.Properties[0]), Message: "unknown field"}
		}
	case *kind.Required:
		if len(k.Missing) > 0 {
			return &InvalidError{Field: joinField(field, k.Missing[0]), Message: "is required"}
		}
	case *kind.Type:
		return &InvalidError{Field: field, Message: fmt.Sprintf("must be %s, got %s", strings.Join(k.Want, " or "), k.Got)}
	case *kind.Pattern:
		// The validator's message quotes the value (or, under
		// propertyNames, the name), whatever its length.
		return &InvalidError{Field: field, Message: fmt.Sprintf("does not match the pattern %q", cut(k.Want, maxQuoted))}
	case *kind.Format:
		// The value and the parser's error (which may quote it) stay out.
		return &InvalidError{Field: field, Message: fmt.Sprintf("is not a valid %s", cut(k.Want, maxQuoted))}
	}
	return &InvalidError{Field: field, Message: cut(leaf.ErrorKind.LocalizedString(printer), maxSchemaMessage)}
}

func joinField(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
