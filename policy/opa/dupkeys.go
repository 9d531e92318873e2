package opa

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// duplicateKeyError is a key that a JSON object or YAML mapping of a data file
// defines twice. OPA's loader keeps the last value without a word, so a
// second `orders.v1.create:` block would silently replace the first one's
// limits and redactions: sqlgate refuses such files.
type duplicateKeyError struct {
	file        string
	line, first int    // lines of the repeated key and of its first definition
	key         string // the key as it appears in the document
	within      string // the data path of the object holding it
}

func (d *duplicateKeyError) Error() string {
	return fmt.Sprintf("%s:%d: key %q of %s is defined twice (first at line %d); only the last would be used", d.file, d.line, d.key, d.within, d.first)
}

// duplicateKeys checks every data file of the snapshot for duplicate keys, at
// any depth. A file that does not parse is reported by OPA's loader, with its
// messages; unparsable is the list of such files and why, which the caller
// reports when the loader accepts a file that this check cannot read, so
// that no file goes unchecked.
func (s *snapshot) duplicateKeys() (dups, unparsable []error) {
	for _, p := range s.paths() {
		var dup *duplicateKeyError
		var err error
		// Data is placed by directory: a/b/data.json at data.a.b.
		root := "data"
		if dir := path.Dir(p); dir != "." {
			for _, k := range strings.Split(dir, "/") {
				root = dataPath(root, k)
			}
		}
		switch path.Ext(p) {
		case ".json":
			dup, err = jsonDuplicateKey(s.files[p], root)
		case ".yaml", ".yml":
			dup, err = yamlDuplicateKey(s.files[p], root)
		default:
			continue
		}
		switch {
		case dup != nil:
			dup.file = p
			dups = append(dups, dup)
		case err != nil:
			unparsable = append(unparsable, fmt.Errorf("%s: %w", p, err))
		}
	}
	return dups, unparsable
}

// jsonFrame is an object or array being read by jsonDuplicateKey.
type jsonFrame struct {
	object  bool
	path    string         // data path of the object or array
	keys    map[string]int // object: line of each key read
	key     string         // object: the key whose value is being read
	wantKey bool           // object: the next token is a key
	index   int            // array: index of the next element
}

// jsonDuplicateKey reads a JSON document token by token and returns the
// first key that an object defines twice. Keys compare as encoding/json
// (and so OPA) decodes them: "\u0061" and "a" are the same key.
func jsonDuplicateKey(data []byte, root string) (*duplicateKeyError, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*jsonFrame
	line, counted := 1, 0 // the line at offset counted
	// childPath is the data path of the value about to be read.
	childPath := func() string {
		if len(stack) == 0 {
			return root
		}
		top := stack[len(stack)-1]
		if top.object {
			return dataPath(top.path, top.key)
		}
		return fmt.Sprintf("%s[%d]", top.path, top.index)
	}
	// valueDone moves the enclosing object or array past a complete value.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		if top := stack[len(stack)-1]; top.object {
			top.wantKey = true
		} else {
			top.index++
		}
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			if tok == json.Delim('}') {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			top := stack[n-1]
			key, ok := tok.(string)
			if !ok {
				return nil, fmt.Errorf("object key is %T", tok)
			}
			// A key ends on the line it starts on: JSON strings hold no
			// raw line breaks.
			off := int(dec.InputOffset())
			line += bytes.Count(data[counted:off], []byte{'\n'})
			counted = off
			if first, seen := top.keys[key]; seen {
				return &duplicateKeyError{line: line, first: first, key: key, within: top.path}, nil
			}
			top.keys[key] = line
			top.key, top.wantKey = key, false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &jsonFrame{object: true, path: childPath(), keys: map[string]int{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &jsonFrame{path: childPath()})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
			valueDone()
		default:
			valueDone()
		}
	}
}

// yamlDuplicateKey reads every document of a YAML stream and returns the
// first key that a mapping defines twice. Keys compare as OPA's YAML loader
// (go.yaml.in/yaml/v3 with last-wins de-duplication) compares them: by the
// string they become in JSON, so `1` and "1" are the same key. Merge keys
// (`<<`) are not keys; a key that overrides a merged one is YAML's
// documented way to override and is not reported.
func yamlDuplicateKey(data []byte, root string) (*duplicateKeyError, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return nil, nil
		} else if err != nil {
			return nil, err
		}
		if dup := yamlNodeDuplicate(&doc, root, map[*yaml.Node]bool{}); dup != nil {
			return dup, nil
		}
	}
}

func yamlNodeDuplicate(n *yaml.Node, at string, visited map[*yaml.Node]bool) *duplicateKeyError {
	if n == nil || visited[n] {
		return nil
	}
	visited[n] = true // anchors make the tree a graph: each node once
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if dup := yamlNodeDuplicate(c, at, visited); dup != nil {
				return dup
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if dup := yamlNodeDuplicate(c, fmt.Sprintf("%s[%d]", at, i), visited); dup != nil {
				return dup
			}
		}
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.AliasNode && k.Alias != nil {
				k = k.Alias
			}
			id, ok := yamlKey(k)
			if !ok {
				continue
			}
			if first, dup := seen[id]; dup {
				return &duplicateKeyError{line: n.Content[i].Line, first: first, key: id, within: at}
			}
			seen[id] = n.Content[i].Line
			if dup := yamlNodeDuplicate(v, dataPath(at, id), visited); dup != nil {
				return dup
			}
		}
	}
	return nil
}

// yamlKey is the JSON object key a YAML mapping key becomes in OPA's loader
// (as its internal/yaml keyString); ok is false for merge keys and keys that
// have none.
func yamlKey(k *yaml.Node) (string, bool) {
	if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
		return "", false
	}
	var v any
	if err := k.Decode(&v); err != nil {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case int:
		return strconv.Itoa(v), true
	case int64:
		return strconv.FormatInt(v, 10), true
	case uint64:
		return strconv.FormatUint(v, 10), true
	case float64:
		switch s := strconv.FormatFloat(v, 'g', -1, 32); s {
		case "+Inf":
			return ".inf", true
		case "-Inf":
			return "-.inf", true
		case "NaN":
			return ".nan", true
		default:
			return s, true
		}
	case bool:
		return strconv.FormatBool(v), true
	}
	return "", false
}
