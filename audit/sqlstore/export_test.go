package sqlstore

import "regexp"

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
