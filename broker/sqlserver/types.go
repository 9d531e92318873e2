package sqlserver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/sqlgate/sqlgate/broker/route"
)

// CheckSQLType reports why a route's SQL type t cannot be used on SQL
// Server: not a spelling the catalog accepts ([route.CheckSQLType]), or a
// length, precision or scale SQL Server refuses (at every call, as a
// compile error of the call batch): nvarchar(n) and nchar(n) take 1 to
// 4000, varchar, char, varbinary and binary 1 to 8000, max for the
// variable-length ones only; decimal(p,s) and numeric(p,s) a precision of
// 1 to 38 and a scale of 0 to the precision. PostgreSQL spellings are
// judged as the adapter sends them (text is nvarchar(max)).
func CheckSQLType(t string) error {
	if err := route.CheckSQLType(t); err != nil {
		return err
	}
	base, arg, ok := strings.Cut(tsqlType(t), "(")
	if !ok {
		return nil
	}
	arg = strings.TrimSuffix(arg, ")")
	switch base {
	case "decimal", "numeric":
		ps, ss, _ := strings.Cut(arg, ",")
		p, _ := strconv.Atoi(ps)
		s := 0
		if ss != "" {
			s, _ = strconv.Atoi(ss)
		}
		if p < 1 || p > 38 {
			return fmt.Errorf("SQL type %q: SQL Server takes a precision of 1 to 38", t)
		}
		if s > p {
			return fmt.Errorf("SQL type %q: SQL Server takes a scale of 0 to the precision (%d)", t, p)
		}
		return nil
	}
	fixed := base == "nchar" || base == "char" || base == "binary"
	limit := 8000
	if base == "nvarchar" || base == "nchar" {
		limit = 4000
	}
	if arg == "max" {
		if fixed {
			return fmt.Errorf("SQL type %q: SQL Server takes %s lengths of 1 to %d, not max", t, base, limit)
		}
		return nil
	}
	if n, _ := strconv.Atoi(arg); n < 1 || n > limit {
		if fixed {
			return fmt.Errorf("SQL type %q: SQL Server takes %s lengths of 1 to %d", t, base, limit)
		}
		return fmt.Errorf("SQL type %q: SQL Server takes %s lengths of 1 to %d or max", t, base, limit)
	}
	return nil
}

// checkRouteTypes reports every SQL type of r that SQL Server refuses
// ([CheckSQLType]): the catalog checks how types are spelled, not which
// bounds a dialect has.
func checkRouteTypes(r *route.Route) error {
	var errs []error
	for _, p := range r.Params {
		if p.SQLType == "" {
			continue
		}
		if err := CheckSQLType(p.SQLType); err != nil {
			errs = append(errs, fmt.Errorf("route %s: sqlTypes %s: %w", r.Subject, p.Name, err))
		}
	}
	for _, o := range r.Outputs {
		if err := CheckSQLType(o.SQLType); err != nil {
			errs = append(errs, fmt.Errorf("route %s: output %s: %w", r.Subject, o.Name, err))
		}
	}
	return errors.Join(errs...)
}
