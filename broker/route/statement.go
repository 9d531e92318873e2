package route

import (
	"errors"
	"fmt"
	"slices"
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
// load. Named placeholders are written `:name`; a PostgreSQL cast `::type`
// is not a placeholder. A statement is one statement: it may end with one
// `;`, followed by nothing but whitespace and comments, which are dropped.
//
// A catalog does not know its routes' dialects, and the dialects disagree
// on where some literals and comments end, so ParseStatement reads the
// statement under the lexical rules of PostgreSQL, SQL Server and SQLite
// (see dialects) and refuses it unless the three readings agree: no `;`
// before the end in any of them, the same final `;`, the same placeholders
// (a `:name` that one dialect reads as SQL and another inside a literal,
// an identifier or a comment is refused), and nothing unterminated in any
// of them. PostgreSQL's dollar quotes ($tag$…$tag$) and E'…' escape
// strings, SQL Server's and SQLite's […] identifiers and SQLite's `…`
// identifiers are accepted where the other dialects read the same
// statement and placeholders. Where they do not, as in `/* /* */; …` (block
// comments nest in PostgreSQL and SQL Server, in SQLite the first */ ends
// one) and `e'\'; …` (an escape string only in PostgreSQL), the statement
// is refused: the dialect that sees a second statement would run it. A
// placeholder may not touch text its bind marker ($1, @name, ?1) would
// join in some dialect (x:a, :a:b, #:a, :a$$).
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

// ParseStatement splits sql into literal text and named placeholders. It
// refuses sql unless PostgreSQL, SQL Server and SQLite all read it as the
// same one statement with the same placeholders. Statements are told apart
// by ';': T-SQL needs none between statements, so two statements on SQL
// Server without one are not seen (the catalog author's text is trusted;
// parameters never become SQL text).
func ParseStatement(name, sql string) (*Statement, error) {
	if strings.TrimSpace(sql) == "" {
		return nil, errors.New("empty statement")
	}
	if i := strings.IndexByte(sql, 0); i >= 0 {
		// SQLite's prepare stops at a NUL; PostgreSQL refuses one.
		return nil, fmt.Errorf("NUL byte at offset %d", i)
	}
	var rs [len(dialects)]*reading
	for k := range dialects {
		rs[k] = read(sql, &dialects[k])
	}
	if err := agree(sql, rs[:]); err != nil {
		return nil, err
	}
	// The readings agree on the placeholders and on the end.
	r := rs[0]
	st := &Statement{Name: name, SQL: sql, names: r.names}
	end := len(sql)
	if r.final >= 0 {
		end = r.final
	}
	prev := 0
	for k, at := range r.marks {
		st.parts = append(st.parts, sql[prev:at])
		prev = at + 1 + len(r.names[k])
	}
	st.parts = append(st.parts, sql[prev:end])
	return st, nil
}

// dialect is what one database's lexer does with the characters that
// start a literal, a quoted identifier, a comment or a parameter. In every
// dialect '…' is a string and "…" a quoted identifier (a doubled quote
// escapes itself), -- starts a comment up to the end of the line and /* a
// block comment.
type dialect struct {
	name string
	// dollarQuotes: $tag$…$tag$ is a string, where the $ starts a token
	// (PostgreSQL).
	dollarQuotes bool
	// escapeStrings: E'…' is a string in which a backslash escapes the
	// next character, where the E starts a token (PostgreSQL).
	escapeStrings bool
	// nestedComments: /* a /* b */ c */ is one comment (PostgreSQL, SQL
	// Server); otherwise the first */ ends it (SQLite).
	nestedComments bool
	// brackets says how […] quotes an identifier.
	brackets bracketRule
	// backticks: `…` is a quoted identifier (SQLite).
	backticks bool
	// variables: $name, @name, #name and :name are parameters, and the Tcl
	// form name(…) runs to the next ')' or whitespace, whatever is in it
	// (SQLite). A :name placeholder is rendered ?N before SQLite reads it.
	variables bool
}

type bracketRule int

const (
	bracketsNone    bracketRule = iota // '[' is an operator (PostgreSQL's subscripts)
	bracketsDoubled                    // ']]' is a ']' (SQL Server)
	bracketsFirst                      // the first ']' ends it (SQLite)
)

// dialects are the lexical rules a statement must read the same under.
// PostgreSQL prepares one statement at a time; SQL Server runs every
// statement of a batch, and SQLite (modernc) every statement of the text.
var dialects = [...]dialect{
	{name: "PostgreSQL", dollarQuotes: true, escapeStrings: true, nestedComments: true},
	{name: "SQL Server", nestedComments: true, brackets: bracketsDoubled},
	{name: "SQLite", brackets: bracketsFirst, backticks: true, variables: true},
}

// regionKind is what a reading found between two offsets.
type regionKind int

const (
	kString regionKind = iota
	kQuotedIdent
	kEscapeString
	kDollarString
	kBracketIdent
	kBacktickIdent
	kLineComment
	kBlockComment
	kVariable
)

func (k regionKind) String() string {
	return [...]string{
		kString:        "a string",
		kQuotedIdent:   `a "…" identifier`,
		kEscapeString:  "an E'…' escape string",
		kDollarString:  "a dollar-quoted string",
		kBracketIdent:  "a […] identifier",
		kBacktickIdent: "a `…` identifier",
		kLineComment:   "a -- comment",
		kBlockComment:  "a block comment",
		kVariable:      "a SQLite parameter",
	}[k]
}

// why says how the dialects differ on a kind of region, or "" where they
// do not.
func (k regionKind) why() string {
	switch k {
	case kEscapeString:
		return "only PostgreSQL reads E'…' with backslash escapes"
	case kDollarString:
		return "only PostgreSQL has dollar-quoted strings"
	case kBlockComment:
		return "block comments nest in PostgreSQL and SQL Server, in SQLite the first */ ends one"
	case kBracketIdent:
		return "[…] quotes an identifier in SQL Server and SQLite, not in PostgreSQL, and ]] is a ] only in SQL Server"
	case kBacktickIdent:
		return "only SQLite quotes an identifier with `…`"
	case kVariable:
		return "SQLite reads $name(…), @name(…), #name(…) and :name(…) as one parameter, up to a ')' or whitespace"
	}
	return ""
}

type region struct {
	start, end int // end is len(sql) when unterminated
	kind       regionKind
}

// reading is a statement as one dialect reads it, up to its first
// problem.
type reading struct {
	d       *dialect
	regions []region // in order
	marks   []int    // the offset of each placeholder's ':'
	names   []string // the placeholders' names, as marks
	final   int      // the ';' that ends the statement (only whitespace and comments follow), or -1
	inner   int      // a ';' that more SQL follows, or -1
	next    int      // where that SQL starts
	err     error
	errAt   int
}

// at returns the region of r that holds offset p.
func (r *reading) at(p int) (region, bool) {
	for _, g := range r.regions {
		if g.start <= p && p < g.end {
			return g, true
		}
	}
	return region{}, false
}

func (r *reading) hasMark(p int) bool { return slices.Contains(r.marks, p) }

// read reads sql under d's rules. Placeholders are found alike in every
// dialect outside its literals, quoted identifiers and comments: ':' and
// an identifier, where the ':' is not part of '::'.
func read(sql string, d *dialect) *reading {
	r := &reading{d: d, final: -1, inner: -1, errAt: -1}
	fail := func(at int, err error) *reading {
		r.err, r.errAt = err, at
		return r
	}
	// sql[runStart:runEnd] is the last run of identifier characters
	// (letters, digits, '_', '$', non-ASCII bytes) outside literals and
	// comments: an identifier, a number or a parameter ($1). A character
	// at runEnd continues it.
	runStart, runEnd := 0, -1
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case isSpace(c):
			i++
			continue
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			end := len(sql)
			if n := strings.IndexByte(sql[i:], '\n'); n >= 0 {
				end = i + n
			}
			r.regions = append(r.regions, region{i, end, kLineComment})
			if j := oddLineBreak(sql, i, end); j >= 0 {
				// PostgreSQL ends a -- comment at \r too, SQLite only at
				// \n: the rest of the line would be SQL in one of them.
				return fail(j, fmt.Errorf("line break other than \\n at offset %d in the -- comment at offset %d, with more text after it on the line (the dialects end a -- comment at different characters)", j, i))
			}
			i = end
			continue
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := skipComment(sql, i, d.nestedComments)
			if end < 0 {
				r.regions = append(r.regions, region{i, len(sql), kBlockComment})
				return fail(i, fmt.Errorf("unterminated comment at offset %d", i))
			}
			r.regions = append(r.regions, region{i, end, kBlockComment})
			i = end
			continue
		}
		if r.final >= 0 {
			// SQL after the ';': a second statement.
			r.inner, r.next, r.final = r.final, i, -1
			return r
		}
		glued := runEnd == i
		identRun := glued && (isIdentStart(sql[runStart]) || sql[runStart] >= 0x80)
		next := byte(0)
		if i+1 < len(sql) {
			next = sql[i+1]
		}
		kind, end := regionKind(-1), 0
		switch {
		case c == '\'':
			kind, end = kString, skipQuoted(sql, i, '\'', true)
		case c == '"':
			kind, end = kQuotedIdent, skipQuoted(sql, i, '"', true)
		case c == '`' && d.backticks:
			kind, end = kBacktickIdent, skipQuoted(sql, i, '`', true)
		case c == '[' && d.brackets != bracketsNone:
			kind, end = kBracketIdent, skipQuoted(sql, i, ']', d.brackets == bracketsDoubled)
		case (c == 'E' || c == 'e') && next == '\'' && d.escapeStrings && !identRun:
			if glued {
				// 1E'x': PostgreSQL before 15 reads 1 and E'x', later
				// versions refuse the number.
				return fail(i, fmt.Errorf("an E' string at offset %d directly after a number or parameter (PostgreSQL versions read it differently): write a space before it", i))
			}
			kind, end = kEscapeString, skipEscapeString(sql, i)
			if end >= 0 && continuedString(sql, end) {
				// E'x'<newline>'\' …: PostgreSQL joins the two into one
				// escape string, the other dialects read two strings, so
				// a quote and a placeholder move in and out of literals.
				return fail(i, fmt.Errorf("the E' string at offset %d is continued by a string on a later line (PostgreSQL reads the continuation with backslash escapes): write it as one string", i))
			}
		case c == '$' && d.dollarQuotes && !identRun && dollarDelim(sql, i) > 0:
			delim := sql[i : i+dollarDelim(sql, i)]
			if glued {
				// $1$$, 0x1F$$: a dollar quote in some PostgreSQL
				// versions, part of the number in others.
				return fail(i, fmt.Errorf("%s at offset %d directly after a number or parameter (PostgreSQL versions read it differently): write a space before it", delim, i))
			}
			kind, end = kDollarString, -1
			if k := strings.Index(sql[i+len(delim):], delim); k >= 0 {
				end = i + len(delim) + k + len(delim)
			}
		case d.variables && (c == '@' || c == '#' || (c == '$' && !glued) || (c == ':' && next != ':' && !isIdentStart(next))):
			kind, end = kVariable, sqliteVariable(sql, i)
		}
		if kind >= 0 {
			if end < 0 {
				r.regions = append(r.regions, region{i, len(sql), kind})
				return fail(i, unterminated(sql, i, kind))
			}
			r.regions = append(r.regions, region{i, end, kind})
			i = end
			continue
		}
		switch {
		case c == ':' && next == ':':
			if i+2 < len(sql) && sql[i+2] == ':' {
				return fail(i, fmt.Errorf("':::' at offset %d: write a space between a '::' cast and a placeholder", i))
			}
			i += 2
			if d.variables {
				// SQLite: the first ':' is a token of its own and the
				// second starts a parameter (:int in x::int).
				end := sqliteVariable(sql, i-1)
				r.regions = append(r.regions, region{i - 1, end, kVariable})
				i = end
			}
		case c == ':' && isIdentStart(next):
			if glued || (i > 0 && (sql[i-1] == '@' || sql[i-1] == '#')) {
				// x:a would render x$1, one identifier in PostgreSQL,
				// $t:a the dollar quote $t$1, and :a:b and #:a @a@b and
				// #@a in SQL Server, where @ and # continue identifiers.
				before := sql[i-1 : i]
				if glued {
					before = sql[runStart:i]
				}
				return fail(i, fmt.Errorf("placeholder at offset %d directly after %q: write a space or an operator before it", i, before))
			}
			j := i + 1
			for j < len(sql) && isIdentPart(sql[j]) {
				j++
			}
			if j < len(sql) && (sql[j] == '$' || sql[j] == '@' || sql[j] == '#' || sql[j] >= 0x80) {
				// :a$$ would render $1$$, a dollar quote in PostgreSQL,
				// and :a# @a#, another variable in SQL Server.
				return fail(j, fmt.Errorf("placeholder :%s at offset %d directly followed by %q: write a space after it", sql[i+1:j], i, sql[j:j+1]))
			}
			r.marks = append(r.marks, i)
			r.names = append(r.names, sql[i+1:j])
			// Rendered, it is a parameter ($1, @a, ?1) that the next
			// character must not continue: :a:b would be @a@b.
			runStart, runEnd = i, j
			i = j
		case c == ';':
			r.final = i
			i++
		case d.variables && !glued && (isDigit(c) || (c == '.' && isDigit(next))):
			// SQLite: a number, with what follows it (1.$a is one token).
			runStart, runEnd = i, sqliteNumber(sql, i)
			i = runEnd
		case isRunChar(c):
			if !glued {
				runStart = i
			}
			i++
			runEnd = i
		default:
			i++
		}
	}
	return r
}

func unterminated(sql string, at int, kind regionKind) error {
	switch kind {
	case kEscapeString:
		return fmt.Errorf("unterminated E' at offset %d", at)
	case kDollarString:
		return fmt.Errorf("unterminated dollar-quoted string %s at offset %d", sql[at:at+dollarDelim(sql, at)], at)
	}
	return fmt.Errorf("unterminated %c at offset %d", sql[at], at)
}

// agree returns an error unless the readings find one statement, the same
// end and the same placeholders, and none of them a problem.
func agree(sql string, rs []*reading) error {
	const why = "the catalog does not know the route's database, so a statement must read the same in PostgreSQL, SQL Server and SQLite"
	// A second statement in any reading, the earliest first.
	var first *reading
	for _, r := range rs {
		if r.inner >= 0 && (first == nil || r.inner < first.inner) {
			first = r
		}
	}
	if first != nil {
		p := first.inner
		in, out := split(rs, func(r *reading) bool { return r.inner == p })
		if len(out) == 0 {
			return fmt.Errorf("more than one statement (';' at offset %d)", p)
		}
		detail, at := fmt.Sprintf("';' at offset %d", p), p
		w := where(out, p)
		if w == "" {
			// The others read the ';' as the end too, and what follows
			// it differently.
			at = first.next
			detail += fmt.Sprintf(", more SQL at offset %d", at)
			w = where(out, at)
		}
		return fmt.Errorf("more than one statement in %s (%s%s); %s", names(in), detail, explain(rs, at, w), why)
	}
	// A problem in any reading, the earliest first.
	for _, r := range rs {
		if r.err != nil && (first == nil || r.errAt < first.errAt) {
			first = r
		}
	}
	if first != nil {
		msg := first.err.Error()
		in, out := split(rs, func(r *reading) bool { return r.err != nil && r.err.Error() == msg })
		if len(out) == 0 {
			return first.err
		}
		return fmt.Errorf("under the rules of %s: %s%s; %s", names(in), msg, paren(explain(rs, first.errAt, where(out, first.errAt))), why)
	}
	// The same end.
	for _, r := range rs[1:] {
		if r.final != rs[0].final {
			p := max(r.final, rs[0].final)
			in, out := split(rs, func(r *reading) bool { return r.final == p })
			return fmt.Errorf("the statement ends at the ';' at offset %d in %s, not in %s%s; %s", p, names(in), names(out), paren(explain(rs, p, where(out, p))), why)
		}
	}
	// The same placeholders, the first that differs.
	m := -1
	for _, r := range rs {
		for _, at := range r.marks {
			if (m < 0 || at < m) && !all(rs, func(o *reading) bool { return o.hasMark(at) }) {
				m = at
			}
		}
	}
	if m >= 0 {
		in, out := split(rs, func(r *reading) bool { return r.hasMark(m) })
		j := m + 1
		for j < len(sql) && isIdentPart(sql[j]) {
			j++
		}
		return fmt.Errorf("%s at offset %d is a placeholder in %s, not in %s%s; %s", sql[m:j], m, names(in), names(out), paren(explain(rs, m, where(out, m))), why)
	}
	return nil
}

// explain returns "; " and where the other readings see offset p (w), and
// how the dialects differ on the regions that hold p, or "" if there is
// nothing to say.
func explain(rs []*reading, p int, w string) string {
	// The regions that hold p, and those that hold where they start
	// (SQLite's @a(') holds the quote that opens a string elsewhere).
	var whys []string
	add := func(at int) {
		for _, r := range rs {
			if g, ok := r.at(at); ok && g.kind.why() != "" && !slices.Contains(whys, g.kind.why()) {
				whys = append(whys, g.kind.why())
			}
		}
	}
	add(p)
	for _, r := range rs {
		if g, ok := r.at(p); ok {
			add(g.start)
		}
	}
	s := strings.Join(whys, "; ")
	switch {
	case w != "" && s != "":
		return "; " + w + ": " + s
	case w != "":
		return "; " + w
	case s != "":
		return "; " + s
	}
	return ""
}

// paren returns explain's text in parentheses, or "".
func paren(explained string) string {
	if explained == "" {
		return ""
	}
	return " (" + strings.TrimPrefix(explained, "; ") + ")"
}

// where says what the readings rs have at offset p, as "in SQL Server and
// SQLite it is inside a string starting at offset 7", or "" if none has a
// literal, identifier or comment there.
func where(rs []*reading, p int) string {
	var descs []string
	by := map[string][]*reading{}
	for _, r := range rs {
		g, ok := r.at(p)
		if !ok {
			continue
		}
		d := fmt.Sprintf("inside %s starting at offset %d", g.kind, g.start)
		if by[d] == nil {
			descs = append(descs, d)
		}
		by[d] = append(by[d], r)
	}
	for k, d := range descs {
		descs[k] = fmt.Sprintf("in %s it is %s", names(by[d]), d)
	}
	return strings.Join(descs, ", ")
}

func split(rs []*reading, in func(*reading) bool) (yes, no []*reading) {
	for _, r := range rs {
		if in(r) {
			yes = append(yes, r)
		} else {
			no = append(no, r)
		}
	}
	return yes, no
}

func all(rs []*reading, f func(*reading) bool) bool {
	for _, r := range rs {
		if !f(r) {
			return false
		}
	}
	return true
}

// names lists the readings' dialects: "PostgreSQL", "SQL Server and
// SQLite".
func names(rs []*reading) string {
	var b strings.Builder
	for k, r := range rs {
		switch {
		case k == 0:
		case k == len(rs)-1:
			b.WriteString(" and ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(r.d.name)
	}
	return b.String()
}

// skipQuoted returns the end of the literal or quoted identifier that
// starts at start and ends with closeCh, in which a doubled closeCh
// escapes itself if doubled, or -1.
func skipQuoted(s string, start int, closeCh byte, doubled bool) int {
	for i := start + 1; i < len(s); i++ {
		if s[i] == closeCh {
			if doubled && i+1 < len(s) && s[i+1] == closeCh {
				i++
				continue
			}
			return i + 1
		}
	}
	return -1
}

// continuedString reports whether a string literal follows end across
// whitespace holding a newline (and -- comments), which PostgreSQL joins to
// the string before end.
func continuedString(s string, end int) bool {
	newline := false
	for i := end; i < len(s); {
		switch {
		case s[i] == '\n':
			newline = true
			i++
		case isSpace(s[i]):
			i++
		case s[i] == '-' && i+1 < len(s) && s[i+1] == '-':
			n := strings.IndexByte(s[i:], '\n')
			if n < 0 {
				return false
			}
			i += n
		default:
			return newline && s[i] == '\''
		}
	}
	return false
}

// skipEscapeString returns the end of the PostgreSQL escape string
// constant E'…' that starts at start, or -1: a backslash escapes the next
// byte (\' is a quote, \\ a backslash), and a doubled quote is a quote.
func skipEscapeString(s string, start int) int {
	for i := start + 2; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case s[i] == '\'' && i+1 < len(s) && s[i+1] == '\'':
			i++
		case s[i] == '\'':
			return i + 1
		}
	}
	return -1
}

// dollarDelim returns the length of the PostgreSQL dollar-quote delimiter
// $tag$ at start (the tag is empty, or a letter, '_' or non-ASCII byte and
// then those or digits; it is case-sensitive), or 0 ($1 is a parameter,
// $ alone an operator character or, in SQL Server, a money literal).
func dollarDelim(s string, start int) int {
	j := start + 1
	if j < len(s) && (isIdentStart(s[j]) || s[j] >= 0x80) {
		j++
		for j < len(s) && (isIdentPart(s[j]) || s[j] >= 0x80) {
			j++
		}
	}
	if j >= len(s) || s[j] != '$' {
		return 0
	}
	return j + 1 - start
}

// skipComment returns the end of the block comment that starts at start,
// or -1. Block comments nest in PostgreSQL and SQL Server (/* a /* b */ c
// */ is one comment); in SQLite the first */ ends one, so there /* a /* b
// */ ends at b */ and c */ is SQL, which may be a second statement. That
// is why a statement is read under each dialect's rule.
func skipComment(s string, start int, nested bool) int {
	depth := 0
	for i := start; i+1 < len(s); {
		switch {
		case s[i] == '/' && s[i+1] == '*' && (nested || depth == 0):
			depth++
			i += 2
		case s[i] == '*' && s[i+1] == '/':
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

// sqliteVariable returns the end of the SQLite parameter at start ($, @, #
// or :), as SQLite's tokenizer reads it: identifier characters and '::'
// pairs, and after at least one identifier character, Tcl's (…) suffix up
// to the next ')' or whitespace, whatever it holds (@a(');') is one
// token).
func sqliteVariable(s string, start int) int {
	n := 0
	j := start + 1
	for j < len(s) {
		switch c := s[j]; {
		case isRunChar(c):
			n++
			j++
		case c == '(' && n > 0:
			for j++; j < len(s) && !isSpace(s[j]) && s[j] != ')'; j++ {
			}
			if j < len(s) && s[j] == ')' {
				j++
			}
			return j
		case c == ':' && j+1 < len(s) && s[j+1] == ':':
			j += 2
		default:
			return j
		}
	}
	return j
}

// sqliteNumber returns the end of the number at start as SQLite's
// tokenizer reads it: 0x and hexadecimal digits, or digits, '.' and
// digits, and an exponent ('_' separating digits), and then any
// identifier characters, an illegal token but one token.
func sqliteNumber(s string, start int) int {
	digits := func(j int, ok func(byte) bool) int {
		for j < len(s) && (ok(s[j]) || s[j] == '_') {
			j++
		}
		return j
	}
	j := start
	if s[j] == '0' && j+2 < len(s) && (s[j+1]|0x20) == 'x' && isHexDigit(s[j+2]) {
		j = digits(j+2, isHexDigit)
	} else {
		j = digits(j, isDigit)
		if j < len(s) && s[j] == '.' {
			j = digits(j+1, isDigit)
		}
		if j+1 < len(s) && (s[j]|0x20) == 'e' && (isDigit(s[j+1]) || (j+2 < len(s) && (s[j+1] == '+' || s[j+1] == '-') && isDigit(s[j+2]))) {
			j = digits(j+2, isDigit)
		}
	}
	for j < len(s) && isRunChar(s[j]) {
		j++
	}
	return j
}

// oddLineBreak returns the offset of a line break other than \n in the --
// comment sql[start:end] that more than whitespace follows, or -1.
// PostgreSQL ends the comment at \r as well as \n, SQLite only at \n; what
// SQL Server does with \v, \f, U+0085, U+2028 and U+2029 is not worth
// finding out.
func oddLineBreak(sql string, start, end int) int {
	for k := start; k < end; k++ {
		n := 0
		switch {
		case sql[k] == '\r' || sql[k] == '\v' || sql[k] == '\f':
			n = 1
		case strings.HasPrefix(sql[k:end], "\u0085"):
			n = 2
		case strings.HasPrefix(sql[k:end], "\u2028"), strings.HasPrefix(sql[k:end], "\u2029"):
			n = 3
		default:
			continue
		}
		if strings.TrimLeft(sql[k+n:end], " \t\r\n\f\v") != "" {
			return k
		}
		return -1
	}
	return -1
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHexDigit(c byte) bool { return isDigit(c) || ('a' <= c|0x20 && c|0x20 <= 'f') }

func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }

func isIdentPart(c byte) bool { return isIdentStart(c) || isDigit(c) }

// isRunChar reports whether c can be part of an identifier, a number or a
// parameter such as $1 in some dialect.
func isRunChar(c byte) bool { return isIdentPart(c) || c == '$' || c >= 0x80 }
