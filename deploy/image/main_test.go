package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/sqlgate/sqlgate/deploy/image/podmantest"
	"github.com/sqlgate/sqlgate/internal/testnet"
)

// goBuild compiles a one-line program with the given environment and
// returns the binary's path.
func goBuild(t *testing.T, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"ok\\n\") }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module probe\n\ngo 1.26\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "probe")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", env, err, b)
	}
	return out
}

// TestReadStatic checks that the builder takes only what the image can run.
func TestReadStatic(t *testing.T) {
	static := goBuild(t, "CGO_ENABLED=0")
	if _, err := readStatic(os.ReadFile, static, runtime.GOARCH); err != nil {
		t.Errorf("a static binary for %s: %v", runtime.GOARCH, err)
	}
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	if _, err := readStatic(os.ReadFile, static, other); err == nil || !strings.Contains(err.Error(), "not "+other) {
		t.Errorf("a %s binary taken as %s: err = %v", runtime.GOARCH, other, err)
	}
	text := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readStatic(os.ReadFile, text, runtime.GOARCH); err == nil || !strings.Contains(err.Error(), "not an ELF") {
		t.Errorf("a script: err = %v", err)
	}
	// The machine's shell is linked against libc, which the image lacks.
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readStatic(os.ReadFile, sh, runtime.GOARCH); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("%s: err = %v, want dynamically linked", sh, err)
	}
}

// file is one entry of an image's file system.
type file struct {
	mode     int64
	uid, gid int
	dir      bool
	body     string
	modTime  time.Time
}

// filesOf flattens an image into its files.
func filesOf(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	out := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = file{mode: h.Mode, uid: h.Uid, gid: h.Gid, dir: h.Typeflag == tar.TypeDir, body: string(b), modTime: h.ModTime.UTC()}
	}
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// TestBuild builds an image twice from the same inputs and checks what a
// container runtime would see: identical bytes, a valid image, an
// unprivileged user, the entrypoint and the files.
func TestBuild(t *testing.T) {
	created := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s := spec{
		daemon: []byte("daemon bytes"), cli: []byte("cli bytes"), caCerts: []byte("-----BEGIN CERTIFICATE-----\n"),
		caSource: "file", tag: "registry.example.com/sqlgate/sqlgated:1.2.3", version: "1.2.3", revision: "abc123",
		source: "https://example.com/sqlgate", arch: "amd64", created: created,
	}
	dir := t.TempDir()
	var archives [2][]byte
	for i := range archives {
		img, err := build(&s)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := tarball.Write(mustTag(t, s.tag), img, &buf); err != nil {
			t.Fatal(err)
		}
		archives[i] = buf.Bytes()
	}
	if !bytes.Equal(archives[0], archives[1]) {
		t.Fatal("two builds from the same inputs differ")
	}
	path := filepath.Join(dir, "image.tar")
	if err := os.WriteFile(path, archives[0], 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("the written image is not valid: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/sqlgated"}) ||
		!slices.Equal(c.Cmd, []string{"serve", "--config", "/etc/sqlgate/sqlgated.yaml"}) {
		t.Errorf("user %q, entrypoint %q, cmd %q", c.User, c.Entrypoint, c.Cmd)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Equal(created) {
		t.Errorf("platform %s/%s created %v", cf.OS, cf.Architecture, cf.Created)
	}
	if c.Labels["org.opencontainers.image.version"] != "1.2.3" || c.Labels["org.opencontainers.image.revision"] != "abc123" {
		t.Errorf("labels %v", c.Labels)
	}
	// The labels tell which CA bundle an image trusts.
	if got, want := c.Labels["io.github.sqlgate.ca-certificates.sha256"], "b93f51c3ac1bdd90edcce2019d2452a328cbf97443f3744cc7ec63033a5b2c16"; got != want {
		t.Errorf("CA bundle label %q, want the bundle's SHA-256 %s", got, want)
	}
	if got := c.Labels["io.github.sqlgate.ca-certificates.source"]; got != "file" {
		t.Errorf("CA source label %q, want file", got)
	}

	files := filesOf(t, img)
	want := map[string]file{
		"usr/local/bin/sqlgated":            {mode: 0o755, body: "daemon bytes"},
		"usr/local/bin/sqlgate":             {mode: 0o755, body: "cli bytes"},
		"etc/ssl/certs/ca-certificates.crt": {mode: 0o644, body: "-----BEGIN CERTIFICATE-----\n"},
		"var/lib/sqlgate":                   {mode: 0o700, uid: 65532, gid: 65532, dir: true},
		"tmp":                               {mode: 0o1777, dir: true},
		"etc/sqlgate":                       {mode: 0o755, dir: true},
		"etc/nsswitch.conf":                 {mode: 0o644, body: "hosts: files dns\n"},
		"etc/group":                         {mode: 0o644, body: "root:x:0:\nsqlgate:x:65532:\n"},
		"etc/passwd":                        {mode: 0o644, body: "root:x:0:0:root:/root:/sbin/nologin\nsqlgate:x:65532:65532:sqlgate:/var/lib/sqlgate:/sbin/nologin\n"},
		"etc":                               {mode: 0o755, dir: true},
		"etc/ssl":                           {mode: 0o755, dir: true},
		"etc/ssl/certs":                     {mode: 0o755, dir: true},
		"usr":                               {mode: 0o755, dir: true},
		"usr/local":                         {mode: 0o755, dir: true},
		"usr/local/bin":                     {mode: 0o755, dir: true},
		"var":                               {mode: 0o755, dir: true},
		"var/lib":                           {mode: 0o755, dir: true},
	}
	for name, f := range files {
		w, ok := want[name]
		if !ok {
			t.Errorf("unexpected file %s in the image", name)
			continue
		}
		w.modTime = created
		if f != w {
			t.Errorf("%s = %+v, want %+v", name, f, w)
		}
	}
	for name := range want {
		if _, ok := files[name]; !ok {
			t.Errorf("%s is missing from the image", name)
		}
	}
}

// TestImage checks an image built by `make image` (SQLGATE_TEST_IMAGE names
// the tarball): it is valid, and the binaries it holds run from its file
// system alone.
func TestImage(t *testing.T) {
	path := os.Getenv("SQLGATE_TEST_IMAGE")
	if path == "" {
		t.Skip("SQLGATE_TEST_IMAGE is not set: run make image-test")
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != runtime.GOARCH {
		t.Skipf("the image is for %s; this machine cannot run it", cf.Architecture)
	}
	root := t.TempDir()
	for name, f := range filesOf(t, img) {
		p := filepath.Join(root, name)
		if f.dir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.body), os.FileMode(f.mode)); err != nil {
			t.Fatal(err)
		}
	}
	version := cf.Config.Labels["org.opencontainers.image.version"]
	for bin, want := range map[string]string{"sqlgated": "sqlgated " + version, "sqlgate": "sqlgate " + version} {
		// A clean environment: the binary gets nothing from the host but the kernel.
		cmd := exec.CommandContext(t.Context(), filepath.Join(root, "usr/local/bin", bin), "version")
		cmd.Env = cf.Config.Env
		cmd.Dir = root
		b, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("%s version: %v, printed %q, want %q", bin, err, b, want)
		}
	}
	if _, err := readStatic(os.ReadFile, filepath.Join(root, "usr/local/bin/sqlgated"), cf.Architecture); err != nil {
		t.Error(err)
	}
	// Unless built with CA_CERTS, the image trusts the pinned module's roots,
	// at the version go.mod requires.
	ca, err := os.ReadFile(filepath.Join(root, caPath))
	if err != nil {
		t.Fatal(err)
	}
	source := cf.Config.Labels[caSourceLabel]
	if source == caFileSource {
		t.Logf("the image was built with CA_CERTS (%s %s)", caLabel, cf.Config.Labels[caLabel])
		return
	}
	modVersion, err := exec.CommandContext(t.Context(), "go", "list", "-m", "-f", "{{.Version}}", fallbackModule).Output()
	if err != nil {
		t.Fatal(err)
	}
	pinned, _, err := pinnedBundle()
	if err != nil {
		t.Fatal(err)
	}
	if want := fallbackModule + "@" + strings.TrimSpace(string(modVersion)); source != want || !bytes.Equal(ca, pinned) {
		t.Errorf("the image's CA bundle (%d bytes, %s %q) is not the pinned one (%d bytes, %s)", len(ca), caSourceLabel, source, len(pinned), want)
	}
}

// TestImageRuns starts the image built by `make image` in a real container
// engine (SQLGATE_TEST_PODMAN names podman; make deploy-test sets it when
// podman is installed, and .ci/run installs it) the way the Helm chart runs
// it: read-only root, no capabilities, no new privileges, the image's own
// user, with a memory limit. Inside it, sqlgated takes 90 % of the limit as
// its soft memory limit, runs the whole demo, and the image's CLI signs
// in, calls routes (a replay, a denial) and verifies the signed audit log. A
// stop drains and exits 0.
func TestImageRuns(t *testing.T) {
	engine, archive := podmantest.New(t)
	ref := engine.Load(t, archive)
	pm := func(stdin string, args ...string) (string, error) { return engine.Podman(t, stdin, args...) }

	name := fmt.Sprintf("sqlgate-image-test-%d", os.Getpid())
	httpPort, natsPort := testnet.FreePort(t), testnet.FreePort(t)
	broker := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	run := append([]string{"run", "-d", "--name", name}, engine.RunArgs()...)
	// A memory limit, as a pod's limits.memory: sqlgated takes 90 % of it as
	// its soft memory limit.
	run = append(run, "--memory", "256m", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", ref)
	if _, err := pm("", append(run, "dev", "--data-dir", "/var/lib/sqlgate/dev",
		"--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--nats", fmt.Sprintf("127.0.0.1:%d", natsPort))...); err != nil {
		t.Fatal(err)
	}
	engine.Remove(t, name)

	// Ready: the policy serves, NATS is up, the control database answers.
	engine.WaitReady(t, name, broker+"/readyz", 90*time.Second)

	// The container's memory limit became the Go runtime's soft limit:
	// 90 % of 256 MiB.
	if logs := engine.Logs(t, name); !strings.Contains(logs, `msg="go runtime" gogc=400 gomemlimit=241591910`) {
		t.Errorf("sqlgated did not log the soft memory limit of its container:\n%s", logs)
	}

	// The demo's secrets, copied out as an operator would.
	dir := t.TempDir()
	secret := func(file string) string {
		if _, err := pm("", "cp", name+":/var/lib/sqlgate/dev/demo/"+file, filepath.Join(dir, file)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	// The image's CLI, in the container (its home in the writable /tmp).
	cli := func(stdin string, args ...string) (string, error) {
		return pm(stdin, append([]string{"exec", "-i", "-e", "SQLGATE_HOME=/tmp/cli", "-e", "SQLGATE_BROKER=" + broker, name, "sqlgate"}, args...)...)
	}
	if _, err := cli(secret("alice.password"), "login", "--username", "alice", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli("", "creds", "nats"); err != nil {
		t.Fatal(err)
	}
	first, err := cli("", "call", "orders.v1.create", `{"customer":"ACME","amount":250}`, "--idempotency-key", "image-1")
	if err != nil || !strings.Contains(first, `"ok": true`) {
		t.Fatalf("create: %v\n%s", err, first)
	}
	again, err := cli("", "call", "orders.v1.create", `{"customer":"ACME","amount":250}`, "--idempotency-key", "image-1")
	if err != nil || !strings.Contains(again, `"replayed": true`) {
		t.Errorf("the same key again: %v\n%s", err, again)
	}
	if denied, err := cli("", "call", "orders.v1.create", `{"customer":"ACME","amount":5000}`); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("over alice's limit: %v\n%s", err, denied)
	}
	if _, err := cli(secret("carol.password"), "login", "--username", "carol", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if report, err := cli("", "audit", "verify", "--key", secret("audit.vkey")); err != nil || !strings.Contains(report, "OK") {
		t.Errorf("audit verify in the container: %v\n%s", err, report)
	}

	// SIGTERM drains and exits 0.
	if _, err := pm("", "stop", "-t", "60", name); err != nil {
		t.Fatal(err)
	}
	code, err := pm("", "inspect", "--format", "{{.State.ExitCode}}", name)
	if err != nil || strings.TrimSpace(code) != "0" {
		t.Errorf("exit code after stop: %q %v", code, err)
	}
}
