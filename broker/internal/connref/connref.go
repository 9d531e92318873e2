// Package connref resolves the secret references of the SQL adapters'
// configurations: a connection string given inline (tests and development),
// in a file or in an environment variable, and an optional password kept out
// of it. Nothing here ever puts a secret into an error or a log.
package connref

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Ref names where a connection's secrets are.
type Ref struct {
	DSN, DSNFile, DSNEnv      string
	PasswordFile, PasswordEnv string
}

// Validate reports every problem with the references.
func (r Ref) Validate() []error {
	var errs []error
	n := 0
	for _, s := range []string{r.DSN, r.DSNFile, r.DSNEnv} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		errs = append(errs, errors.New("exactly one of dsn, dsnFile or dsnEnv is required"))
	}
	if r.PasswordFile != "" && r.PasswordEnv != "" {
		errs = append(errs, errors.New("set at most one of passwordFile and passwordEnv"))
	}
	return errs
}

// Resolve reads the connection string (trimmed) and the password (without
// its trailing newline; "" when none is referenced).
func (r Ref) Resolve() (dsn, password string, err error) {
	switch {
	case r.DSN != "":
		dsn = r.DSN
	case r.DSNFile != "":
		b, err := os.ReadFile(r.DSNFile)
		if err != nil {
			return "", "", fmt.Errorf("read dsnFile: %w", err)
		}
		dsn = strings.TrimSpace(string(b))
	case r.DSNEnv != "":
		dsn = os.Getenv(r.DSNEnv)
		if dsn == "" {
			return "", "", fmt.Errorf("dsnEnv: environment variable %s is empty or unset", r.DSNEnv)
		}
	}
	switch {
	case r.PasswordFile != "":
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return "", "", fmt.Errorf("read passwordFile: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	case r.PasswordEnv != "":
		password = os.Getenv(r.PasswordEnv)
		if password == "" {
			return "", "", fmt.Errorf("passwordEnv: environment variable %s is empty or unset", r.PasswordEnv)
		}
	}
	return dsn, password, nil
}

// Source describes where the connection string comes from, without it.
func (r Ref) Source() string {
	switch {
	case r.DSNFile != "":
		return "dsnFile " + r.DSNFile
	case r.DSNEnv != "":
		return "dsnEnv " + r.DSNEnv
	}
	return "dsn [redacted]"
}

// Attr is the log attribute naming the connection string's source.
func (r Ref) Attr() slog.Attr {
	switch {
	case r.DSNFile != "":
		return slog.String("dsn_file", r.DSNFile)
	case r.DSNEnv != "":
		return slog.String("dsn_env", r.DSNEnv)
	}
	return slog.String("dsn", "[redacted]")
}
