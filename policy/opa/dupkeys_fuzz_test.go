package opa

import (
	"encoding/json"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzJSONDuplicateKey reads arbitrary JSON data files. It never panics and
// never refuses valid JSON for anything but a duplicate key. For valid JSON
// that is also plain YAML (printable ASCII without escapes), it finds a
// duplicate exactly when go.yaml.in/yaml/v3 (which refuses duplicate keys)
// does, and the YAML reader finds the same key.
func FuzzJSONDuplicateKey(f *testing.F) {
	for _, s := range []string{
		`{"a": 1, "b": {"a": 2}}`,
		`{"a": 1, "a": 2}`,
		`{"x": [{"deny": ["pat"], "deny": []}]}`,
		`{"a": {"b": 1}, "c": [[], {}, {"b": 1, "b": 1}]}`,
		`{"\u0061": 1, "a": 2}`,
		`[1, "a", {"a": 1}, {"a": 1}]`,
		`{"a": 1}{"a": 2}`,
		`{"a": 1,}`,
		`"x"`,
		``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dup, err := jsonDuplicateKey([]byte(s), "data")
		valid := json.Valid([]byte(s))
		if valid && err != nil {
			t.Fatalf("valid JSON %q: %v", s, err)
		}
		if dup != nil && (dup.line < 1 || dup.first < 1 || dup.first > dup.line || dup.line > strings.Count(s, "\n")+1) {
			t.Fatalf("%q: duplicate %+v has impossible lines", s, dup)
		}
		if !valid || !plainYAML(s) {
			return
		}
		var v any
		yerr := yaml.Unmarshal([]byte(s), &v)
		yamlDup := yerr != nil && strings.Contains(yerr.Error(), "already defined")
		if yerr != nil && !yamlDup {
			return // not YAML after all (e.g. too deep)
		}
		if (dup != nil) != yamlDup {
			t.Fatalf("%q: duplicate %v, yaml.v3: %v", s, dup, yerr)
		}
		ydup, err := yamlDuplicateKey([]byte(s), "data")
		if err != nil {
			t.Fatalf("%q: yaml.v3 decodes it, the YAML reader fails: %v", s, err)
		}
		if (dup == nil) != (ydup == nil) || dup != nil && (dup.key != ydup.key || dup.within != ydup.within || dup.line != ydup.line) {
			t.Fatalf("%q: JSON reader %v, YAML reader %v", s, dup, ydup)
		}
	})
}

// plainYAML reports whether JSON text reads the same as YAML: printable
// ASCII, spaces and line feeds, no escapes (YAML and JSON escapes differ).
func plainYAML(s string) bool {
	for _, c := range []byte(s) {
		if c != '\n' && c != ' ' && (c < 0x21 || c > 0x7e) || c == '\\' {
			return false
		}
	}
	return true
}
