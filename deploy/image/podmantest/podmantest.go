// Package podmantest runs sqlgate's container image under podman, for the
// tests of the image and of the Helm chart. SQLGATE_TEST_IMAGE names the
// image archive (`make image`) and SQLGATE_TEST_PODMAN the podman binary;
// `make deploy-test` sets both when podman is installed.
package podmantest

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Engine is podman with the options this machine needs.
type Engine struct {
	bin    string
	global []string
	limits []string
}

// New returns the engine and the archive to test, or skips the test when
// either variable is unset.
func New(t *testing.T) (e *Engine, archive string) {
	t.Helper()
	archive, bin := os.Getenv("SQLGATE_TEST_IMAGE"), os.Getenv("SQLGATE_TEST_PODMAN")
	if archive == "" || bin == "" {
		t.Skip("SQLGATE_TEST_IMAGE and SQLGATE_TEST_PODMAN are not set: run make deploy-test with podman installed")
	}
	e = &Engine{bin: bin}
	// crun, podman's default runtime, refuses the CI machines' hybrid
	// cgroup layout; runc runs there.
	if runc, err := exec.LookPath("runc"); err == nil {
		e.global = []string{"--runtime", runc}
	}
	// The engine's default limits exceed what the CI machines grant a
	// process, and the runtime fails to set them: ask for this process's
	// open-file limit and 4096 processes (sqlgated needs a few dozen
	// threads).
	var nofile unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	n := min(nofile.Max, 1<<20)
	e.limits = []string{"--ulimit", fmt.Sprintf("nofile=%d:%d", n, n), "--ulimit", "nproc=4096:4096"}
	return e, archive
}

// Podman runs podman with args and stdin and returns its standard output;
// the error carries both outputs.
func (e *Engine) Podman(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), e.bin, append(slices.Clone(e.global), args...)...) //nolint:gosec // G204: podman from SQLGATE_TEST_PODMAN, arguments from the tests
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// Load loads the archive and returns a reference to the image that is this
// test's own: a tag removed when the test ends, so tests running at the same
// time do not remove each other's image.
func (e *Engine) Load(t *testing.T, archive string) string {
	t.Helper()
	out, err := e.Podman(t, "", "load", "-q", "-i", archive)
	if err != nil {
		t.Fatal(err)
	}
	_, ref, ok := strings.Cut(strings.TrimSpace(out), "Loaded image: ")
	if !ok || strings.ContainsAny(ref, " \n") {
		t.Fatalf("podman load printed %q", out)
	}
	own := fmt.Sprintf("%s-test-%d-%d", ref, os.Getpid(), loads.Add(1))
	if _, err := e.Podman(t, "", "tag", ref, own); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = e.podmanNoCtx("rmi", own) })
	return own
}

// loads numbers the images Load tags.
var loads atomic.Int64

// RunArgs are the options of `podman run` every test container gets: the
// host's network (the tests' services listen on loopback) and the limits.
func (e *Engine) RunArgs() []string {
	return append([]string{"--network", "host"}, e.limits...)
}

// Remove removes the container when the test ends, logging its output
// first if the test failed.
func (e *Engine) Remove(t *testing.T, name string) {
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := e.podmanNoCtx("logs", name)
			t.Logf("logs of container %s:\n%s", name, logs)
		}
		_, _ = e.podmanNoCtx("rm", "-f", name)
	})
}

// podmanNoCtx runs podman for cleanups, after the test's context ended.
func (e *Engine) podmanNoCtx(args ...string) (string, error) {
	b, err := exec.Command(e.bin, append(slices.Clone(e.global), args...)...).CombinedOutput() //nolint:noctx,gosec // cleanup runs after the test context is done; G204 as above
	return string(b), err
}

// Logs returns what the container wrote so far, stdout and stderr (where
// sqlgated logs) together.
func (e *Engine) Logs(t *testing.T, name string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), e.bin, append(slices.Clone(e.global), "logs", name)...) //nolint:gosec // G204 as above
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("podman logs %s: %v\n%s", name, err, b)
	}
	return string(b)
}

// WaitReady waits until url answers 200, failing the test when the
// container stops first or timeout passes.
func (e *Engine) WaitReady(t *testing.T, name, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for i := 0; ; i++ {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if i%8 == 7 {
			if state, serr := e.Podman(t, "", "inspect", "--format", "{{.State.Status}}", name); serr != nil || strings.TrimSpace(state) != "running" {
				t.Fatalf("container %s stopped before %s answered (state %q, %v); last: %v", name, url, strings.TrimSpace(state), serr, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within %v; last: %v", url, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
