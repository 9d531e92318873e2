package main

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
)

// checkWith writes the checkable example, whose secret files are in a
// directory of this test (secrets/ and secrets/nats/, see exampleSecrets;
// the audit keys are not there), after edit, and returns the output of
// serve --check, the secrets directory and the result.
func checkWith(t *testing.T, edit func(text, secrets string) string) (out, secrets string, err error) {
	t.Helper()
	config, _ := checkableExample(t)
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	secrets = filepath.Join(filepath.Dir(config), "secrets")
	text := string(b)
	if edit != nil {
		text = edit(text, secrets)
	}
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var b2 strings.Builder
	err = run(t.Context(), []string{"serve", "--config", config, "--check"}, &b2, &b2)
	return b2.String(), secrets, err
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

// TestServeCheckSigningKeyName checks that --check refuses a checkpoint
// signing key named for another origin, which the audit log refuses at
// start: the origin defaults to the host name, so renaming the host did it.
// Only the key's name is quoted.
func TestServeCheckSigningKeyName(t *testing.T) {
	for origin, wantErr := range map[string]bool{"sqlgate/old-host": true, "sqlgate.example.com/sqlgate-1": false} {
		skey, _, err := audit.GenerateKey(rand.Reader, origin)
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := checkWith(t, func(text, secrets string) string {
			writeFile(t, filepath.Join(secrets, "audit-signing.key"), skey+"\n", 0o600)
			return text
		})
		if !wantErr {
			if err != nil {
				t.Errorf("a signing key named for the configured origin: %v\n%s", err, out)
			}
			continue
		}
		want := `holds the key of origin "sqlgate/old-host", but audit.origin is "sqlgate.example.com/sqlgate-1"`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a signing key named for another origin: err = %v, want %q", err, want)
		} else if strings.Contains(err.Error(), skey) || strings.Contains(err.Error(), strings.Split(skey, "+")[4]) {
			t.Error("the error quotes the signing key")
		}
	}
	// Not a key at all: named as such, never quoted.
	_, _, err := checkWith(t, func(text, secrets string) string {
		writeFile(t, filepath.Join(secrets, "audit-signing.key"), "hunter2-not-a-key\n", 0o600)
		return text
	})
	if err == nil || !strings.Contains(err.Error(), "holds no checkpoint signing key") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a signing key file without a key: err = %v", err)
	}
}

// TestServeCheckSecretModes checks that --check refuses secret files other
// users may access, naming the key, the file and the fix, and accepts the
// modes the systemd unit (0600) and the Helm chart (0440 with fsGroup) give.
func TestServeCheckSecretModes(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		mode       os.FileMode
		want       string
	}{
		{"param key 0644", "audit-param.key", 0o644, "audit.paramKeyFile: %s is accessible to other users (mode 0644): it holds a secret; run chmod o-rwx %[1]s"},
		{"cookie key 0604", "cookie.key", 0o604, "identity.web.cookieKeyFile: %s is accessible to other users (mode 0604)"},
		{"client secret 0666", "entra-client-secret", 0o666, "identity.issuers[0].clientSecretFile: %s is accessible to other users (mode 0666)"},
		{"operator seed 0644", "nats/operator.nk", 0o644, "nats.keysDir: %s is accessible to other users (mode 0644)"},
		{"param key 0600", "audit-param.key", 0o600, ""},
		{"cookie key 0440 (a Secret mount)", "cookie.key", 0o440, ""},
		{"operator seed 0640", "nats/operator.nk", 0o640, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var path string
			out, _, err := checkWith(t, func(text, secrets string) string {
				path = filepath.Join(secrets, tc.file)
				// A secret --check reads whole: a seed stays one, and a
				// cookie key keeps its 32 bytes.
				content := "hunter2 secret, at least thirty-two bytes long\n"
				if strings.HasSuffix(tc.file, ".nk") {
					b, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					content = string(b)
				}
				writeFile(t, path, content, tc.mode)
				return text
			})
			if tc.want == "" {
				if err != nil {
					t.Errorf("mode %04o refused: %v\n%s", tc.mode, err, out)
				}
				return
			}
			want := strings.ReplaceAll(tc.want, "%s", path)
			want = strings.ReplaceAll(want, "%[1]s", path)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v\nwant it to contain %q", err, want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Error("the error quotes the secret")
			}
		})
	}
}

// TestSecretFilesRefusedAtStart checks that serve itself (and dev) refuses
// the audit keys when other users may read them, and creates new ones
// 0600.
func TestSecretFilesRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secrets", "audit-param.key")
	if _, err := loadParamKey(path, true); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("a new parameter key: %v %v, want mode 0600", fi.Mode(), err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, load := range []func() error{
		func() error { _, err := loadParamKey(path, true); return err },
		func() error { _, err := loadParamKey(path, false); return err },
		func() error { _, err := loadOrCreate(path, nil); return err },
	} {
		if err := load(); err == nil || !strings.Contains(err.Error(), path+" is accessible to other users (mode 0644)") {
			t.Errorf("a 0644 key file: err = %v, want it refused", err)
		}
	}
}

// TestServeCheckSinkDir checks that --check refuses an audit.sinkDir serve
// could not create (it stopped at its MkdirAll, the Helm chart's read-only
// root without a volume there), and creates nothing.
func TestServeCheckSinkDir(t *testing.T) {
	var sink string
	_, _, err := checkWith(t, func(text, secrets string) string {
		file := filepath.Join(secrets, "not-a-dir")
		writeFile(t, file, "x", 0o600)
		sink = filepath.Join(file, "checkpoints")
		return strings.Replace(text, "sinkDir: ", "sinkDir: "+sink+" #", 1)
	})
	if err == nil || !strings.Contains(err.Error(), "audit.sinkDir "+sink+": ") || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("a sink under a file: err = %v", err)
	}
	out, secrets, err := checkWith(t, func(text, secrets string) string {
		sink = filepath.Join(secrets, "worm", "checkpoints")
		return strings.Replace(text, "sinkDir: ", "sinkDir: "+sink+" #", 1)
	})
	if err != nil {
		t.Errorf("a sink that can be created: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(secrets, "worm")); !os.IsNotExist(err) {
		t.Errorf("--check created the sink: %v", err)
	}
}

// TestServeCheckStopBudget checks that --check warns, without failing, when
// a stop may outlast the 90 s the shipped unit and chart allow.
func TestServeCheckStopBudget(t *testing.T) {
	out, _, err := checkWith(t, nil)
	// (The example's other warnings are the library's grants of routes its
	// catalog lacks.)
	if err != nil || strings.Contains(out, "warning: a stop") {
		t.Fatalf("the example (5s timeouts): err = %v, output %q", err, out)
	}
	config, _ := checkableExample(t)
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := os.ReadFile("../../deploy/examples/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	slow := filepath.Join(t.TempDir(), "routes.yaml")
	writeFile(t, slow, strings.Replace(string(routes), "timeout: 5s", "timeout: 2m", 1), 0o600)
	routesPath, err := filepath.Abs("../../deploy/examples/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, config, strings.Replace(string(b), "routes: "+routesPath, "routes: "+slow, 1), 0o600)
	var sb strings.Builder
	if err := run(t.Context(), []string{"serve", "--config", config, "--check"}, &sb, &sb); err != nil {
		t.Fatalf("a 2m route timeout is no error: %v", err)
	}
	if want := "warning: a stop may take up to 2m30s (the longest a call may run, 2m0s, plus 30s), more than the 1m30s"; !strings.Contains(sb.String(), want) {
		t.Errorf("serve --check printed %q\nwant %q", sb.String(), want)
	}

	// A call of a route with batch may run three timeouts (the batch
	// ahead, its batch, then alone): a 40s timeout is a 2m call.
	writeFile(t, slow, strings.Replace(string(routes), "timeout: 5s", "timeout: 40s\n    batch: 8", 1), 0o600)
	sb.Reset()
	if err := run(t.Context(), []string{"serve", "--config", config, "--check"}, &sb, &sb); err != nil {
		t.Fatalf("a batched 40s route is no error: %v", err)
	}
	if want := "warning: a stop may take up to 2m30s (the longest a call may run, 2m0s, plus 30s)"; !strings.Contains(sb.String(), want) {
		t.Errorf("serve --check with a batched 40s route printed %q\nwant %q", sb.String(), want)
	}
}
