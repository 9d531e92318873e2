package opa_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// TestEffectiveMatchesAsTheEngine: the library's
// data.sqlgate.lib.effective, through which policy tests assert what the
// engine decides, matches deny_pub patterns to pub subjects as the engine
// does, for every pattern and subject of up to three tokens.
func TestEffectiveMatchesAsTheEngine(t *testing.T) {
	src, err := fs.ReadFile(rules.FS, "sqlgate/lib/effective.rego")
	if err != nil {
		t.Fatal(err)
	}
	patterns := subjects([]string{"a", "b", "*", ">", ""}, 3)
	subs := subjects([]string{"a", "b", ""}, 3)
	rs, err := rego.New(
		rego.Query(`{[p, s] | some p in input.patterns; some s in input.subjects; data.sqlgate.lib.effective.subject_matches(p, s)}`),
		rego.Module("effective.rego", string(src)),
		rego.Input(map[string]any{"patterns": patterns, "subjects": subs}),
	).Eval(t.Context())
	if err != nil || len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("Eval = %v, %v", rs, err)
	}
	matched := map[[2]string]bool{}
	for _, pair := range rs[0].Expressions[0].Value.([]any) {
		p := pair.([]any)
		matched[[2]string{p[0].(string), p[1].(string)}] = true
	}
	for _, p := range patterns {
		for _, s := range subs {
			if want := opa.SubjectMatches(p, s); matched[[2]string{p, s}] != want {
				t.Errorf("effective.subject_matches(%q, %q) = %v, the engine says %v", p, s, !want, want)
			}
		}
	}
}

// subjects are the subjects of 1 to n tokens made of tokens.
func subjects(tokens []string, n int) []string {
	var all []string
	level := [][]string{nil}
	for range n {
		var next [][]string
		for _, prefix := range level {
			for _, tok := range tokens {
				s := append(append([]string(nil), prefix...), tok)
				next = append(next, s)
				all = append(all, strings.Join(s, "."))
			}
		}
		level = next
	}
	return all
}
