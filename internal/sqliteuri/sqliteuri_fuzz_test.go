package sqliteuri_test

import (
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/internal/sqliteuri"
)

// sqliteOpens reads dsn as modernc.org/sqlite and SQLite read it: the
// driver takes its own parameters from what follows the first '?', and
// SQLite (sqlite3ParseUri, SQLITE_OPEN_URI, built without
// SQLITE_ALLOW_URI_AUTHORITY) opens the "file:" URI's path: after "//" an
// authority that must be empty or "localhost", then the text up to the
// first '?' or '#', %HH decoded ("%00" ends it). ok is false when SQLite
// refuses the URI.
func sqliteOpens(dsn string) (path, query string, ok bool) {
	if i := strings.IndexByte(dsn, '?'); i >= 1 {
		query = dsn[i+1:]
	}
	rest, found := strings.CutPrefix(dsn, "file:")
	if !found {
		return "", query, false
	}
	if strings.HasPrefix(rest, "//") {
		auth := rest[2:]
		end := strings.IndexByte(auth, '/')
		if end < 0 {
			end = len(auth)
		}
		if end != 0 && auth[:end] != "localhost" {
			return "", query, false // "invalid uri authority"
		}
		rest = auth[end:]
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	var b strings.Builder
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if c == '%' && i+2 < len(rest) && isHex(rest[i+1]) && isHex(rest[i+2]) {
			c = unhex(rest[i+1])<<4 | unhex(rest[i+2])
			i += 2
			if c == 0 {
				break
			}
		}
		b.WriteByte(c)
	}
	return b.String(), query, true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// FuzzFile: the "file:" URI File writes for a database path names that
// path to SQLite, whatever characters it holds (a path cannot hold NUL),
// and the driver finds exactly the query given.
func FuzzFile(f *testing.F) {
	for _, p := range []string{
		"/var/lib/sqlgate/orders.db", "orders.db", "./data/a b.db", "/tmp/#00/a.db", "/tmp/what?/b.db",
		"/tmp/100%25/c d.db", "%", "%%41", "a%2", "#", "?", "/x/localhost/y.db", "//srv/x.db", "//localhost/tmp/a.db", "C:\\data\\x.db", "/ünï/ć.db",
	} {
		f.Add(p, "_pragma=busy_timeout(1000)&_txlock=immediate")
		f.Add(p, "")
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		if path == "" || strings.ContainsRune(path, 0) || strings.ContainsRune(query, '#') {
			return // no file has such a path; sqlgate's queries are url.Values.Encode()d
		}
		u := sqliteuri.File(path, query)
		got, gotQuery, ok := sqliteOpens(u)
		if !ok || got != path {
			t.Fatalf("File(%q) = %q, which SQLite opens as %q (refused: %v)", path, u, got, !ok)
		}
		if gotQuery != query {
			t.Fatalf("File(%q, %q) = %q: the driver reads the query %q", path, query, u, gotQuery)
		}
	})
}
