package sqlserver

import (
	"encoding/json"
	"strings"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
)

// columnValue converts a scanned column for the result JSON by its SQL
// Server type: decimal, numeric and money exact (json.Number from the
// driver's decimal text), uniqueidentifier as canonical text (the driver
// returns SQL Server's byte order), date as YYYY-MM-DD, time as its text,
// datetime/datetime2/smalldatetime (no zone) as UTC, datetimeoffset in UTC,
// binary as base64, text verbatim.
func columnValue(dbType string, v any) any {
	if v == nil {
		return nil
	}
	switch strings.ToUpper(dbType) {
	case "DECIMAL", "NUMERIC", "MONEY", "SMALLMONEY":
		switch x := v.(type) {
		case []byte:
			return json.Number(x)
		case string:
			return json.Number(x)
		}
	case "UNIQUEIDENTIFIER":
		if b, ok := v.([]byte); ok {
			var u mssql.UniqueIdentifier
			if err := u.Scan(b); err == nil {
				return strings.ToLower(u.String())
			}
		}
	case "DATE":
		if t, ok := v.(time.Time); ok {
			return t.Format(time.DateOnly)
		}
	case "TIME":
		if t, ok := v.(time.Time); ok {
			return t.Format("15:04:05.9999999")
		}
	}
	if b, ok := v.([]byte); ok {
		return append([]byte(nil), b...)
	}
	return v
}
