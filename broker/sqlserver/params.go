package sqlserver

import (
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/golang-sql/civil"
	"github.com/google/uuid"
	mssql "github.com/microsoft/go-mssqldb"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
)

// baseType is the lower-case type name of a catalog SQL type without its
// length/precision ("decimal(12,2)" -> "decimal"); "" when none is declared.
func baseType(sqlType string) string {
	b, _, _ := strings.Cut(strings.ToLower(strings.TrimSpace(sqlType)), "(")
	return strings.TrimSpace(b)
}

// bindValue converts a decoded parameter value to the Go value go-mssqldb
// sends with the intended SQL type:
//
//	string            nvarchar(max) (one sp_executesql declaration whatever the length)
//	integer           bigint; int/smallint/tinyint when declared (range-checked)
//	number            its exact decimal text, in plain notation (the server
//	                  converts it to the parameter's decimal type, and takes
//	                  no exponent there); float/real when declared
//	boolean           bit
//	uniqueidentifier  from its text; datetime2 / datetimeoffset / date / time
//	                  from RFC 3339 text; varbinary / binary from base64
//	null              a NULL typed after the declared or JSON type
//
// A value that cannot be converted is a *route.InvalidError naming the
// field, never quoting the value. So is a value longer than a declared
// string or binary length (nvarchar(n), varchar(n), nchar(n), char(n),
// varbinary(n), binary(n)): CAST in a statement, and a procedure's
// parameter, would cut it silently (see fitsDeclared).
func bindValue(p *route.Param, name string, v any) (any, error) {
	bt := ""
	jt := ""
	if p != nil {
		bt, jt = baseType(p.SQLType), p.Type
	}
	bad := func(msg string) error { return &route.InvalidError{Field: name, Message: msg} }
	if n, ok := v.(json.Number); ok && !floatType(bt) {
		// The server converts the text (CAST to decimal, a decimal or int
		// parameter), and SQL Server's string to decimal/numeric
		// conversion takes no exponent: CAST(N'1e-05' AS decimal(12,5))
		// fails with 8114. So the text is written out in plain decimal
		// notation, exactly.
		plain, ok := plainDecimal(string(n))
		if !ok {
			return nil, bad(fmt.Sprintf("must be a number (exponent within ±%d)", maxExponent))
		}
		v = json.Number(plain)
	}
	if p != nil {
		if msg := fitsDeclared(p.SQLType, v); msg != "" {
			return nil, bad(msg)
		}
	}
	switch x := v.(type) {
	case nil:
		return typedNull(bt, jt), nil
	case bool:
		return x, nil
	case int64:
		switch bt {
		case "int":
			if x < math.MinInt32 || x > math.MaxInt32 {
				return nil, bad("out of range for int")
			}
			return int32(x), nil
		case "smallint":
			if x < math.MinInt16 || x > math.MaxInt16 {
				return nil, bad("out of range for smallint")
			}
			return int16(x), nil
		case "tinyint":
			if x < 0 || x > 255 {
				return nil, bad("out of range for tinyint")
			}
			return uint8(x), nil
		case "bit", "boolean":
			if x != 0 && x != 1 {
				return nil, bad("must be 0 or 1 for bit")
			}
			return x == 1, nil
		case "float", "real", "double precision":
			return float64(x), nil
		}
		return x, nil
	case json.Number:
		switch {
		case floatType(bt):
			f, err := strconv.ParseFloat(string(x), 64)
			if err != nil {
				return nil, bad("must be a number representable as a float")
			}
			return f, nil
		case bt == "int", bt == "bigint", bt == "smallint", bt == "tinyint":
			i, err := strconv.ParseInt(string(x), 10, 64)
			if err != nil {
				return nil, bad("must be an integer")
			}
			return bindValue(p, name, i)
		}
		// Exact: the plain decimal text, converted by the server (decimal,
		// numeric, money) — never through float64.
		return mssql.NVarCharMax(string(x)), nil
	case string:
		switch bt {
		case "uniqueidentifier", "uuid":
			// Parsed here: go-mssqldb's UniqueIdentifier.Scan panics on some
			// malformed 36-character strings.
			u, err := uuid.Parse(x)
			if err != nil {
				return nil, bad("must be a uniqueidentifier")
			}
			return mssql.UniqueIdentifier(u), nil
		case "datetime2", "timestamp":
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return nil, bad("must be an RFC 3339 date-time")
			}
			return civil.DateTimeOf(t.UTC()), nil
		case "datetimeoffset", "timestamptz":
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return nil, bad("must be an RFC 3339 date-time")
			}
			return mssql.DateTimeOffset(t), nil
		case "date":
			d, err := civil.ParseDate(x)
			if err != nil {
				return nil, bad("must be a date (YYYY-MM-DD)")
			}
			return d, nil
		case "time":
			t, err := civil.ParseTime(x)
			if err != nil {
				return nil, bad("must be a time (HH:MM:SS[.fraction])")
			}
			return t, nil
		case "varbinary", "binary":
			b, err := base64.StdEncoding.DecodeString(x)
			if err != nil {
				return nil, bad("must be base64")
			}
			return b, nil
		}
		return mssql.NVarCharMax(x), nil
	default:
		return nil, fmt.Errorf("parameter %s: unsupported value type %T", name, v)
	}
}

func floatType(bt string) bool {
	return bt == "float" || bt == "real" || bt == "double precision"
}

// maxExponent bounds the exponent plainDecimal writes out, as the payload
// parser bounds the exponent of every JSON number (route.ParseObject):
// the plain text is at most that many digits longer than the number.
const maxExponent = 400

// plainDecimal rewrites a JSON number in plain decimal notation, exactly
// (digits are moved, never computed): "1e-05" is "0.00001", "-2.50E+1" is
// "-25.0", "1E+21" is "1000000000000000000000". A number without an
// exponent is returned as written. It reports false for text that is not a
// JSON number or whose exponent is beyond ±maxExponent.
func plainDecimal(n string) (string, bool) {
	sign := ""
	if strings.HasPrefix(n, "-") {
		sign, n = "-", n[1:]
	}
	mant, expText, hasExp := strings.Cut(strings.ToLower(n), "e")
	intPart, frac, hasPoint := strings.Cut(mant, ".")
	if !allDigits(intPart) || (hasPoint && !allDigits(frac)) {
		return "", false
	}
	if !hasExp {
		return sign + n, true
	}
	exp, err := strconv.Atoi(expText)
	if err != nil || exp < -maxExponent || exp > maxExponent {
		return "", false
	}
	digits := intPart + frac
	point := len(intPart) + exp // digits before the decimal point
	for len(digits) > 0 && digits[0] == '0' {
		digits, point = digits[1:], point-1
	}
	switch {
	case digits == "":
		return "0", true
	case point <= 0:
		return sign + "0." + strings.Repeat("0", -point) + digits, true
	case point >= len(digits):
		return sign + digits + strings.Repeat("0", point-len(digits)), true
	default:
		return sign + digits[:point] + "." + digits[point:], true
	}
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// fitsDeclared checks a value against the length of its declared string
// or binary type and returns what is wrong, or "" when it fits or no
// length is declared. Lengths are those SQL Server counts: an nvarchar(n)
// or nchar(n) holds n UTF-16 code units (a character outside the BMP takes
// two); varbinary(n)/binary(n) n bytes of the base64-decoded value. A
// varchar(n)/char(n) holds n bytes in the collation's code page, which
// sqlgate does not know: it checks the UTF-16 length, exact for ASCII text
// and a lower bound otherwise (a character takes at least one byte), so a
// non-ASCII value that passes may still be cut by the server. Numbers bound
// to a string type are checked as the text the server converts them to.
// Invalid base64 is left to bindValue.
func fitsDeclared(sqlType string, v any) string {
	t := tsqlType(sqlType)
	base, arg, ok := strings.Cut(t, "(")
	if !ok {
		return ""
	}
	n, err := strconv.Atoi(strings.TrimSuffix(arg, ")"))
	if err != nil { // max, or a precision list
		return ""
	}
	length := -1
	switch base {
	case "nvarchar", "nchar", "varchar", "char":
		switch x := v.(type) {
		case string:
			length = utf16Len(x)
		case json.Number:
			length = len(x)
		case int64:
			length = len(strconv.FormatInt(x, 10))
		}
	case "varbinary", "binary":
		if x, ok := v.(string); ok {
			if b, err := base64.StdEncoding.DecodeString(x); err == nil {
				length = len(b)
			}
		}
	}
	if length > n {
		return "longer than the declared " + t
	}
	return ""
}

// utf16Len is the length of s in UTF-16 code units, as nvarchar counts.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r > 0xFFFF {
			n += 2
		} else {
			n++
		}
	}
	return n
}

func typedNull(bt, jt string) any {
	switch bt {
	case "int", "bigint", "smallint", "tinyint":
		return sql.NullInt64{}
	case "bit", "boolean":
		return sql.NullBool{}
	case "float", "real", "double precision":
		return sql.NullFloat64{}
	case "uniqueidentifier", "uuid":
		return mssql.NullUniqueIdentifier{}
	case "datetime2", "timestamp":
		return mssql.NullDateTime{}
	case "datetimeoffset", "timestamptz":
		return sql.NullTime{}
	case "date":
		return mssql.NullDate{}
	case "time":
		return mssql.NullTime{}
	case "varbinary", "binary":
		return []byte(nil)
	case "decimal", "numeric":
		return sql.NullString{}
	}
	switch jt {
	case "integer":
		return sql.NullInt64{}
	case "boolean":
		return sql.NullBool{}
	case "string", "number":
		return sql.NullString{}
	}
	return nil
}

// outParam is an OUTPUT parameter's destination.
type outParam struct {
	name string
	dest any // pointer to a sql.Null*, stringOut or []byte
}

// stringOut is the destination of a string OUTPUT parameter. go-mssqldb
// declares a *sql.NullString destination nvarchar(4000), which would cut a
// longer value of an nvarchar(max) OUTPUT parameter silently, and has no
// NULL nvarchar(max); it declares the empty string nvarchar(max). So
// stringOut sends an empty string (the call batch sets the parameter to
// NULL before the EXEC, see procCall) and scans the value back as a
// sql.NullString.
type stringOut struct{ sql.NullString }

// Value is what the driver sends and declares: an empty nvarchar(max).
func (stringOut) Value() (driver.Value, error) { return "", nil }

// newOut returns the destination of an OUTPUT parameter: its Go type sets
// the type the driver declares (bigint, float, bit, nvarchar(4000) for
// decimals, nvarchar(max) for strings, datetimeoffset, uniqueidentifier,
// varbinary(max)).
func newOut(p route.Param) *outParam {
	o := &outParam{name: p.Name}
	switch baseType(p.SQLType) {
	case "int", "bigint", "smallint", "tinyint":
		o.dest = &sql.NullInt64{}
	case "bit", "boolean":
		o.dest = &sql.NullBool{}
	case "float", "real", "double precision":
		o.dest = &sql.NullFloat64{}
	case "datetime2", "timestamp", "datetimeoffset", "timestamptz", "date", "time":
		o.dest = &sql.NullTime{}
	case "uniqueidentifier", "uuid":
		o.dest = &mssql.NullUniqueIdentifier{}
	case "varbinary", "binary":
		b := []byte{}
		o.dest = &b
	case "decimal", "numeric": // exact text, at most 40 characters
		o.dest = &sql.NullString{}
	default: // strings
		o.dest = &stringOut{}
	}
	return o
}

// value returns the OUTPUT value for the result JSON.
func (o *outParam) value(sqlType string) any {
	switch d := o.dest.(type) {
	case *sql.NullInt64:
		if d.Valid {
			return d.Int64
		}
	case *sql.NullBool:
		if d.Valid {
			return d.Bool
		}
	case *sql.NullFloat64:
		if d.Valid {
			return d.Float64
		}
	case *sql.NullTime:
		// The destination is declared datetimeoffset(7) (go-mssqldb has
		// no other time type for a time.Time), so the server returns a
		// date or time OUTPUT converted to datetimeoffset: a time on
		// 1900-01-01 +00:00. Both are written as columnValue writes a DATE
		// or TIME column.
		if d.Valid {
			switch baseType(sqlType) {
			case "date":
				return columnValue("DATE", d.Time)
			case "time":
				return columnValue("TIME", d.Time)
			}
			return d.Time
		}
	case *mssql.NullUniqueIdentifier:
		if d.Valid {
			// Canonical lower-case text, as columnValue writes a column
			// (go-mssqldb's String is upper case).
			return strings.ToLower(d.UUID.String())
		}
	case *[]byte:
		if *d != nil {
			return *d
		}
	case *stringOut:
		if d.Valid {
			return d.String
		}
	case *sql.NullString:
		if d.Valid {
			switch baseType(sqlType) {
			case "decimal", "numeric", "money", "smallmoney":
				return json.Number(d.String)
			}
			return d.String
		}
	}
	return nil
}

// limits on the session values and the key, as the call batch declares
// them: nvarchar(n) locals and columns hold n UTF-16 code units, so a
// character outside the BMP counts two. A longer value would be cut
// silently when assigned to the local (DECLARE @sqlgate_p nvarchar(512) =
// ...), in SESSION_CONTEXT and the idempotency record alike.
var sessionLimits = []struct {
	field string
	get   func(*broker.Call) string
	max   int
}{
	{"Idempotency-Key", func(c *broker.Call) string { return c.IdempotencyKey }, keyMax},
	{"Correlation-Id", func(c *broker.Call) string { return c.CorrelationID }, 256},
	{"principal", func(c *broker.Call) string { return c.Principal }, 512},
	{"decision id", func(c *broker.Call) string { return c.DecisionID }, 128},
}

// keyMax is the length of the idempotency key column, nvarchar(256), in
// UTF-16 code units.
const keyMax = 256

func checkSessionLimits(c *broker.Call) error {
	for _, l := range sessionLimits {
		if n := utf16Len(l.get(c)); n > l.max {
			return &route.InvalidError{Field: l.field, Message: fmt.Sprintf("longer than %d UTF-16 code units (a character outside the BMP counts two)", l.max)}
		}
	}
	if len(c.RequestHash) > 64 {
		return &route.InvalidError{Field: "request hash", Message: "longer than 64 characters"}
	}
	return nil
}
