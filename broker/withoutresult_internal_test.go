package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
)

// selfCommitExecutor models a routed procedure that commits the call's
// transaction itself (SQL Server): the procedure's work and the idempotency
// record are committed without a result, and the call fails. Lookup and a
// later Execute under the key find the record WithoutResult.
type selfCommitExecutor struct {
	mu      sync.Mutex
	records map[string]Result
	runs    int
}

func (x *selfCommitExecutor) Execute(_ context.Context, c *Call) (*Result, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if rec, ok := x.records[c.IdempotencyKey]; ok {
		rec.Replayed = true
		return &rec, nil
	}
	x.runs++
	x.records[c.IdempotencyKey] = Result{TransactionID: "tx-7", RequestHash: c.RequestHash, DecisionID: c.DecisionID, WithoutResult: true}
	return nil, fmt.Errorf("%w: the routed procedure committed the call's transaction itself (server error 266)", ErrUnavailable)
}

func (x *selfCommitExecutor) Lookup(_ context.Context, key string) (*Result, bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	rec, ok := x.records[key]
	if !ok {
		return nil, false, nil
	}
	rec.Replayed = true
	return &rec, true, nil
}

func (x *selfCommitExecutor) Describe() DatabaseInfo { return DatabaseInfo{Dialect: "test"} }

// TestCommittedWithoutResult: a call whose procedure committed the
// transaction itself changed the database, so its audit outcome is a
// commit of that transaction, not a rollback; but it has no result, so the
// caller gets an error that says what happened (with the transaction id)
// and no event is emitted. A retry does not run the procedure again and
// answers the same error, as a replay.
func TestCommittedWithoutResult(t *testing.T) {
	cat, err := route.Parse([]byte(`routes:
  - {subject: jobs.create, procedure: p, database: db, emit: jobs.created}
`))
	if err != nil {
		t.Fatal(err)
	}
	x := &selfCommitExecutor{records: map[string]Result{}}
	rec := &outcomeRecorder{outcomes: map[int64]*audit.Record{}}
	s, err := New(Config{Catalog: cat, Databases: map[string]Executor{"db": x}, Authorizer: &allowAll{}, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	alice := identity.Principal{Issuer: "https://idp.test", Subject: "alice"}
	req := &Request{
		Subject: "jobs.create", Payload: []byte(`{}`), IdempotencyKey: "k1",
		Caller: Caller{Transport: "http", Attested: true, Principal: &alice},
	}
	for i, wantReplayed := range []bool{false, true} {
		rep := s.Handle(t.Context(), req)
		if rep.OK || rep.Error == nil || rep.Error.Code != CodeDBError || rep.Emit != nil {
			t.Fatalf("call %d: ok %v error %+v emit %v; want db_error without an event", i, rep.OK, rep.Error, rep.Emit)
		}
		if rep.SQLTransactionID != "tx-7" || rep.Replayed != wantReplayed {
			t.Errorf("call %d: transaction %q replayed %v; want tx-7, replayed %v", i, rep.SQLTransactionID, rep.Replayed, wantReplayed)
		}
		o := rec.outcomes[rep.AuditIndex]
		wantOutcome := "commit"
		if wantReplayed {
			wantOutcome = "none"
		}
		if o == nil || o.SQL.Outcome != wantOutcome || o.SQL.TransactionID != "tx-7" || o.Result.Status != CodeDBError {
			t.Errorf("call %d: audit outcome %+v, want %s of tx-7 with status db_error", i, o, wantOutcome)
		}
	}
	if x.runs != 1 {
		t.Errorf("the procedure ran %d times, want once", x.runs)
	}
}
