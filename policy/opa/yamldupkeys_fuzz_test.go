package opa

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/loader"
	"go.yaml.in/yaml/v3"
)

// yamlPairs counts the key/value pairs of every mapping of a YAML
// document as it decodes (aliases expanded); ok is false when the document
// holds a merge key or an anchor (whose keys OPA merges or shares) or
// expands past limit.
func yamlPairs(n *yaml.Node, limit int) (pairs int, ok bool) {
	if n == nil {
		return 0, true
	}
	if n.Anchor != "" || n.Kind == yaml.AliasNode {
		return 0, false
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Tag == "!!merge" || k.Kind != yaml.ScalarNode {
				return 0, false
			}
			pairs++
		}
	}
	for _, c := range n.Content {
		p, ok := yamlPairs(c, limit-pairs)
		if !ok {
			return 0, false
		}
		pairs += p
	}
	return pairs, pairs <= limit
}

// jsonPairs counts the members of every object of a decoded JSON value.
func jsonPairs(v any) int {
	switch v := v.(type) {
	case map[string]any:
		n := len(v)
		for _, x := range v {
			n += jsonPairs(x)
		}
		return n
	case []any:
		n := 0
		for _, x := range v {
			n += jsonPairs(x)
		}
		return n
	}
	return 0
}

// FuzzYAMLDuplicateKey reads arbitrary YAML data files (data.yaml of a
// policy bundle), as OPA's loader, which keeps the last of two equal keys
// without a word, reads them. For a one-document file without anchors or
// merge keys that OPA loads: a file the check passes loses no key in
// OPA's loader (every mapping pair is a member of the data), and a file
// it refuses would have lost one there (a key it calls a duplicate is one
// OPA folds with another); a reported duplicate names a line of the file
// after its first definition; nothing panics.
func FuzzYAMLDuplicateKey(f *testing.F) {
	for _, s := range []string{
		"orders.v1.create:\n  max_rows: 10\norders.v1.create:\n  max_rows: 1000\n",
		"a: 1\nb:\n  a: 2\n", "1: x\n\"1\": y\n", "true: x\n\"true\": y\n", "0x10: a\n16: b\n", "1.0: a\n1: b\n",
		"x: [{a: 1, a: 2}]\n", "? [a]\n: 1\n", "a: &x {b: 1}\nc: *x\n", "base: &b {k: 1}\nd:\n  <<: *b\n  k: 2\n",
		"---\na: 1\n---\na: 1\na: 2\n", "a: 2023-01-01\n\"a\": 1\n", "~: 1\nnull: 2\n", ".inf: 1\n+.inf: 2\n", "a: 1\n  b: 2\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dup, err := yamlDuplicateKey([]byte(s), "data")
		if dup != nil {
			lines := bytes.Count([]byte(s), []byte("\n")) + 1
			if dup.line < 1 || dup.first < 1 || dup.first > dup.line || dup.line > lines {
				t.Fatalf("%q: duplicate %+v has impossible lines", s, dup)
			}
		}
		dec := yaml.NewDecoder(bytes.NewReader([]byte(s)))
		var doc, next yaml.Node
		if dec.Decode(&doc) != nil || !errors.Is(dec.Decode(&next), io.EOF) {
			return // no document, more than one, or none that parses
		}
		pairs, ok := yamlPairs(&doc, 10000)
		if !ok {
			return
		}
		res, lerr := loader.NewFileLoader().WithFS(fstest.MapFS{"data.yaml": {Data: []byte(s)}}).All([]string{"."})
		if lerr != nil {
			return // OPA refuses the file itself
		}
		if err != nil {
			t.Fatalf("%q: OPA loads it, the duplicate check cannot read it: %v", s, err)
		}
		loaded := jsonPairs(res.Documents)
		switch {
		case dup == nil && loaded < pairs:
			t.Fatalf("%q: passes the check, but OPA loads %d of its %d keys: %v", s, loaded, pairs, res.Documents)
		case dup != nil && loaded >= pairs:
			t.Fatalf("%q: refused for %v, but OPA loads all of its %d keys: %v", s, dup, pairs, res.Documents)
		}
	})
}
