package sqlstore_test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
)

const crashEnv = "SQLGATE_AUDIT_CRASH_HELPER_DB"

// TestCrashHelper is the child process of TestCrashBetweenIntentAndOutcome:
// it appends an intent, reports its index and waits to be killed (as if it
// died between the SQL commit and the outcome record).
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process for TestCrashBetweenIntentAndOutcome")
	}
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sqlstore.Open(context.Background(), db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(context.Background(), s, audittest.Config(t, origin))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		corr := fmt.Sprint("done-", i)
		in, err := l.Append(context.Background(), &audit.Record{Kind: audit.KindIntent, CorrelationID: corr})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(context.Background(), &audit.Record{
			Kind: audit.KindOutcome, CorrelationID: corr, IntentIndex: in,
			SQL: &audit.SQL{Outcome: "commit"}, Result: &audit.Result{Status: "ok"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	in, err := l.Append(context.Background(), &audit.Record{Kind: audit.KindIntent, CorrelationID: "in-flight", IdempotencyKey: "k-1"})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("INTENT %d\n", in)
	select {} // wait for SIGKILL: no Close, no final checkpoint
}

// TestCrashBetweenIntentAndOutcome kills a process that made an intent
// durable and never wrote the outcome; on restart the intent is found,
// the missing outcome is appended as recovered, and the log verifies.
func TestCrashBetweenIntentAndOutcome(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("in the helper")
	}
	_, db, path := newSQLite(t)
	_ = db.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.v")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var intent int64 = -1
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "INTENT "); ok {
			intent, _ = strconv.ParseInt(v, 10, 64)
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if intent < 0 {
		t.Fatal("helper did not report its intent")
	}

	db2, err := sql.Open("sqlite", sqlstore.SQLiteDSN(path))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db2.Close() }()
	s, err := sqlstore.Open(t.Context(), db2, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(t.Context(), s, audittest.Config(t, origin))
	if err != nil {
		t.Fatalf("reopen after kill = %v", err)
	}
	defer func() { _ = l.Close(context.Background()) }()
	open, err := l.Unpaired(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || open[0].Index != intent || open[0].IdempotencyKey != "k-1" {
		t.Fatalf("Unpaired after the crash = %+v, want the in-flight intent %d", open, intent)
	}
	// Before recovery the verifier lists it as an exception, not a failure.
	_ = l.Sync(t.Context())
	rep, err := audit.Verify(t.Context(), s, audit.VerifyOptions{Keys: keys(t)})
	if err != nil || !rep.OK() || rep.Origins[0].Unpaired != 1 {
		t.Fatalf("before recovery: %+v %v", rep, err)
	}
	// The broker looked up the idempotency record and found the commit.
	if _, err := l.Append(t.Context(), &audit.Record{
		Kind: audit.KindOutcome, CorrelationID: "in-flight", IntentIndex: intent, IdempotencyKey: "k-1",
		SQL: &audit.SQL{Outcome: "commit"}, Result: &audit.Result{Status: "ok", Recovered: true},
	}); err != nil {
		t.Fatal(err)
	}
	if open, _ := l.Unpaired(t.Context()); len(open) != 0 {
		t.Errorf("Unpaired after recovery = %+v", open)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep, err = audit.Verify(t.Context(), s, audit.VerifyOptions{Keys: keys(t)})
	if err != nil || !rep.OK() || rep.Origins[0].Unpaired != 0 || len(rep.Exceptions) != 0 {
		t.Errorf("after recovery: failures %v exceptions %v %v", rep.Failures, rep.Exceptions, err)
	}
}
