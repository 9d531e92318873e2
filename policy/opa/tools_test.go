package opa_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
)

const rulesDir = "../rules"

// demoCatalog is the route catalog of `sqlgated dev`.
var demoCatalog = []opa.RouteRef{
	{Subject: "orders.v1.create", Params: []string{"customer", "amount", "note"}, Emit: "orders.v1.created"},
	{Subject: "orders.v1.get", Params: []string{"id"}},
	{Subject: "orders.v1.cancel", Params: []string{"id"}, Emit: "orders.v1.cancelled"},
	{Subject: "orders.v1.import", Params: []string{"customer", "amount", "note"}, Emit: "orders.v1.imported"},
}

func TestTestRunsRegoTests(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dir        string
		opts       opa.TestOptions
		wantPassed bool
		want       []string
		dontWant   []string
	}{
		{"library", rulesDir, opa.TestOptions{}, true, []string{"PASS: "}, []string{"FAIL"}},
		{
			"verbose", rulesDir,
			opa.TestOptions{Verbose: true},
			true,
			[]string{"data.sqlgate.call_test.test_sales_create_over_limit: PASS", "sqlgate/lib/limits_test.rego:"},
			nil,
		},
		{
			"run_filter", rulesDir,
			opa.TestOptions{Verbose: true, Run: "test_auditors"},
			true,
			[]string{"test_auditors_call_nothing: PASS", "test_auditors_get_no_credential: PASS"},
			[]string{"test_sales"},
		},
		{
			"failing", "testdata/tests/failing",
			opa.TestOptions{},
			false,
			[]string{"data.sqlgate.call_test.test_support_allowed: FAIL", "PASS: 1/2", "FAIL: 1/2"},
			nil,
		},
		{
			"failing_verbose_shows_the_failed_expression", "testdata/tests/failing",
			opa.TestOptions{Verbose: true},
			false,
			[]string{"Fail data.sqlgate.call.allow with input as"},
			nil,
		},
		{"coverage", rulesDir, opa.TestOptions{Coverage: true}, true, []string{`"coverage": 100`, `sqlgate/call.rego"`}, nil},
		{"coverage_failing", "testdata/tests/failing", opa.TestOptions{Coverage: true}, false, []string{"FAIL"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			passed, err := opa.Test(t.Context(), tc.dir, tc.opts, &out)
			t.Logf("output:\n%s", out.String())
			if err != nil || passed != tc.wantPassed {
				t.Fatalf("Test = %v, %v; want passed %v", passed, err, tc.wantPassed)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q", w)
				}
			}
			for _, w := range tc.dontWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q", w)
				}
			}
		})
	}
	t.Run("threshold", func(t *testing.T) {
		passed, err := opa.Test(t.Context(), "testdata/tests/failing", opa.TestOptions{Run: "test_ops", Threshold: 100}, &bytes.Buffer{})
		if passed || err == nil || !strings.Contains(err.Error(), "Code coverage threshold not met") {
			t.Errorf("Test with an unmet threshold = %v, %v", passed, err)
		}
	})
	t.Run("fail_on_empty", func(t *testing.T) {
		passed, err := opa.Test(t.Context(), rulesDir, opa.TestOptions{Run: "test_nothing_is_called_this", FailOnEmpty: true}, &bytes.Buffer{})
		if passed || !errors.Is(err, opa.ErrNoTests) {
			t.Errorf("Test with no test to run = %v, %v; want ErrNoTests", passed, err)
		}
		if passed, err := opa.Test(t.Context(), rulesDir, opa.TestOptions{Run: "test_nothing_is_called_this"}, &bytes.Buffer{}); !passed || err != nil {
			t.Errorf("Test with no test to run, FailOnEmpty unset = %v, %v; want a pass", passed, err)
		}
	})
	t.Run("broken", func(t *testing.T) {
		passed, err := opa.Test(t.Context(), "testdata/bad/syntax", opa.TestOptions{}, &bytes.Buffer{})
		if passed || err == nil || !strings.Contains(err.Error(), "rego_parse_error") {
			t.Errorf("Test of a broken policy = %v, %v", passed, err)
		}
	})
}

func TestEvalPrintsTheDecision(t *testing.T) {
	input := readFile(t, "testdata/inputs/sales_create.json")
	var out bytes.Buffer
	d, err := opa.Eval(t.Context(), rulesDir, policy.Call, input, false, &out)
	if err != nil || !d.Allow {
		t.Fatalf("Eval = %+v, %v", d, err)
	}
	for _, want := range []string{"decision of data.sqlgate.call (policy revision " + d.Revision + "):", `"allow": true`, `"decision_id": "` + d.ID} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("Eval output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "rules that produced a value") {
		t.Errorf("Eval without explain explains:\n%s", out.String())
	}
}

// TestPolicyDirectoryMissing checks that every tool that reads a policy
// directory names it when it is missing or a file (os.DirFS alone reported
// "stat .").
func TestPolicyDirectoryMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	file := filepath.Join(t.TempDir(), "file.rego")
	if err := os.WriteFile(file, []byte("package x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	input := readFile(t, "testdata/inputs/sales_create.json")
	for dir, want := range map[string]string{
		missing: "policy directory " + missing + " does not exist",
		file:    "policy directory " + file + ": not a directory",
	} {
		if errs := opa.Check(t.Context(), dir, nil); len(errs) != 1 || errs[0].Error() != want {
			t.Errorf("Check(%s) = %v, want %q", dir, errs, want)
		}
		if _, err := opa.Eval(t.Context(), dir, policy.Call, input, false, io.Discard); err == nil || err.Error() != want {
			t.Errorf("Eval(%s) = %v, want %q", dir, err, want)
		}
		if _, err := opa.Open(t.Context(), opa.Config{Dir: dir}); err == nil || err.Error() != want {
			t.Errorf("Open(%s) = %v, want %q", dir, err, want)
		}
		if _, err := opa.Test(t.Context(), dir, opa.TestOptions{}, io.Discard); err == nil || err.Error() != want {
			t.Errorf("Test(%s) = %v, want %q", dir, err, want)
		}
	}
}

func TestEvalExplain(t *testing.T) {
	input := readFile(t, "testdata/inputs/sales_create.json")
	var out bytes.Buffer
	d, err := opa.Eval(t.Context(), rulesDir, policy.Call, input, true, &out)
	if err != nil || !d.Allow {
		t.Fatalf("Eval = %+v, %v", d, err)
	}
	t.Logf("output:\n%s", out.String())
	for _, want := range []string{
		"rules that produced a value:",
		"sqlgate/call.rego:",
		"data.sqlgate.call.allow = true",
		"data.sqlgate.lib.grants.route = {",
		`data.sqlgate.call.redact_params = ["note"]`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explanation lacks %q", want)
		}
	}

	// A deny shows the failed expressions, trace() notes and print() output.
	input = bytes.Replace(input, []byte(`"amount": 150`), []byte(`"amount": 250`), 1)
	out.Reset()
	d, err = opa.Eval(t.Context(), "testdata/policies/printing", policy.Call, input, true, &out)
	if err != nil || d.Allow {
		t.Fatalf("Eval = %+v, %v", d, err)
	}
	t.Logf("output:\n%s", out.String())
	for _, want := range []string{
		`"amount over the limit"`,
		"failed expressions in data.sqlgate.call:",
		"call.rego:10", "input.params.amount <= limits.amount",
		"notes:", "checking 250",
		"print output:", "call.rego:8: amount is 250",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explanation lacks %q", want)
		}
	}
}

func TestEvalRejectsBadInput(t *testing.T) {
	good := string(readFile(t, "testdata/inputs/sales_create.json"))
	for _, tc := range []struct {
		name, input, want string
	}{
		{"not_json", `{"principal": `, "invalid input document"},
		{"unknown_field", strings.Replace(good, `"params"`, `"parameters"`, 1), "parameters"},
		{"wrong_type", strings.Replace(good, `"groups": ["sales"]`, `"groups": "sales"`, 1), "/principal/groups"},
		{"missing_subject", strings.Replace(good, `"subject": "u-1", `, "", 1), "subject"},
		{"bad_transport", strings.Replace(good, `"transport": "nats"`, `"transport": "smtp"`, 1), "/request/transport"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := opa.Eval(t.Context(), rulesDir, policy.Call, []byte(tc.input), false, &bytes.Buffer{})
			if !errors.Is(err, opa.ErrInvalidInput) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Eval = %v, want ErrInvalidInput naming %q", err, tc.want)
			}
		})
	}
	if _, err := opa.Eval(t.Context(), "testdata/bad/syntax", policy.Call, []byte(good), false, &bytes.Buffer{}); !errors.Is(err, opa.ErrInvalidPolicy) {
		t.Errorf("Eval of a broken policy = %v, want ErrInvalidPolicy", err)
	}
}

// TestParseInputErrorsNameNoPath: a schema error reaches API clients (the
// broker's eval endpoint), so it names the schema by its $id, not by a file
// URL with the daemon's working directory.
func TestParseInputErrorsNameNoPath(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	good := string(readFile(t, "testdata/inputs/sales_create.json"))
	_, err = opa.ParseInput([]byte(strings.Replace(good, `"groups": ["sales"]`, `"groups": "sales"`, 1)))
	if !errors.Is(err, opa.ErrInvalidInput) {
		t.Fatalf("ParseInput = %v, want ErrInvalidInput", err)
	}
	if msg := err.Error(); strings.Contains(msg, "file:") || strings.Contains(msg, wd) || !strings.Contains(msg, "urn:sqlgate:policy:input:v1") {
		t.Errorf("ParseInput error = %q, want the schema named by its $id and no file path", msg)
	}
}

// TestExplainOnTheRunningEngine is what the web policy page uses.
func TestExplainOnTheRunningEngine(t *testing.T) {
	e := openFS(t, rules.FS)
	var out bytes.Buffer
	d, err := e.Explain(t.Context(), policy.Call, salesCreate(5000), &out)
	if err != nil || d.Allow {
		t.Fatalf("Explain = %+v, %v", d, err)
	}
	for _, want := range []string{`"amount exceeds the sales limit of 1000"`, "failed expressions in data.sqlgate.call:", "data.sqlgate.lib.limits.broken("} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explanation lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dir     string
		catalog []opa.RouteRef
		want    []string
	}{
		{"library_with_demo_catalog", rulesDir, demoCatalog, nil},
		{"library_without_catalog", rulesDir, nil, nil},
		{"library_missing_route", rulesDir, []opa.RouteRef{demoCatalog[0], demoCatalog[1], demoCatalog[3]}, []string{
			`data.sqlgate.config.routes["orders.v1.cancel"]: route orders.v1.cancel is not in the route catalog`,
			`data.sqlgate.config.events["orders.v1.cancelled"]: orders.v1.cancelled is not an emit subject of the route catalog`,
		}},
		{"library_renamed_param", rulesDir, []opa.RouteRef{
			{Subject: "orders.v1.create", Params: []string{"customer", "total", "note"}, Emit: "orders.v1.created"}, demoCatalog[1], demoCatalog[2], demoCatalog[3],
		}, []string{
			`data.sqlgate.config.routes["orders.v1.create"].limits[0].param: amount is not a parameter of orders.v1.create (its parameters: customer, total, note)`,
			`data.sqlgate.config.routes["orders.v1.create"].limits[1].param: amount is not a parameter of orders.v1.create (its parameters: customer, total, note)`,
		}},
		{"literals", "testdata/check/literal", demoCatalog, []string{
			"call.rego:6: route orders.v1.refund is not in the route catalog",
			"call.rego:22: amout is not a parameter of orders.v1.create (its parameters: customer, amount, note)",
			"call.rego:11: route orders.v1.archive is not in the route catalog",
			`data.sqlgate.audit.routes[1]: route orders.v1.purge is not in the route catalog`,
			`data.sqlgate.audit.watch[0].redact_params[1]: secret is not a parameter of orders.v1.create`,
		}},
		// An event granted in data.yaml that the catalog does not emit.
		{"library_missing_emit", rulesDir, []opa.RouteRef{
			demoCatalog[0], demoCatalog[1], {Subject: "orders.v1.cancel", Params: []string{"id"}}, demoCatalog[3],
		}, []string{
			`data.sqlgate.config.events["orders.v1.cancelled"]: orders.v1.cancelled is not an emit subject of the route catalog (its emit subjects: orders.v1.created, orders.v1.imported)`,
		}},
		// Emit subjects that sub names with constants, and any `events`
		// member of data: the misspelt ones would silently grant nothing.
		{"sub_literals", "testdata/check/sub", demoCatalog, []string{
			`nats.rego:12: orders.v1.craeted is not an emit subject of the route catalog (its emit subjects: orders.v1.cancelled, orders.v1.created, orders.v1.imported)`,
			`data.sqlgate.feeds.events[1]: orders.v1.cancelld is not an emit subject of the route catalog`,
		}},
		{"sub_set", "testdata/check/subset", demoCatalog, []string{
			`nats.rego:10: invoices.v1.voidd is not an emit subject of the route catalog`,
		}},
		{"sub_without_emits", "testdata/check/subset", demoCatalog[1:2], []string{
			`nats.rego:10: orders.v1.cancelled is not an emit subject of the route catalog (it has none)`,
			`nats.rego:10: invoices.v1.voidd is not an emit subject of the route catalog (it has none)`,
		}},
		{"input_typo", "testdata/check/typo", nil, []string{"rego_type_error: undefined ref: input.principal.gruops"}},
		// Constants of pub that are no route: the broker would drop them.
		{"pub_constants", "testdata/check/pub", demoCatalog, []string{
			`nats.rego:10: "orders.v1.gett" is not a route subject of the route catalog: pub holds route subjects, and the broker drops any other (a wildcard included)`,
			`nats.rego:12: ">" is not a route subject of the route catalog`,
		}},
		// A misspelt entry package loads (nats is an entry), but every call
		// of the catalog would be denied.
		{"call_package_misspelt", "testdata/check/package", demoCatalog, []string{
			`the policy defines no data.sqlgate.call (package sqlgate.call), so every call of the route catalog's routes would be denied ("the policy does not decide call"); is a package misspelt? calls.rego has package data.sqlgate.calls`,
		}},
		{"call_package_without_catalog", "testdata/check/package", nil, nil},
		// A served module that calls a function of a test module compiles
		// only with the tests; the engine serves it without them.
		{"function_of_a_test", "testdata/check/testfunc", nil, []string{
			`call.rego:8: rego_type_error: undefined function data.sqlgate.fixtures.trusted (without the *_test.rego modules, as the policy is served)`,
		}},
		{"syntax", "testdata/bad/syntax", nil, []string{"rego_parse_error"}},
		{"contract", "testdata/bad/unknownkey", nil, []string{`unknown decision key "max_row"`}},
		// Constant decision values the engine would refuse at every decision.
		{"decision_values", "testdata/policies/malformed", nil, []string{
			`call.rego:6: max_rows is -1, not an integer between 0 and 2147483647 (data.sqlgate.call.max_rows)`,
			`call.rego:8: timeout_ms is 2.5, not an integer`,
			`call.rego:10: redact_params is string "note", not a set or array of strings`,
			`call.rego:12: reasons holds 1, which is not a string`,
			`nats.rego:5: ttl is "forever", not a duration`,
			`nats.rego:7: ttl is -5 seconds, not between 0 and`,
			`nats.rego:9: pub holds 42, which is not a string`,
		}},
		{"decision_constants", "testdata/check/decisionconst", nil, []string{
			`call.rego:4: allow is string "true", not a boolean (data.sqlgate.call.allow): every decision it applies to would be denied as malformed`,
			`call.rego:6: max_rows is -5, not an integer between 0 and 2147483647`,
			`call.rego:8: redact_params is string "note", not a set or array of strings`,
			`call.rego:10: timeout_ms is 1.5, not an integer`,
		}},
		// Computed ones whose type cannot do; unknown types (input.params) pass.
		{"decision_types", "testdata/check/decisiontypes", nil, []string{
			`call.rego:4: data.sqlgate.call.allow is string, not a boolean`,
			`call.rego:10: data.sqlgate.call.redact_params is string, not a set or array of strings`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := opa.Check(t.Context(), tc.dir, tc.catalog)
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			t.Logf("Check:\n%s", strings.Join(got, "\n"))
			exact := tc.name != "literals" && tc.name != "input_typo" // these may report more
			if exact && len(got) != len(tc.want) {
				t.Errorf("Check returned %d problems, want %d", len(got), len(tc.want))
			}
			for _, w := range tc.want {
				if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
					t.Errorf("Check lacks %q", w)
				}
			}
			if tc.name == "literals" {
				for _, g := range got {
					if strings.Contains(g, "orders.v1.get") || strings.Contains(g, "id is not") {
						t.Errorf("Check reports a known route or parameter: %s", g)
					}
				}
			}
		})
	}
}

// TestCheckLint: configuration problems are check errors too.
func TestCheckLint(t *testing.T) {
	dir := copyRules(t)
	edit(t, filepath.Join(dir, "data.yaml"), "max_rows: 100", "max_rows: many")
	errs := opa.Check(t.Context(), dir, demoCatalog)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "data.sqlgate.lint.problems: routes.orders.v1.get.max_rows: must be a whole number from 0 to 2147483647") {
		t.Errorf("Check = %v, want the lint problem", errs)
	}
}

// storedInput is how a decision input is kept for replay: the JSON form of
// the input without the parameters the decision redacts.
func storedInput(t *testing.T, in *policy.Input, d policy.Decision) opa.ReplayItem {
	t.Helper()
	stored := *in
	stored.Params = map[string]any{}
	for k, v := range in.Params {
		if !slices.Contains(d.Obligations.RedactParams, k) {
			stored.Params[k] = v
		}
	}
	raw, err := json.Marshal(stored)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return opa.ReplayItem{
		Entry: policy.Call, CorrelationID: in.Request.CorrelationID, DecisionID: d.ID,
		Allow: d.Allow, Revision: d.Revision, Input: raw, InputSHA256: hex.EncodeToString(sum[:]),
		Redacted: d.Obligations.RedactParams,
	}
}

func items(list []opa.ReplayItem, fail error) iter.Seq2[opa.ReplayItem, error] {
	return func(yield func(opa.ReplayItem, error) bool) {
		for _, it := range list {
			if !yield(it, nil) {
				return
			}
		}
		if fail != nil {
			yield(opa.ReplayItem{}, fail)
		}
	}
}

// TestReplayFindsFlippedDecisions records real decisions with the demo
// policy, changes the sales limit, and replays them.
func TestReplayFindsFlippedDecisions(t *testing.T) {
	recorder := openFS(t, rules.FS)
	var recorded []opa.ReplayItem
	for i, amount := range []int{500, 900, 1500, 5000} {
		for _, groups := range [][]string{{"sales"}, {"support"}} {
			in := salesCreate(amount)
			in.Principal.Groups = groups
			in.Params["note"] = "ship to the back door"
			in.Request.CorrelationID = "corr-" + string(rune('a'+i)) + "-" + groups[0]
			d, err := recorder.Decide(t.Context(), policy.Call, in)
			if err != nil {
				t.Fatal(err)
			}
			item := storedInput(t, in, d)
			if strings.Contains(string(item.Input), "back door") {
				t.Fatal("stored input holds a redacted parameter")
			}
			recorded = append(recorded, item)
		}
	}

	candidate := func(limit string) *opa.Engine {
		dir := copyRules(t)
		edit(t, filepath.Join(dir, "data.yaml"), "max: 1000", "max: "+limit)
		e, err := opa.Open(t.Context(), opa.Config{EvalTimeout: testEvalTimeout, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	for _, tc := range []struct {
		limit string
		want  []string // correlation id and direction
	}{
		{"1000", nil},
		{"2000", []string{"corr-c-sales deny->allow"}},
		{"600", []string{"corr-b-sales allow->deny"}},
		{"100000", []string{"corr-c-sales deny->allow", "corr-d-sales deny->allow"}},
	} {
		t.Run("limit_"+tc.limit, func(t *testing.T) {
			e := candidate(tc.limit)
			res, err := opa.Replay(t.Context(), e, items(recorded, nil), opa.ReplayOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Replayed != len(recorded) {
				t.Errorf("replayed %d, want %d", res.Replayed, len(recorded))
			}
			var got []string
			for _, c := range res.Changes {
				got = append(got, c.CorrelationID+" "+c.Direction())
				if c.NowRevision != e.Revision() || c.WasRevision != recorder.Revision() || c.DecisionID == "" || !slices.Equal(c.Redacted, []string{"note"}) {
					t.Errorf("change %+v lacks its facts", c)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Replay changes = %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("tampered_input", func(t *testing.T) {
		bad := slices.Clone(recorded)
		bad[4].Input = bytes.Replace(bad[4].Input, []byte("1500"), []byte("150"), 1)
		_, err := opa.Replay(t.Context(), recorder, items(bad, nil), opa.ReplayOptions{})
		if err == nil || !strings.Contains(err.Error(), "does not match the audit record's input_sha256") || !strings.Contains(err.Error(), bad[4].DecisionID) {
			t.Errorf("Replay of a tampered input = %v", err)
		}
	})
	t.Run("source_error", func(t *testing.T) {
		res, err := opa.Replay(t.Context(), recorder, items(recorded[:3], errors.New("audit store unavailable")), opa.ReplayOptions{})
		if err == nil || !strings.Contains(err.Error(), "audit store unavailable") || res.Replayed != 3 {
			t.Errorf("Replay = %+v, %v", res, err)
		}
	})
	t.Run("broken_candidate_denies", func(t *testing.T) {
		// Every decision of this policy is malformed, hence a deny.
		e, err := opa.Open(t.Context(), opa.Config{EvalTimeout: testEvalTimeout, Dir: "testdata/policies/nonbool"})
		if err != nil {
			t.Fatal(err)
		}
		res, err := opa.Replay(t.Context(), e, items(recorded, nil), opa.ReplayOptions{})
		if err != nil {
			t.Fatal(err)
		}
		flips := 0
		for _, c := range res.Changes {
			if c.NowAllow || !strings.Contains(c.Error, "allow is string") {
				t.Errorf("change %+v: want a deny with the evaluation error", c)
			}
			if c.Direction() == "allow->deny" {
				flips++
			}
			// A decision that fails redacts every parameter, as the broker
			// does: the policy could not say which are secret.
			want := []opa.ObligationChange{{Key: "redact_params", Was: []string{"note"}, Now: []string{"amount", "customer", "note"}}}
			if diff := cmp.Diff(want, c.Obligations); diff != "" {
				t.Errorf("change %s obligations (-want +got):\n%s", c.CorrelationID, diff)
			}
		}
		if flips != 2 || len(res.Changes) != len(recorded) { // the two allowed sales calls (500, 900) flip
			t.Errorf("changes = %+v, want the two recorded allows to flip and every parameter to be redacted", res.Changes)
		}
		// With a baseline, the failed candidate's other obligations are not
		// compared (the get's row cap of 100 is not lost): a deny runs
		// nothing.
		get := salesCreate(0)
		get.Route.Subject, get.Params, get.Request.CorrelationID = "orders.v1.get", map[string]any{"id": 7}, "get"
		d, err := recorder.Decide(t.Context(), policy.Call, get)
		if err != nil || !d.Allow || d.Obligations.MaxRows != 100 {
			t.Fatalf("Decide(get) = %+v, %v", d, err)
		}
		res, err = opa.Replay(t.Context(), e, items([]opa.ReplayItem{storedInput(t, get, d)}, nil), opa.ReplayOptions{Baseline: recorder})
		want := []opa.ObligationChange{{Key: "redact_params", Was: []string{}, Now: []string{"id"}}}
		if err != nil || len(res.Changes) != 1 || res.Changes[0].Direction() != "allow->deny" {
			t.Fatalf("Replay(get) with a baseline = %+v, %v", res, err)
		}
		if diff := cmp.Diff(want, res.Changes[0].Obligations); diff != "" {
			t.Errorf("Replay(get) with a baseline: obligations (-want +got):\n%s", diff)
		}
	})
}

// TestReplayReportsObligationChanges: a candidate that keeps every allow but
// drops the redaction of the note or lifts the row cap is a change, so that
// --fail-on-change catches it.
func TestReplayReportsObligationChanges(t *testing.T) {
	recorder := openFS(t, rules.FS)
	record := func(in *policy.Input) opa.ReplayItem {
		d, err := recorder.Decide(t.Context(), policy.Call, in)
		if err != nil || !d.Allow {
			t.Fatalf("Decide = %+v, %v", d, err)
		}
		item := storedInput(t, in, d)
		item.Redacted = nil
		for _, name := range d.Obligations.RedactParams {
			if _, ok := in.Params[name]; ok {
				item.Redacted = append(item.Redacted, name)
			}
		}
		item.Obligations = &d.Obligations
		return item
	}
	create := salesCreate(500)
	create.Request.CorrelationID, create.Params["note"] = "create", "ship to the back door"
	get := salesCreate(0)
	get.Route.Subject, get.Params, get.Request.CorrelationID = "orders.v1.get", map[string]any{"id": 7}, "get"
	recorded := []opa.ReplayItem{record(create), record(get)}
	// As from the audit log: the record holds no obligations.
	fromAudit := slices.Clone(recorded)
	for i := range fromAudit {
		fromAudit[i].Obligations = nil
	}

	candidate := func(edits ...[2]string) *opa.Engine {
		dir := copyRules(t)
		for _, ed := range edits {
			edit(t, filepath.Join(dir, "data.yaml"), ed[0], ed[1])
		}
		e, err := opa.Open(t.Context(), opa.Config{EvalTimeout: testEvalTimeout, Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	dropNote := [2]string{"        redact_params: [note]\n      orders.v1.get:", "      orders.v1.get:"}
	liftCap := [2]string{"max_rows: 100\n", "max_rows: 100000\n"}
	redactCustomer := [2]string{"        redact_params: [note]\n      orders.v1.get:", "        redact_params: [note, customer]\n      orders.v1.get:"}
	type change struct {
		Corr, Direction string
		Obligations     []opa.ObligationChange
	}
	for _, tc := range []struct {
		name  string
		cand  *opa.Engine
		items []opa.ReplayItem
		opts  opa.ReplayOptions
		want  []change
	}{
		{"unchanged", candidate(), recorded, opa.ReplayOptions{}, nil},
		{"unchanged_with_baseline", candidate(), fromAudit, opa.ReplayOptions{Baseline: recorder}, nil},
		{
			"recorded_obligations", candidate(dropNote, liftCap), recorded,
			opa.ReplayOptions{},
			[]change{
				{"create", "obligations", []opa.ObligationChange{{Key: "redact_params", Was: []string{"note"}, Now: []string{}}}},
				{"get", "obligations", []opa.ObligationChange{{Key: "max_rows", Was: int64(100), Now: int64(100000)}}},
			},
		},
		{
			// The audit record still tells what was redacted.
			"audit_without_baseline", candidate(dropNote, liftCap), fromAudit,
			opa.ReplayOptions{},
			[]change{{"create", "obligations", []opa.ObligationChange{{Key: "redact_params", Was: []string{"note"}, Now: []string{}}}}},
		},
		{
			"audit_with_baseline", candidate(dropNote, liftCap), fromAudit,
			opa.ReplayOptions{Baseline: recorder},
			[]change{
				{"create", "obligations", []opa.ObligationChange{{Key: "redact_params", Was: []string{"note"}, Now: []string{}}}},
				{"get", "obligations", []opa.ObligationChange{{Key: "max_rows", Was: int64(100), Now: int64(100000)}}},
			},
		},
		{
			"redacts_more", candidate(redactCustomer), fromAudit,
			opa.ReplayOptions{},
			[]change{{"create", "obligations", []opa.ObligationChange{{Key: "redact_params", Was: []string{"note"}, Now: []string{"customer", "note"}}}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := opa.Replay(t.Context(), tc.cand, items(tc.items, nil), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []change
			for _, c := range res.Changes {
				got = append(got, change{c.CorrelationID, c.Direction(), c.Obligations})
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Replay changes (-want +got):\n%s", diff)
			}
		})
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCheckWithTheDevCatalog checks the library against the route catalog
// `sqlgated dev` writes, read as `sqlgate policy check --routes` reads it.
func TestCheckWithTheDevCatalog(t *testing.T) {
	catalog, err := opa.RoutesFromCatalog(readFile(t, "testdata/routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []opa.RouteRef{
		{Subject: "orders.v1.create", Params: []string{"amount", "customer", "note"}, Emit: "orders.v1.created"},
		{Subject: "orders.v1.get", Params: []string{"id"}},
		{Subject: "orders.v1.cancel", Params: []string{"id"}, Emit: "orders.v1.cancelled"},
		{Subject: "orders.v1.import", Params: []string{"amount", "customer", "note"}, Emit: "orders.v1.imported"},
	}
	if !slices.EqualFunc(catalog, want, func(a, b opa.RouteRef) bool {
		return a.Subject == b.Subject && slices.Equal(a.Params, b.Params) && a.Emit == b.Emit
	}) {
		t.Fatalf("RoutesFromCatalog = %+v, want %+v", catalog, want)
	}
	if errs := opa.Check(t.Context(), rulesDir, catalog); len(errs) != 0 {
		t.Errorf("Check = %v", errs)
	}
	for _, bad := range []string{"routes: [", "routes: []", "routes: [{params: {}}]"} {
		if _, err := opa.RoutesFromCatalog([]byte(bad)); err == nil {
			t.Errorf("RoutesFromCatalog(%q) succeeded", bad)
		}
	}
}

// TestParseInputAcceptsGoEncodedNils: inputs stored by json.Marshal carry null
// for empty groups, roles and tags; policies see empty arrays.
func TestParseInputAcceptsGoEncodedNils(t *testing.T) {
	in := &policy.Input{
		Principal: policy.Principal{Issuer: "https://idp", Subject: "s"},
		Route:     &policy.Route{Subject: "orders.v1.get", Kind: "statement", Target: "get_order", Database: "orders", Mode: "sync"},
	}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"groups":null`)) || !bytes.Contains(raw, []byte(`"tags":null`)) {
		t.Fatalf("encoding %s has no nulls to test", raw)
	}
	parsed, err := opa.ParseInput(raw)
	if err != nil {
		t.Fatalf("ParseInput(%s) = %v", raw, err)
	}
	d, err := openFS(t, rules.FS).Decide(t.Context(), policy.Call, parsed)
	if err != nil || d.Allow || !slices.Equal(d.Reasons, []string{"orders.v1.get is not granted to any of your groups (none)"}) {
		t.Errorf("Decide = %+v, %v", d, err)
	}
}
