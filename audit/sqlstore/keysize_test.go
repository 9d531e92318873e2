package sqlstore

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// SQL Server refuses to insert a row whose index key is longer than the
// index's limit (error 1946): 900 bytes for a clustered index, 1,700 for a
// nonclustered one (SQL Server 2016 and later, Azure SQL). It only warns
// when the table is created, so a key that can grow past its limit fails
// the first long value at run time, on SQL Server only.
const (
	clusteredKeyLimit    = 900
	nonclusteredKeyLimit = 1700
)

// Every primary key and index of the SQL Server audit schema fits its
// limit at the declared column sizes, so no origin or key id the store
// accepts can be refused for its length.
func TestSQLServerIndexKeySizes(t *testing.T) {
	t.Parallel()
	d, err := newDialect(SQLServer)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := sqlServerIndexKeys(d.schema)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]bool{}
	for _, k := range keys {
		if k.primary {
			tables[k.table] = true
		}
		if limit := k.limit(); k.bytes > limit {
			t.Errorf("%s: key (%s) is up to %d bytes, over the %s limit of %d", k.name(), strings.Join(k.cols, ", "), k.bytes, k.kind(), limit)
		}
	}
	// Each table has a primary key: the parser missed none.
	if len(tables) != len(d.schema) {
		t.Errorf("found primary keys on %d tables, want %d (one per CREATE TABLE)", len(tables), len(d.schema))
	}
}

// The key size reader behind TestSQLServerIndexKeySizes, on the shapes
// SQL Server DDL takes.
func TestSQLServerIndexKeysParse(t *testing.T) {
	t.Parallel()
	table := "CREATE TABLE t (\n\tid VARCHAR(64) NOT NULL PRIMARY KEY,\n\tp NVARCHAR(450) COLLATE Latin1_General_100_BIN2 NOT NULL,\n\tat BIGINT NOT NULL,\n\tbody NVARCHAR(MAX))"
	tests := []struct {
		name string
		ddl  []string
		want string
	}{
		{
			"composite_primary_key",
			[]string{`CREATE TABLE t (origin NVARCHAR(256) NOT NULL, key_id NVARCHAR(300) NOT NULL, vkey NVARCHAR(1000) NOT NULL, PRIMARY KEY (origin, key_id))`},
			"t.PK clustered 1112",
		},
		{
			"nonclustered_primary_key",
			[]string{`IF OBJECT_ID(N't', N'U') IS NULL CREATE TABLE t (a NVARCHAR(256) NOT NULL, b BIGINT NOT NULL, CONSTRAINT pk_t PRIMARY KEY NONCLUSTERED (a DESC, b))`},
			"t.PK nonclustered 520",
		},
		{
			"column_primary_key_and_index",
			[]string{table, `IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix' AND object_id = OBJECT_ID(N't')) CREATE INDEX ix ON t (p, at)`},
			"t.PK clustered 64; t.ix nonclustered 908",
		},
		{
			"unique_and_clustered_index",
			[]string{`CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY NONCLUSTERED, g UNIQUEIDENTIFIER NOT NULL UNIQUE, c BINARY(32) NOT NULL)`, `CREATE UNIQUE CLUSTERED INDEX cx ON t (c) INCLUDE (g)`},
			"t.PK nonclustered 8; t.UQ(g) nonclustered 16; t.cx clustered 32",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			keys, err := sqlServerIndexKeys(tc.ddl)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, k := range keys {
				got = append(got, fmt.Sprintf("%s %s %d", k.name(), k.kind(), k.bytes))
			}
			if s := strings.Join(got, "; "); s != tc.want {
				t.Errorf("sqlServerIndexKeys(%q) = %s, want %s", tc.ddl, s, tc.want)
			}
		})
	}
	for _, bad := range []string{
		`CREATE TABLE t (body NVARCHAR(MAX) NOT NULL PRIMARY KEY)`,
		`CREATE TABLE t (x GEOGRAPHY NOT NULL PRIMARY KEY)`,
		`CREATE TABLE t (a INT NOT NULL, PRIMARY KEY (b))`,
	} {
		if keys, err := sqlServerIndexKeys([]string{bad}); err == nil {
			t.Errorf("sqlServerIndexKeys(%s) = %v, want an error", bad, keys)
		}
	}
}

// indexKey is one primary key, unique constraint or index of a table, with
// the most bytes its key columns can hold.
type indexKey struct {
	table, index string // index is "" for a primary key or unique constraint
	primary      bool
	clustered    bool
	cols         []string
	bytes        int
}

func (k indexKey) name() string {
	switch {
	case k.index != "":
		return k.table + "." + k.index
	case k.primary:
		return k.table + ".PK"
	}
	return k.table + ".UQ(" + strings.Join(k.cols, ",") + ")"
}

func (k indexKey) kind() string {
	if k.clustered {
		return "clustered"
	}
	return "nonclustered"
}

func (k indexKey) limit() int {
	if k.clustered {
		return clusteredKeyLimit
	}
	return nonclusteredKeyLimit
}

var (
	createTableRe = regexp.MustCompile(`(?i)\bCREATE\s+TABLE\s+([\w.\[\]]+)\s*\(`)
	createIndexRe = regexp.MustCompile(`(?i)\bCREATE\s+(UNIQUE\s+)?(CLUSTERED\s+|NONCLUSTERED\s+)?INDEX\s+([\w\[\]]+)\s+ON\s+([\w.\[\]]+)\s*\(([^)]*)\)`)
	// A table constraint: [CONSTRAINT name] PRIMARY KEY|UNIQUE [CLUSTERED|NONCLUSTERED] (cols).
	tableKeyRe = regexp.MustCompile(`(?is)^(?:CONSTRAINT\s+\S+\s+)?(PRIMARY\s+KEY|UNIQUE)\s*(CLUSTERED|NONCLUSTERED)?\s*\(([^)]*)\)`)
	// A column: name type[(size)] and the rest of its definition.
	columnRe = regexp.MustCompile(`(?is)^([\w\[\]]+)\s+(\w+)\s*(?:\(\s*(\w+)\s*(?:,\s*\d+\s*)?\))?(.*)$`)
	// A key declared on the column itself.
	columnKeyRe = regexp.MustCompile(`(?i)\b(PRIMARY\s+KEY|UNIQUE)\b(?:\s+(CLUSTERED|NONCLUSTERED)\b)?`)
)

// sqlServerIndexKeys reads the primary keys, unique constraints and indexes
// that SQL Server DDL statements declare, and sizes each key from its
// columns' declared types. A PRIMARY KEY is clustered unless declared
// NONCLUSTERED, a UNIQUE constraint or an index nonclustered unless declared
// CLUSTERED (SQL Server's defaults, on a table without another clustered
// index). A key column of a type it cannot size, or of a MAX type (which
// cannot be a key), is an error.
func sqlServerIndexKeys(stmts []string) ([]indexKey, error) {
	columns := map[string]map[string]int{} // table -> column -> bytes (-1: MAX)
	var keys []indexKey
	add := func(table, index string, primary, clustered bool, list string) error {
		k := indexKey{table: table, index: index, primary: primary, clustered: clustered}
		cols, ok := columns[strings.ToLower(table)]
		if !ok {
			return fmt.Errorf("index %s on unknown table %s", index, table)
		}
		for c := range strings.SplitSeq(list, ",") {
			f := strings.Fields(c)
			if len(f) == 0 || len(f) > 2 {
				return fmt.Errorf("%s: cannot read key column %q", table, c)
			}
			n, ok := cols[strings.ToLower(f[0])]
			switch {
			case !ok:
				return fmt.Errorf("%s: key column %s is not a column", table, f[0])
			case n < 0:
				return fmt.Errorf("%s: key column %s is of a MAX type", table, f[0])
			}
			k.cols = append(k.cols, f[0])
			k.bytes += n
		}
		keys = append(keys, k)
		return nil
	}
	for _, stmt := range stmts {
		for _, m := range createTableRe.FindAllStringSubmatchIndex(stmt, -1) {
			table := stmt[m[2]:m[3]]
			body, ok := parenthesized(stmt[m[1]-1:])
			if !ok {
				return nil, fmt.Errorf("%s: unbalanced parentheses", table)
			}
			cols := map[string]int{}
			columns[strings.ToLower(table)] = cols
			var constraints []string
			for _, item := range splitTopLevel(body) {
				item = strings.TrimSpace(item)
				if tableKeyRe.MatchString(item) {
					constraints = append(constraints, item)
					continue
				}
				c := columnRe.FindStringSubmatch(item)
				if c == nil {
					return nil, fmt.Errorf("%s: cannot read column %q", table, item)
				}
				n, err := sqlServerTypeBytes(c[2], c[3])
				if err != nil {
					return nil, fmt.Errorf("%s.%s: %w", table, c[1], err)
				}
				cols[strings.ToLower(c[1])] = n
				if k := columnKeyRe.FindStringSubmatch(c[4]); k != nil {
					primary := strings.HasPrefix(strings.ToUpper(k[1]), "PRIMARY")
					clustered := clusteredOr(k[2], primary)
					// Added once every column is known.
					constraints = append(constraints, fmt.Sprintf("%s %s (%s)", k[1], map[bool]string{true: "CLUSTERED", false: "NONCLUSTERED"}[clustered], c[1]))
				}
			}
			for _, item := range constraints {
				k := tableKeyRe.FindStringSubmatch(item)
				primary := strings.HasPrefix(strings.ToUpper(k[1]), "PRIMARY")
				if err := add(table, "", primary, clusteredOr(k[2], primary), k[3]); err != nil {
					return nil, err
				}
			}
		}
		for _, m := range createIndexRe.FindAllStringSubmatch(stmt, -1) {
			if err := add(m[4], m[3], false, clusteredOr(strings.TrimSpace(m[2]), false), m[5]); err != nil {
				return nil, err
			}
		}
	}
	return keys, nil
}

// clusteredOr reads CLUSTERED or NONCLUSTERED, or returns def when neither
// is given.
func clusteredOr(s string, def bool) bool {
	if s == "" {
		return def
	}
	return strings.EqualFold(s, "CLUSTERED")
}

// sqlServerTypeBytes is the most bytes a value of the type takes in an
// index key; -1 for a MAX type.
func sqlServerTypeBytes(typ, size string) (int, error) {
	fixed := map[string]int{
		"bit": 1, "tinyint": 1, "smallint": 2, "int": 4, "integer": 4, "bigint": 8, "real": 4, "float": 8,
		"date": 3, "time": 5, "datetime": 8, "datetime2": 8, "datetimeoffset": 10, "uniqueidentifier": 16,
	}
	typ = strings.ToLower(typ)
	if n, ok := fixed[typ]; ok {
		return n, nil
	}
	perChar := map[string]int{"nvarchar": 2, "nchar": 2, "varchar": 1, "char": 1, "varbinary": 1, "binary": 1}[typ]
	if perChar == 0 {
		return 0, fmt.Errorf("type %s: size unknown", typ)
	}
	if strings.EqualFold(size, "max") {
		return -1, nil
	}
	n, err := strconv.Atoi(size)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("type %s(%s): size unknown", typ, size)
	}
	return perChar * n, nil
}

// parenthesized returns what is inside the parentheses s starts with.
func parenthesized(s string) (string, bool) {
	depth := 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return s[1:i], true
			}
		}
	}
	return "", false
}

// splitTopLevel splits s at the commas outside parentheses.
func splitTopLevel(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}
