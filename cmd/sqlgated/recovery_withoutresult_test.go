package main

import (
	"context"
	"log/slog"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/broker"
)

// selfCommitted is a database whose only idempotency record was committed
// by the routed procedure itself, without a result (SQL Server).
type selfCommitted struct{ broker.Executor }

func (selfCommitted) Lookup(context.Context, string) (*broker.Result, bool, error) {
	return &broker.Result{TransactionID: "tx-7", DecisionID: "d1", Replayed: true, WithoutResult: true}, true, nil
}

func (selfCommitted) Describe() broker.DatabaseInfo {
	return broker.DatabaseInfo{Dialect: "sqlserver", Server: "db1", Database: "orders"}
}

// TestRecoverIntentWithoutResult: a call whose procedure committed the
// transaction itself, and whose outcome a crash lost, is recovered as the
// commit it was with the status the call answered (db_error), not "ok".
func TestRecoverIntentWithoutResult(t *testing.T) {
	ctx := t.Context()
	store := audittest.NewStore()
	log, err := audit.Open(ctx, store, audittest.Config(t, "sqlgate.test/recovery"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close(context.Background())
	intent, err := log.Append(ctx, &audit.Record{
		Kind: audit.KindIntent, CorrelationID: "c1", DecisionID: "d1", IdempotencyKey: "k1", Route: "orders.v1.create",
		SQL: &audit.SQL{Server: "db1", Database: "orders", Outcome: "pending"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := recoverIntents(ctx, log, map[string]broker.Executor{"orders": selfCommitted{}}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if err := log.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var got *audit.Record
	if err := store.Records(ctx, log.Origin(), 0, log.Size(), func(_ int64, data []byte, _ *tlog.Hash) error {
		r, err := audit.DecodeRecord(data)
		if err == nil && r.Kind == audit.KindOutcome && r.IntentIndex == intent {
			got = r
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.SQL.Outcome != "commit" || got.SQL.TransactionID != "tx-7" || got.Result.Status != broker.CodeDBError || !got.Result.Recovered {
		t.Errorf("recovered outcome = %+v %+v, want the commit of tx-7 with status db_error", got, got.Result)
	}
}
