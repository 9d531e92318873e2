package opa

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sqlgate/sqlgate/policy"
)

// DecisionKeys lists, for each entry point, the rules of its package that form
// the decision document: `allow`, `reasons`, `deny` (a set of messages that
// refuses the request whatever allow says), for NATS `deny_pub` (subjects
// removed from pub whatever rule added them), and the obligations the broker
// reads for that entry. Any other rule of an entry package must be a helper
// whose name starts with an underscore; anything else fails to load.
var DecisionKeys = map[policy.Entry][]string{
	policy.Call:           {"allow", "reasons", "deny", "max_rows", "timeout_ms", "redact_params"},
	policy.NATS:           {"allow", "reasons", "deny", "deny_pub", "ttl", "pub", "sub"},
	policy.SQLCredentials: {"allow", "reasons", "deny", "ttl"},
}

// entryPath returns the package path of an entry point, e.g. data.sqlgate.call.
func entryPath(e policy.Entry) ast.Ref {
	return ast.Ref{ast.DefaultRootDocument, ast.StringTerm("sqlgate"), ast.StringTerm(string(e))}
}

// location formats a source location as file:row.
func location(loc *ast.Location) string {
	if loc == nil {
		return "-"
	}
	return fmt.Sprintf("%s:%d", loc.File, loc.Row)
}

// checkContract inspects the served modules and data statically against the
// decision-document contract and returns, per entry, the decision keys the
// policy defines (sorted). It reports every violation.
func checkContract(modules map[string]*ast.Module, data map[string]any) (map[policy.Entry][]string, []error) {
	var errs []error
	defined := map[policy.Entry]map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		m := modules[name]
		for _, e := range policy.Entries {
			ep := entryPath(e)
			switch {
			case m.Package.Path.Equal(ep):
				if defined[e] == nil {
					defined[e] = map[string]bool{}
				}
				for _, r := range m.Rules {
					if key, err := decisionRule(e, r); err != nil {
						errs = append(errs, err)
					} else if key != "" {
						defined[e][key] = true
					}
				}
			case m.Package.Path.HasPrefix(ep):
				errs = append(errs, fmt.Errorf("%s: package %s is inside the decision document of %s: put helper packages elsewhere, e.g. under data.sqlgate.lib",
					location(m.Package.Location), m.Package.Path, ep))
			case ep.HasPrefix(m.Package.Path):
				// A parent package (data.sqlgate) reaching into the entry with
				// a ref head (call.max_rows := 10) would be part of the
				// decision document without being checked or queried.
				for _, r := range m.Rules {
					if path := m.Package.Path.Extend(r.Head.Ref()); overlaps(path, ep) {
						errs = append(errs, fmt.Errorf("%s: rule %s of package %s defines %s, inside the decision document of %s: define decision keys in package %s itself",
							location(r.Location), r.Head.Ref(), m.Package.Path, path, ep, strings.TrimPrefix(ep.String(), "data.")))
					}
				}
			}
		}
	}
	if root, ok := data["sqlgate"].(map[string]any); ok {
		for _, e := range policy.Entries {
			if _, ok := root[string(e)]; ok {
				errs = append(errs, fmt.Errorf("data: a data file defines %s, which is the decision document of that entry point: move the data elsewhere, e.g. under data.sqlgate.config", entryPath(e)))
			}
		}
	}
	keys := map[policy.Entry][]string{}
	for _, e := range policy.Entries {
		set, ok := defined[e]
		if !ok {
			continue
		}
		if !set["allow"] {
			errs = append(errs, fmt.Errorf("package %s defines no allow rule: every decision would be undefined", entryPath(e)))
			continue
		}
		keys[e] = slices.Sorted(maps.Keys(set))
	}
	if len(defined) == 0 {
		names := make([]string, len(policy.Entries))
		for i, e := range policy.Entries {
			names[i] = entryPath(e).String()
		}
		errs = append(errs, fmt.Errorf("no entry point: the policy defines none of %s", strings.Join(names, ", ")))
	}
	return keys, errs
}

// overlaps reports whether the document at path (which may hold variables)
// can be, contain or lie inside the document at ground ref ep.
func overlaps(path, ep ast.Ref) bool {
	for i := range min(len(path), len(ep)) {
		if path[i].IsGround() && !path[i].Equal(ep[i]) {
			return false
		}
	}
	return true
}

// decisionRule classifies one rule of an entry package: it returns the
// decision key it defines, "" for a helper, or an error.
func decisionRule(e policy.Entry, r *ast.Rule) (string, error) {
	ref := r.Head.Ref()
	name := ref[0].Value.String()
	if strings.HasPrefix(name, "_") {
		return "", nil
	}
	allowed := DecisionKeys[e]
	if !slices.Contains(allowed, name) {
		hint := "helper rules start with an underscore or live in another package"
		if strings.HasPrefix(name, "test_") || strings.HasPrefix(name, "todo_test_") {
			hint = "tests belong in *_test.rego files"
		}
		return "", fmt.Errorf("%s: unknown decision key %q in %s (allowed: %s; %s)",
			location(r.Location), name, entryPath(e), strings.Join(allowed, ", "), hint)
	}
	if len(ref) > 1 {
		return "", fmt.Errorf("%s: decision key %s of %s must be defined as a whole, not as %s", location(r.Location), name, entryPath(e), ref)
	}
	if len(r.Head.Args) > 0 {
		return "", fmt.Errorf("%s: decision key %s of %s must be a value, not a function", location(r.Location), name, entryPath(e))
	}
	return name, nil
}

// decisionQuery returns the query that evaluates the decision document of an
// entry: one binding, "decision", to an array with an element per key (in the
// order of keys), each an array holding the key's value or nothing when it is
// undefined for the input. (One expression and one binding: rego allocates
// per expression and binding of the query.)
func decisionQuery(e policy.Entry, keys []string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("[x%d | x%d := %s.%s]", i, i, entryPath(e), k)
	}
	return "decision := [" + strings.Join(parts, ", ") + "]"
}
