package control

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/broker"
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
				{"issue a key again: only the row as read, keeping the latest expiry (Put)", putUpdateQuery(dialect)},
				{"record the token of a callout credential (BindCalloutToken)", sqlBindUpdate},
				{"record the token of a new callout credential (BindCalloutToken)", sqlBindInsert},
				{"refuse the token of a revoked callout credential (RefuseCalloutTokens)", sqlRefuse},
				{"is a token refused (CalloutTokenRefused)", sqlRefused},
				{"count a principal's live issuances (CountLive)", countLiveQuery(dialect)},
				{"remove an issuance whose JWT was never released (Withdraw)", sqlWithdraw},
				{"prune token records (Prune)", sqlPruneTokens},
			} {
				b.WriteString("\n-- " + q.what + "\n" + db.q(q.sql) + ";\n")
			}
			b.WriteString("\n-- sqlgate_issuance on " + dialect + ": the index of ByPrincipalPage\n")
			for _, stmt := range IssuanceListSchema(dialect) {
				b.WriteString(stmt + ";\n")
			}
			writePageQueries(&b, dialect, issuancePage, "a principal's issuances")
			compareGolden(t, filepath.Join("testdata", "registry_"+dialect+".golden"), b.String())
		})
	}
}

// writePageQueries writes the statements that read a page of spec (first
// and following pages, each filter) as dialect receives them, each with the
// order of its arguments.
func writePageQueries(b *strings.Builder, dialect string, spec pageSpec, what string) {
	db := &DB{dialect: dialect}
	filters := []struct {
		name   string
		filter broker.ListFilter
	}{{"all", broker.ListAll}, {"live", broker.ListLive}, {"ended", broker.ListEnded}}
	at := time.Unix(0, 1700000000000000000)
	for _, f := range filters {
		for _, before := range []*broker.ListCursor{nil, {IssuedAt: 1699999999000000000, Key: "KEY"}} {
			which := "first page"
			if before != nil {
				which = "next page"
			}
			q, args := pageQuery(dialect, spec, "PRINCIPAL", broker.ListPage{Before: before, Limit: 101, Filter: f.filter, At: at})
			fmt.Fprintf(b, "\n-- list %s, %s, %s (ByPrincipalPage); arguments %v\n%s;\n", what, f.name, which, args, db.q(q))
		}
	}
}
