package sqlserver

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"testing"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/route"
)

// A routed procedure that commits the call's transaction (error 266 when
// its EXEC returns, or its own error raised after the COMMIT) has
// committed its work and the call's idempotency record: the call's error
// is then no *broker.DBError, which the broker would record as a rollback,
// but ErrUnavailable with ErrCommittedWithoutResult, after which the broker
// looks the key up and finds the record. A failure the transaction rolled
// back stays the server's error.
func TestProcedureCommitIsNoDBError(t *testing.T) {
	t.Parallel()
	tranCount := mssql.Error{Number: 266, State: 2, Message: "Transaction count after EXECUTE indicates a mismatching number of BEGIN and COMMIT statements. Previous count = 1, current count = 0."}
	thrownAfterCommit := mssql.Error{Number: 50404, State: 1, Message: "order not found", All: []mssql.Error{{Number: 50404, Message: "order not found"}, tranCount}}
	deadlockAfterCommit := mssql.Error{Number: 1205, State: 51, Message: "Transaction (Process ID 52) was deadlocked"}
	tests := []struct {
		name      string
		callErr   error
		committed bool
		number    string
	}{
		{"commit_266", tranCount, true, "server error 266"},
		{"commit_then_throw", thrownAfterCommit, true, "server error 50404"},
		{"commit_then_deadlock", &deadlockAfterCommit, true, "server error 1205"},
		{"rolled_back_266", tranCount, false, ""},
		{"rolled_back_throw", thrownAfterCommit, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{answer: func(q string, _ map[string]any) ([]string, []driver.Value, error) {
				if q == CommittedBatch {
					return []string{"committed"}, []driver.Value{tc.committed}, nil
				}
				return nil, nil, nil
			}}
			db := sql.OpenDB(r)
			t.Cleanup(func() { _ = db.Close() })
			conn, err := db.Conn(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			cfg := Config{Name: "orders"}
			cfg.defaults()
			e := &Executor{cfg: cfg}

			got := e.endFailedCall(conn, 42, "key-1", tc.callErr)

			calls := r.log()
			if len(calls) != 2 || calls[0].query != RollbackBatch || calls[1].query != CommittedBatch {
				t.Fatalf("sent %d batches, want RollbackBatch then CommittedBatch", len(calls))
			}
			if calls[1].args["transaction_id"] != int64(42) || calls[1].args["idempotency_key"] != mssql.NVarCharMax("key-1") {
				t.Errorf("CommittedBatch parameters = %v", calls[1].args)
			}
			final := e.classify(context.Background(), got, &broker.Call{Route: &route.Route{}})
			var dbe *broker.DBError
			if !tc.committed {
				var me, want mssql.Error
				if !errors.As(got, &me) || !errors.As(tc.callErr, &want) || me.Number != want.Number || !errors.As(final, &dbe) {
					t.Errorf("endFailedCall(rolled back) = %v, classified %v; want the server's error, a DBError", got, final)
				}
				return
			}
			if errors.As(final, &dbe) {
				t.Fatalf("a call the procedure committed is classified %v, a DBError (audited as a rollback)", final)
			}
			if !errors.Is(final, ErrCommittedWithoutResult) || !errors.Is(final, broker.ErrUnavailable) || !strings.Contains(final.Error(), tc.number) {
				t.Errorf("classified %v, want ErrUnavailable and ErrCommittedWithoutResult naming %s", final, tc.number)
			}
			if retryable(got) {
				t.Errorf("retryable(%v) = true: the committed call would run again", got)
			}
		})
	}
}
