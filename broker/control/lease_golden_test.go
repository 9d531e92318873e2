package control

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/internal/golden"
)

// TestLeaseGolden shows the lease table's DDL and the reaper's claim
// statements as each dialect receives them, so that a DBA can review them
// (SQL Server cannot run in CI).
func TestLeaseGolden(t *testing.T) {
	for _, dialect := range []string{SQLite, Postgres, SQLServer} {
		t.Run(dialect, func(t *testing.T) {
			db := &DB{dialect: dialect}
			var b strings.Builder
			b.WriteString("-- sqlgate_lease on " + dialect + ": schema (OpenLeaseStore)\n")
			for _, stmt := range LeaseSchema(dialect) {
				b.WriteString(strings.TrimSpace(stmt) + ";\n")
			}
			for _, q := range []struct {
				what string
				spec claimSpec
			}{
				{"expire due leases (reaper, step 1)", expireSpec},
				{"abandon leases whose creator died (reaper, step 2)", abandonSpec},
				{"claim due revocations (reaper, step 3)", dueSpec},
			} {
				b.WriteString("\n-- " + q.what + "\n" + db.q(claimQuery(dialect, q.spec)) + ";\n")
			}
			b.WriteString("\n-- count a principal's unfinished leases whose access has not ended (the limit, at every issue)\n" + db.q(countHeldQuery(dialect)) + ";\n")
			b.WriteString("\n-- list a principal's unfinished leases (revoke-all)\n" + db.q(unfinishedQuery(dialect)) + ";\n")
			b.WriteString("\n-- delete final leases past the retention, a batch at a time (reaper, hourly)\n" + db.q(pruneFinalQuery(dialect)) + ";\n")
			writePageQueries(&b, dialect, leasePage, "a principal's leases")
			compareGolden(t, filepath.Join("testdata", "lease_"+dialect+".golden"), b.String())
		})
	}
}

// TestSessionGolden shows the dashboard session table's DDL as each dialect
// receives it (SQL Server cannot run in CI).
func TestSessionGolden(t *testing.T) {
	for _, dialect := range []string{SQLite, Postgres, SQLServer} {
		t.Run(dialect, func(t *testing.T) {
			var b strings.Builder
			b.WriteString("-- sqlgate_web_session on " + dialect + ": schema (OpenSessionStore)\n")
			for _, stmt := range SessionSchema(dialect) {
				b.WriteString(strings.TrimSpace(stmt) + ";\n")
			}
			compareGolden(t, filepath.Join("testdata", "session_"+dialect+".golden"), b.String())
		})
	}
}

// compareGolden checks got against the golden file at path (see
// internal/golden), so that a change of the SQL shows in review.
func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	golden.Compare(t, path, []byte(got))
}
