package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies checks the architecture of STYLE.md section 1.2
// transitively: what each package may (not) link. Reading this table tells
// a newcomer how the code is layered.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("go list of every package: skipped with -short")
	}
	const mod = "github.com/sqlgate/sqlgate/"
	drivers := []string{"github.com/jackc/pgx", "github.com/microsoft/go-mssqldb", "modernc.org/sqlite"}
	tests := []struct {
		pkg string
		// deny lists import path prefixes the package must not link.
		deny []string
		// onlyModule, when set, limits third-party (non-stdlib, non-sqlgate)
		// dependencies to these prefixes.
		onlyThirdParty []string
	}{
		{pkg: "identity", deny: []string{mod}, onlyThirdParty: []string{}},
		{pkg: "policy", deny: []string{mod + "broker", mod + "audit", mod + "web", "github.com/open-policy-agent"}, onlyThirdParty: []string{}},
		{pkg: "audit", deny: []string{mod + "broker", mod + "policy", mod + "web"}, onlyThirdParty: []string{"golang.org/x/mod"}},
		// Evidence adds only its PDF writer, the Go fonts and its XLSX writer
		// (excelize and what it links) to the log.
		{pkg: "audit/evidence", deny: []string{mod + "broker", mod + "policy", mod + "web"}, onlyThirdParty: []string{
			"golang.org/x/mod", "codeberg.org/go-pdf/fpdf", "golang.org/x/image",
			"github.com/xuri/", "github.com/richardlehane/", "github.com/tiendc/go-deepcopy", "golang.org/x/crypto", "golang.org/x/net", "golang.org/x/text",
		}},
		{pkg: "web/api", deny: []string{mod}, onlyThirdParty: []string{}},
		{pkg: "broker/route", deny: []string{mod + "broker/", mod + "web", mod + "policy", mod + "audit"}},
		{pkg: "broker", deny: append([]string{mod + "web", mod + "policy/opa", mod + "identity/oidc", "github.com/open-policy-agent", "github.com/nats-io", mod + "broker/sqlite", mod + "broker/postgres", mod + "broker/sqlserver", mod + "broker/nats"}, drivers...)},
		{pkg: "policy/opa", deny: []string{mod + "broker", mod + "audit", mod + "web"}},
		{pkg: "identity/oidc", deny: []string{mod + "broker", mod + "policy", mod + "audit", mod + "web"}},
		{pkg: "identity/devidp", deny: []string{mod + "broker", mod + "policy", mod + "audit", mod + "web"}},
		{pkg: "web", deny: append([]string{mod + "broker/sqlite", mod + "broker/postgres", mod + "broker/sqlserver", mod + "broker/natsauth", mod + "broker/natsvc", mod + "policy/opa", "github.com/nats-io"}, drivers...)},
		{pkg: "broker/sqlite", deny: []string{mod + "web", mod + "policy/opa", mod + "broker/postgres", mod + "broker/sqlserver", "github.com/nats-io"}},
		{pkg: "broker/postgres", deny: []string{mod + "web", mod + "policy/opa", mod + "broker/sqlite", mod + "broker/sqlserver", "github.com/nats-io"}},
		{pkg: "broker/sqlserver", deny: []string{mod + "web", mod + "policy/opa", mod + "broker/sqlite", mod + "broker/postgres", "github.com/nats-io"}},
		{pkg: "broker/natsauth", deny: append([]string{mod + "web", mod + "policy/opa"}, drivers...)},
		{pkg: "broker/natsvc", deny: append([]string{mod + "web", mod + "policy/opa", "github.com/nats-io/nats-server"}, drivers...)},
		{pkg: "broker/natsclient", deny: append([]string{mod + "broker", mod + "policy", mod + "audit", mod + "identity", "github.com/nats-io/nats-server"}, drivers...)},
		// The CLI talks to the API and NATS: no SQL driver, no NATS server, no broker internals.
		{pkg: "cmd/sqlgate", deny: append([]string{"github.com/nats-io/nats-server", mod + "broker", mod + "web/ui", mod + "cmd/sqlgated"}, drivers...)},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.pkg, "/", "_"), func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", mod+tc.pkg).Output()
			if err != nil {
				t.Fatalf("go list %s: %v", tc.pkg, err)
			}
			for _, dep := range strings.Fields(string(out)) {
				if dep == mod+tc.pkg || strings.HasPrefix(dep, mod+tc.pkg+"/internal") {
					continue
				}
				// broker/internal is shared by the broker's own subpackages.
				internal := strings.HasPrefix(dep, mod+"broker/internal") && strings.HasPrefix(tc.pkg, "broker/")
				for _, d := range tc.deny {
					if strings.HasPrefix(dep, d) && !internal {
						t.Errorf("%s links %s (denied: %s)", tc.pkg, dep, d)
					}
				}
				if tc.onlyThirdParty == nil || strings.HasPrefix(dep, mod) {
					continue
				}
				ok := false
				for _, p := range tc.onlyThirdParty {
					ok = ok || strings.HasPrefix(dep, p)
				}
				if !ok {
					t.Errorf("%s links third-party %s", tc.pkg, dep)
				}
			}
		})
	}
}
