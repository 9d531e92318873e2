// Package yamlstrict decodes the YAML files an operator writes (the
// daemon's configuration, the route catalog) strictly: a key the target
// does not define is an error, and the error names the key and its line in
// the file's terms instead of the Go type it was decoded into.
package yamlstrict

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// unknownField is yaml's message for a key the target struct lacks.
var unknownField = regexp.MustCompile(`^line (\d+): field (.+) not found in type \S+$`)

// wrongType is yaml's message for a value of the wrong type; it quotes the
// value's first characters, which may be a secret's and may span lines
// (hence (?s): "." must match a newline inside the quoted value too).
var wrongType = regexp.MustCompile("(?s)^(line \\d+: cannot unmarshal \\S+) `.*`( into .+)$")

// Decode decodes data into v, rejecting unknown keys. An empty document
// leaves v as it is. Every problem yaml reports is returned, one per line,
// without the values yaml quotes (a misplaced secret must not reach a log).
// hint, if not nil, may add advice to an unknown key's message (for
// example where a key that does not exist was meant as another).
func Decode(data []byte, v any, hint func(key string) string) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		m = wrongType.ReplaceAllString(m, "$1$2")
		if sub := unknownField.FindStringSubmatch(m); sub != nil {
			m = fmt.Sprintf("line %s: unknown key %q", sub[1], sub[2])
			if hint != nil {
				if h := hint(sub[2]); h != "" {
					m += " (" + h + ")"
				}
			}
		}
		msgs[i] = m
	}
	return errors.New(strings.Join(msgs, "\n"))
}
