package evidence_test

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit/evidence"
)

// TestCriteriaMatchTheDocs: the criteria the manifest gives each file are
// those of docs/evidence.md's mapping table (exceptions.csv said "CC4.1,
// CC7.2" in the manifest and "CC4.1, CC2.1, IPE" in the table).
func TestCriteriaMatchTheDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/evidence.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "## Mapping to the SOC 2 criteria")
	if !ok {
		t.Fatal("docs/evidence.md has no criteria mapping")
	}
	documented := map[string]string{}
	name := regexp.MustCompile("`([^`]+)`")
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.Contains(cells[1], "`") {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			documented[m[1]] = strings.TrimSpace(cells[2])
		}
	}
	store, vkey := buildLog(t)
	var buf bytes.Buffer
	m, err := evidence.Write(t.Context(), &buf, store, options(vkey))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range m.Files {
		if f.Criteria == "" {
			continue
		}
		n++
		base := f.Name[strings.LastIndex(f.Name, "/")+1:]
		if got, ok := documented[base]; !ok || got != f.Criteria {
			t.Errorf("%s: the manifest says %q, docs/evidence.md %q", f.Name, f.Criteria, got)
		}
	}
	if n < 7 {
		t.Errorf("%d files with criteria, want every CSV file", n)
	}
}
