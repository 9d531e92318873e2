package evidence_test

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

// call appends the intent of a call under idempotency key key at at, and
// its outcome a minute later; outcome fills the outcome's SQL and result.
// It returns the outcome's index.
func (in *instance) call(t *testing.T, at time.Time, corr, key string, outcome func(*audit.Record)) int64 {
	t.Helper()
	r := &audit.Record{
		Kind: audit.KindIntent, CorrelationID: corr, Actor: alice, Allow: &allow, Route: "orders.v1.create",
		TargetKind: "procedure", Target: "create_order", IdempotencyKey: key,
		SQL: &audit.SQL{Server: "pg", Database: "orders", Outcome: "pending"},
	}
	in.at.set(at)
	intent, err := in.log.Append(t.Context(), r)
	if err != nil {
		t.Fatal(err)
	}
	out := &audit.Record{
		Kind: audit.KindOutcome, CorrelationID: corr, IntentIndex: intent, Actor: alice, Route: "orders.v1.create",
		TargetKind: "procedure", Target: "create_order", IdempotencyKey: key,
		SQL: &audit.SQL{Server: "pg", Database: "orders"}, Result: &audit.Result{DurationUS: 1000},
	}
	outcome(out)
	in.at.set(at.Add(time.Minute))
	i, err := in.log.Append(t.Context(), out)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// Outcomes as the broker and crash recovery write them.
func committed(txid string) func(*audit.Record) {
	return func(r *audit.Record) { r.SQL.Outcome, r.SQL.TransactionID, r.Result.Status = "commit", txid, "ok" }
}

func replayed(txid string) func(*audit.Record) {
	return func(r *audit.Record) {
		r.SQL.Outcome, r.SQL.TransactionID, r.Result.Status, r.Result.Replayed = "none", txid, "ok", true
	}
}

func unknown(r *audit.Record) { r.SQL.Outcome, r.Result.Status = "unknown", "unavailable" }

func recovered(outcome, status, txid string) func(*audit.Record) {
	return func(r *audit.Record) {
		r.SQL.Outcome, r.SQL.TransactionID, r.Result.Status, r.Result.Recovered, r.Result.DurationUS = outcome, txid, status, true, 0
	}
}

// TestWriteListsUnknownAndRecoveredOutcomes: every call of the period whose
// outcome is unknown, or was written by crash recovery, is an exception. A
// call whose outcome is unknown and that committed shows up in no commit
// row: its retry is a replay carrying the stored transaction id, so the
// exception names that replay and transaction, whichever instance
// answered it, and only a replay after the call.
func TestWriteListsUnknownAndRecoveredOutcomes(t *testing.T) {
	store := audittest.NewStore()
	z := openInstance(t, store, "sqlgate.test/z-instance")
	a := openInstance(t, store, "sqlgate.test/a-instance") // read first
	outcomes := map[string]int64{}
	// Committed, but the reply to COMMIT was lost; the retry on another
	// instance is answered with the stored result.
	outcomes["lost-commit"] = z.call(t, day(2, 9), "lost-commit", "k1", unknown)
	outcomes["retry"] = a.call(t, day(2, 10), "retry", "k1", replayed("500"))
	// Unknown, never retried.
	outcomes["abandoned"] = z.call(t, day(2, 11), "abandoned", "k2", unknown)
	// A replay of k3 before the unknown call is not its retry.
	a.call(t, day(2, 8), "k3-first", "k3", committed("700"))
	a.call(t, day(2, 8).Add(10*time.Minute), "k3-replay", "k3", replayed("700"))
	outcomes["k3-unknown"] = z.call(t, day(2, 12), "k3-unknown", "k3", unknown)
	// Crash recovery.
	outcomes["rec-commit"] = z.call(t, day(2, 13), "rec-commit", "k4", recovered("commit", "ok", "600"))
	outcomes["rec-none"] = z.call(t, day(2, 14), "rec-none", "k5", recovered("none", "not_run", ""))
	outcomes["rec-rollback"] = z.call(t, day(2, 15), "rec-rollback", "k6", recovered("rollback", "unavailable", ""))
	outcomes["rec-unknown"] = z.call(t, day(2, 16), "rec-unknown", "k7", func(r *audit.Record) {
		recovered("unknown", "internal", "")(r)
	})
	// An ordinary commit is no exception; neither is a call of another
	// period.
	z.call(t, day(2, 17), "fine", "k8", committed("800"))
	z.call(t, day(1, 12), "yesterday", "k9", unknown)
	z.close(t)
	a.close(t)

	files, m := evidenceOf(t, store, z, a)
	rows := map[string]map[string]string{} // by correlation id, from the message
	counts := map[string]int{}
	for _, row := range table(t, files["csv/exceptions.csv"]) {
		code := row["code"]
		if code != string(evidence.ExceptionUnknownOutcome) && code != string(evidence.ExceptionRecoveredOutcome) {
			continue
		}
		counts[code]++
		corr := strings.TrimPrefix(row["message"], `call "`)
		corr = corr[:strings.Index(corr, `"`)]
		rows[corr] = row
	}
	if counts[string(evidence.ExceptionUnknownOutcome)] != 4 || counts[string(evidence.ExceptionRecoveredOutcome)] != 3 {
		t.Errorf("exceptions.csv rows: %v, want 4 unknown_outcome and 3 recovered_outcome", counts)
	}
	if got := m.Verification.ExceptionCount; got[string(evidence.ExceptionUnknownOutcome)] != 4 || got[string(evidence.ExceptionRecoveredOutcome)] != 3 {
		t.Errorf("manifest exception counts = %v", got)
	}
	for corr, want := range map[string][]string{
		"lost-commit": {"(outcome unknown, status unavailable)", `a later call with the same idempotency key, correlation id "retry" (outcome record ` +
			strconv.FormatInt(outcomes["retry"], 10) + " of sqlgate.test/a-instance), was answered with the stored result of transaction 500: this call committed as transaction 500"},
		"abandoned":    {"no later call with the same idempotency key was answered with a stored result"},
		"k3-unknown":   {"no later call with the same idempotency key was answered with a stored result"},
		"rec-commit":   {"written by crash recovery at 2026-03-02T13:01:00", "the call committed as transaction 600"},
		"rec-none":     {"written by crash recovery", "ran nothing (status not_run)"},
		"rec-rollback": {"written by crash recovery", "the call did not commit (outcome rollback, status unavailable)"},
		"rec-unknown":  {"crash recovery could not ask the target database", "(outcome unknown, status internal)"},
	} {
		row, ok := rows[corr]
		if !ok {
			t.Errorf("no exception for call %s", corr)
			continue
		}
		if row["log_index"] != strconv.FormatInt(outcomes[corr], 10) || row["log_origin"] != "sqlgate.test/z-instance" {
			t.Errorf("%s: exception at %s %s, want the outcome record %d of z", corr, row["log_origin"], row["log_index"], outcomes[corr])
		}
		for _, w := range want {
			if !strings.Contains(row["message"], w) {
				t.Errorf("%s: message %q does not say %q", corr, row["message"], w)
			}
		}
	}

	// activity.csv names each call's outcome record by index and leaf hash.
	for _, row := range table(t, files["csv/activity.csv"]) {
		idx, err := strconv.ParseInt(row["outcome_index"], 10, 64)
		if err != nil {
			t.Fatalf("%s: outcome_index %q", row["correlation_id"], row["outcome_index"])
		}
		var leaf tlog.Hash
		err = store.Records(t.Context(), row["log_origin"], idx, idx+1, func(_ int64, data []byte, _ *tlog.Hash) error {
			leaf = audit.LeafHash(data)
			return nil
		})
		if err != nil || row["outcome_leaf_hash"] != hex.EncodeToString(leaf[:]) {
			t.Errorf("%s: outcome_leaf_hash %s is not the leaf of record %d (%v)", row["correlation_id"], row["outcome_leaf_hash"], idx, err)
		}
	}
}

// TestWriteCapsOutcomeExceptions: the rows are capped per origin, the
// manifest counts them all.
func TestWriteCapsOutcomeExceptions(t *testing.T) {
	store := audittest.NewStore()
	z := openInstance(t, store, "sqlgate.test/z-instance")
	const n = 102
	for i := range n {
		z.call(t, day(2, 9).Add(time.Duration(i)*time.Second), fmt.Sprint("c", i), fmt.Sprint("k", i), unknown)
	}
	z.close(t)
	files, m := evidenceOf(t, store, z)
	listed := 0
	for _, row := range table(t, files["csv/exceptions.csv"]) {
		if row["code"] == string(evidence.ExceptionUnknownOutcome) {
			listed++
		}
	}
	if listed != 100 || m.Verification.ExceptionCount[string(evidence.ExceptionUnknownOutcome)] != n {
		t.Errorf("%d rows listed, %d counted; want 100 and %d", listed, m.Verification.ExceptionCount[string(evidence.ExceptionUnknownOutcome)], n)
	}
}
