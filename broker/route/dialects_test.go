package route_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/broker/route"
)

// The lexers below are written apart from ParseStatement, after each
// engine's tokenizer (PostgreSQL's scan.l, SQLite's tokenize.c, SQL
// Server's documented rules), and read the text each database receives:
// the statement rendered with its bind markers. They report the ';' they
// read outside literals and comments, the bind markers they read as
// parameters, and whether they could read the text to its end.

// dialectReadsOne checks that every dialect reads an accepted statement,
// rendered for it, as one statement (no ';' outside literals and comments:
// a final ';' is dropped when rendering) with the placeholders where
// ParseStatement found them.
func dialectReadsOne(t *testing.T, sql string, st *route.Statement) {
	t.Helper()
	// Markers that the text cannot hold already.
	compare := !strings.Contains(sql, "900") && !strings.Contains(strings.ToLower(sql), "sqlgatefuzz")
	for _, d := range []struct {
		name   string
		marker func(i int) string
		read   func(string) (semis []int, params []string, ok bool)
	}{
		{"PostgreSQL", func(i int) string { return "$" + strconv.Itoa(900000+i) }, refPostgres},
		{"SQLite", func(i int) string { return "?" + strconv.Itoa(900000+i) }, refSQLite},
		{"SQL Server", func(i int) string { return "@sqlgatefuzz" + strconv.Itoa(i) }, func(s string) ([]int, []string, bool) { return refSQLServer(s, false) }},
		{"SQL Server, if \\r ends a -- comment", func(i int) string { return "@sqlgatefuzz" + strconv.Itoa(i) }, func(s string) ([]int, []string, bool) { return refSQLServer(s, true) }},
	} {
		text := st.Render(func(i int, _ string) string { return d.marker(i) })
		semis, params, ok := d.read(text)
		if !ok {
			t.Fatalf("%s cannot read %q, rendered from accepted %q", d.name, text, sql)
		}
		if len(semis) > 0 {
			t.Fatalf("%s reads a second statement after the ';' at offset %d of %q, rendered from accepted %q", d.name, semis[0], text, sql)
		}
		if !compare {
			continue
		}
		var got, want []string
		for _, p := range params {
			if strings.HasPrefix(p, d.marker(0)[:4]) {
				got = append(got, p)
			}
		}
		for i := range st.Names() {
			want = append(want, d.marker(i))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s reads the bind markers %q in %q, rendered from accepted %q, want %q", d.name, got, text, sql, want)
		}
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// quoted returns the end of s[i:], a literal opened by s[i] and closed by
// closeCh, a doubled closeCh standing for itself if doubled, or -1.
func quoted(s string, i int, closeCh byte, doubled bool) int {
	for j := i + 1; j < len(s); j++ {
		if s[j] != closeCh {
			continue
		}
		if doubled && j+1 < len(s) && s[j+1] == closeCh {
			j++
			continue
		}
		return j + 1
	}
	return -1
}

// nestedComment returns the end of the nested block comment at s[i:], or -1.
func nestedComment(s string, i int) int {
	depth := 0
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], "/*"):
			depth++
			i += 2
		case strings.HasPrefix(s[i:], "*/"):
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return -1
}

// refPostgres reads s as PostgreSQL 16's lexer does (standard conforming
// strings).
func refPostgres(s string) (semis []int, params []string, ok bool) {
	identStart := func(c byte) bool { return isLetter(c) || c == '_' || c >= 0x80 }
	identCont := func(c byte) bool { return identStart(c) || isDigit(c) || c == '$' }
	for i := 0; i < len(s); {
		c := s[i]
		next := byte(0)
		if i+1 < len(s) {
			next = s[i+1]
		}
		switch {
		case c == '-' && next == '-':
			for i < len(s) && s[i] != '\n' && s[i] != '\r' {
				i++
			}
		case c == '/' && next == '*':
			if i = nestedComment(s, i); i < 0 {
				return nil, nil, false
			}
		case (c == 'E' || c == 'e') && next == '\'':
			j := i + 2
			for ; ; j++ {
				if j >= len(s) {
					return nil, nil, false
				}
				if s[j] == '\\' {
					j++
					continue
				}
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						j++
						continue
					}
					break
				}
			}
			i = j + 1
		case c == '\'' || c == '"':
			if i = quoted(s, i, c, true); i < 0 {
				return nil, nil, false
			}
		case identStart(c):
			for i < len(s) && identCont(s[i]) {
				i++
			}
		case isDigit(c) || (c == '.' && isDigit(next)):
			for i < len(s) && (isDigit(s[i]) || s[i] == '.' || s[i] == '_') {
				i++
			}
			if i+1 < len(s) && (s[i] == 'e' || s[i] == 'E') && (isDigit(s[i+1]) || (i+2 < len(s) && (s[i+1] == '+' || s[i+1] == '-') && isDigit(s[i+2]))) {
				for i += 2; i < len(s) && isDigit(s[i]); i++ {
				}
			}
			if i < len(s) && identStart(s[i]) { // trailing junk: one error token
				for i < len(s) && identCont(s[i]) {
					i++
				}
			}
		case c == '$' && isDigit(next):
			j := i + 1
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			params = append(params, s[i:j])
			i = j
			if i < len(s) && identStart(s[i]) { // trailing junk
				for i < len(s) && identCont(s[i]) {
					i++
				}
			}
		case c == '$':
			j := i + 1
			if j < len(s) && identStart(s[j]) {
				for j++; j < len(s) && (identStart(s[j]) || isDigit(s[j])); j++ {
				}
			}
			if j < len(s) && s[j] == '$' {
				delim := s[i : j+1]
				k := strings.Index(s[j+1:], delim)
				if k < 0 {
					return nil, nil, false
				}
				i = j + 1 + k + len(delim)
			} else {
				i++
			}
		case c == ';':
			semis = append(semis, i)
			i++
		default:
			i++
		}
	}
	return semis, params, true
}

// refSQLite reads s as SQLite's sqlite3GetToken does.
func refSQLite(s string) (semis []int, params []string, ok bool) {
	idChar := func(c byte) bool { return isLetter(c) || isDigit(c) || c == '_' || c == '$' || c >= 0x80 }
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == '\v' }
	for i := 0; i < len(s); {
		c := s[i]
		next := byte(0)
		if i+1 < len(s) {
			next = s[i+1]
		}
		switch {
		case c == '-' && next == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '/' && next == '*' && i+2 < len(s):
			if k := strings.Index(s[i+2:], "*/"); k >= 0 {
				i += 2 + k + 2
			} else {
				i = len(s) // SQLite: a comment to the end of the input
			}
		case c == '\'' || c == '"' || c == '`':
			if i = quoted(s, i, c, true); i < 0 {
				return nil, nil, false
			}
		case c == '[':
			k := strings.IndexByte(s[i:], ']')
			if k < 0 {
				return nil, nil, false
			}
			i += k + 1
		case c == '?':
			j := i + 1
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			params = append(params, s[i:j])
			i = j
		case c == '$' || c == '@' || c == '#' || c == ':':
			n, j := 0, i+1
		variable:
			for j < len(s) {
				switch d := s[j]; {
				case idChar(d):
					n++
					j++
				case d == '(' && n > 0:
					for j++; j < len(s) && !space(s[j]) && s[j] != ')'; j++ {
					}
					if j < len(s) && s[j] == ')' {
						j++
					}
					break variable
				case d == ':' && j+1 < len(s) && s[j+1] == ':':
					j += 2
				default:
					break variable
				}
			}
			params = append(params, s[i:j])
			i = j
		case isDigit(c) || (c == '.' && isDigit(next)):
			hex := func(c byte) bool { return strings.IndexByte("0123456789abcdefABCDEF", c) >= 0 }
			if c == '0' && (next == 'x' || next == 'X') && i+2 < len(s) && hex(s[i+2]) {
				for i += 2; i < len(s) && (hex(s[i]) || s[i] == '_'); i++ {
				}
			} else {
				for i < len(s) && (isDigit(s[i]) || s[i] == '_') {
					i++
				}
				if i < len(s) && s[i] == '.' {
					for i++; i < len(s) && (isDigit(s[i]) || s[i] == '_'); i++ {
					}
				}
				if i+1 < len(s) && (s[i] == 'e' || s[i] == 'E') && (isDigit(s[i+1]) || (i+2 < len(s) && (s[i+1] == '+' || s[i+1] == '-') && isDigit(s[i+2]))) {
					for i += 2; i < len(s) && (isDigit(s[i]) || s[i] == '_'); i++ {
					}
				}
			}
			for i < len(s) && idChar(s[i]) { // an illegal token, but one
				i++
			}
		case (c == 'x' || c == 'X') && next == '\'':
			j := i + 2
			for j < len(s) && s[j] != '\'' {
				j++
			}
			if j >= len(s) {
				return nil, nil, false
			}
			i = j + 1
		case idChar(c):
			for i < len(s) && idChar(s[i]) {
				i++
			}
		case c == ';':
			semis = append(semis, i)
			i++
		default:
			i++
		}
	}
	return semis, params, true
}

// refSQLServer reads s as SQL Server's batch parser does; crEnds is a
// guess that \r ends a -- comment too.
func refSQLServer(s string, crEnds bool) (semis []int, params []string, ok bool) {
	for i := 0; i < len(s); {
		c := s[i]
		next := byte(0)
		if i+1 < len(s) {
			next = s[i+1]
		}
		switch {
		case c == '-' && next == '-':
			for i < len(s) && s[i] != '\n' && (!crEnds || s[i] != '\r') {
				i++
			}
		case c == '/' && next == '*':
			if i = nestedComment(s, i); i < 0 {
				return nil, nil, false
			}
		case c == '\'' || c == '"':
			if i = quoted(s, i, c, true); i < 0 {
				return nil, nil, false
			}
		case c == '[':
			if i = quoted(s, i, ']', true); i < 0 {
				return nil, nil, false
			}
		case c == '@' || c == '#' || c == '_' || isLetter(c) || c >= 0x80:
			j := i + 1
			for j < len(s) && (isLetter(s[j]) || isDigit(s[j]) || strings.IndexByte("_@#$", s[j]) >= 0 || s[j] >= 0x80) {
				j++
			}
			if c == '@' {
				params = append(params, s[i:j])
			}
			i = j
		case c == ';':
			semis = append(semis, i)
			i++
		default:
			i++
		}
	}
	return semis, params, true
}

// TestReferenceLexers checks the lexers above on the statements that ran
// a second statement before ParseStatement read every dialect.
func TestReferenceLexers(t *testing.T) {
	for _, tc := range []struct {
		text       string
		pg, ms, sq int // number of ';' each reads
	}{
		{`UPDATE t SET v = ?1 WHERE id = 1 /* /* */; DELETE FROM t; -- */`, 0, 0, 2},
		{`SELECT ?1 AS a, e'\' FROM t; DELETE FROM t; -- '`, 0, 2, 2},
		{`SELECT @a(') ; DELETE FROM t; -- '`, 0, 0, 2},
		{`SELECT [a]]; DELETE FROM t; --]`, 2, 0, 2},
		{"SELECT $$;$$", 0, 1, 1},
		{"SELECT 1.$a(') ; x; '", 0, 0, 0},     // 1.$a is one (illegal) number token in SQLite
		{"SELECT 1..$a(') ; x; -- '", 0, 0, 2}, // 1. . $a(')
	} {
		counts := [3]int{}
		for k, read := range []func(string) ([]int, []string, bool){refPostgres, func(s string) ([]int, []string, bool) { return refSQLServer(s, false) }, refSQLite} {
			semis, _, _ := read(tc.text)
			counts[k] = len(semis)
		}
		if want := [3]int{tc.pg, tc.ms, tc.sq}; counts != want {
			t.Errorf("%q: PostgreSQL, SQL Server and SQLite read %v ';', want %v", tc.text, counts, want)
		}
	}
}
