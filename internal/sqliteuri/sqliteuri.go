// Package sqliteuri writes the "file:" URI that modernc.org/sqlite opens a
// database file by. The driver hands the whole DSN to SQLite as a URI
// (SQLITE_OPEN_URI), where '?' starts the query, '#' a fragment and '%' an
// escape: a file path holding one of them named another file, or a path cut
// short, unless it is escaped. After "file://" SQLite reads an authority up
// to the next '/' (only "" or "localhost" allowed), so an absolute path is
// written after "file://" with an empty authority: "//srv/x.db" is then the
// path "//srv/x.db", not the authority "srv".
package sqliteuri

import "strings"

// escaper escapes what a URI path may not hold as is; SQLite decodes %HH in
// the path.
var escaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")

// File returns "file:" and path escaped for a URI ("file://" and the path
// when it is absolute, so that a leading "//" is never read as an
// authority), followed by "?" and query when query is not empty.
func File(path, query string) string {
	u := "file:" + escaper.Replace(path)
	if strings.HasPrefix(path, "/") {
		u = "file://" + escaper.Replace(path)
	}
	if query != "" {
		u += "?" + query
	}
	return u
}
