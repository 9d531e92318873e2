package main

import (
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageDocs checks that every package has exactly one package comment
// and that it starts the way godoc expects ("Package x ..." or
// "Command x ..."), so `go doc` explains each package's place.
func TestPackageDocs(t *testing.T) {
	if testing.Short() {
		t.Skip("go list of every package: skipped with -short")
	}
	out, err := exec.Command("go", "list", "-f", "{{.Dir}} {{.Name}} {{join .GoFiles \",\"}}", "github.com/sqlgate/sqlgate/...").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		dir, name, files := f[0], f[1], strings.Split(f[2], ",")
		var docs []string
		for _, file := range files {
			af, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, file), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil {
				docs = append(docs, file)
				text := af.Doc.Text()
				want := "Package " + name + " "
				if name == "main" {
					want = "Command " + filepath.Base(dir) + " "
				}
				if !strings.HasPrefix(text, want) {
					t.Errorf("%s/%s: package comment starts %q, want %q", dir, file, clipText(text), want)
				}
			}
		}
		if len(docs) != 1 {
			t.Errorf("%s: %d package comments (%v), want exactly one", dir, len(docs), docs)
		}
	}
}

func clipText(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}
