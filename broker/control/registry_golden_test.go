package control

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestRegistryGolden shows the callout token table's DDL and the registry
// statements that renew an issuance and refuse callout tokens as each
// dialect receives them, so that a DBA can review them (SQL Server cannot
// run in CI).
func TestRegistryGolden(t *testing.T) {
	for _, dialect := range []string{SQLite, Postgres, SQLServer} {
		t.Run(dialect, func(t *testing.T) {
			db := &DB{dialect: dialect}
			var b strings.Builder
			b.WriteString("-- sqlgate_callout_token on " + dialect + ": schema (created by the registry)\n")
			for _, stmt := range CalloutTokenSchema(dialect) {
				b.WriteString(strings.TrimSpace(stmt) + ";\n")
			}
			for _, q := range []struct{ what, sql string }{
				{"lock the key's row before reading it (Put)", sqlPutLock},
				{"issue a key again: only the row as read, keeping the latest expiry (Put)", sqlPutUpdate},
				{"record the token of a callout credential (BindCalloutToken)", sqlBindUpdate},
				{"record the token of a new callout credential (BindCalloutToken)", sqlBindInsert},
				{"refuse the token of a revoked callout credential (RefuseCalloutTokens)", sqlRefuse},
				{"is a token refused (CalloutTokenRefused)", sqlRefused},
				{"prune token records (Prune)", sqlPruneTokens},
			} {
				b.WriteString("\n-- " + q.what + "\n" + db.q(q.sql) + ";\n")
			}
			compareGolden(t, filepath.Join("testdata", "registry_"+dialect+".golden"), b.String())
		})
	}
}
