package sqlstore_test

import (
	"context"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// TestPostgresWriteAfterStatementsLost: the batch write is a statement
// prepared on the connection; when the server no longer has it (DEALLOCATE
// ALL or DISCARD ALL on that session, as a connection pooler may run),
// the next append still becomes durable instead of failing the call it
// records.
func TestPostgresWriteAfterStatementsLost(t *testing.T) {
	s, db := newPostgresDB(t)
	db.SetMaxOpenConns(1) // the session the statements are lost on is the writer's
	ctx := context.Background()
	l, err := audit.Open(ctx, s, audittest.Config(t, "sqlgate.test/lost"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	allow := true
	rec := func(corr string) *audit.Record {
		return &audit.Record{Kind: audit.KindIntent, CorrelationID: corr, Allow: &allow, Route: "orders.v1.create"}
	}
	if _, err := l.AppendWithInput(ctx, rec("before"), []byte(`{"params":{}}`)); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{"DEALLOCATE ALL", "DISCARD ALL"} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatal(err)
		}
		i, err := l.AppendWithInput(ctx, rec("after "+stmt), []byte(`{"params":{}}`))
		if err != nil {
			t.Fatalf("append after %s = %v", stmt, err)
		}
		if got := l.Size(); got != i+1 {
			t.Errorf("log size after %s = %d, want %d", stmt, got, i+1)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlgate_audit_records").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if want := int(l.Size()); n != want {
		t.Errorf("%d records stored, want %d", n, want)
	}
}
