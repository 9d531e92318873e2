package route

import (
	"fmt"
	"strings"
)

// Session placeholders: a statement may bind values that come from the
// broker, never from the message — who is calling and why. Adapters bind
// them from the broker's call; a route may not declare parameters with the prefix.
const (
	SessionPrefix        = "sqlgate_"
	SessionCorrelationID = "sqlgate_correlation_id"
	SessionPrincipal     = "sqlgate_principal"
	SessionDecisionID    = "sqlgate_decision_id"
)

// SessionNames lists the session placeholders.
var SessionNames = []string{SessionCorrelationID, SessionPrincipal, SessionDecisionID}

// Statement is an admin-defined parameterized SQL statement, parsed once at
// load. Named placeholders are written `:name`; they are found outside string
// literals ('…', PostgreSQL's E'…' with backslash escapes and $tag$…$tag$
// dollar quoting), quoted identifiers ("…", `…`, […]) and comments (-- to
// the end of the line, /* … */ nested as in PostgreSQL and SQL Server), and
// a PostgreSQL cast `::type` is not a placeholder. A statement may end with
// one `;`, followed by nothing but whitespace and comments.
//
// A catalog does not know its routes' dialects, so the rules are the union
// of the dialects' where they agree, and PostgreSQL's where only PostgreSQL
// has the syntax: the parser must never take a placeholder out of a literal
// in any dialect, and errs towards a longer literal or an error. E'…' and
// $tag$ are PostgreSQL's; in SQL Server and SQLite `$` starts money
// literals ($12), pseudo-columns ($action) and parameters ($name), none of
// which is `$`, an optional tag and `$` again after a character that cannot
// continue an identifier, so they do not open a dollar quote.
type Statement struct {
	// Name identifies the statement in audit records and policy input.
	Name string
	// SQL is the text as configured.
	SQL string
	// parts and names alternate: parts[0] names[0] parts[1] ... parts[n].
	parts []string
	names []string
}

// Names returns the placeholder names in order of appearance (a name used
// twice appears twice).
func (s *Statement) Names() []string { return s.names }

// Render returns the statement text with each placeholder replaced by
// placeholder(i, name), where i counts placeholders from 0 in order of
// appearance. Adapters use it to produce their dialect's bind markers
// (`$1`, `@name`, `?`); the result contains no parameter values.
func (s *Statement) Render(placeholder func(i int, name string) string) string {
	var b strings.Builder
	b.Grow(len(s.SQL) + 4*len(s.names))
	for i, p := range s.parts {
		b.WriteString(p)
		if i < len(s.names) {
			b.WriteString(placeholder(i, s.names[i]))
		}
	}
	return b.String()
}

// ParseStatement splits sql into literal text and named placeholders.
func ParseStatement(name, sql string) (*Statement, error) {
	st := &Statement{Name: name, SQL: sql}
	var lit strings.Builder
	i := 0
	ended := -1 // offset of the final ';', once seen
	for i < len(sql) {
		c := sql[i]
		if ended >= 0 && !isSpace(c) && !strings.HasPrefix(sql[i:], "--") && !strings.HasPrefix(sql[i:], "/*") {
			// One statement per route: a second statement would widen what
			// an admin reviewed as one call. A final semicolon is allowed,
			// and whitespace and comments after it, which are dropped.
			return nil, fmt.Errorf("more than one statement (';' at offset %d)", ended)
		}
		// skip is the end of the literal, quoted identifier or comment that
		// starts at i, or 0.
		skip, err := 0, error(nil)
		switch {
		case (c == 'E' || c == 'e') && i+1 < len(sql) && sql[i+1] == '\'' && !continuesIdent(sql, i):
			skip, err = skipEscapeString(sql, i)
		case c == '\'' || c == '"' || c == '`':
			skip, err = skipQuoted(sql, i, c, c)
		case c == '[':
			skip, err = skipQuoted(sql, i, '[', ']')
		case c == '$' && !continuesIdent(sql, i):
			skip, err = skipDollarQuoted(sql, i)
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			skip = len(sql)
			if end := strings.IndexByte(sql[i:], '\n'); end >= 0 {
				skip = i + end
			}
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			skip, err = skipComment(sql, i)
		}
		if err != nil {
			return nil, err
		}
		switch {
		case skip > 0:
			if ended < 0 {
				lit.WriteString(sql[i:skip])
			}
			i = skip
		case ended >= 0: // whitespace after the final ';'
			i++
		case c == ':' && i+1 < len(sql) && sql[i+1] == ':':
			lit.WriteString("::")
			i += 2
		case c == ':' && i+1 < len(sql) && isIdentStart(sql[i+1]):
			j := i + 1
			for j < len(sql) && isIdentPart(sql[j]) {
				j++
			}
			st.parts = append(st.parts, lit.String())
			lit.Reset()
			st.names = append(st.names, sql[i+1:j])
			i = j
		case c == ';':
			ended = i
			i++
		default:
			lit.WriteByte(c)
			i++
		}
	}
	st.parts = append(st.parts, lit.String())
	if strings.TrimSpace(sql) == "" {
		return nil, fmt.Errorf("empty statement")
	}
	return st, nil
}

func skipQuoted(s string, start int, open, closeCh byte) (int, error) {
	for i := start + 1; i < len(s); i++ {
		if s[i] == closeCh {
			if open == closeCh && i+1 < len(s) && s[i+1] == closeCh { // doubled quote escapes itself
				i++
				continue
			}
			if open == '[' && i+1 < len(s) && s[i+1] == ']' {
				i++
				continue
			}
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated %c at offset %d", open, start)
}

// skipEscapeString returns the end of the PostgreSQL escape string
// constant E'…' that starts at start: a backslash escapes the next byte
// (\' is a quote, \\ a backslash), and a doubled quote is a quote.
func skipEscapeString(s string, start int) (int, error) {
	for i := start + 2; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case s[i] == '\'' && i+1 < len(s) && s[i+1] == '\'':
			i++
		case s[i] == '\'':
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated E' at offset %d", start)
}

// skipDollarQuoted returns the end of the PostgreSQL dollar-quoted string
// $tag$…$tag$ that starts at start (the tag is empty, or a letter or '_'
// and then letters, digits or '_'; it is case-sensitive), or 0 when no
// dollar quote starts there ($1 is a parameter, $ alone an operator
// character or, in SQL Server, a money literal).
func skipDollarQuoted(s string, start int) (int, error) {
	j := start + 1
	if j < len(s) && isDollarTagStart(s[j]) {
		j++
		for j < len(s) && isDollarTagPart(s[j]) {
			j++
		}
	}
	if j >= len(s) || s[j] != '$' {
		return 0, nil
	}
	delim := s[start : j+1]
	end := strings.Index(s[j+1:], delim)
	if end < 0 {
		return 0, fmt.Errorf("unterminated dollar-quoted string %s at offset %d", delim, start)
	}
	return j + 1 + end + len(delim), nil
}

// skipComment returns the end of the block comment that starts at start.
// Block comments nest, as in PostgreSQL and SQL Server: /* a /* b */ c */
// is one comment. (SQLite ends it at the first */, and then sees a syntax
// error or an unterminated comment.)
func skipComment(s string, start int) (int, error) {
	depth := 0
	for i := start; i+1 < len(s); {
		switch {
		case s[i] == '/' && s[i+1] == '*':
			depth++
			i += 2
		case s[i] == '*' && s[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i, nil
			}
		default:
			i++
		}
	}
	return 0, fmt.Errorf("unterminated comment at offset %d", start)
}

// continuesIdent reports whether the byte before i can be part of an
// identifier, a number or a parameter ($1), so that s[i] continues that
// token: PostgreSQL reads a$b$ as one identifier and name'x' as an
// identifier and a string. Only a '$' or an E that starts a token starts a
// dollar quote or an escape string.
func continuesIdent(s string, i int) bool {
	return i > 0 && (isIdentPart(s[i-1]) || s[i-1] == '$' || s[i-1] >= 0x80)
}

func isDollarTagStart(c byte) bool { return isIdentStart(c) || c >= 0x80 }

func isDollarTagPart(c byte) bool { return isIdentPart(c) || c >= 0x80 }

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }
