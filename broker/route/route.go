package route

import (
	"encoding/json"
	"fmt"
	"regexp"
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
// declare: one of the names the adapters know, with a length of up to four
// digits or max, or a precision and scale of up to two digits each. It
// checks the spelling only, which is what every dialect shares: a catalog
// does not know its routes' dialects, and the bounds differ (PostgreSQL
// takes varchar(9000) and numeric(50,2), SQL Server neither). Each adapter
// checks its own bounds where it checks a route (sqlserver.CheckSQLType).
func CheckSQLType(t string) error {
	if !sqlTypeRe.MatchString(strings.TrimSpace(t)) {
		return fmt.Errorf("unsupported SQL type %q", t)
	}
	return nil
}
