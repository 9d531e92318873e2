package opa_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// monday10 is the request time of the test inputs: Monday 2026-01-05 10:00 UTC.
var monday10 = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)

// testEvalTimeout replaces the 100ms default in tests that check what a
// decision is: a loaded CI machine can stall one evaluation past it (the
// timeout itself is TestEvalTimeout's).
const testEvalTimeout = 10 * time.Second

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// openFS opens an engine on fsys with a fixed clock.
func openFS(t *testing.T, fsys fs.FS) *opa.Engine {
	t.Helper()
	e, err := opa.Open(t.Context(), opa.Config{EvalTimeout: testEvalTimeout, FS: fsys, Logger: testLogger(t), Now: func() time.Time { return monday10 }})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// decisionCase is one scenario file of testdata/cases.
type decisionCase struct {
	Note      string          `json:"note"`
	Entry     policy.Entry    `json:"entry"`
	Policy    string          `json:"policy"` // testdata/policies/NAME; default: the library
	Input     json.RawMessage `json:"input"`
	Want      opa.DecisionView
	WantError string `json:"want_error"` // "", "evaluation"
}

// TestDecisionCases runs the data-driven scenarios of testdata/cases.
func TestDecisionCases(t *testing.T) {
	files, err := filepath.Glob("testdata/cases/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	engines := map[string]*opa.Engine{}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var tc decisionCase
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&tc); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			e, ok := engines[tc.Policy]
			if !ok {
				var fsys fs.FS = rules.FS
				if tc.Policy != "" {
					fsys = os.DirFS(filepath.Join("testdata/policies", tc.Policy))
				}
				e = openFS(t, fsys)
				engines[tc.Policy] = e
			}
			in, err := opa.ParseInput(tc.Input)
			if err != nil {
				t.Fatalf("%s: input: %v", file, err)
			}
			d, err := e.Decide(t.Context(), tc.Entry, in)
			switch tc.WantError {
			case "":
				if err != nil {
					t.Fatalf("%s\nDecide error %v, want none", tc.Note, err)
				}
			case "evaluation":
				if !errors.Is(err, policy.ErrEvaluation) {
					t.Fatalf("%s\nDecide error %v, want policy.ErrEvaluation", tc.Note, err)
				}
				t.Logf("error (expected): %v", err)
			default:
				t.Fatalf("unknown want_error %q", tc.WantError)
			}
			if _, err := uuid.Parse(d.ID); err != nil || uuid.MustParse(d.ID).Version() != 7 {
				t.Errorf("decision ID %q is not a UUIDv7", d.ID)
			}
			if d.Revision != e.Revision() || len(d.Revision) != 64 {
				t.Errorf("decision revision %q, want the engine's %q", d.Revision, e.Revision())
			}
			got := opa.DecisionView{
				Allow: d.Allow, Reasons: d.Reasons, MaxRows: d.Obligations.MaxRows,
				TimeoutMS: d.Obligations.Timeout.Milliseconds(), RedactParams: d.Obligations.RedactParams,
				TTL: d.Obligations.TTL.Seconds(), Pub: d.Obligations.Pub, Sub: d.Obligations.Sub,
			}
			if diff := cmp.Diff(tc.Want, got); diff != "" {
				t.Errorf("%s\nDecide mismatch (-want +got):\n%s", tc.Note, diff)
			}
		})
	}
}

// TestLoadErrors opens policies that must not be served: each is refused with
// an error that says why.
func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		dir  string
		want string
	}{
		{"syntax", "rego_parse_error"},
		{"datanotjson", "data.json"},
		{"yamlbad", "data.yaml"},
		{"unknownkey", `unknown decision key "max_row" in data.sqlgate.call`},
		{"wrongentrykey", `unknown decision key "ttl" in data.sqlgate.call (allowed: allow, reasons, deny, max_rows, timeout_ms, redact_params`},
		{"subpackage", "package data.sqlgate.call.helpers is inside the decision document of data.sqlgate.call"},
		{"dataindecision", "a data file defines data.sqlgate.call"},
		{"noentry", "no entry point"},
		{"noallow", "package data.sqlgate.nats defines no allow rule"},
		{"testrule", "tests belong in *_test.rego files"},
		{"refhead", "decision key max_rows of data.sqlgate.call must be defined as a whole"},
		{"parentrefhead", "obligations.rego:4: rule call.max_rows of package data.sqlgate defines data.sqlgate.call.max_rows, inside the decision document of data.sqlgate.call: define decision keys in package sqlgate.call itself"},
		{"function", "decision key reasons of data.sqlgate.call must be a value, not a function"},
		{"httpsend", "http.send"},
		{"regov0", "rego_parse_error"},
		{"dataconflict", "conflict"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			_, err := opa.Open(t.Context(), opa.Config{Dir: filepath.Join("testdata/bad", tc.dir), Logger: testLogger(t)})
			if !errors.Is(err, opa.ErrInvalidPolicy) {
				t.Fatalf("Open = %v, want ErrInvalidPolicy", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestParentPackageCannotReachIntoDecision: obligations written with ref
// heads in package sqlgate (call.max_rows := 10) were never queried, so the
// row cap and the redaction were silently lost and a typo passed; every such
// rule is refused, by the engine and by Check.
func TestParentPackageCannotReachIntoDecision(t *testing.T) {
	dir := "testdata/bad/parentrefhead"
	_, err := opa.Open(t.Context(), opa.Config{Dir: dir})
	if !errors.Is(err, opa.ErrInvalidPolicy) {
		t.Fatalf("Open = %v, want ErrInvalidPolicy", err)
	}
	problems := opa.Check(t.Context(), dir, nil)
	for _, key := range []string{"max_rows", "redact_params", "max_row"} {
		want := "defines data.sqlgate.call." + key + ","
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open error = %v\nwant it to contain %q", err, want)
		}
		if !slices.ContainsFunc(problems, func(e error) bool { return strings.Contains(e.Error(), want) }) {
			t.Errorf("Check = %v, want a problem containing %q", problems, want)
		}
	}
}

// TestLintRefusesConfigurationTypos: a mistake in the library's data.yaml
// that would otherwise silently drop a restriction, or break every decision,
// keeps the policy from loading.
func TestLintRefusesConfigurationTypos(t *testing.T) {
	for _, tc := range []struct {
		name, old, replacement, want string
	}{
		{
			"unknown_key",
			"        break_glass: true\n        max_rows: 100", "        break_glass: true\n        business_hour: true\n        max_rows: 100",
			`routes.orders.v1.get: unknown key "business_hour"`,
		},
		{
			// Matched no one, so mallory was allowed.
			"bare_deny_entry",
			"    deny: []\n", "    deny:\n      - mallory@example.com\n",
			"deny[0]: must be an object",
		},
		{
			// The sales limit was never enforced.
			"limit_of_an_ungranted_group",
			"          - group: sales\n            param: amount", "          - group: Sales\n            param: amount",
			"routes.orders.v1.create.limits[0].group: Sales is not in the route's groups (sales)",
		},
		{
			// The engine refused every decision of the route.
			"max_rows_above_int32",
			"max_rows: 100\n", "max_rows: 3000000000\n",
			"routes.orders.v1.get.max_rows: must be a whole number from 0 to 2147483647",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyRules(t)
			edit(t, filepath.Join(dir, "data.yaml"), tc.old, tc.replacement)
			_, err := opa.Open(t.Context(), opa.Config{Dir: dir})
			if !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want the lint problem %q", err, tc.want)
			}
		})
	}
}

// TestDenyListRefusesSQLCredentials: a deny-listed principal gets no SQL
// login, with the entry's reason.
func TestDenyListRefusesSQLCredentials(t *testing.T) {
	dir := copyRules(t)
	edit(t, filepath.Join(dir, "data.yaml"), "    deny: []\n", "    deny:\n      - principals: [AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ]\n        reason: account under investigation\n")
	e, err := opa.Open(t.Context(), opa.Config{EvalTimeout: testEvalTimeout, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	in := realisticInput()
	in.Route, in.Params = nil, nil
	in.Credential = &policy.Credential{Type: "sql", Database: "orders", Role: "reader"}
	d, err := e.Decide(t.Context(), policy.SQLCredentials, in)
	if err != nil || d.Allow || !slices.Equal(d.Reasons, []string{"account under investigation"}) {
		t.Errorf("Decide(sql_credentials) = %+v, %v; want a deny with the deny list's reason", d, err)
	}
}

// copyRules copies the default library into a temporary directory.
func copyRules(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, rules.FS); err != nil {
		t.Fatal(err)
	}
	// os.CopyFS keeps the embedded files' read-only mode; tests edit them.
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chmod(p, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// edit replaces old by replacement in file, failing the test when old is absent.
func edit(t *testing.T, file, old, replacement string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %q", file, old)
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(b), old, replacement, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

func salesCreate(amount any) *policy.Input {
	in := realisticInput()
	in.Params = map[string]any{"customer": "ACME Corp", "amount": amount}
	return in
}

// TestEvalTimeout: a policy that takes too long is cut off and denied.
func TestEvalTimeout(t *testing.T) {
	e, err := opa.Open(t.Context(), opa.Config{Dir: "testdata/policies/slow", EvalTimeout: 20 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(t.Context(), policy.Call, salesCreate(1))
	if !errors.Is(err, policy.ErrEvaluation) || !errors.Is(err, policy.ErrTimeout) || !strings.Contains(err.Error(), "evaluation took longer than 20ms") {
		t.Fatalf("Decide error = %v, want a timeout wrapping ErrEvaluation and ErrTimeout", err)
	}
	if d.Allow || !slices.Equal(d.Reasons, []string{"policy evaluation timed out"}) || d.ID == "" || d.Revision == "" {
		t.Errorf("Decide = %+v, want a deny that says the evaluation timed out", d)
	}
}

// TestCancelledContext: a caller that gives up gets a deny.
func TestCancelledContext(t *testing.T) {
	e, err := opa.Open(t.Context(), opa.Config{Dir: "testdata/policies/slow", EvalTimeout: time.Hour, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	d, err := e.Decide(ctx, policy.Call, salesCreate(1))
	if !errors.Is(err, policy.ErrEvaluation) || !errors.Is(err, context.Canceled) || d.Allow {
		t.Fatalf("Decide = %+v, %v; want a deny wrapping ErrEvaluation and context.Canceled", d, err)
	}
}

// TestUnsupportedParams: parameters the engine cannot convert are a deny
// that names the parameter, never a crash or an allow.
func TestUnsupportedParams(t *testing.T) {
	e := openFS(t, rules.FS)
	for _, tc := range []struct {
		name  string
		value any
		want  string
	}{
		{"channel", make(chan int), "params.amount: unsupported type chan int"},
		{"struct", struct{ N int }{1}, "params.amount: unsupported type struct"},
		{"nan", nan(), "params.amount: not a finite number"},
		{"bad_json_number", json.Number("12abc"), "params.amount: invalid number"},
		{"huge_exponent", json.Number("1e999999999"), "params.amount: invalid number"},
		{"tiny_exponent", json.Number("-1.5E-999999999"), "params.amount: invalid number"},
		{"nested_chan", []any{1, map[string]any{"x": make(chan int)}}, "params.amount: [1]: .x: unsupported type chan int"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Decide(t.Context(), policy.Call, salesCreate(tc.value))
			if !errors.Is(err, policy.ErrEvaluation) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decide error = %v, want ErrEvaluation containing %q", err, tc.want)
			}
			if d.Allow || !slices.Equal(d.Reasons, []string{"the request cannot be evaluated by the policy"}) {
				t.Errorf("Decide = %+v, want a deny", d)
			}
		})
	}
}

func nan() float64 { var zero float64; return zero / zero }

// TestParamTypes: parameters of every supported Go type reach the policy with
// their value (the library compares the amount with its limit).
func TestParamTypes(t *testing.T) {
	e := openFS(t, rules.FS)
	for _, tc := range []struct {
		name   string
		amount any
		allow  bool
	}{
		{"float64", 999.5, true},
		{"float32", float32(1000.5), false},
		{"int", 1000, true},
		{"int8", int8(100), true},
		{"int16", int16(1001), false},
		{"int32", int32(5), true},
		{"int64", int64(1 << 40), false},
		{"uint", uint(7), true},
		{"uint8", uint8(255), true},
		{"uint16", uint16(2000), false},
		{"uint32", uint32(1000), true},
		{"uint64", uint64(1 << 63), false},
		{"json_number", json.Number("1e3"), true},
		{"json_number_over", json.Number("1000.000001"), false},
		{"string", "10", false},
		{"bool", true, false},
		{"nil", nil, false},
		{"slice", []string{"1"}, false},
		{"map", map[string]string{"n": "1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Decide(t.Context(), policy.Call, salesCreate(tc.amount))
			if err != nil || d.Allow != tc.allow {
				t.Errorf("Decide(amount %T %v) = %+v, %v; want allow %v", tc.amount, tc.amount, d, err, tc.allow)
			}
		})
	}
}

// TestNilInput: a missing input is a deny, not a panic.
func TestNilInput(t *testing.T) {
	e := openFS(t, rules.FS)
	d, err := e.Decide(t.Context(), policy.Call, nil)
	if !errors.Is(err, policy.ErrEvaluation) || d.Allow {
		t.Fatalf("Decide(nil) = %+v, %v; want a deny wrapping ErrEvaluation", d, err)
	}
}

// TestNoPolicyDeniesEverything: an engine whose first policy is broken, with
// a watch to pick up a fix, serves nothing but denies with ErrNoPolicy, and
// says why in Status and OnReload.
func TestNoPolicyDeniesEverything(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "call.rego"), "package sqlgate.call\n\nallow if {\n")
	var events []opa.ReloadEvent
	var logs bytes.Buffer
	e, err := opa.Open(t.Context(), opa.Config{
		EvalTimeout: testEvalTimeout,
		Dir:         dir, Watch: true, Logger: slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), nil)),
		OnReload: func(ev opa.ReloadEvent) { events = append(events, ev) },
	})
	if err != nil {
		t.Fatalf("Open with watch = %v, want the engine (denying)", err)
	}
	defer e.Close()
	d, err := e.Decide(t.Context(), policy.Call, salesCreate(1))
	if !errors.Is(err, policy.ErrNoPolicy) || d.Allow || d.ID == "" || d.Revision != "" {
		t.Fatalf("Decide = %+v, %v; want a deny wrapping ErrNoPolicy", d, err)
	}
	st := e.Status()
	if st.Ready() || !errors.Is(st.LastError, opa.ErrInvalidPolicy) || !strings.Contains(st.LastError.Error(), "rego_parse_error") {
		t.Errorf("Status = %+v, want not ready with the parse error", st)
	}
	if len(events) != 1 || events[0].Err == nil || events[0].Revision != "" {
		t.Errorf("OnReload events = %+v, want one failure", events)
	}
	// The log says that nothing serves, not that a last good policy does.
	if got := logs.String(); !strings.Contains(got, "no policy is loaded, so every request is denied until the policy loads") ||
		strings.Contains(got, "last good") || !strings.Contains(got, "rego_parse_error") {
		t.Errorf("log = %s, want the failure to say no policy is loaded, with the error", got)
	}

	// Without a watch, a broken policy is an error at Open.
	if _, err := opa.Open(t.Context(), opa.Config{Dir: dir}); !errors.Is(err, opa.ErrInvalidPolicy) {
		t.Errorf("Open without watch = %v, want ErrInvalidPolicy", err)
	}
}

func writeFile(t *testing.T, file, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConfigValidate reports every problem at once.
func TestConfigValidate(t *testing.T) {
	err := opa.Config{FS: rules.FS, Dir: "x", Watch: true, Debounce: -1, EvalTimeout: -1}.Validate()
	for _, want := range []string{"dir and FS are exclusive", "debounce must not be negative", "evalTimeout must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
	if err := (opa.Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "one of dir and FS is required") {
		t.Errorf("Validate() = %v, want dir or FS required", err)
	}
	if err := (opa.Config{FS: rules.FS, Watch: true}).Validate(); err == nil || !strings.Contains(err.Error(), "watch requires dir") {
		t.Errorf("Validate() = %v, want watch requires dir", err)
	}
	if _, err := opa.Open(t.Context(), opa.Config{Dir: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("Open(missing dir) succeeded")
	}
}

// TestRevision: the revision is a hash of the served files only, equal for
// the same content wherever it comes from, and different when any served
// byte changes.
func TestRevision(t *testing.T) {
	embedded := openFS(t, rules.FS)
	dir := copyRules(t)
	onDisk, err := opa.Open(t.Context(), opa.Config{EvalTimeout: testEvalTimeout, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if embedded.Revision() != onDisk.Revision() {
		t.Fatalf("revision of the same files differs: %s vs %s", embedded.Revision(), onDisk.Revision())
	}
	rev := onDisk.Revision()

	// Tests and dot files are not served: they do not change the revision.
	writeFile(t, filepath.Join(dir, "sqlgate", "extra_test.rego"), "package sqlgate.extra_test\n\ntest_x if true\n")
	writeFile(t, filepath.Join(dir, ".call.rego.swp"), "garbage")
	if err := onDisk.Reload(t.Context()); err != nil || onDisk.Revision() != rev {
		t.Fatalf("Reload = %v, revision %s; want unchanged %s", err, onDisk.Revision(), rev)
	}
	// A changed data file does.
	edit(t, filepath.Join(dir, "data.yaml"), "max: 1000", "max: 2000")
	if err := onDisk.Reload(t.Context()); err != nil || onDisk.Revision() == rev {
		t.Fatalf("Reload = %v, revision %s; want a new one", err, onDisk.Revision())
	}
}

// TestReloadKeepsLastGoodPolicy: a broken edit keeps the previous policy
// serving and reports why; fixing it resumes.
func TestReloadKeepsLastGoodPolicy(t *testing.T) {
	dir := copyRules(t)
	var mu sync.Mutex
	var events []opa.ReloadEvent
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), nil))
	e, err := opa.Open(t.Context(), opa.Config{EvalTimeout: testEvalTimeout, Dir: dir, Logger: logger, OnReload: func(ev opa.ReloadEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	good := e.Revision()
	call := filepath.Join(dir, "sqlgate", "call.rego")
	orig, err := os.ReadFile(call)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, call, string(orig)+"\nallow if {\n")
	if err := e.Reload(t.Context()); !errors.Is(err, opa.ErrInvalidPolicy) {
		t.Fatalf("Reload(broken) = %v, want ErrInvalidPolicy", err)
	}
	if e.Revision() != good {
		t.Fatalf("revision after a broken reload = %s, want the last good %s", e.Revision(), good)
	}
	if d, err := e.Decide(t.Context(), policy.Call, salesCreate(500)); err != nil || !d.Allow || d.Revision != good {
		t.Fatalf("Decide after broken reload = %+v, %v; want the last good policy's allow", d, err)
	}
	if st := e.Status(); !st.Ready() || st.LastError == nil || !strings.Contains(st.LastError.Error(), "sqlgate/call.rego") {
		t.Errorf("Status = %+v, want ready with the error naming the file", st)
	}
	if got := logs.String(); !strings.Contains(got, `the last good policy keeps serving" policy_revision=`+good) || strings.Contains(got, "no policy is loaded") {
		t.Errorf("log = %s, want the failure to name the last good revision that keeps serving", got)
	}
	writeFile(t, call, string(orig))
	if err := e.Reload(t.Context()); err != nil || e.Status().LastError != nil {
		t.Fatalf("Reload(fixed) = %v, status error %v", err, e.Status().LastError)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 3 || !events[0].Changed || events[1].Err == nil || events[1].Revision != good || events[2].Err != nil || events[2].Changed {
		t.Errorf("OnReload events = %+v, want load, failure (serving %s), recovery", events, good)
	}
}

// TestWatchReloadsEdits is what a user of `sqlgated dev` does: edit a policy
// file and see the next decision change, break it and see the old policy keep
// serving with the reason reported, then fix it.
func TestWatchReloadsEdits(t *testing.T) {
	dir := copyRules(t)
	reloads := make(chan opa.ReloadEvent, 16)
	e, err := opa.Open(t.Context(), opa.Config{
		EvalTimeout: testEvalTimeout,
		Dir:         dir, Watch: true, Debounce: 20 * time.Millisecond, Logger: testLogger(t),
		OnReload: func(ev opa.ReloadEvent) { reloads <- ev },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	<-reloads // the first load
	wait := func() opa.ReloadEvent {
		t.Helper()
		select {
		case ev := <-reloads:
			return ev
		case <-time.After(30 * time.Second):
			t.Fatal("no reload after an edit")
			return opa.ReloadEvent{}
		}
	}
	if d, _ := e.Decide(t.Context(), policy.Call, salesCreate(1500)); d.Allow {
		t.Fatalf("amount 1500 allowed before the edit")
	}

	// Raise the limit.
	edit(t, filepath.Join(dir, "data.yaml"), "max: 1000", "max: 2000")
	if ev := wait(); ev.Err != nil || !ev.Changed {
		t.Fatalf("reload after edit = %+v", ev)
	}
	if d, err := e.Decide(t.Context(), policy.Call, salesCreate(1500)); err != nil || !d.Allow {
		t.Fatalf("Decide after raising the limit = %+v, %v; want allow", d, err)
	}
	good := e.Revision()

	// Break the data file: the old policy keeps serving.
	edit(t, filepath.Join(dir, "data.yaml"), "max: 2000", "max: [2000")
	ev := wait()
	if !errors.Is(ev.Err, opa.ErrInvalidPolicy) || ev.Revision != good || !strings.Contains(ev.Err.Error(), "data.yaml") {
		t.Fatalf("reload after a broken edit = %+v, want the error and %s still serving", ev, good)
	}
	if d, err := e.Decide(t.Context(), policy.Call, salesCreate(1500)); err != nil || !d.Allow || d.Revision != good {
		t.Fatalf("Decide after a broken edit = %+v, %v", d, err)
	}

	// A module in a new directory is picked up too.
	edit(t, filepath.Join(dir, "data.yaml"), "max: [2000", "max: 2000")
	if ev := wait(); ev.Err != nil {
		t.Fatalf("reload after the fix = %+v", ev)
	}
	writeFile(t, filepath.Join(dir, "sqlgate", "extra", "extra.rego"), "package sqlgate.extra\n\nx := 1\n")
	if ev := wait(); ev.Err != nil || !slices.Contains(ev.Modules, "sqlgate/extra/extra.rego") {
		t.Fatalf("reload after adding a directory = %+v", ev)
	}
}

// TestConcurrentDecideAndReload runs decisions while the policy is swapped;
// with -race it checks the engine's synchronisation, and every decision must
// come from one of the two revisions.
func TestConcurrentDecideAndReload(t *testing.T) {
	dir := copyRules(t)
	// A generous evaluation timeout: this is about revisions, and four
	// deciding goroutines with reloads beside them on a loaded machine can
	// keep one evaluation waiting past the 100ms default.
	e, err := opa.Open(t.Context(), opa.Config{Dir: dir, Logger: testLogger(t), EvalTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	first := e.Revision()
	edit(t, filepath.Join(dir, "data.yaml"), "max: 1000", "max: 2000")
	second := ""
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				d, err := e.Decide(t.Context(), policy.Call, salesCreate(1500))
				if err != nil || (d.Revision == first && d.Allow) || (d.Revision != first && !d.Allow) {
					t.Errorf("Decide = %+v, %v", d, err)
					return
				}
			}
		})
	}
	for range 5 {
		if err := e.Reload(t.Context()); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	second = e.Revision()
	if second == first {
		t.Error("revision did not change")
	}
}

// TestStatus reports what is served.
func TestStatus(t *testing.T) {
	e := openFS(t, rules.FS)
	st := e.Status()
	if !st.Ready() || st.Revision != e.Revision() || !st.LoadedAt.Equal(monday10) || st.LastError != nil {
		t.Errorf("Status = %+v", st)
	}
	if !slices.Equal(st.Entries, policy.Entries) || !slices.Contains(st.Modules, "sqlgate/call.rego") || slices.Contains(st.Modules, "sqlgate/call_test.rego") {
		t.Errorf("Status entries %v, modules %v", st.Entries, st.Modules)
	}
}
