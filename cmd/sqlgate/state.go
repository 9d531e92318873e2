package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/nats-io/jwt/v2"

	"github.com/sqlgate/sqlgate/web/api"
)

// stateHome returns $SQLGATE_HOME, else <user config dir>/sqlgate.
func stateHome(getenv func(string) string) (string, error) {
	if h := getenv("SQLGATE_HOME"); h != "" {
		return h, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find a config directory (set SQLGATE_HOME): %w", err)
	}
	return filepath.Join(dir, "sqlgate"), nil
}

// state is what the CLI remembers between runs (no secrets: tokens and
// creds live in their own 0600 files).
type state struct {
	Broker   string   `json:"broker"`
	Issuer   string   `json:"issuer,omitempty"`
	ClientID string   `json:"client_id,omitempty"`
	Audience string   `json:"audience,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	NATSURL  string   `json:"nats_url,omitempty"`
	// Principal is the signed-in principal ("<issuer> <subject>"), as
	// the broker saw it at login.
	Principal string `json:"principal,omitempty"`
	// SecretFile and SecretEnv reference (never hold) a service's client
	// secret, so that its sign-in can be renewed with client credentials.
	SecretFile string `json:"client_secret_file,omitempty"`
	SecretEnv  string `json:"client_secret_env,omitempty"`
	// ServiceScopes are the scopes a service's sign-in requested (--scope
	// or the broker's service_scopes; empty: derived from Scopes), asked
	// for again when it is renewed.
	ServiceScopes []string `json:"service_scopes,omitempty"`
	// AuthContext is the Entra authentication context the broker said user
	// sign-ins ask for (auth_context), asked for again by each renewal:
	// Entra adds acrs to a refreshed token only when the refresh asks.
	AuthContext string `json:"auth_context,omitempty"`
}

const (
	stateFile    = "state.json"
	natsCredsOut = "nats.creds" //nolint:gosec // G101: a file name, not a credential
	natsInfoFile = "nats.json"
)

func (e *env) path(name string) string { return filepath.Join(e.home, name) }

// corruptStateError is a state file that does not parse: login replaces
// it, every other command asks to.
type corruptStateError struct {
	path string
	err  error
}

func (e *corruptStateError) Error() string {
	return fmt.Sprintf("read CLI state %s: %v: remove it or run sqlgate login", e.path, e.err)
}

func (e *corruptStateError) Unwrap() error { return e.err }

func (e *env) loadState() (*state, error) {
	var st state
	b, err := os.ReadFile(e.path(stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &st, nil
	}
	if err != nil {
		return nil, homeError(fmt.Errorf("read CLI state: %w", err))
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, &corruptStateError{path: e.path(stateFile), err: err}
	}
	return &st, nil
}

// loadStateForLogin is loadState for sqlgate login, which replaces a state
// file that does not parse instead of failing: it starts from an empty
// state and says so on stderr.
func (e *env) loadStateForLogin() (*state, error) {
	st, err := e.loadState()
	var corrupt *corruptStateError
	if errors.As(err, &corrupt) {
		fmt.Fprintf(e.stderr, "The CLI state %s is unreadable (%v): this sign-in replaces it.\n", corrupt.path, corrupt.err)
		return &state{}, nil
	}
	return st, err
}

// checkBroker returns raw, a broker URL read from where names, unless it
// holds a user name or password (sqlgate prints the broker URL and saves it
// in state.json, and signs in with its own tokens anyway) or is no URL a
// client takes: checked before the URL is compared with the one signed in
// to, so that no advice names a URL that sqlgate login would refuse. The
// refusal does not repeat the password.
func checkBroker(from, raw string) (string, error) {
	if red := api.RedactURL(raw); red != raw {
		return "", fmt.Errorf("%s: the broker URL %s holds a user name or password, which sqlgate neither needs (it signs in with its own tokens) nor keeps: "+
			"give the URL without it (sqlgate login --broker URL)", from, red)
	}
	if err := api.CheckBrokerURL(raw); err != nil {
		return "", fmt.Errorf("%s: %w", from, err)
	}
	return raw, nil
}

func (e *env) saveState(st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return e.writeHome(stateFile, b)
}

// setHome is what to do when the state directory cannot be created or
// written.
const setHome = "set SQLGATE_HOME to a writable directory"

// mkHome creates the state directory (0700) if needed; when it cannot (a
// home directory that is not writable), the error says to choose another.
func (e *env) mkHome() error {
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		return fmt.Errorf("create %s: %w: %s", e.home, err, setHome)
	}
	return nil
}

// writeHome writes the file name of the state directory with
// writeFileAtomic, creating the directory first; a refusal to write there
// says to choose another.
func (e *env) writeHome(name string, data []byte) error {
	f, err := e.openOutput(e.path(name))
	if err != nil {
		return err
	}
	defer f.discard()
	return homeError(f.writeCommit(data))
}

// openOutput is openFileAtomic; when path is in the state directory, a
// refusal to create or write it says to choose another directory.
func (e *env) openOutput(path string) (*output, error) {
	if filepath.Dir(path) != filepath.Clean(e.home) {
		return openFileAtomic(path)
	}
	if err := e.mkHome(); err != nil {
		return nil, err
	}
	f, err := openFileAtomic(path)
	return f, homeError(err)
}

// homeError adds setHome to err, a failure to read or write in the state
// directory, when the directory is the cause: permissions, a read-only file
// system, a path through a file.
func homeError(err error) error {
	if err != nil && (errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.ENOTDIR)) {
		return fmt.Errorf("%w: %s", err, setHome)
	}
	return err
}

// natsInfo is saved beside the creds file: the inbox prefix the credential
// may subscribe under and the NATS URL.
// Principal and Broker name the sign-in the credential was issued to, and
// UserKey its user public key (its lease id): sqlgate call refuses a saved
// credential of another principal, and login and logout remove it.
type natsInfo struct {
	Creds       string `json:"creds"`
	InboxPrefix string `json:"inbox_prefix"`
	NATSURL     string `json:"nats_url"`
	ExpiresAt   string `json:"expires_at"`
	Principal   string `json:"principal,omitempty"`
	Broker      string `json:"broker,omitempty"`
	UserKey     string `json:"user_key,omitempty"`
	// pub is what the user JWT of the creds file lets it publish to: read
	// by [env.natsInfo] from the file, not saved.
	pub jwt.Permission
}

// writeFileAtomic writes data to path, mode 0600 (the CLI's files hold
// tokens and seeds), via a temporary file and a rename (a device or FIFO in
// place, see [output]), creating the directory (0700) if needed.
func writeFileAtomic(path string, data []byte) error {
	f, err := openFileAtomic(path)
	if err != nil {
		return err
	}
	defer f.discard()
	return f.writeCommit(data)
}

// openFileAtomic opens the output of writeFileAtomic: it creates the
// directory of path (0700) if needed and the temporary file, so that a
// destination that cannot be written fails here, before its data exists.
func openFileAtomic(path string) (*output, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	return createOutput(path, ".tmp-*")
}

// writeCommit writes data into an output of openFileAtomic, mode 0600,
// and commits it.
func (o *output) writeCommit(data []byte) error {
	err := o.stage(data)
	if err == nil {
		err = o.rename()
	}
	if err != nil {
		o.discard()
	}
	return err
}
