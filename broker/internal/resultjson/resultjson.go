// Package resultjson writes the "result" object of sqlgate's reply envelope
// ({"rows":[...], "output":{...}, "return_value":0, "rows_affected":1}) for
// every SQL adapter and the brokertest fake, so that all of them encode
// values the same way: columns in the order the database returned them,
// numbers exact, times in UTC RFC 3339, bytes in base64, strings verbatim.
// Adapters convert their driver values to the Go types [AppendValue] takes.
package resultjson

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sqlgate/sqlgate/broker"
)

// Writer accumulates a call's result object. It is not safe for concurrent
// use.
type Writer struct {
	sets    [][]byte
	cur     []byte
	keys    [][]byte
	nrows   int
	total   int64
	maxRows int
}

// NewWriter returns a writer that fails a row once the call has returned
// maxRows rows across its result sets (maxRows <= 0: no limit).
func NewWriter(maxRows int) *Writer { return &Writer{maxRows: maxRows} }

// BeginSet starts a result set with the given column names.
func (w *Writer) BeginSet(cols []string) {
	w.cur = append(make([]byte, 0, 256), '[')
	w.nrows = 0
	// The quoted names share one buffer; each key is sliced from it once
	// the buffer stops growing.
	n := 0
	for _, c := range cols {
		n += len(c) + 3
	}
	buf := make([]byte, 0, n)
	var endsArr [16]int
	ends := endsArr[:0]
	for _, c := range cols {
		buf = append(AppendString(buf, c), ':')
		ends = append(ends, len(buf))
	}
	w.keys = slices.Grow(w.keys[:0], len(cols))
	start := 0
	for _, end := range ends {
		w.keys = append(w.keys, buf[start:end:end])
		start = end
	}
}

// Row appends one row, values in column order; it returns
// [broker.ErrTooManyRows] once the call's
// rows across sets exceed maxRows, and [ErrUnsupported] (wrapped) for a value
// of a type it cannot write.
func (w *Writer) Row(vals []any) error {
	if w.maxRows > 0 && w.total >= int64(w.maxRows) {
		return broker.ErrTooManyRows
	}
	w.total++
	if w.nrows > 0 {
		w.cur = append(w.cur, ',')
	}
	w.nrows++
	w.cur = append(w.cur, '{')
	for i, v := range vals {
		if i > 0 {
			w.cur = append(w.cur, ',')
		}
		w.cur = append(w.cur, w.keys[i]...)
		var err error
		if w.cur, err = AppendValue(w.cur, v); err != nil {
			return fmt.Errorf("column %d: %w", i+1, err)
		}
	}
	w.cur = append(w.cur, '}')
	return nil
}

// Rows returns the number of rows written across result sets.
func (w *Writer) Rows() int64 { return w.total }

// EndSet ends the current result set.
func (w *Writer) EndSet() {
	w.sets = append(w.sets, append(w.cur, ']'))
	w.cur = nil
}

// Output is one OUTPUT parameter value, in catalog order.
type Output struct {
	Name  string
	Value any
}

// Finish returns the result object: rows (the first set), output (when the
// route has outputs), return_value (when reported), rows_affected, and
// result_sets when there was more than one set.
func (w *Writer) Finish(outputs []Output, hasOutput bool, returnValue *int64, rowsAffected int64) ([]byte, error) {
	n := 64
	for _, s := range w.sets {
		n += 2 * len(s)
	}
	b := make([]byte, 0, n)
	b = append(b, `{"rows":`...)
	if len(w.sets) == 0 {
		b = append(b, "[]"...)
	} else {
		b = append(b, w.sets[0]...)
	}
	if hasOutput {
		b = append(b, `,"output":{`...)
		for i, o := range outputs {
			if i > 0 {
				b = append(b, ',')
			}
			b = AppendString(b, o.Name)
			b = append(b, ':')
			var err error
			if b, err = AppendValue(b, o.Value); err != nil {
				return nil, fmt.Errorf("output %s: %w", o.Name, err)
			}
		}
		b = append(b, '}')
	}
	if returnValue != nil {
		b = append(b, `,"return_value":`...)
		b = strconv.AppendInt(b, *returnValue, 10)
	}
	b = append(b, `,"rows_affected":`...)
	b = strconv.AppendInt(b, rowsAffected, 10)
	if len(w.sets) > 1 {
		b = append(b, `,"result_sets":[`...)
		for i, s := range w.sets {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, s...)
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// ErrUnsupported marks a value of a Go type the writer cannot encode.
var ErrUnsupported = errors.New("unsupported value type")

// AppendValue appends v as JSON: numbers as numbers (json.Number kept
// exact, or a string when it is not a JSON number; non-finite floats as the strings "NaN", "Infinity", "-Infinity"),
// strings verbatim, times as RFC 3339 in UTC, bytes as base64, nil as null,
// []any as an array.
func AppendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return AppendString(b, x), nil
	case []byte:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, x)
		return append(b, '"'), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case float64:
		return appendFloat(b, x, 64), nil
	case float32:
		return appendFloat(b, float64(x), 32), nil
	case json.Number:
		if x == "" {
			return append(b, "null"...), nil
		}
		if !isNumber(x) {
			// Text that is not a JSON number (a damaged stored result, say)
			// stays a string: it never becomes JSON structure.
			return AppendString(b, string(x)), nil
		}
		return append(b, x...), nil
	case json.RawMessage:
		if len(x) == 0 {
			return append(b, "null"...), nil
		}
		return append(b, x...), nil
	case time.Time:
		b = append(b, '"')
		b = x.UTC().AppendFormat(b, time.RFC3339Nano)
		return append(b, '"'), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = AppendValue(b, e); err != nil {
				return b, err
			}
		}
		return append(b, ']'), nil
	default:
		return b, fmt.Errorf("%w %T", ErrUnsupported, v)
	}
}

func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	return strconv.AppendFloat(b, f, format, -1, bits)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. It escapes what JSON
// requires plus U+2028/U+2029 and replaces invalid UTF-8 with U+FFFD, as
// encoding/json does, without HTML escaping.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
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
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// isNumber reports whether s is a JSON number: valid JSON that starts the
// way only a number can.
func isNumber(s json.Number) bool {
	return (s[0] == '-' || (s[0] >= '0' && s[0] <= '9')) && json.Valid([]byte(s))
}
