package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/policy/rules"
)

// checkableExample writes deploy/examples/sqlgated.yaml with its route
// catalog, policy directory and secrets pointed at files that exist here
// (the repository's example catalog, a copy of the default policy library,
// the secrets of exampleSecrets), and returns its path and the policy
// directory.
func checkableExample(t *testing.T) (config, policyDir string) {
	t.Helper()
	dir := t.TempDir()
	policyDir = filepath.Join(dir, "policy")
	if err := os.CopyFS(policyDir, rules.FS); err != nil {
		t.Fatal(err)
	}
	routes, err := filepath.Abs("../../deploy/examples/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../deploy/examples/sqlgated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := exampleSecrets(t, dir).Replace(string(example))
	// The sink as a directory that can be created here (--check refuses one
	// that cannot, and /mnt is root's).
	sink := "sinkDir: " + filepath.Join(dir, "worm", "sqlgate-checkpoints")
	for from, to := range map[string]string{"routes: /etc/sqlgate/routes.yaml": "routes: " + routes, "dir: /etc/sqlgate/policy": "dir: " + policyDir, "sinkDir: /mnt/worm/sqlgate-checkpoints": sink} {
		if !strings.Contains(text, from) {
			t.Fatalf("the example configuration no longer has %q", from)
		}
		text = strings.Replace(text, from, to, 1)
	}
	config = filepath.Join(dir, "sqlgated.yaml")
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return config, policyDir
}

// TestServeCheck checks that `sqlgated serve --check` validates the
// configuration, the route catalog and the policy, and names what is wrong.
func TestServeCheck(t *testing.T) {
	config, policyDir := checkableExample(t)
	var out strings.Builder
	if err := run(t.Context(), []string{"serve", "--config", config, "--check"}, &out, &out); err != nil {
		t.Fatalf("serve --check on the example: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "routes and policy revision") || !strings.Contains(out.String(), "are valid") {
		t.Errorf("serve --check printed %q", out.String())
	}

	// A policy that does not compile: serve would start and deny every call;
	// --check refuses it and names the file.
	if err := os.WriteFile(filepath.Join(policyDir, "broken.rego"), []byte("package sqlgate.broken\n\nallow if {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := run(t.Context(), []string{"serve", "--config", config, "--check"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "broken.rego") {
		t.Errorf("serve --check with a broken policy: err = %v, want one naming broken.rego", err)
	}
}

// TestServeCheckRefusesWhatServeRefuses checks that --check (the chart's
// init container, the unit's ExecStartPre) reports, together, problems that
// serve used to find only one at a time at start: a route on a database the
// configuration does not define, short-lived logins that do not validate, an
// origin the audit log refuses, an inline connection string.
func TestServeCheckRefusesWhatServeRefuses(t *testing.T) {
	config, _ := checkableExample(t)
	text, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	routesPath, err := filepath.Abs("../../deploy/examples/routes.yaml") // as checkableExample writes it
	if err != nil {
		t.Fatal(err)
	}
	routes, err := os.ReadFile(routesPath)
	if err != nil {
		t.Fatal(err)
	}
	// The billing routes name a database the configuration lacks.
	routes = bytes.ReplaceAll(routes, []byte("database: billing"), []byte("database: invoices"))
	newRoutes := filepath.Join(t.TempDir(), "routes.yaml")
	if err := os.WriteFile(newRoutes, routes, 0o600); err != nil {
		t.Fatal(err)
	}
	broken := strings.NewReplacer(
		"routes: "+routesPath, "routes: "+newRoutes,
		"      allowedRoles: [reader]", "      allowedRoles: [reader]\n      terminateTimeout: -1s",
		"  origin: sqlgate.example.com/sqlgate-1", "  origin: \"has space+plus\"",
		"      dsnEnv: SQLGATE_BILLING_DSN", "      dsn: postgres://broker:hunter2@db/billing",
	).Replace(string(text))
	if err := os.WriteFile(config, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err = run(t.Context(), []string{"serve", "--config", config, "--check"}, &out, &out)
	if err == nil {
		t.Fatalf("serve --check accepted the configuration:\n%s", out.String())
	}
	for _, want := range []string{
		`routes: billing.v1.invoice_total use database "invoices", which databases does not define`,
		"databases[1]: postgresLogins: terminateTimeout must not be negative",
		`audit.origin "has space+plus" must be`,
		"databases[1]: postgres.dsn: secrets are never inline",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("serve --check: %v\nwant it to contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Error("serve --check echoes the inline connection string")
	}
}

// unitValues returns the values of key in a systemd unit, in order.
func unitValues(unit []byte, key string) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestSystemdUnit checks deploy/systemd/sqlgated.service: its command lines
// are ones sqlgated accepts (run here against the example configuration),
// systemd finds the unit valid, and its sandbox keeps systemd's exposure
// score at 2.0 or below.
func TestSystemdUnit(t *testing.T) {
	const path = "../../deploy/systemd/sqlgated.service"
	unit, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pre, start := unitValues(unit, "ExecStartPre"), unitValues(unit, "ExecStart")
	if len(pre) != 1 || len(start) != 1 || pre[0] != start[0]+" --check" {
		t.Fatalf("want one ExecStart and one ExecStartPre that is ExecStart --check; got %q and %q", start, pre)
	}
	args := strings.Fields(start[0])
	if len(args) != 4 || args[0] != "/usr/local/bin/sqlgated" || args[1] != "serve" || args[2] != "--config" {
		t.Fatalf("ExecStart = %q, want /usr/local/bin/sqlgated serve --config FILE", start[0])
	}
	config, _ := checkableExample(t)
	var out strings.Builder
	if err := run(t.Context(), []string{args[1], args[2], config, "--check"}, &out, &out); err != nil {
		t.Errorf("ExecStartPre's command on the example configuration: %v\n%s", err, out.String())
	}
	// The configuration's *Env keys (the example's dsnEnv) need a place for
	// their values that the unit reads, optional so that a configuration
	// without any still starts; docs/operations.md names the same file.
	const envFile = "/etc/sqlgate/sqlgated.env"
	if got := unitValues(unit, "EnvironmentFile"); !slices.Equal(got, []string{"-" + envFile}) {
		t.Errorf("EnvironmentFile = %q, want [-%s]", got, envFile)
	}
	if doc, err := os.ReadFile("../../docs/operations.md"); err != nil || !bytes.Contains(doc, []byte(envFile)) {
		t.Errorf("docs/operations.md does not name %s (%v)", envFile, err)
	}

	t.Run("systemd-analyze", func(t *testing.T) {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze is not installed: the unit's syntax and sandbox were not checked")
		}
		// verify wants the binary to exist: this test's own executable stands in.
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		local := filepath.Join(t.TempDir(), "sqlgated.service")
		if err := os.WriteFile(local, bytes.ReplaceAll(unit, []byte("/usr/local/bin/sqlgated"), []byte(self)), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, err := exec.CommandContext(t.Context(), analyze, "verify", local).CombinedOutput(); err != nil || len(b) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, b)
		}
		b, err := exec.CommandContext(t.Context(), analyze, "security", "--offline=yes", "--threshold=20", local).CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security: exposure above 2.0 (%v):\n%s", err, b)
		}
	})
}
