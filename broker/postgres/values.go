package postgres

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// rowValues returns the current row as values the result writer encodes:
// numeric exact (json.Number), json/jsonb raw, uuid canonical text, date as
// YYYY-MM-DD, timestamps as time.Time, other types as their text form.
func rowValues(rows pgx.Rows, fds []pgconn.FieldDescription) ([]any, error) {
	vals, err := rows.Values()
	if err != nil {
		return nil, err
	}
	var raw [][]byte
	for i, v := range vals {
		if v == nil {
			continue
		}
		switch fds[i].DataTypeOID {
		case pgtype.JSONOID, pgtype.JSONBOID:
			if raw == nil {
				raw = rows.RawValues()
			}
			b := raw[i]
			if fds[i].DataTypeOID == pgtype.JSONBOID && fds[i].Format == pgtype.BinaryFormatCode && len(b) > 0 {
				b = b[1:] // jsonb binary format: version byte, then the text
			}
			vals[i] = json.RawMessage(append([]byte(nil), b...))
			continue
		case pgtype.DateOID:
			if t, ok := v.(time.Time); ok {
				vals[i] = t.Format(time.DateOnly)
				continue
			}
		}
		vals[i], err = pgValue(v)
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", fds[i].Name, err)
		}
	}
	return vals, nil
}

func pgValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool, int64, int32, int16, uint32, float64, float32, []byte, time.Time:
		return v, nil
	case pgtype.Numeric:
		b, err := x.MarshalJSON()
		if err != nil {
			return nil, err
		}
		if len(b) > 0 && b[0] == '"' { // NaN, Infinity
			return string(b[1 : len(b)-1]), nil
		}
		return json.Number(b), nil
	case [16]byte:
		return fmt.Sprintf("%x-%x-%x-%x-%x", x[0:4], x[4:6], x[6:8], x[8:10], x[10:16]), nil
	case netip.Prefix:
		return x.String(), nil
	case netip.Addr:
		return x.String(), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = pgValue(e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case driver.Valuer:
		dv, err := x.Value()
		if err != nil {
			return nil, err
		}
		return pgValue(dv)
	case fmt.Stringer:
		return x.String(), nil
	default:
		return nil, fmt.Errorf("unsupported PostgreSQL value of Go type %T", v)
	}
}
