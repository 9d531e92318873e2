package audit_test

import (
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// call returns the intent of a routed call and the outcome the broker (or
// crash recovery) writes for it: the outcome repeats the intent's link to
// the SQL transaction.
func call() (in, out *audit.Record) {
	allow := true
	in = &audit.Record{
		Kind: audit.KindIntent, CorrelationID: "corr-victim", Actor: &audit.Actor{Subject: "alice"}, Allow: &allow,
		Route: "orders.v1.create", TargetKind: "procedure", Target: "create_order", IdempotencyKey: "idem-victim",
		SQL: &audit.SQL{Server: "srv", Database: "orders", Outcome: "pending"},
	}
	out = &audit.Record{
		Kind: audit.KindOutcome, CorrelationID: "corr-victim", Actor: &audit.Actor{Subject: "alice"},
		Route: "orders.v1.create", TargetKind: "procedure", Target: "create_order", IdempotencyKey: "idem-victim",
		SQL:    &audit.SQL{Server: "srv", Database: "orders", Outcome: "commit", TransactionID: "777"},
		Result: &audit.Result{Status: "ok", Recovered: true},
	}
	return in, out
}

// An outcome signed into the log with another correlation id, idempotency
// key, route, target, server or database than its intent is what crash
// recovery writes from an intent a DBA edited and then restored: the
// signed log links the call to another transaction. Verify fails, naming
// the outcome's index and the field.
func TestVerifyDetectsFalsifiedIntentLink(t *testing.T) {
	cases := []struct {
		field  string
		mutate func(r *audit.Record)
	}{
		{"correlation_id", func(r *audit.Record) { r.CorrelationID = "corr-other" }},
		{"idempotency_key", func(r *audit.Record) { r.IdempotencyKey = "idem-other" }},
		{"idempotency_key", func(r *audit.Record) { r.IdempotencyKey = "" }},
		{"route", func(r *audit.Record) { r.Route = "orders.v1.delete" }},
		{"target_kind", func(r *audit.Record) { r.TargetKind = "statement" }},
		{"target", func(r *audit.Record) { r.Target = "delete_order" }},
		{"sql.server", func(r *audit.Record) { r.SQL.Server = "other" }},
		{"sql.database", func(r *audit.Record) { r.SQL.Database = "payroll" }},
		{"sql.server, sql.database", func(r *audit.Record) { r.SQL = &audit.SQL{Outcome: "commit"} }},
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			store := audittest.NewStore()
			l := openLog(t, store, nil)
			in, out := call()
			i := mustAppend(t, l, in)
			out.IntentIndex = i
			tc.mutate(out)
			o := mustAppend(t, l, out)
			mustAppend(t, l, intent("later")) // the scan goes on after the failure
			if err := l.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			rep := verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}})
			if rep.OK() || len(rep.Failures) != 1 {
				t.Fatalf("Verify OK=%v failures=%v, want one link_mismatch", rep.OK(), rep.Failures)
			}
			f := rep.Failures[0]
			if f.Code != audit.ProblemLinkMismatch || f.Index != o || !strings.Contains(f.Message, "differs from it in "+tc.field+":") {
				t.Errorf("failure = %+v, want link_mismatch at index %d naming %s", f, o, tc.field)
			}
			if rep.Origins[0].FirstBad != o || rep.Origins[0].Records != 4 || rep.Origins[0].Unpaired != 1 {
				t.Errorf("origin report = %+v, want first bad %d, all 4 records checked, the later intent unpaired", rep.Origins[0], o)
			}
		})
	}
	t.Run("matching", func(t *testing.T) {
		store := audittest.NewStore()
		l := openLog(t, store, nil)
		in, out := call()
		out.IntentIndex = mustAppend(t, l, in)
		mustAppend(t, l, out)
		if err := l.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		rep := verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}})
		requireOK(t, rep)
		if rep.Origins[0].Unpaired != 0 || len(rep.ExceptionCounts) != 0 {
			t.Errorf("a matching pair: %+v, exceptions %v", rep.Origins[0], rep.ExceptionCounts)
		}
	})
}

// A bundle exported with --from does not hold the records before it: the
// report says they may have been left out of the export, not only pruned,
// and counts in the singular when there is one.
func TestReportWordsRecordsBeforeTheExport(t *testing.T) {
	store := audittest.NewStore()
	l := buildLog(t, store, 10, 2, "c", nil, nil) // checkpoints 1, 5, 9, 13, 17, 21
	_ = l.Close(t.Context())
	b := openBundle(t, writeBundle(t, store, audit.BundleOptions{From: 5, To: 20}))
	rep := verify(t, b, audit.VerifyOptions{Keys: []string{vkey(t, 1)}})
	requireOK(t, rep)
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"OK (12 records, 1 origin,", "records checked: 12 (indexes 5 to 16), 5 older records not in the source (pruned, or left out of the export)\n"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}
}
