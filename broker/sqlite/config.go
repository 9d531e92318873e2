package sqlite

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sqlgate/sqlgate/broker/route"
)

// Config configures an [Executor]. It holds no secrets.
type Config struct {
	// Name is the logical database name routes use (route `database:`).
	Name string `json:"name" yaml:"name"`
	// Path is the database file; it is created if missing.
	Path string `json:"path" yaml:"path"`
	// BusyTimeout bounds how long a transaction waits for another
	// process's lock (default 5s).
	BusyTimeout time.Duration `json:"busyTimeout" yaml:"busyTimeout"`
	// ReadConns is the size of the read-only pool used by Lookup (default 2).
	ReadConns int `json:"readConns" yaml:"readConns"`
	// MaxRetries bounds how often a call that hit SQLITE_BUSY is retried
	// (default 3; negative disables retries).
	MaxRetries int `json:"maxRetries" yaml:"maxRetries"`
	// Logger receives retry and lifecycle messages (default: discard).
	Logger *slog.Logger `json:"-" yaml:"-"`
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if !route.ValidIdentifier(c.Name) {
		errs = append(errs, fmt.Errorf("name %q must be a plain identifier", c.Name))
	}
	if c.Path == "" {
		errs = append(errs, errors.New("path is required"))
	}
	if c.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("busyTimeout %s must not be negative", c.BusyTimeout))
	}
	if c.ReadConns < 0 {
		errs = append(errs, fmt.Errorf("readConns %d must not be negative", c.ReadConns))
	}
	return errors.Join(errs...)
}

func (c *Config) defaults() {
	if c.BusyTimeout == 0 {
		c.BusyTimeout = 5 * time.Second
	}
	if c.ReadConns == 0 {
		c.ReadConns = 2
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 3
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
