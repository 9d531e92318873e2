package oidc

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTokenStore(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "home", "tokens")
	s := NewTokenStore(dir)
	if _, err := s.Load("default"); !errors.Is(err, ErrNoTokens) {
		t.Fatalf("Load before Save = %v, want ErrNoTokens", err)
	}
	tok := Tokens{
		Issuer: "https://idp.example", ClientID: "sqlgate-cli", Grant: GrantDeviceCode, TokenType: "Bearer",
		AccessToken: "at-" + randomString(), IDToken: "it-" + randomString(), RefreshToken: "rt-" + randomString(),
		Expiry: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC), IDTokenExpiry: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC),
	}
	if err := s.Save("default", tok); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load("default")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tok, got); diff != "" {
		t.Errorf("Load after Save (-want +got):\n%s", diff)
	}
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(filepath.Join(dir, "default.json"))
		di, _ := os.Stat(dir)
		if fi.Mode().Perm() != 0o600 || di.Mode().Perm() != 0o700 {
			t.Errorf("modes: file %v dir %v, want 0600 and 0700", fi.Mode().Perm(), di.Mode().Perm())
		}
	}
	// Overwrite leaves no temporary files behind.
	tok.AccessToken = "at2"
	if err := s.Save("default", tok); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after two saves, want 1", len(entries))
	}
	if err := s.Delete("default"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("default"); !errors.Is(err, ErrNoTokens) {
		t.Errorf("Load after Delete = %v, want ErrNoTokens", err)
	}
	if err := s.Delete("default"); err != nil {
		t.Errorf("Delete twice = %v, want nil", err)
	}
	for _, bad := range []string{"", "../x", "a/b", ".hidden", ".."} {
		if err := s.Save(bad, tok); err == nil {
			t.Errorf("Save(%q) succeeded", bad)
		}
	}
}

func TestTokenStoreRefusesLooseOrCorruptFiles(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("file modes are not enforced on Windows")
	}
	dir := t.TempDir()
	s := NewTokenStore(dir)
	if err := s.Save("p", Tokens{AccessToken: "x"}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "p.json")
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("p"); err == nil || !strings.Contains(err.Error(), "other users") {
		t.Errorf("Load of a world-readable file = %v, want a refusal", err)
	}
	if err := os.WriteFile(p, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load("p"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("Load of a corrupt file = %v, want corrupt", err)
	}
}
