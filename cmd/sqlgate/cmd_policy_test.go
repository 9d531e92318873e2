package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/policy"
)

// copyLibrary copies the shipped policy library into a temporary directory,
// with each edit (old, new) applied to its data.yaml.
func copyLibrary(t *testing.T, edits ...[2]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "policy")
	if err := os.CopyFS(dir, os.DirFS("../../policy/rules")); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data.yaml")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, ed := range edits {
		if !strings.Contains(text, ed[0]) {
			t.Fatalf("data.yaml lacks %q", ed[0])
		}
		text = strings.Replace(text, ed[0], ed[1], 1)
	}
	if err := os.WriteFile(data, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestCLIPolicyTestFailsOnEmpty: a run in which no test ran (a wrong
// directory, a directory without tests, a --run that matches nothing) fails
// unless --fail-on-empty=false, so that a CI job cannot pass by testing
// nothing.
func TestCLIPolicyTestFailsOnEmpty(t *testing.T) {
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	empty := t.TempDir()
	noTests := t.TempDir()
	if err := os.WriteFile(filepath.Join(noTests, "call.rego"), []byte("package sqlgate.call\n\ndefault allow := false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"empty_dir", []string{empty}, 1, "no tests ran"},
		{"no_tests", []string{noTests}, 1, "has no test"},
		{"run_matches_nothing", []string{"../../policy/rules", "--run", "test_nothing_is_called_this"}, 1, `matches "test_nothing_is_called_this"`},
		{"allowed_empty", []string{noTests, "--fail-on-empty=false"}, 0, ""},
		{"library", []string{"../../policy/rules"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := c.run("", append([]string{"policy", "test"}, tc.args...)...)
			if code != tc.wantCode || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("policy test %v: exit %d, stderr %q, stdout %q; want exit %d and %q", tc.args, code, errOut, out, tc.wantCode, tc.wantErr)
			}
		})
	}
}

// recordedLine is one line of GET /api/v1/policy/inputs for an allowed call
// decided by the shipped library, with the parameters in redacted kept out
// of the stored input, as the broker records it.
func recordedLine(t *testing.T, decisionID string, in policy.Input, redacted ...string) []byte {
	t.Helper()
	params := map[string]string{}
	stored := in
	stored.Params = map[string]any{}
	for name, v := range in.Params {
		params[name] = "hmac-sha256:k1:00"
		stored.Params[name] = v
	}
	for _, name := range redacted {
		params[name] = audit.ParamRedacted
		delete(stored.Params, name)
	}
	raw, err := json.Marshal(stored)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	allow := true
	line, err := json.Marshal(map[string]any{
		"record": audit.Record{
			Entry: string(policy.Call), DecisionID: decisionID, CorrelationID: decisionID, Allow: &allow,
			PolicyRevision: "recorded", InputSHA256: hex.EncodeToString(sum[:]), Params: params,
		},
		"input": json.RawMessage(raw),
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(line, '\n')
}

// TestCLIPolicyReplayObligations: a candidate that allows the same calls but
// drops the redaction of the note, or lifts the row cap, is a change that
// --fail-on-change catches. The audit record tells what was redacted; the row
// cap is compared with --baseline.
func TestCLIPolicyReplayObligations(t *testing.T) {
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	principal := policy.Principal{Issuer: "https://idp.example.com", Subject: "u-1", Email: "pat@example.com", Groups: []string{"sales"}, Roles: []string{}, MFA: true, AuthTime: 1767603600}
	request := &policy.Request{CorrelationID: "c", Time: "2026-01-05T10:00:00Z", TimeNS: 1767607200000000000, Transport: "nats"}
	create := policy.Input{
		Principal: principal, Request: request,
		Route:  &policy.Route{Subject: "orders.v1.create", Kind: "statement", Target: "create_order", Database: "orders", Mode: "sync", Tags: []string{}},
		Params: map[string]any{"customer": "acme", "amount": 150, "note": "ship to the back door"},
	}
	get := policy.Input{
		Principal: principal, Request: request,
		Route:  &policy.Route{Subject: "orders.v1.get", Kind: "statement", Target: "get_order", Database: "orders", Mode: "sync", Tags: []string{}},
		Params: map[string]any{"id": 7},
	}
	inputs := filepath.Join(t.TempDir(), "inputs.jsonl")
	lines := append(recordedLine(t, "d-create", create, "note"), recordedLine(t, "d-get", get)...)
	if err := os.WriteFile(inputs, lines, 0o600); err != nil {
		t.Fatal(err)
	}
	library := copyLibrary(t)
	candidate := copyLibrary(t,
		[2]string{"        redact_params: [note]\n      orders.v1.get:", "      orders.v1.get:"},
		[2]string{"max_rows: 100\n", "max_rows: 100000\n"},
	)

	if code, out, errOut := c.run("", "policy", "replay", "--inputs", inputs, "--policy", library, "--baseline", library, "--fail-on-change"); code != 0 || !strings.Contains(out, "0 would change") {
		t.Errorf("replay of the same policy: exit %d, %s%s", code, out, errOut)
	}
	code, out, errOut := c.run("", "policy", "replay", "--inputs", inputs, "--policy", candidate, "--fail-on-change")
	if code != 1 || !strings.Contains(out, "obligations  call  correlation d-create") || !strings.Contains(out, "redact_params: [note] -> []") || strings.Contains(out, "d-get") {
		t.Errorf("replay of a candidate without the redaction: exit %d, %s%s", code, out, errOut)
	}
	code, out, errOut = c.run("", "policy", "replay", "--inputs", inputs, "--policy", candidate, "--baseline", library, "--fail-on-change")
	if code != 1 || !strings.Contains(out, "redact_params: [note] -> []") || !strings.Contains(out, "max_rows: 100 -> 100000") {
		t.Errorf("replay with a baseline: exit %d, %s%s", code, out, errOut)
	}
	// A row cap above the route's own maxRows has the route's effect.
	if !strings.Contains(out, "note: max_rows and timeout_ms only lower a route's own maxRows and timeout") {
		t.Errorf("replay with a baseline does not say that max_rows only lowers the route's maxRows:\n%s", out)
	}
}

// TestCLIPolicyEvalFailures: policy eval against a local policy fails with
// exit 1 when there is no decision (a policy directory that does not exist)
// and when the policy could not decide (the deny it fell back to is printed
// with the error first), in text and JSON.
func TestCLIPolicyEvalFailures(t *testing.T) {
	b, err := os.ReadFile("../../policy/opa/testdata/cases/call_sales_create_over_limit.json")
	if err != nil {
		t.Fatal(err)
	}
	var tc struct {
		Input json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(b, &tc); err != nil {
		t.Fatal(err)
	}
	input := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(input, tc.Input, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}

	missing := filepath.Join(t.TempDir(), "does-not-exist")
	code, out, errOut := c.run("", "policy", "eval", "--input", input, "--policy", missing)
	if code != 1 || out != "" || !strings.Contains(errOut, missing) {
		t.Errorf("policy eval --policy %s: exit %d, stdout %q, stderr %q; want exit 1 naming the directory", missing, code, out, errOut)
	}

	malformed := "../../policy/opa/testdata/policies/nonbool"
	code, out, errOut = c.run("", "policy", "eval", "--input", input, "--policy", malformed)
	if code != 1 || !strings.Contains(out, `"allow": false`) || !strings.Contains(out, "evaluation error:") {
		t.Errorf("policy eval of a policy that cannot decide: exit %d, stdout %q, stderr %q; want the deny and the error printed, exit 1", code, out, errOut)
	}
	code, out, _ = c.run("", "policy", "eval", "--input", input, "--policy", malformed, "--output", "json")
	var got struct {
		Decision policy.Decision `json:"decision"`
		Error    string          `json:"error"`
	}
	if code != 1 || json.Unmarshal([]byte(out), &got) != nil || got.Decision.Allow || got.Error == "" {
		t.Errorf("policy eval --output json of a policy that cannot decide: exit %d, %s; want the deny with its error, exit 1", code, out)
	}

	code, out, errOut = c.run("", "policy", "eval", "--input", input, "--policy", "../../policy/rules")
	if code != 0 || !strings.Contains(out, `"allow": false`) {
		t.Errorf("policy eval of a deny by the shipped policy: exit %d, %s %s; want the deny, exit 0", code, out, errOut)
	}
}

// TestCLIPolicyReplayFailsOnEmpty: with --fail-on-change a replay of nothing
// (no decision inputs stored, a window without traffic, an empty file) fails
// instead of passing the CI gate; --fail-on-empty=false allows it.
func TestCLIPolicyReplayFailsOnEmpty(t *testing.T) {
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	empty := filepath.Join(t.TempDir(), "inputs.jsonl")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		flags    []string
		wantCode int
	}{
		{"gate", []string{"--fail-on-change"}, 1},
		{"gate_allows_empty", []string{"--fail-on-change", "--fail-on-empty=false"}, 0},
		{"report", nil, 0},
		{"report_fails_on_empty", []string{"--fail-on-empty"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := c.run("", append([]string{"policy", "replay", "--inputs", empty, "--policy", "../../policy/rules"}, tc.flags...)...)
			failed := strings.Contains(errOut, "no decision was replayed: "+empty+" holds no recorded decision (--fail-on-empty=false allows it)")
			if code != tc.wantCode || failed != (tc.wantCode == 1) || !strings.Contains(out, "replayed 0 recorded decisions") {
				t.Errorf("policy replay %v: exit %d, stdout %q, stderr %q; want exit %d", tc.flags, code, out, errOut, tc.wantCode)
			}
		})
	}
}

// TestCLIPolicyEvalAgainstTheBroker: policy eval against the broker fails
// as it does offline (exit 1) when there is no decision (an invalid input:
// HTTP 400, or an empty deny from a broker that answered it with 200) and
// when the policy could not decide (the deny is printed with the error).
func TestCLIPolicyEvalAgainstTheBroker(t *testing.T) {
	input := filepath.Join(t.TempDir(), "input.json")
	if err := os.WriteFile(input, []byte(`{"principal":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const (
		invalid   = "invalid input document: at '/principal': missing property 'issuer'"
		evalError = "decide call (decision 01a2): policy evaluation failed: allow is string"
	)
	for _, tc := range []struct {
		name           string
		status         int
		body           string
		output         string
		wantCode       int
		wantOut, noOut string
		wantErr        string
	}{
		{
			"invalid_input", http.StatusBadRequest, `{"error":{"code":"invalid_request","message":"` + invalid + `"}}`, "text",
			1, "", "deny", invalid + " (HTTP 400)",
		},
		{
			"invalid_input_answered_as_a_deny", http.StatusOK, `{"decision":{"allow":false,"reasons":["` + invalid + `"],"policy_revision":"r1"},"explanation":""}`, "text",
			1, "", "deny", "the broker did not decide: " + invalid,
		},
		{
			"evaluation_error", http.StatusOK, `{"decision":{"decision_id":"01a2","allow":false,"reasons":["policy evaluation failed"],"policy_revision":"r1"},"explanation":"","error":"` + evalError + `"}`, "text",
			1, "deny (serving policy r1, decision 01a2)\n  reason: policy evaluation failed\n  evaluation error: " + evalError + "\n", "", "",
		},
		{
			"evaluation_error_json", http.StatusOK, `{"decision":{"decision_id":"01a2","allow":false,"reasons":["policy evaluation failed"],"policy_revision":"r1"},"explanation":"","error":"` + evalError + `"}`, "json",
			1, `"error":"` + evalError + `"`, "", "",
		},
		{
			"deny", http.StatusOK, `{"decision":{"decision_id":"01a3","allow":false,"reasons":["not granted"],"policy_revision":"r1"},"explanation":""}`, "text",
			0, "deny (serving policy r1, decision 01a3)\n  reason: not granted\n", "error", "",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.URL.Path != "/api/v1/policy/eval" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			code, out, errOut := c.run("", "policy", "eval", "--input", input, "--output", tc.output)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) || (tc.noOut != "" && strings.Contains(out, tc.noOut)) || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("policy eval: exit %d, stdout %q, stderr %q; want exit %d, stdout with %q (without %q), stderr with %q",
					code, out, errOut, tc.wantCode, tc.wantOut, tc.noOut, tc.wantErr)
			}
		})
	}
}
