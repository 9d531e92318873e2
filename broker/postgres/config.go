package postgres

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/broker/internal/connref"
	"github.com/sqlgate/sqlgate/broker/route"
)

// Config configures an [Executor]. The connection string is a secret and is
// referenced: DSNFile (a file holding it) or DSNEnv (an environment
// variable); DSN inline is for tests and local development. A password may
// be kept out of the DSN with PasswordFile or PasswordEnv.
//
// A DSN naming a host other than this machine must require TLS with a
// checked server certificate (sslmode=verify-full or verify-ca; see
// [CheckTransport]) unless AllowInsecureTransport is set.
type Config struct {
	// Name is the logical database name routes use (route `database:`).
	Name string `json:"name" yaml:"name"`
	// DSN is a libpq connection string or URL (tests and development only).
	DSN string `json:"dsn,omitempty" yaml:"dsn,omitempty"`
	// DSNFile names a file whose content (trimmed) is the connection string.
	DSNFile string `json:"dsnFile,omitempty" yaml:"dsnFile,omitempty"`
	// DSNEnv names an environment variable holding the connection string.
	DSNEnv string `json:"dsnEnv,omitempty" yaml:"dsnEnv,omitempty"`
	// PasswordFile / PasswordEnv supply the password when the DSN has none.
	PasswordFile string `json:"passwordFile,omitempty" yaml:"passwordFile,omitempty"`
	PasswordEnv  string `json:"passwordEnv,omitempty" yaml:"passwordEnv,omitempty"`
	// MaxConns sizes the pool (default 8 per CPU, at least 4, at most 32: on
	// a small machine a pool sized for the cores beats one sized for the
	// clients).
	MaxConns int `json:"maxConns,omitempty" yaml:"maxConns,omitempty"`
	// MinConns connections are kept open and warm (default MaxConns/2).
	MinConns int `json:"minConns,omitempty" yaml:"minConns,omitempty"`
	// IdempotencyTable is the table holding idempotency records, optionally
	// schema-qualified (default sqlgate_idempotency, found on search_path).
	IdempotencyTable string `json:"idempotencyTable,omitempty" yaml:"idempotencyTable,omitempty"`
	// CreateIdempotencyTable creates the table at Open if it is missing
	// (the broker's role then needs CREATE on the schema; otherwise run
	// deploy/postgres/01-idempotency.sql once).
	CreateIdempotencyTable bool `json:"createIdempotencyTable,omitempty" yaml:"createIdempotencyTable,omitempty"`
	// ApplicationName is shown in pg_stat_activity (default "sqlgated").
	ApplicationName string `json:"applicationName,omitempty" yaml:"applicationName,omitempty"`
	// MaxRetries bounds how often a call that failed with a serialization
	// failure or deadlock is retried (default 3; negative disables).
	MaxRetries int `json:"maxRetries,omitempty" yaml:"maxRetries,omitempty"`
	// AllowInsecureTransport accepts a DSN that reaches a host other than
	// this machine without requiring TLS with a checked server certificate
	// (no sslmode, or disable, allow, prefer, require): the login and every
	// call may then cross the network in clear text or reach an impostor.
	// For a test server only.
	AllowInsecureTransport bool `json:"allowInsecureTransport,omitempty" yaml:"allowInsecureTransport,omitempty"`
	// Logger receives retry and lifecycle messages (default: discard).
	Logger *slog.Logger `json:"-" yaml:"-"`
}

// Validate reports every problem with the configuration at once. It does
// not read the referenced files or variables: an inline DSN's transport
// settings are checked here, a referenced one's when [Open] resolves it.
func (c *Config) Validate() error {
	var errs []error
	if !route.ValidIdentifier(c.Name) {
		errs = append(errs, fmt.Errorf("name %q must be a plain identifier", c.Name))
	}
	errs = append(errs, c.ref().Validate()...)
	if c.DSN != "" {
		if err := CheckTransport(c.DSN, c.AllowInsecureTransport); err != nil {
			errs = append(errs, fmt.Errorf("dsn: %w", err))
		}
	}
	if c.MaxConns < 0 || c.MaxConns > 1000 {
		errs = append(errs, fmt.Errorf("maxConns %d must be between 1 and 1000 (0: default)", c.MaxConns))
	}
	if c.MinConns < 0 || (c.MaxConns > 0 && c.MinConns > c.MaxConns) {
		errs = append(errs, fmt.Errorf("minConns %d must be between 0 and maxConns", c.MinConns))
	}
	if c.IdempotencyTable != "" {
		parts := strings.Split(c.IdempotencyTable, ".")
		if len(parts) > 2 || !route.ValidProcedureName(c.IdempotencyTable) {
			errs = append(errs, fmt.Errorf("idempotencyTable %q must be [schema.]table with plain identifiers", c.IdempotencyTable))
		}
	}
	if strings.ContainsAny(c.ApplicationName, "\x00'\\") || len(c.ApplicationName) > 63 {
		errs = append(errs, errors.New("applicationName must be at most 63 characters without quotes, backslashes or NUL"))
	}
	return errors.Join(errs...)
}

func (c *Config) defaults() {
	if c.MaxConns == 0 {
		c.MaxConns = min(max(8*runtime.GOMAXPROCS(0), 4), 32)
	}
	if c.MinConns == 0 {
		c.MinConns = c.MaxConns / 2
	}
	if c.IdempotencyTable == "" {
		c.IdempotencyTable = "sqlgate_idempotency"
	}
	if c.ApplicationName == "" {
		c.ApplicationName = "sqlgated"
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 3
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// secrets resolves the connection string and the optional password.
func (c *Config) secrets() (dsn, password string, err error) {
	return c.ref().Resolve()
}

// ref is where the connection's secrets are.
func (c *Config) ref() connref.Ref {
	return connref.Ref{DSN: c.DSN, DSNFile: c.DSNFile, DSNEnv: c.DSNEnv, PasswordFile: c.PasswordFile, PasswordEnv: c.PasswordEnv}
}

// String describes the configuration without secrets.
func (c Config) String() string {
	src := c.ref().Source()
	return fmt.Sprintf("postgres database %s (%s)", c.Name, src)
}

// LogValue implements slog.LogValuer without secrets.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("name", c.Name), slog.Int("max_conns", c.MaxConns), c.ref().Attr()}
	return slog.GroupValue(attrs...)
}

// retryBackoff is the wait before retry n (1-based).
func retryBackoff(n int) time.Duration { return time.Duration(n*n) * 10 * time.Millisecond }
