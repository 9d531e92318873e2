// Package sqliteuri writes the "file:" URI that modernc.org/sqlite opens a
// database file by. The driver hands the whole DSN to SQLite as a URI
// (SQLITE_OPEN_URI), where '?' starts the query, '#' a fragment and '%' an
// escape: a file path holding one of them named another file, or a path cut
// short, unless it is escaped.
package sqliteuri

import "strings"

// escaper escapes what a URI path may not hold as is; SQLite decodes %HH in
// the path.
var escaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// File returns "file:" and path escaped for a URI, followed by "?" and
// query when query is not empty.
func File(path, query string) string {
	u := "file:" + escaper.Replace(path)
	if query != "" {
		u += "?" + query
	}
	return u
}
