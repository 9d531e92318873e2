package route

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Kind says what a route runs.
type Kind string

const (
	// Procedure runs a stored procedure (SQL Server, PostgreSQL) with named
	// parameters.
	Procedure Kind = "procedure"
	// StatementKind runs an admin-defined parameterized statement.
	StatementKind Kind = "statement"
)

// Mode says how a route is delivered.
type Mode string

const (
	// Sync routes are core NATS request/reply through a micro service.
	Sync Mode = "sync"
	// Async routes are durable: a JetStream stream captures their subject.
	Async Mode = "async"
)

// Defaults applied to routes that leave a limit unset.
const (
	DefaultTimeout    = 5 * time.Second
	DefaultMaxPayload = 64 << 10
	DefaultMaxRows    = 1000
	MaxTimeout        = 5 * time.Minute
	MaxMaxPayload     = 1 << 20
	// MaxBatch bounds a route's batch: the calls share one transaction's
	// locks and its timeout.
	MaxBatch = 256
)

// Route maps one subject to one procedure or statement. A Route is immutable
// once loaded and safe for concurrent use.
type Route struct {
	Subject     string
	Description string
	Kind        Kind
	// Target is the procedure name (`sales.create_order`) or the statement
	// name.
	Target string
	// Statement is set for Kind == StatementKind.
	Statement *Statement
	// Database names a configured database (see the daemon configuration).
	Database string
	Mode     Mode
	// Batch is the most calls of this route the broker may run in one SQL
	// transaction (a group commit of the calls that queue while one runs);
	// 1 runs each call in its own.
	Batch   int
	Timeout time.Duration
	// MaxPayload is the largest accepted payload in bytes, checked before
	// parsing.
	MaxPayload int
	MaxRows    int
	// Emit is the subject of the follow-up event published after commit
	// (empty: none).
	Emit string
	Tags []string
	// Params lists the declared parameters sorted by name.
	Params []Param
	// Outputs lists OUTPUT parameters of a procedure, sorted by name.
	Outputs []Param
	// SchemaJSON is the route's parameter schema as served to clients (with
	// additionalProperties made explicit).
	SchemaJSON json.RawMessage

	schema *jsonschema.Schema
	byName map[string]*Param
}

// Param is one declared parameter.
type Param struct {
	Name string
	// Type is the JSON type: "string", "integer", "number" or "boolean".
	Type string
	// Nullable is true when the schema also allows null.
	Nullable bool
	// Format is the JSON Schema format ("date-time", "uuid", ...), if any.
	Format string
	// SQLType is the explicit SQL type from the catalog (`decimal(12,2)`,
	// `nvarchar(100)`), empty when the adapter infers it from Type.
	SQLType  string
	Required bool
}

// Param returns the declared parameter called name.
func (r *Route) Param(name string) (*Param, bool) {
	p, ok := r.byName[name]
	return p, ok
}

var (
	subjectToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	identPart    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	sqlTypeRe    = regexp.MustCompile(`^(?i)(int|bigint|smallint|tinyint|bit|boolean|float|real|double precision|text|date|time|datetime2|datetimeoffset|timestamp|timestamptz|uniqueidentifier|uuid|(decimal|numeric)\((\d{1,2})(,\s*\d{1,2})?\)|(nvarchar|varchar|nchar|char|varbinary|binary)\((\d{1,4}|max)\))$`)
)

// ValidSubject reports whether s is a concrete NATS subject usable as a route
// or emit subject: dot-separated tokens of letters, digits, '_' and '-', no
// wildcards, and not in a namespace the server or sqlgate reserves.
func ValidSubject(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, p := range []string{"$", "_INBOX", "sqlgate."} {
		if strings.HasPrefix(s, p) {
			return false
		}
	}
	for tok := range strings.SplitSeq(s, ".") {
		if !subjectToken.MatchString(tok) {
			return false
		}
	}
	return true
}

// ValidProcedureName reports whether name is one to three dot-separated SQL
// identifiers (database.schema.procedure), each a plain identifier.
func ValidProcedureName(name string) bool {
	parts := strings.Split(name, ".")
	if len(parts) > 3 {
		return false
	}
	for _, p := range parts {
		if !identPart.MatchString(p) {
			return false
		}
	}
	return true
}

// ValidIdentifier reports whether s is a plain SQL identifier: a letter or
// underscore followed by letters, digits or underscores, at most 128 bytes.
func ValidIdentifier(s string) bool { return identPart.MatchString(s) }

// ValidSQLType reports whether t is one of the explicit SQL types a route may
// declare (see [CheckSQLType]).
func ValidSQLType(t string) bool { return CheckSQLType(t) == nil }

// CheckSQLType reports why t is not an explicit SQL type a route may
// declare: not one of the names the adapters know, or a length, precision
// or scale the database would refuse at the first call (the bounds are SQL
// Server's, the narrowest of the dialects): nvarchar(n) and nchar(n) 1 to
// 4000, varchar, char, varbinary and binary 1 to 8000, max for the
// variable-length ones only; decimal(p,s) and numeric(p,s) precision 1 to
// 38 and scale 0 to the precision.
func CheckSQLType(t string) error {
	m := sqlTypeRe.FindStringSubmatch(strings.TrimSpace(t))
	if m == nil {
		return fmt.Errorf("unsupported SQL type %q", t)
	}
	switch base, n := strings.ToLower(m[5]), strings.ToLower(m[6]); {
	case m[2] != "": // decimal / numeric
		p, _ := strconv.Atoi(m[3])
		s := 0
		if m[4] != "" {
			s, _ = strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(m[4], ",")))
		}
		if p < 1 || p > 38 {
			return fmt.Errorf("SQL type %q: precision must be 1 to 38", t)
		}
		if s > p {
			return fmt.Errorf("SQL type %q: scale must be 0 to the precision (%d)", t, p)
		}
	case base != "":
		fixed := base == "nchar" || base == "char" || base == "binary"
		limit := 8000
		if base == "nvarchar" || base == "nchar" {
			limit = 4000
		}
		if n == "max" {
			if fixed {
				return fmt.Errorf("SQL type %q: %s takes a length of 1 to %d, not max", t, base, limit)
			}
			return nil
		}
		if l, _ := strconv.Atoi(n); l < 1 || l > limit {
			return fmt.Errorf("SQL type %q: length must be 1 to %d or max", t, limit)
		}
	}
	return nil
}
