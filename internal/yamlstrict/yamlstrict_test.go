package yamlstrict_test

import (
	"testing"

	"github.com/sqlgate/sqlgate/internal/yamlstrict"
)

type inner struct {
	Listen string `yaml:"listen"`
}

type config struct {
	HTTP  inner `yaml:"http"`
	Count int   `yaml:"count"`
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"ok", "http:\n  listen: :80\ncount: 2\n", ""},
		{"empty", "", ""},
		{
			"unknown keys, all of them", "http:\n  listen: :80\n  bogus: 1\nextra: x\n",
			"line 3: unknown key \"bogus\"\nline 4: unknown key \"extra\"",
		},
		{"wrong type, value not repeated", "count: hunter2-secret\n", "line 1: cannot unmarshal !!str into int"},
		// yaml quotes a value's first characters with its newlines: a
		// multi-line secret in the wrong place is not repeated either.
		{"wrong_type_multi_line_value_not_repeated", "count: \"hu\\nnter2-secret\"\n", "line 1: cannot unmarshal !!str into int"},
		{"wrong_type_block_scalar_not_repeated", "count: |\n  h\n  unter2\n", "line 1: cannot unmarshal !!str into int"},
		{"not yaml", "http: [\n", "yaml: line 1: did not find expected node content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c config
			err := yamlstrict.Decode([]byte(tc.doc), &c, nil)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Decode(%q) = %q, want %q", tc.doc, got, tc.want)
			}
		})
	}
}

func TestDecodeHint(t *testing.T) {
	var c config
	hint := func(key string) string {
		if key == "listn" {
			return "did you mean listen?"
		}
		return ""
	}
	err := yamlstrict.Decode([]byte("http:\n  listn: :80\ncolor: red\n"), &c, hint)
	want := "line 2: unknown key \"listn\" (did you mean listen?)\nline 3: unknown key \"color\""
	if err == nil || err.Error() != want {
		t.Errorf("Decode = %v, want %q", err, want)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("http:\n  listen: :80\n  bogus: 1\n"))
	f.Add([]byte("count: [1, 2]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var c config
		_ = yamlstrict.Decode(data, &c, func(string) string { return "hint" }) // must not panic
	})
}
