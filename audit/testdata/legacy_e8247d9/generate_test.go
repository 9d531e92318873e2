package audit_test

// Generator of store.sql beside it: a SQLite audit store written by sqlgate
// at commit e8247d9, the release before checkpoints said "rotations
// recorded", which wrote a key_rotation record only for a key new to the
// log. audit/legacy_log_test.go loads it. The go tool skips testdata, so
// this file is not built here; to make the store again:
//
//	git worktree add /tmp/wt-old e8247d9
//	cp audit/testdata/legacy_e8247d9/generate_test.go /tmp/wt-old/audit/legacy_gen_test.go
//	(cd /tmp/wt-old && SQLGATE_LEGACY_DB=/tmp/legacy.db go test ./audit/ -run TestGenerateLegacyStore -count=1)
//	sqlite3 /tmp/legacy.db .dump > audit/testdata/legacy_e8247d9/store.sql
//	git worktree remove /tmp/wt-old
//
// The keys are audittest.Key's deterministic test keys (seeds 1 and 2:
// anyone can recompute them, they sign nothing else), the parameter key is
// audittest.ParamKey, and the clock is fixed. The log goes A -> B -> A:
// session 1 under key A (log_start at 0), session 2 under key B with A as
// previous key (key_rotation at 4), session 3 under key A again with B as
// previous key, for which e8247d9 wrote no record (A was in the key
// history already). Each session appends an intent with a decision input
// (input_sha256), its outcome and a decision, with checkpoints in between.

import (
	"context"
	"database/sql"
	"os"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
)

func TestGenerateLegacyStore(t *testing.T) {
	path := os.Getenv("SQLGATE_LEGACY_DB")
	if path == "" {
		t.Skip("SQLGATE_LEGACY_DB not set")
	}
	ctx := context.Background()
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := sqlstore.Open(ctx, db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	const origin = "sqlgate.test/legacy"
	sA, vA := audittest.Key(t, origin, 1)
	sB, vB := audittest.Key(t, origin, 2)
	var mu sync.Mutex
	now := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second)
		return now
	}
	session := func(s audit.Signer, prev []string, corr string) {
		cfg := audittest.Config(t, origin)
		cfg.Instance = "legacy"
		cfg.Signer, cfg.PreviousKeys, cfg.Now = s, prev, clock
		cfg.CheckpointInterval, cfg.Heartbeat, cfg.EnqueueLinger = time.Hour, 24*time.Hour, -1
		l, err := audit.Open(ctx, store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		allow := true
		in := &audit.Record{
			Kind: audit.KindIntent, CorrelationID: corr + "-1", Route: "orders.v1.create", TargetKind: "procedure", Target: "dbo.CreateOrder",
			Actor: &audit.Actor{Issuer: "https://idp.test", Subject: "alice"}, Allow: &allow, DecisionID: corr + "-d1",
			Params: l.HashParams(map[string]any{"qty": 3}, nil), IdempotencyKey: corr + "-k1",
		}
		i, err := l.AppendWithInput(ctx, in, []byte(`{"input":{"params":{"qty":3}},"corr":"`+corr+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		out := &audit.Record{
			Kind: audit.KindOutcome, CorrelationID: corr + "-1", IntentIndex: i, Route: "orders.v1.create", TargetKind: "procedure", Target: "dbo.CreateOrder",
			IdempotencyKey: corr + "-k1", SQL: &audit.SQL{Outcome: "commit", Rows: 1}, Result: &audit.Result{Status: "ok", DurationUS: 120},
		}
		if _, err := l.Append(ctx, out); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		deny := false
		if _, err := l.Append(ctx, &audit.Record{Kind: audit.KindDecision, CorrelationID: corr + "-2", Entry: "call", Allow: &deny, Reasons: []string{"denied"}}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	session(sA, nil, "a")
	session(sB, []string{vA}, "b")
	session(sA, []string{vB}, "c")
	rep, err := audit.Verify(ctx, store, audit.VerifyOptions{Keys: []string{vA, vB}})
	if err != nil || !rep.OK() {
		t.Fatalf("Verify = %v, %v", rep, err)
	}
}
