package sqlstore

import (
	"fmt"
	"strconv"
	"strings"
)

// Dialect names accepted by [Open].
const (
	SQLite    = "sqlite"
	Postgres  = "postgres"
	SQLServer = "sqlserver"
)

// Table names; every table of the store starts with this prefix.
const (
	prefix         = "sqlgate_audit_"
	tOrigins       = prefix + "origins"
	tRecords       = prefix + "records"
	tInputs        = prefix + "inputs"
	tHashes        = prefix + "hashes"
	tCheckpoints   = prefix + "checkpoints"
	tKeys          = prefix + "keys"
	tOpenIntents   = prefix + "open_intents"
	tHeads         = prefix + "heads"
	maxRowsPerStmt = 256
)

// dialect holds what differs between the databases.
type dialect struct {
	name string
	// maxParams is the most bind parameters one statement may carry.
	maxParams int
	schema    []string
	// placeholder returns the n-th (1-based) bind parameter.
	placeholder func(n int) string
	// first1 wraps an ordered single-row query: sqlite/postgres append
	// LIMIT 1, SQL Server puts TOP (1) after SELECT.
	first1 func(selectList, rest string) string
}

func newDialect(name string) (*dialect, error) {
	switch name {
	case SQLite:
		return &dialect{
			name: SQLite, maxParams: 32766,
			placeholder: func(int) string { return "?" },
			first1:      func(sel, rest string) string { return "SELECT " + sel + " " + rest + " LIMIT 1" },
			schema: []string{
				`CREATE TABLE IF NOT EXISTS ` + tOrigins + ` (origin TEXT NOT NULL PRIMARY KEY, first_index INTEGER NOT NULL)`,
				`CREATE TABLE IF NOT EXISTS ` + tRecords + ` (origin TEXT NOT NULL, idx INTEGER NOT NULL, rec_time INTEGER NOT NULL, data BLOB NOT NULL, leaf BLOB NOT NULL, PRIMARY KEY (origin, idx))`,
				`CREATE TABLE IF NOT EXISTS ` + tInputs + ` (origin TEXT NOT NULL, idx INTEGER NOT NULL, rec_time INTEGER NOT NULL, input BLOB NOT NULL, PRIMARY KEY (origin, idx))`,
				`CREATE TABLE IF NOT EXISTS ` + tHashes + ` (origin TEXT NOT NULL, id INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (origin, id)) WITHOUT ROWID`,
				`CREATE TABLE IF NOT EXISTS ` + tCheckpoints + ` (origin TEXT NOT NULL, tree_size INTEGER NOT NULL, created INTEGER NOT NULL, note BLOB NOT NULL, PRIMARY KEY (origin, tree_size))`,
				`CREATE TABLE IF NOT EXISTS ` + tKeys + ` (origin TEXT NOT NULL, key_id TEXT NOT NULL, vkey TEXT NOT NULL, added INTEGER NOT NULL, PRIMARY KEY (origin, key_id))`,
				`CREATE TABLE IF NOT EXISTS ` + tOpenIntents + ` (origin TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (origin, idx)) WITHOUT ROWID`,
				`CREATE TABLE IF NOT EXISTS ` + tHeads + ` (origin TEXT NOT NULL PRIMARY KEY, tree_size INTEGER NOT NULL, root BLOB NOT NULL, mac BLOB NOT NULL)`,
			},
		}, nil
	case Postgres:
		return &dialect{
			name: Postgres, maxParams: 65535,
			placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
			first1:      func(sel, rest string) string { return "SELECT " + sel + " " + rest + " LIMIT 1" },
			schema: []string{
				`CREATE TABLE IF NOT EXISTS ` + tOrigins + ` (origin TEXT NOT NULL PRIMARY KEY, first_index BIGINT NOT NULL)`,
				`CREATE TABLE IF NOT EXISTS ` + tRecords + ` (origin TEXT NOT NULL, idx BIGINT NOT NULL, rec_time BIGINT NOT NULL, data BYTEA NOT NULL, leaf BYTEA NOT NULL, PRIMARY KEY (origin, idx))`,
				`CREATE TABLE IF NOT EXISTS ` + tInputs + ` (origin TEXT NOT NULL, idx BIGINT NOT NULL, rec_time BIGINT NOT NULL, input BYTEA NOT NULL, PRIMARY KEY (origin, idx))`,
				`CREATE TABLE IF NOT EXISTS ` + tHashes + ` (origin TEXT NOT NULL, id BIGINT NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY (origin, id))`,
				`CREATE TABLE IF NOT EXISTS ` + tCheckpoints + ` (origin TEXT NOT NULL, tree_size BIGINT NOT NULL, created BIGINT NOT NULL, note BYTEA NOT NULL, PRIMARY KEY (origin, tree_size))`,
				`CREATE TABLE IF NOT EXISTS ` + tKeys + ` (origin TEXT NOT NULL, key_id TEXT NOT NULL, vkey TEXT NOT NULL, added BIGINT NOT NULL, PRIMARY KEY (origin, key_id))`,
				`CREATE TABLE IF NOT EXISTS ` + tOpenIntents + ` (origin TEXT NOT NULL, idx BIGINT NOT NULL, PRIMARY KEY (origin, idx))`,
				`CREATE TABLE IF NOT EXISTS ` + tHeads + ` (origin TEXT NOT NULL PRIMARY KEY, tree_size BIGINT NOT NULL, root BYTEA NOT NULL, mac BYTEA NOT NULL)`,
			},
		}, nil
	case SQLServer:
		create := func(table, cols string) string {
			return `IF OBJECT_ID(N'` + table + `', N'U') IS NULL CREATE TABLE ` + table + ` (` + cols + `)`
		}
		return &dialect{
			name: SQLServer, maxParams: 2000, // the protocol allows 2100
			placeholder: func(n int) string { return "@p" + strconv.Itoa(n) },
			first1:      func(sel, rest string) string { return "SELECT TOP (1) " + sel + " " + rest },
			schema: []string{
				create(tOrigins, `origin NVARCHAR(256) NOT NULL PRIMARY KEY, first_index BIGINT NOT NULL`),
				create(tRecords, `origin NVARCHAR(256) NOT NULL, idx BIGINT NOT NULL, rec_time BIGINT NOT NULL, data VARBINARY(MAX) NOT NULL, leaf BINARY(32) NOT NULL, PRIMARY KEY (origin, idx)`),
				create(tInputs, `origin NVARCHAR(256) NOT NULL, idx BIGINT NOT NULL, rec_time BIGINT NOT NULL, input VARBINARY(MAX) NOT NULL, PRIMARY KEY (origin, idx)`),
				create(tHashes, `origin NVARCHAR(256) NOT NULL, id BIGINT NOT NULL, hash BINARY(32) NOT NULL, PRIMARY KEY (origin, id)`),
				create(tCheckpoints, `origin NVARCHAR(256) NOT NULL, tree_size BIGINT NOT NULL, created BIGINT NOT NULL, note VARBINARY(MAX) NOT NULL, PRIMARY KEY (origin, tree_size)`),
				// Nonclustered: origin and key id take up to 1,112 bytes,
				// over a clustered key's 900 (a nonclustered one may hold
				// 1,700 since SQL Server 2016); see TestSQLServerIndexKeySizes.
				create(tKeys, `origin NVARCHAR(256) NOT NULL, key_id NVARCHAR(300) NOT NULL, vkey NVARCHAR(1000) NOT NULL, added BIGINT NOT NULL, PRIMARY KEY NONCLUSTERED (origin, key_id)`),
				create(tOpenIntents, `origin NVARCHAR(256) NOT NULL, idx BIGINT NOT NULL, PRIMARY KEY (origin, idx)`),
				create(tHeads, `origin NVARCHAR(256) NOT NULL PRIMARY KEY, tree_size BIGINT NOT NULL, root BINARY(32) NOT NULL, mac BINARY(32) NOT NULL`),
			},
		}, nil
	}
	return nil, fmt.Errorf("sqlstore: unknown dialect %q (want %s, %s or %s)", name, SQLite, Postgres, SQLServer)
}

// bind rewrites the '?' placeholders of q (our own SQL, which has no '?'
// inside literals) into the dialect's form.
func (d *dialect) bind(q string) string {
	if d.name == SQLite {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteString(d.placeholder(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// insert returns `INSERT INTO table (cols) VALUES (?,..),(?,..)` for rows
// rows, in the dialect's placeholder form.
func (d *dialect) insert(table string, cols []string, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return d.bind(b.String())
}

// rowsPerStmt is the most rows of cols columns one INSERT may carry.
func (d *dialect) rowsPerStmt(cols int) int {
	return min(maxRowsPerStmt, d.maxParams/cols)
}

// chunks splits n rows into statement sizes that are powers of two (at most
// max), so only a handful of distinct statements are ever prepared.
func chunks(n, limit int) []int {
	p := 1
	for p*2 <= limit {
		p *= 2
	}
	var out []int
	for n > 0 {
		for p > n {
			p /= 2
		}
		out = append(out, p)
		n -= p
	}
	return out
}
