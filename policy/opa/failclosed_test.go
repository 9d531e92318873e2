package opa_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
)

// blockContractors denies members of contractors; with groups misspelt the
// rule would never hold.
const blockContractors = `package sqlgate.call

default allow := false

_blocked if "contractors" in input.principal.%s

allow if not _blocked
`

func contractorCall() *policy.Input {
	in := salesCreate(10)
	in.Principal.Groups = []string{"contractors"}
	return in
}

// TestInputTypoIsRefused: a misspelt input field is a type error against the
// input schema, so the engine refuses the policy at every load, as `policy
// check` does. Compiled without the schema, the deny rule never held and
// the contractor's call was allowed ("policy loaded").
func TestInputTypoIsRefused(t *testing.T) {
	typo := fstest.MapFS{"call.rego": {Data: fmt.Appendf(nil, blockContractors, "gruops")}}
	_, err := opa.Open(t.Context(), opa.Config{FS: typo, Logger: testLogger(t)})
	if !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), "rego_type_error: undefined ref: input.principal.gruops") {
		t.Fatalf("Open(typo) = %v, want ErrInvalidPolicy with the type error", err)
	}

	// A reload to it keeps the last good policy serving.
	dir := t.TempDir()
	call := filepath.Join(dir, "call.rego")
	writeFile(t, call, fmt.Sprintf(blockContractors, "groups"))
	e, err := opa.Open(t.Context(), opa.Config{Dir: dir, EvalTimeout: testEvalTimeout, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	good := e.Revision()
	writeFile(t, call, fmt.Sprintf(blockContractors, "gruops"))
	if err := e.Reload(t.Context()); !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), "input.principal.gruops") {
		t.Fatalf("Reload(typo) = %v, want ErrInvalidPolicy with the type error", err)
	}
	if st := e.Status(); st.Revision != good || st.LastError == nil {
		t.Errorf("Status after the refused reload = %+v, want %s serving and the error", st, good)
	}
	if d, err := e.Decide(t.Context(), policy.Call, contractorCall()); err != nil || d.Allow || d.Revision != good {
		t.Errorf("Decide(contractor) = %+v, %v; want the last good policy's deny", d, err)
	}

	// The offline tools compile as the engine does.
	if _, err := opa.Eval(t.Context(), dir, policy.Call, readFile(t, "testdata/inputs/sales_create.json"), false, io.Discard); !errors.Is(err, opa.ErrInvalidPolicy) {
		t.Errorf("Eval(typo) = %v, want ErrInvalidPolicy", err)
	}
}

// quantityPolicy allows a call unless the unit price is too high: with a
// built-in's error taken as undefined, `not _too_expensive` held for qty 0
// (division by zero) and qty "x" (a string divided), and allowed.
const quantityPolicy = `package sqlgate.call

default allow := false

_too_expensive if input.params.total / input.params.qty > 100

allow if not _too_expensive
`

func quantityCall(qty any) *policy.Input {
	in := salesCreate(nil)
	in.Params = map[string]any{"total": 1000, "qty": qty}
	return in
}

// TestBuiltinErrorIsADeny: a built-in's error ends the evaluation with a deny
// wrapping ErrEvaluation, in service, in `policy eval` and in a replay, as
// docs/policy.md §1 says of every evaluation error.
func TestBuiltinErrorIsADeny(t *testing.T) {
	const reason = "policy evaluation failed: a built-in function failed"
	e := openFS(t, fstest.MapFS{"call.rego": {Data: []byte(quantityPolicy)}})
	if d, err := e.Decide(t.Context(), policy.Call, quantityCall(20)); err != nil || !d.Allow {
		t.Fatalf("Decide(qty 20) = %+v, %v; want an allow", d, err)
	}
	for _, tc := range []struct {
		name string
		qty  any
		want string
	}{
		{"zero", 0, "eval_builtin_error: div: divide by zero"},
		{"string", "x", "eval_type_error: div: operand 2 must be number but got string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Decide(t.Context(), policy.Call, quantityCall(tc.qty))
			if !errors.Is(err, policy.ErrEvaluation) || !strings.Contains(err.Error(), "call.rego:5: "+tc.want) {
				t.Errorf("Decide error = %v, want ErrEvaluation with %q", err, tc.want)
			}
			if d.Allow || !slices.Equal(d.Reasons, []string{reason}) || d.Revision == "" || d.ID == "" {
				t.Errorf("Decide = %+v, want a deny with the reason %q", d, reason)
			}
		})
	}

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "call.rego"), quantityPolicy)
	in, err := json.Marshal(quantityCall(0))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	d, err := opa.Eval(t.Context(), dir, policy.Call, in, false, &out)
	if !errors.Is(err, policy.ErrEvaluation) || d.Allow || !strings.Contains(out.String(), "divide by zero") {
		t.Errorf("Eval(qty 0) = %+v, %v; want a deny wrapping ErrEvaluation, printed:\n%s", d, err, out.String())
	}

	// A replay of an allowed qty 0 call (as recorded by a policy without
	// the limit) finds that the candidate denies it.
	candidate, err := opa.Open(t.Context(), opa.Config{Dir: dir, EvalTimeout: testEvalTimeout, Now: func() time.Time { return monday10 }})
	if err != nil {
		t.Fatal(err)
	}
	res, err := opa.Replay(t.Context(), candidate, items([]opa.ReplayItem{
		{Entry: policy.Call, DecisionID: "d-1", Allow: true, Revision: "old", Input: in, Redacted: []string{}},
	}, nil), opa.ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 1 || res.Changes[0].Direction() != "allow->deny" || !strings.Contains(res.Changes[0].Error, "divide by zero") {
		t.Errorf("Replay = %+v, want the qty 0 call to flip to a deny with the error", res)
	}
}

// TestServedModulesCompileAlone: a served module that calls a function
// defined only in a test module passes its tests, but the engine, which does
// not serve tests, refuses it: `policy test` and `policy check` say so.
func TestServedModulesCompileAlone(t *testing.T) {
	const dir = "testdata/check/testfunc"
	_, err := opa.Open(t.Context(), opa.Config{Dir: dir})
	if !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), "undefined function data.sqlgate.fixtures.trusted") {
		t.Fatalf("Open = %v, want the undefined function refused", err)
	}
	var out bytes.Buffer
	passed, err := opa.Test(t.Context(), dir, opa.TestOptions{}, &out)
	if passed || !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), "as served (without the *_test.rego modules)") ||
		!strings.Contains(err.Error(), "undefined function data.sqlgate.fixtures.trusted") {
		t.Errorf("Test = %v, %v (output %q); want the served modules refused", passed, err, out.String())
	}
}

// TestToolsBoundTheLint: `policy check` and `policy eval` bound the lint as
// the engine does (MinLintTimeout) and say so, instead of running a lint the
// engine would refuse for as long as it takes (over a minute here).
func TestToolsBoundTheLint(t *testing.T) {
	const dir = "testdata/policies/slowlint"
	want := "the lint took longer than allowed"
	errs := opa.Check(t.Context(), dir, nil)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "data.sqlgate.lint.problems: "+want) || !strings.Contains(errs[0].Error(), opa.MinLintTimeout.String()) {
		t.Errorf("Check = %v, want the lint refused after %s", errs, opa.MinLintTimeout)
	}
	_, err := opa.Eval(t.Context(), dir, policy.Call, readFile(t, "testdata/inputs/sales_create.json"), false, io.Discard)
	if !errors.Is(err, opa.ErrInvalidPolicy) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), opa.MinLintTimeout.String()) {
		t.Errorf("Eval = %v, want the lint refused after %s", err, opa.MinLintTimeout)
	}
}
