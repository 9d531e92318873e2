package oidc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// TokenStore keeps [Tokens] as JSON files in a directory, one per name
// (e.g. per broker or profile). Files are written atomically with mode
// 0600 in a directory created with mode 0700; a file readable by others is
// refused on load.
type TokenStore struct {
	dir string
}

// NewTokenStore returns a store under dir (for the CLI:
// $SQLGATE_HOME/tokens).
func NewTokenStore(dir string) *TokenStore { return &TokenStore{dir: dir} }

func (s *TokenStore) path(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("token store: invalid name %q", name)
	}
	return filepath.Join(s.dir, name+".json"), nil
}

// Save writes t under name, replacing what was there.
func (s *TokenStore) Save(name string, t Tokens) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return fmt.Errorf("token store: encode: %w", err)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	f, err := os.CreateTemp(s.dir, ".tokens-*")
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("token store: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		_ = f.Close()
		return fmt.Errorf("token store: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("token store: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	return nil
}

// Load reads the tokens saved under name; [ErrNoTokens] when there are
// none.
func (s *TokenStore) Load(name string) (Tokens, error) {
	p, err := s.path(name)
	if err != nil {
		return Tokens{}, err
	}
	f, err := os.Open(p) //nolint:gosec // G304: the path is the store's directory plus a validated name
	if errors.Is(err, fs.ErrNotExist) {
		return Tokens{}, ErrNoTokens
	}
	if err != nil {
		return Tokens{}, fmt.Errorf("token store: %w", err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return Tokens{}, fmt.Errorf("token store: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return Tokens{}, fmt.Errorf("token store: %s is accessible by other users (mode %v); remove it and sign in again", p, fi.Mode().Perm())
	}
	var t Tokens
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return Tokens{}, fmt.Errorf("token store: %s is corrupt; sign in again", p)
	}
	return t, nil
}

// Delete removes the tokens saved under name; deleting what is not there
// is not an error.
func (s *TokenStore) Delete(name string) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("token store: %w", err)
	}
	return nil
}
