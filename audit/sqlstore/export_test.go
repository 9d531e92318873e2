package sqlstore

import (
	"regexp"
	"testing"
)

var createTable = regexp.MustCompile(`CREATE TABLE (?:IF NOT EXISTS )?(\w+) \(`)

// Tables returns the tables the dialect's schema creates, read from its
// DDL, so that a test that drops them all cannot miss one.
func Tables(dialect string) []string {
	d, err := newDialect(dialect)
	if err != nil {
		panic(err)
	}
	var out []string
	for _, q := range d.schema {
		if m := createTable.FindStringSubmatch(q); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// SetCheckpointsPage makes Store.Checkpoints read n checkpoints at a time
// until the test ends.
func SetCheckpointsPage(t testing.TB, n int) {
	old := checkpointsPage
	checkpointsPage = n
	t.Cleanup(func() { checkpointsPage = old })
}
