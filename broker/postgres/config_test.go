package postgres

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"ok", Config{Name: "orders", DSNEnv: "X"}, nil},
		{"nothing", Config{Name: "bad-name"}, []string{"plain identifier", "exactly one of dsn"}},
		{"two_sources", Config{Name: "o", DSN: "x", DSNEnv: "X"}, []string{"exactly one of dsn"}},
		{"two_passwords", Config{Name: "o", DSN: "x", PasswordFile: "f", PasswordEnv: "E"}, []string{"at most one of passwordFile"}},
		{"limits", Config{Name: "o", DSN: "x", MaxConns: 2, MinConns: 3}, []string{"minConns"}},
		{"table_injection", Config{Name: "o", DSN: "x", IdempotencyTable: `t"; DROP TABLE x; --`}, []string{"idempotencyTable"}},
		{"table_three_parts", Config{Name: "o", DSN: "x", IdempotencyTable: "a.b.c"}, []string{"idempotencyTable"}},
		{"app_name_quote", Config{Name: "o", DSN: "x", ApplicationName: "a'b"}, []string{"applicationName"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestConfigSecrets(t *testing.T) {
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "dsn")
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(dsnFile, []byte("host=db dbname=orders user=sqlgate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte("hunter2 with spaces \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SQLGATE_TEST_PG_DSN", "host=env")
	cfg := Config{Name: "o", DSNFile: dsnFile, PasswordFile: pwFile}
	dsn, pw, err := cfg.secrets()
	if err != nil || dsn != "host=db dbname=orders user=sqlgate" || pw != "hunter2 with spaces " {
		t.Errorf("secrets() = %q, %q, %v", dsn, pw, err)
	}
	cfg = Config{Name: "o", DSNEnv: "SQLGATE_TEST_PG_DSN"}
	if dsn, _, err := cfg.secrets(); err != nil || dsn != "host=env" {
		t.Errorf("secrets(env) = %q, %v", dsn, err)
	}
	cfg = Config{Name: "o", DSNEnv: "SQLGATE_TEST_PG_UNSET"}
	if _, _, err := cfg.secrets(); err == nil || !strings.Contains(err.Error(), "SQLGATE_TEST_PG_UNSET") {
		t.Errorf("secrets(unset env) = %v, want an error naming the variable", err)
	}
	_, err = Open(t.Context(), Config{Name: "o", DSN: "host=db password=hunter2 port=notaport"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open(invalid DSN) = %v, want an error without the DSN", err)
	}
}

func TestConfigRedaction(t *testing.T) {
	t.Parallel()
	cfg := Config{Name: "orders", DSN: "postgres://u:hunter2@db/orders"}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "db", cfg)
	for _, s := range []string{cfg.String(), fmt.Sprint(cfg), fmt.Sprintf("%v", cfg), b.String()} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("%q reveals the password", s)
		}
	}
}
