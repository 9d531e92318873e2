package postgres

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/internal/golden"
)

func TestFormatTemplate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		password bool
		want     string
		wantErr  string
	}{
		{
			"default_creation", DefaultCreation[0], true,
			"CREATE ROLE %1$I WITH LOGIN PASSWORD %4$L VALID UNTIL %5$L NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT IN ROLE %2$I", "",
		},
		{"percent_is_literal", "SELECT '100%' WHERE {{name_literal}} LIKE 'sg\\_%'", false, "SELECT '100%%' WHERE %1$L LIKE 'sg\\_%%'", ""},
		{"spaces_in_placeholder", "GRANT {{ role }} TO {{name}}", false, "GRANT %2$I TO %1$I", ""},
		{"database", "GRANT CONNECT ON DATABASE {{database}} TO {{name}}", false, "GRANT CONNECT ON DATABASE %3$I TO %1$I", ""},
		{"unknown", "DROP ROLE {{user}}", false, "", "unknown placeholder"},
		{"password_outside_creation", "ALTER ROLE {{name}} PASSWORD {{password}}", false, "", "only available in creation"},
		{"unterminated", "DROP ROLE {{name", false, "", "unterminated"},
		{"stray_close", "DROP ROLE name}}", false, "", "unbalanced"},
		{"empty", "  ", false, "", "empty"},
		{"nul", "DROP ROLE {{name}}\x00", false, "", "NUL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := formatTemplate(tc.in, tc.password)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("formatTemplate(%q) error = %v, want %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("formatTemplate(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// FuzzFormatTemplate: any template either fails or becomes a format string
// in which every % starts %% or one of the known conversions, and no {{
// placeholder survives.
func FuzzFormatTemplate(f *testing.F) {
	for _, s := range append(append(DefaultCreation, DefaultDrop...), "SELECT '%' || {{name_literal}}", "{{ {{name}} }}", "%1$I {{role}}") {
		f.Add(s)
	}
	known := []string{"%%", "%1$I", "%2$I", "%3$I", "%4$L", "%5$L", "%1$L", "%2$L"}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := formatTemplate(s, true)
		if err != nil {
			return
		}
		if strings.Contains(got, "{{") {
			t.Fatalf("formatTemplate(%q) = %q: placeholder left", s, got)
		}
		for i := 0; i < len(got); i++ {
			if got[i] != '%' {
				continue
			}
			ok := false
			for _, k := range known {
				if strings.HasPrefix(got[i:], k) {
					ok, i = true, i+len(k)-1
					break
				}
			}
			if !ok {
				t.Fatalf("formatTemplate(%q) = %q: stray %% at %d", s, got, i)
			}
		}
	})
}

func TestLoginConfigValidate(t *testing.T) {
	t.Parallel()
	c := LoginConfig{
		Creation: []string{"CREATE ROLE {{nom}}"}, Renewal: []string{"ALTER ROLE {{name}} PASSWORD {{password}}"},
		AllowedRoles: []string{"ok", strings.Repeat("x", 64)}, TerminateTimeout: -1, ClientPort: 70000, ClientHost: "a/b", ClientParams: "%zz",
	}
	err := c.Validate()
	for _, want := range []string{"name is required", "creation[0]", "renewal[0]", "allowedRoles", "terminateTimeout", "clientPort", "clientHost", "clientParams"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want a problem mentioning %q", err, want)
		}
	}
	if err := (&LoginConfig{Name: "orders"}).Validate(); err != nil {
		t.Errorf("minimal config: %v", err)
	}
}

func TestScramVerifier(t *testing.T) {
	t.Parallel()
	a, err := scramVerifier("secret")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := scramVerifier("secret")
	parts := strings.Split(a, "$")
	if len(parts) != 3 || parts[0] != "SCRAM-SHA-256" || !strings.HasPrefix(parts[1], "4096:") || strings.Count(parts[2], ":") != 1 {
		t.Fatalf("verifier %q does not have PostgreSQL's shape", a)
	}
	if a == b {
		t.Error("two verifiers of one password are equal: the salt is not random")
	}
	if strings.Contains(a, "secret") {
		t.Error("verifier contains the password")
	}
}

func TestValidRole(t *testing.T) {
	t.Parallel()
	for r, want := range map[string]bool{
		"reader": true, `we"ird; role`: true, "Grüße": true, strings.Repeat("x", 63): true,
		"": false, strings.Repeat("x", 64): false, "a\x00b": false, "bad\xffutf8": false,
	} {
		if got := validRole(r); got != want {
			t.Errorf("validRole(%q) = %v, want %v", r, got, want)
		}
	}
}

// TestGoldenLoginSQL shows every statement the PostgreSQL login issuer
// sends, for review.
func TestGoldenLoginSQL(t *testing.T) {
	var b strings.Builder
	section := func(title string, stmts ...string) {
		b.WriteString("-- " + title + "\n")
		for _, s := range stmts {
			b.WriteString(s + ";\n")
		}
		b.WriteString("\n")
	}
	fmts := func(ts []string, pw bool) string {
		out, err := formatTemplates(ts, pw)
		if err != nil {
			t.Fatal(err)
		}
		return "as format string(s): " + strings.Join(out, " | ")
	}
	section("Every template is rendered on the server first ($1: the format strings, $2 login, $3 role, $4 SCRAM verifier or NULL, $5 expiry or NULL):", RenderSQL)
	section("CheckServer, and CreateLogin first in its transaction until the issuer read it once: the server's version; "+
		"below 160000 (PostgreSQL 15 and earlier, where CREATEROLE is superuser in effect) a warning is logged.", ServerVersionSQL)
	section("CreateLogin (one transaction): check the role, then the rendered creation statements.", RoleCheckSQL)
	section("Default creation template, "+fmts(DefaultCreation, true), DefaultCreation...)
	section("RenewLogin (one transaction): the rendered renewal statements.", DefaultRenewal...)
	section("RevokeLogin step 0: refuse a privileged role ($1 login).", LoginCheckSQL)
	section("RevokeLogin step 1 (each statement on its own; \"does not exist\" is done): disable.", DefaultDisable...)
	section("RevokeLogin step 2 (one transaction): take on pg_signal_backend's privileges when a member without them (NOINHERIT), "+
		"then end the login's sessions ($1 login, $2 timeout ms); any left -> retry.", SignalRoleSQL, TerminateSessionsSQL)
	section("RevokeLogin step 3 (each statement on its own): drop.", DefaultDrop...)
	got := b.String()
	path := filepath.Join("testdata", "login_postgres.golden")
	golden.Compare(t, path, []byte(got))
}

// TestLoginDocs keeps docs/credentials.md true to the code: it must show the
// golden statements verbatim.
func TestLoginDocs(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "credentials.md"))
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "login_postgres.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), strings.TrimSpace(string(golden))) {
		t.Error("docs/credentials.md does not show testdata/login_postgres.golden verbatim")
	}
}

// BenchmarkScramVerifier: the cost of keeping the password off the server
// (PBKDF2-SHA-256, 4096 iterations) per issued login.
func BenchmarkScramVerifier(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := scramVerifier("Secret123secret123secret123ABCdef"); err != nil {
			b.Fatal(err)
		}
	}
}
