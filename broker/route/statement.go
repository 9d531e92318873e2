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
// literals, quoted identifiers, bracketed identifiers and comments, and a
// PostgreSQL cast `::type` is not a placeholder.
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
	for i < len(sql) {
		c := sql[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			end, err := skipQuoted(sql, i, c, c)
			if err != nil {
				return nil, err
			}
			lit.WriteString(sql[i:end])
			i = end
		case c == '[':
			end, err := skipQuoted(sql, i, '[', ']')
			if err != nil {
				return nil, err
			}
			lit.WriteString(sql[i:end])
			i = end
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			end := strings.IndexByte(sql[i:], '\n')
			if end < 0 {
				end = len(sql) - i
			}
			lit.WriteString(sql[i : i+end])
			i += end
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := strings.Index(sql[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("unterminated comment at offset %d", i)
			}
			lit.WriteString(sql[i : i+2+end+2])
			i += 2 + end + 2
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
			// One statement per route: a second statement would widen what an
			// admin reviewed as one call. A trailing semicolon is allowed.
			if strings.TrimSpace(sql[i+1:]) != "" {
				return nil, fmt.Errorf("more than one statement (';' at offset %d)", i)
			}
			i = len(sql)
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

func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }
