package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// The CLI is tested against a real `sqlgated dev`, built from this module
// and started as its own process, as a newcomer runs it.

var (
	daemonOnce     sync.Once
	daemonBin      string
	errBuildDaemon error
)

func buildDaemon(t *testing.T) string {
	t.Helper()
	daemonOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sqlgated-bin-") //nolint:usetesting // shared by every test of the package (built once), so not a test's TempDir
		if err != nil {
			errBuildDaemon = err
			return
		}
		daemonBin = filepath.Join(dir, "sqlgated")
		out, err := exec.Command("go", "build", "-o", daemonBin, "github.com/sqlgate/sqlgate/cmd/sqlgated").CombinedOutput()
		if err != nil {
			errBuildDaemon = err
			daemonBin = string(out)
		}
	})
	if errBuildDaemon != nil {
		t.Fatalf("build sqlgated: %v\n%s", errBuildDaemon, daemonBin)
	}
	return daemonBin
}

type devInfo struct {
	HTTPURL string `json:"http_url"`
	NATSURL string `json:"nats_url"`
	Issuer  string `json:"issuer"`
	Users   []struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	} `json:"users"`
	Service struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	} `json:"service_client"`
	AuditKey string `json:"audit_verifier_key"`
	dir      string
}

func (d *devInfo) password(name string) string {
	for _, u := range d.Users {
		if u.Name == name {
			return u.Password
		}
	}
	return ""
}

// startDaemon runs `sqlgated dev` on free ports until the test ends.
func startDaemon(t *testing.T) *devInfo {
	t.Helper()
	bin := buildDaemon(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "dev", "--data-dir", dir, "--http", "127.0.0.1:0", "--nats", "127.0.0.1:0", "--log-level", "warn")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "dev.json"))
		if err == nil {
			var d devInfo
			if json.Unmarshal(b, &d) == nil && d.HTTPURL != "" {
				if resp, err := http.Get(d.HTTPURL + "/readyz"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						d.dir = dir
						return &d
					}
				}
			}
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			t.Fatalf("sqlgated dev did not start:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cli runs the CLI in-process with its own state directory. Each run is
// cut off after timeout (60 s if zero), so that a hung call fails its test.
type cli struct {
	t       *testing.T
	home    string
	env     map[string]string
	timeout time.Duration
}

func newCLI(t *testing.T, d *devInfo) *cli {
	return &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": d.HTTPURL}}
}

func (c *cli) run(stdin string, args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	var o, e bytes.Buffer
	timeout := c.timeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	getenv := func(k string) string {
		if k == "SQLGATE_HOME" {
			return c.home
		}
		return c.env[k]
	}
	code = runEnv(ctx, args, strings.NewReader(stdin), &o, &e, getenv)
	return code, o.String(), e.String()
}

func (c *cli) must(stdin string, args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run(stdin, args...)
	if code != 0 {
		c.t.Fatalf("sqlgate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func TestCLIWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("CLI against a dev daemon: skipped with -short")
	}
	d := startDaemon(t)
	c := newCLI(t, d)

	if out := c.must(d.password("alice")+"\n", "login", "--username", "alice", "--password-stdin"); !strings.Contains(out, "alice@example.com") {
		t.Errorf("login output = %q", out)
	}
	var who struct {
		Email  string   `json:"email"`
		Groups []string `json:"groups"`
	}
	if err := json.Unmarshal([]byte(c.must("", "whoami", "--output", "json")), &who); err != nil || who.Email != "alice@example.com" {
		t.Errorf("whoami --output json = %+v, %v", who, err)
	}
	var routes struct {
		Routes []struct{ Subject string } `json:"routes"`
	}
	if err := json.Unmarshal([]byte(c.must("", "routes", "--output", "json")), &routes); err != nil || len(routes.Routes) != 4 {
		t.Errorf("routes = %+v, %v", routes, err)
	}
	credsOut := c.must("", "creds", "nats")
	if !strings.Contains(credsOut, "nats req") || !strings.Contains(credsOut, "--inbox-prefix _INBOX_U") {
		t.Errorf("creds nats output = %s", credsOut)
	}
	if st, err := os.Stat(filepath.Join(c.home, "nats.creds")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("nats.creds: %v %v, want 0600", st, err)
	}
	for _, f := range []string{"tokens"} {
		if st, err := os.Stat(filepath.Join(c.home, f)); err != nil || st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v %v, want private", f, st, err)
		}
	}

	out := c.must("", "call", "orders.v1.create", `{"customer":"ACME","amount":250}`, "--idempotency-key", "order-1")
	var env struct {
		OK       bool `json:"ok"`
		Replayed bool `json:"replayed"`
		Audit    struct {
			Index int64 `json:"index"`
		} `json:"audit"`
	}
	if err := json.Unmarshal([]byte(out), &env); err != nil || !env.OK || env.Replayed {
		t.Fatalf("call = %s", out)
	}
	out = c.must("", "call", "orders.v1.create", `{"customer":"ACME","amount":250}`, "--idempotency-key", "order-1")
	if err := json.Unmarshal([]byte(out), &env); err != nil || !env.Replayed {
		t.Errorf("retry = %s, want replayed", out)
	}
	// Queued on the async route: the stream stores it, sqlgated runs it; the
	// same key, called again, returns its result once it ran.
	out = c.must("", "call", "--async", "orders.v1.import", `{"customer":"Queued","amount":300}`, "--idempotency-key", "import-1")
	var queued struct {
		Queued bool   `json:"queued"`
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
	}
	if err := json.Unmarshal([]byte(out), &queued); err != nil || !queued.Queued || queued.Stream != "SQLGATE_ASYNC" || queued.Seq == 0 {
		t.Errorf("call --async = %s", out)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out = c.must("", "call", "orders.v1.import", `{"customer":"Queued","amount":300}`, "--idempotency-key", "import-1")
		if json.Unmarshal([]byte(out), &env) == nil && env.Replayed {
			break
		}
		// A synchronous call that came first would have run it itself.
		if !env.OK || time.Now().After(deadline) {
			t.Fatalf("after call --async, call with the key = %s, want the queued call's result", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// --wait: the answer is the output.
	out = c.must("", "call", "--async", "--wait", "orders.v1.import", `{"customer":"Waited","amount":30}`)
	if err := json.Unmarshal([]byte(out), &env); err != nil || !env.OK || env.Replayed {
		t.Errorf("call --async --wait = %s", out)
	}
	if code, _, errOut := c.run("", "call", "--wait", "orders.v1.get", `{"id":1}`); code != 2 || !strings.Contains(errOut, "--wait goes with --async") {
		t.Errorf("call --wait without --async: exit %d, %s", code, errOut)
	}
	if code, _, errOut := c.run("", "call", "--async", "orders.v1.get", `{"id":1}`); code != 1 || !strings.Contains(errOut, "orders.v1.get is not an async route (or not granted to you): call it without --async") {
		t.Errorf("call --async on a sync route: exit %d, %s", code, errOut)
	}
	// The payload from standard input; one over the NATS server's
	// max_payload is refused before it is sent.
	out = c.must(`{"id":1}`, "call", "orders.v1.get", "-")
	if err := json.Unmarshal([]byte(out), &env); err != nil || !env.OK {
		t.Errorf("call with the payload on stdin = %s", out)
	}
	if code, _, errOut := c.run("["+strings.Repeat(" ", 2<<20)+"]", "call", "orders.v1.get", "-"); code != 1 || !strings.Contains(errOut, "max_payload") {
		t.Errorf("call with a 2 MiB payload: exit %d, %.300s", code, errOut)
	}
	// nats.json describing another credential does not matter: the inbox
	// prefix comes from the creds file used.
	infoPath := filepath.Join(c.home, "nats.json")
	saved, err := os.ReadFile(infoPath)
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	if err := json.Unmarshal(saved, &info); err != nil {
		t.Fatal(err)
	}
	info["inbox_prefix"] = "_INBOX_UOTHERKEY"
	if b, _ := json.Marshal(info); os.WriteFile(infoPath, b, 0o600) != nil {
		t.Fatal("rewrite nats.json")
	}
	out = c.must("", "call", "orders.v1.get", `{"id":1}`)
	if err := json.Unmarshal([]byte(out), &env); err != nil || !env.OK {
		t.Errorf("call with a stale nats.json = %s", out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"call", "orders.v1.create", `{"customer":"ACME","amount":5000}`}, 1, `"forbidden"`},
		{[]string{"call", "orders.v1.get", `{"id":"1"}`}, 1, `"invalid_request"`},
		{[]string{"call", "orders.v1.get"}, 2, ""},
		{[]string{"call", "--nope", "x", "{}"}, 2, ""},
		{[]string{"frobnicate"}, 2, ""},
		{[]string{"whoami", "--output", "yaml"}, 2, ""},
		{[]string{"call", "--help"}, 0, ""},
	} {
		code, stdout, _ := c.run("", tc.args...)
		if code != tc.code || !strings.Contains(stdout, tc.want) {
			t.Errorf("sqlgate %v: exit %d, stdout %q; want exit %d containing %q", tc.args, code, stdout, tc.code, tc.want)
		}
	}

	// A receipt for the call, checked with the published key only.
	if out := c.must("", "audit", "prove", jsonInt(env.Audit.Index), "--key", d.AuditKey); !strings.Contains(out, "is in the signed log") {
		t.Errorf("prove = %s", out)
	}
	if code, _, errOut := c.run("", "audit", "prove", jsonInt(env.Audit.Index), "--key", "other/key+00000000+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="); code == 0 {
		t.Errorf("prove with a foreign key succeeded: %s", errOut)
	}
	// A record past the end of the log (or another user's) is not found,
	// and the message says what that can mean.
	if code, _, errOut := c.run("", "audit", "prove", "999999", "--key", d.AuditKey); code != 1 || !strings.Contains(errOut, "audit record 999999: not found, or not one of your calls") {
		t.Errorf("prove 999999: exit %d, %s", code, errOut)
	}

	// Leases: list and revoke the NATS credential; calls then fail.
	var leases struct {
		Leases []struct{ ID, State string } `json:"leases"`
	}
	if err := json.Unmarshal([]byte(c.must("", "leases", "list", "--output", "json")), &leases); err != nil || len(leases.Leases) != 1 {
		t.Fatalf("leases = %+v, %v", leases, err)
	}
	c.must("", "leases", "revoke", leases.Leases[0].ID)
	if code, _, errOut := c.run("", "call", "orders.v1.get", `{"id":1}`); code != 1 || !strings.Contains(errOut, "run sqlgate creds nats") {
		t.Errorf("call with a revoked credential: exit %d (%s), want a hint to get new credentials", code, errOut)
	}

	// carol audits; her policy allows no NATS credential.
	auditor := newCLI(t, d)
	auditor.must(d.password("carol")+"\n", "login", "--username", "carol", "--password-stdin")
	if code, _, errOut := auditor.run("", "creds", "nats"); code != 1 || !strings.Contains(errOut, "HTTP 403") {
		t.Errorf("carol creds nats: exit %d, %s", code, errOut)
	}
	bundle := filepath.Join(t.TempDir(), "log.bundle")
	auditor.must("", "audit", "export", "-o", bundle)
	if out := auditor.must("", "audit", "verify", "--bundle", bundle, "--key", d.AuditKey); !strings.Contains(out, "OK") {
		t.Errorf("verify = %s", out)
	}
	var rep struct {
		OK bool `json:"ok"`
	}
	if err := json.Unmarshal([]byte(auditor.must("", "audit", "verify", "--key", d.AuditKey, "--output", "json")), &rep); err != nil || !rep.OK {
		t.Errorf("verify --output json = %+v, %v", rep, err)
	}

	// SOC 2 evidence of the last day, as the README's walkthrough asks for
	// it (--to now, moments after the calls), from the verified bundle:
	// alice's order is in the activity, her refused one in the denials.
	zipPath := filepath.Join(t.TempDir(), "evidence.zip")
	out = auditor.must("", "audit", "evidence", "--bundle", bundle, "--key", d.AuditKey, "--from", "-24h", "--to", "now", "-o", zipPath)
	// The other runs start at a whole day (yesterday: a run may cross
	// midnight) and end now or earlier (a --to in the future is refused).
	today := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	if !strings.Contains(out, "csv/activity.csv") || !strings.Contains(out, "the log verified") {
		t.Errorf("audit evidence = %s", out)
	}
	// Each file is counted in its own unit: the report in pages, the
	// workbook in sheets, VERIFY.md not at all.
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`csv/activity.csv +[1-9][0-9]* rows? `),
		regexp.MustCompile(`report.pdf +[1-9][0-9]* pages? `),
		regexp.MustCompile(`report.xlsx +[1-9][0-9]* sheets `),
		regexp.MustCompile(`checkpoints/1.note +1 checkpoint `),
		regexp.MustCompile(`VERIFY.md +sha256 `),
	} {
		if !want.MatchString(out) {
			t.Errorf("audit evidence output does not match %q:\n%s", want, out)
		}
	}
	zipped, err := os.ReadFile(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	sections := audittest.Unzip(t, zipped)
	if !bytes.Contains(sections["csv/activity.csv"], []byte("orders.v1.create")) || !bytes.Contains(sections["csv/denials.csv"], []byte("exceeds the sales limit")) {
		t.Errorf("evidence sections:\nactivity:\n%s\ndenials:\n%s", sections["csv/activity.csv"], sections["csv/denials.csv"])
	}
	if code, _, errOut := auditor.run("", "audit", "evidence", "--bundle", bundle, "--from", today, "--to", tomorrow, "-o", zipPath); code != 2 || !strings.Contains(errOut, "--key") {
		t.Errorf("evidence without a key: exit %d, %s", code, errOut)
	}
	if code, _, errOut := auditor.run("", "audit", "evidence", "--bundle", bundle, "--key", d.AuditKey, "--from", tomorrow, "--to", today, "-o", zipPath); code != 2 || !strings.Contains(errOut, "--from must be before --to") {
		t.Errorf("evidence for a backwards period: exit %d, %s", code, errOut)
	}

	// The auditor checks the archive offline: it checks; it is not signed
	// (the CLI wrote it), so requiring a signature refuses it; a byte
	// changed inside it is found.
	out = auditor.must("", "audit", "check-evidence", zipPath, "--key", d.AuditKey)
	if !strings.Contains(out, "checks: evidence for") || !strings.Contains(out, "manifest not signed") {
		t.Errorf("audit check-evidence = %s", out)
	}
	// As the README has it: written again from the verified bundle, every
	// row compared.
	var regenerated struct {
		Regenerated bool `json:"regenerated"`
	}
	if err := json.Unmarshal([]byte(auditor.must("", "audit", "check-evidence", zipPath, "--key", d.AuditKey, "--bundle", bundle, "--output", "json")), &regenerated); err != nil || !regenerated.Regenerated {
		t.Errorf("check-evidence --bundle = %+v, %v", regenerated, err)
	}
	var checked struct {
		Manifest struct {
			Format string `json:"format"`
		} `json:"manifest"`
		Files       int      `json:"files_checked"`
		Checkpoints []string `json:"checkpoint_keys"`
	}
	if err := json.Unmarshal([]byte(auditor.must("", "audit", "check-evidence", zipPath, "--key", d.AuditKey, "--output", "json")), &checked); err != nil ||
		checked.Manifest.Format != "sqlgate-evidence/1" || checked.Files < 10 || len(checked.Checkpoints) != 1 {
		t.Errorf("check-evidence --output json = %+v, %v", checked, err)
	}
	if code, _, errOut := auditor.run("", "audit", "check-evidence", zipPath, "--key", d.AuditKey, "--require-signature"); code != 1 || !strings.Contains(errOut, "not signed") {
		t.Errorf("check-evidence --require-signature on an unsigned archive: exit %d, %s", code, errOut)
	}
	// The auditor signs an archive with a key of their own, so it shows who
	// produced it: it checks with the signature required once that key is
	// trusted, and not before; a key file others may read is refused.
	keyFile := filepath.Join(t.TempDir(), "carol.key")
	out = auditor.must("", "audit", "keygen", "--name", "evidence.example.com/carol", "-o", keyFile)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	signerKey := lines[len(lines)-1]
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 || !strings.HasPrefix(signerKey, "evidence.example.com/carol+") {
		t.Fatalf("audit keygen: %v, printed %q", err, out)
	}
	if code, _, errOut := auditor.run("", "audit", "keygen", "--name", "other", "-o", keyFile); code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("keygen over an existing key: exit %d, %s", code, errOut)
	}
	signedZip := filepath.Join(t.TempDir(), "signed.zip")
	out = auditor.must("", "audit", "evidence", "--bundle", bundle, "--key", d.AuditKey, "--from", today, "--to", "now", "-o", signedZip, "--sign-key", keyFile)
	if !strings.Contains(out, "manifest signed by "+signerKey) {
		t.Errorf("audit evidence --sign-key = %s", out)
	}
	out = auditor.must("", "audit", "check-evidence", signedZip, "--key", d.AuditKey, "--signer-key", signerKey, "--require-signature")
	if !strings.Contains(out, "manifest signed by evidence.example.com/carol") {
		t.Errorf("check-evidence of the signed archive = %s", out)
	}
	if code, _, errOut := auditor.run("", "audit", "check-evidence", signedZip, "--key", d.AuditKey, "--require-signature"); code != 1 {
		t.Errorf("check-evidence --require-signature without trusting the signer: exit %d, %s", code, errOut)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"audit", "keygen", "--name", "two words", "-o", filepath.Join(t.TempDir(), "k")}, 2, "without spaces or '+'"},
		{[]string{"audit", "keygen", "--name", "a+b", "-o", filepath.Join(t.TempDir(), "k")}, 2, "without spaces or '+'"},
		{[]string{"audit", "keygen", "-o", filepath.Join(t.TempDir(), "k")}, 2, "--name and -o are required"},
	} {
		if code, _, errOut := auditor.run("", tc.args...); code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, %s; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	// A key file that is not a signing key (here, a verifier key) is refused
	// without echoing its content.
	garbage := filepath.Join(t.TempDir(), "not-a.key")
	if err := os.WriteFile(garbage, []byte(signerKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := auditor.run("", "audit", "evidence", "--bundle", bundle, "--key", d.AuditKey, "--from", today, "--to", "now", "-o", signedZip, "--sign-key", garbage); code != 1 || !strings.Contains(errOut, "malformed private key") || strings.Contains(errOut, signerKey) {
		t.Errorf("evidence with a malformed key file: exit %d, %s", code, errOut)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := auditor.run("", "audit", "evidence", "--bundle", bundle, "--key", d.AuditKey, "--from", today, "--to", "now", "-o", signedZip, "--sign-key", keyFile); code != 1 || !strings.Contains(errOut, "chmod 600") {
		t.Errorf("evidence with a key others may read: exit %d, %s", code, errOut)
	}

	raw, err := os.ReadFile(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	// Stored uncompressed in no file: flip a byte of the last file's data
	// (the zip's central directory stays intact, the checksum or hash breaks).
	raw[len(raw)/2] ^= 0xff
	tampered := filepath.Join(t.TempDir(), "tampered.zip")
	if err := os.WriteFile(tampered, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := auditor.run("", "audit", "check-evidence", tampered, "--key", d.AuditKey); code != 1 || !strings.Contains(errOut, "does not check") {
		t.Errorf("check-evidence on a tampered archive: exit %d, %s", code, errOut)
	}
	if code, _, errOut := auditor.run("", "audit", "check-evidence", zipPath); code != 2 || !strings.Contains(errOut, "--key") {
		t.Errorf("check-evidence without a key: exit %d, %s", code, errOut)
	}

	// The security team replays the recorded decisions against a stricter
	// candidate policy: alice's 250 order would now be refused.
	admin := newCLI(t, d)
	admin.must(d.password("dave")+"\n", "login", "--username", "dave", "--password-stdin")
	candidate := filepath.Join(t.TempDir(), "policy")
	if err := os.CopyFS(candidate, os.DirFS(filepath.Join(d.dir, "policy"))); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(candidate, "data.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(candidate, "data.yaml"), []byte(strings.Replace(string(data), "max: 1000", "max: 200", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out = admin.must("", "policy", "replay", "--since", "1h", "--policy", candidate)
	if !strings.Contains(out, "allow->deny") || !strings.Contains(out, "amount exceeds the sales limit of 200") {
		t.Errorf("replay = %s", out)
	}
	if code, _, _ := admin.run("", "policy", "replay", "--policy", candidate, "--fail-on-change"); code != 1 {
		t.Errorf("replay --fail-on-change with changes: exit %d, want 1", code)
	}
	if code, _, errOut := c.run("", "policy", "replay", "--policy", candidate); code != 1 || !strings.Contains(errOut, "HTTP 403") {
		t.Errorf("alice may not read recorded inputs: exit %d, %s", code, errOut)
	}
	input := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(input, []byte(`{"principal":{"issuer":"x","subject":"s","groups":["sales"],"roles":[],"mfa":false,"service":false,"auth_time":0},
		"route":{"subject":"orders.v1.create","kind":"statement","target":"create_order","database":"orders","mode":"sync","tags":[]},
		"params":{"customer":"ACME","amount":5000}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := admin.must("", "policy", "eval", "--input", input); !strings.Contains(out, "deny") || !strings.Contains(out, "exceeds the sales limit of 1000") {
		t.Errorf("eval against the serving policy = %s", out)
	}

	// Offboarding works on the demo, which issues no SQL logins: dave
	// revokes everything alice holds, her current sign-in gets no new
	// credential, and a fresh sign-in does.
	var me struct{ Issuer, Subject string }
	if err := json.Unmarshal([]byte(c.must("", "whoami", "--output", "json")), &me); err != nil {
		t.Fatal(err)
	}
	out = admin.must("", "leases", "revoke-all", "--principal", me.Issuer+" "+me.Subject, "--reason", "left the company")
	if !strings.Contains(out, "revoked for") {
		t.Errorf("revoke-all = %s", out)
	}
	if code, _, errOut := c.run("", "creds", "nats"); code != 1 || !strings.Contains(errOut, "sign in again") {
		t.Errorf("creds nats after revoke-all: exit %d, %s", code, errOut)
	}
	// Token times are whole seconds: a sign-in counts as newer from the
	// second after the revocation.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	c.must(d.password("alice")+"\n", "login", "--username", "alice", "--password-stdin")
	c.must("", "creds", "nats")

	c.must("", "logout")
	if code, _, errOut := c.run("", "whoami"); code != 1 || !strings.Contains(errOut, "sqlgate login") {
		t.Errorf("whoami after logout: exit %d, %s", code, errOut)
	}
}

// TestCLIPolicyTools runs the policy tooling on the shipped library, offline.
func TestCLIPolicyTools(t *testing.T) {
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	if out := c.must("", "policy", "test", "../../policy/rules"); !strings.Contains(out, "PASS") {
		t.Errorf("policy test = %s", out)
	}
	if out := c.must("", "policy", "check", "../../policy/rules", "--routes", "../sqlgated/demo/routes.yaml"); !strings.Contains(out, "valid") {
		t.Errorf("policy check = %s", out)
	}
	// A catalog without orders.v1.cancel: the policy names a route that does not exist.
	routes, err := os.ReadFile("../sqlgated/demo/routes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "routes.yaml")
	text := string(routes)
	if i := strings.Index(text, "  - subject: orders.v1.cancel"); i > 0 {
		text = text[:i]
	}
	if err := os.WriteFile(cut, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := c.run("", "policy", "check", "../../policy/rules", "--routes", cut); code != 1 || !strings.Contains(out, "orders.v1.cancel") {
		t.Errorf("policy check with a missing route: exit %d, %s", code, out)
	}
	// A misspelt emit subject in sub grants nothing: reported as a misspelt
	// route is.
	misspelt := filepath.Join(t.TempDir(), "policy")
	if err := os.CopyFS(misspelt, rules.FS); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(misspelt, "sqlgate", "feeds.rego"), []byte("package sqlgate.nats\n\nsub contains \"orders.v1.craeted\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := c.run("", "policy", "check", misspelt, "--routes", "../sqlgated/demo/routes.yaml"); code != 1 ||
		!strings.Contains(out, "orders.v1.craeted is not an emit subject of the route catalog") {
		t.Errorf("policy check with a misspelt sub: exit %d, %s", code, out)
	}
	input := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(input, []byte(`{"principal":{"issuer":"x","subject":"s","groups":["support"],"roles":[],"mfa":false,"service":false,"auth_time":0},
		"route":{"subject":"orders.v1.cancel","kind":"statement","target":"cancel_order","database":"orders","mode":"sync","tags":[]},
		"params":{"id":1}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := c.must("", "policy", "eval", "--input", input, "--policy", "../../policy/rules", "--explain"); !strings.Contains(out, "deny") {
		t.Errorf("policy eval = %s", out)
	}
}

func TestCLILoginFlows(t *testing.T) {
	if testing.Short() {
		t.Skip("CLI against a dev daemon: skipped with -short")
	}
	d := startDaemon(t)

	t.Run("client_credentials", func(t *testing.T) {
		c := newCLI(t, d)
		secret := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(secret, []byte(d.Service.Secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.must("", "login", "--client-credentials", "--client-id", d.Service.ID, "--client-secret-file", secret)
		if out := c.must("", "whoami"); !strings.Contains(out, d.Service.ID) {
			t.Errorf("service whoami = %s", out)
		}
		// A wrong secret is refused.
		if err := os.WriteFile(secret, []byte("wrong"), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, _, _ := newCLI(t, d).run("", "login", "--client-credentials", "--client-id", d.Service.ID, "--client-secret-file", secret); code != 1 {
			t.Errorf("wrong client secret: exit %d", code)
		}
	})

	t.Run("wrong_password", func(t *testing.T) {
		if code, _, errOut := newCLI(t, d).run("nope\n", "login", "--username", "alice", "--password-stdin"); code != 1 || strings.Contains(errOut, "nope") {
			t.Errorf("wrong password: exit %d, %s", code, errOut)
		}
	})

	t.Run("browser", func(t *testing.T) {
		c := newCLI(t, d)
		pr, pw := io.Pipe()
		done := make(chan int, 1)
		go func() {
			var o bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			done <- runEnv(ctx, []string{"login", "--no-browser"}, strings.NewReader(""), &o, pw, func(k string) string {
				if k == "SQLGATE_HOME" {
					return c.home
				}
				return c.env[k]
			})
			pw.Close()
		}()
		// The CLI prints the sign-in URL; a "user" opens it and signs in.
		loginURL := waitFor(t, pr, regexp.MustCompile(`https?://\S+/authorize\S*`))
		signInForm(t, loginURL, "alice", d.password("alice"))
		if code := <-done; code != 0 {
			t.Fatalf("login --no-browser: exit %d", code)
		}
		if out := c.must("", "whoami"); !strings.Contains(out, "alice@example.com") {
			t.Errorf("whoami = %s", out)
		}
	})

	t.Run("device", func(t *testing.T) {
		c := newCLI(t, d)
		pr, pw := io.Pipe()
		done := make(chan int, 1)
		go func() {
			var o bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			done <- runEnv(ctx, []string{"login", "--device"}, strings.NewReader(""), &o, pw, func(k string) string {
				if k == "SQLGATE_HOME" {
					return c.home
				}
				return c.env[k]
			})
			pw.Close()
		}()
		verifyURL := waitFor(t, pr, regexp.MustCompile(`https?://[^\s)]+user_code=[^\s)]+`))
		signInForm(t, verifyURL, "bob", d.password("bob"))
		if code := <-done; code != 0 {
			t.Fatalf("login --device: exit %d", code)
		}
		if out := c.must("", "whoami"); !strings.Contains(out, "bob@example.com") {
			t.Errorf("whoami = %s", out)
		}
	})
}

// waitFor reads r until re matches and returns the match; the rest of r is
// drained in the background.
func waitFor(t *testing.T, r io.Reader, re *regexp.Regexp) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		var seen bytes.Buffer
		buf := make([]byte, 512)
		sent := false
		for {
			n, err := r.Read(buf)
			seen.Write(buf[:n])
			if m := re.FindString(seen.String()); m != "" && !sent {
				found <- m
				sent = true
			}
			if err != nil {
				if !sent {
					close(found)
				}
				return
			}
		}
	}()
	select {
	case m, ok := <-found:
		if !ok {
			t.Fatal("the CLI ended without printing the URL")
		}
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("the CLI did not print the URL")
	}
	return ""
}

// signInForm opens a sign-in page of the dev provider and submits its form
// (hidden fields kept, username and password filled in), following redirects
// back to the CLI's loopback listener.
func signInForm(t *testing.T, pageURL, user, password string) {
	t.Helper()
	resp, err := http.Get(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`).FindAllStringSubmatch(string(body), -1) {
		form.Set(m[1], htmlUnescape(m[2]))
	}
	if m := regexp.MustCompile(`id="user_code" name="user_code" value="([^"]*)"`).FindStringSubmatch(string(body)); m != nil {
		form.Set("user_code", htmlUnescape(m[1]))
	}
	action := regexp.MustCompile(`<form method="post" action="([^"]+)">`).FindStringSubmatch(string(body))
	if action == nil {
		t.Fatalf("no form on %s:\n%s", pageURL, body)
	}
	target, _ := url.Parse(pageURL)
	ref, _ := url.Parse(htmlUnescape(action[1]))
	form.Set("username", user)
	form.Set("password", password)
	if strings.Contains(string(body), `value="approve"`) {
		form.Set("action", "approve")
	} else {
		form.Set("action", "login")
	}
	resp, err = http.PostForm(target.ResolveReference(ref).String(), form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		t.Fatalf("sign-in form answered %d", resp.StatusCode)
	}
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#34;", `"`, "&lt;", "<", "&gt;", ">", "&#39;", "'").Replace(s)
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestParsePeriodBound(t *testing.T) {
	// Relative bounds are cut to the microsecond, the precision every other
	// place of an archive prints them with.
	now := time.Date(2026, 11, 27, 12, 30, 15, 1500, time.FixedZone("x", 3600))
	for in, want := range map[string]string{
		"2026-10-01":                "2026-10-01T00:00:00Z",
		"2026-10-01T08:00:00+02:00": "2026-10-01T06:00:00Z",
		"now":                       "2026-11-27T11:30:15.000001Z",
		"-24h":                      "2026-11-26T11:30:15.000001Z",
	} {
		got, err := parsePeriodBound("--from", in, now)
		if err != nil || got.Format(time.RFC3339Nano) != want {
			t.Errorf("%q = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "2026-13-01", "1 day"} {
		if _, err := parsePeriodBound("--from", in, now); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

// TestVersion checks that `sqlgate version` works with no home directory
// (a container image has none) and that stray arguments are refused.
func TestVersion(t *testing.T) {
	noEnv := func(string) string { return "" }
	var out, errOut strings.Builder
	if code := runEnv(t.Context(), []string{"version"}, strings.NewReader(""), &out, &errOut, noEnv); code != 0 || out.String() != "sqlgate "+version+"\n" {
		t.Errorf("version: exit %d, printed %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := runEnv(t.Context(), []string{"version", "extra"}, strings.NewReader(""), &out, &errOut, func(k string) string {
		if k == "SQLGATE_HOME" {
			return t.TempDir()
		}
		return ""
	}); code != 2 || !strings.Contains(errOut.String(), "takes no arguments") {
		t.Errorf("version extra: exit %d, stderr %q", code, errOut.String())
	}
}
