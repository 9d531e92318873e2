package evidence_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

// activityColumns are the columns of activity.csv before reasons and
// sql_error_number were added: scripts read them by position.
var activityColumns = []string{
	"time", "correlation_id", "subject", "email", "issuer", "mfa", "nats_user_key", "client_host", "route", "target_kind", "target",
	"sql_server", "sql_database", "decision_id", "policy_revision", "param_hashes", "idempotency_key",
	"outcome", "sql_transaction_id", "rows", "rows_affected", "status", "replayed", "recovered", "duration_us", "outcome_index", "outcome_leaf_hash",
	"log_origin", "log_index", "leaf_hash",
}

// TestActivityReasonsAndErrorNumber: an auditor lists the break-glass calls
// from the archive (the reasons their allow recorded) and sees why calls
// failed (the SQL error number of the outcome), in two columns added after
// every earlier one.
func TestActivityReasonsAndErrorNumber(t *testing.T) {
	store := audittest.NewStore()
	in := openInstance(t, store, origin)
	intent := func(at time.Time, corr string, reasons ...string) int64 {
		t.Helper()
		in.at.set(at)
		i, err := in.log.Append(t.Context(), &audit.Record{
			Kind: audit.KindIntent, CorrelationID: corr, Actor: alice, Allow: &allow, Reasons: reasons, Route: "orders.v1.cancel",
			TargetKind: "procedure", Target: "cancel_order", SQL: &audit.SQL{Server: "pg", Database: "orders", Outcome: "pending"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	outcome := func(at time.Time, corr string, intent int64, sql audit.SQL, status string) {
		t.Helper()
		in.at.set(at)
		sql.Server, sql.Database = "pg", "orders"
		if _, err := in.log.Append(t.Context(), &audit.Record{
			Kind: audit.KindOutcome, CorrelationID: corr, IntentIndex: intent, Actor: alice, Route: "orders.v1.cancel",
			TargetKind: "procedure", Target: "cancel_order", SQL: &sql, Result: &audit.Result{Status: status, DurationUS: 10},
		}); err != nil {
			t.Fatal(err)
		}
	}
	glass := intent(day(2, 9), "glass", "break-glass access by bob@example.com: incident 42, orders stuck")
	outcome(day(2, 9), "glass", glass, audit.SQL{Outcome: "commit", TransactionID: "7"}, "ok")
	failed := intent(day(2, 10), "failed")
	outcome(day(2, 10), "failed", failed, audit.SQL{Outcome: "rollback", ErrorNumber: 1205}, "db_error")
	formula := intent(day(2, 11), "formula", "=HYPERLINK(\"http://evil\")", "second reason")
	intent(day(2, 12), "unpaired")
	outcome(day(2, 11), "formula", formula, audit.SQL{Outcome: "commit", TransactionID: "8"}, "ok")
	in.close(t)

	files, _ := evidenceOf(t, store, in)
	recs, err := csv.NewReader(bytes.NewReader(files["csv/activity.csv"])).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(activityColumns), "reasons", "sql_error_number"); !slices.Equal(recs[0], want) {
		t.Errorf("activity.csv header = %q, want the earlier columns in their order, then reasons and sql_error_number:\n%q", recs[0], want)
	}
	activity := table(t, files["csv/activity.csv"])
	if got, want := column(activity, "correlation_id"), []string{"glass", "failed", "formula", "unpaired"}; !slices.Equal(got, want) {
		t.Fatalf("activity correlation ids = %q, want %q", got, want)
	}
	for i, want := range []struct{ reasons, errorNumber string }{
		{"break-glass access by bob@example.com: incident 42, orders stuck", ""},
		{"", "1205"},
		{`'=HYPERLINK("http://evil"); second reason`, ""}, // neutralized, as every caller-chosen cell
		{"", ""}, // no outcome
	} {
		if got := activity[i]; got["reasons"] != want.reasons || got["sql_error_number"] != want.errorNumber {
			t.Errorf("activity row %s: reasons %q, sql_error_number %q; want %q, %q", got["correlation_id"], got["reasons"], got["sql_error_number"], want.reasons, want.errorNumber)
		}
	}
	// The report counts the calls that recorded reasons.
	if !pdfHas(t, files["report.pdf"], "2 calls of the period recorded reasons") {
		t.Error("report.pdf does not count the calls that recorded reasons")
	}
	// The workbook mirrors the CSV file.
	if !sheetHas(t, files["report.xlsx"], "sql_error_number") || !sheetHas(t, files["report.xlsx"], "break-glass access by bob@example.com") {
		t.Error("the workbook's activity sheet lacks the reasons and sql_error_number columns")
	}
}

// TestPeriodPrintsAlike: a period end with a fraction of a second (a
// relative bound, such as now) prints the same in the manifest, and so in
// the report and the CLI, as in the rows and the exceptions; a finer bound
// keeps every digit.
func TestPeriodPrintsAlike(t *testing.T) {
	store := audittest.NewStore()
	in := openInstance(t, store, origin)
	in.lease(t, day(2, 8), "issue", "lease-1", day(5, 0), "") // valid at the period's end: a row with as_of
	in.close(t)
	opts := options(in.vkey)
	opts.From = day(2, 0).Add(time.Nanosecond)         // a time given to the nanosecond
	opts.To = day(3, 0).Add(123450 * time.Microsecond) // the last digit 0, which RFC 3339 with nanoseconds drops
	var buf bytes.Buffer
	m, err := evidence.Write(t.Context(), &buf, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	files := audittest.Unzip(t, buf.Bytes())
	var onDisk evidence.Manifest
	if err := json.Unmarshal(files["manifest.json"], &onDisk); err != nil {
		t.Fatal(err)
	}
	if onDisk.Period.To != "2026-03-03T00:00:00.123450Z" || m.Period.To != onDisk.Period.To {
		t.Errorf("period to = %q (returned %q), want 2026-03-03T00:00:00.123450Z", onDisk.Period.To, m.Period.To)
	}
	if onDisk.Period.From != "2026-03-02T00:00:00.000000001Z" {
		t.Errorf("period from = %q, want every digit of the bound given", onDisk.Period.From)
	}
	if got := column(table(t, files["csv/access_population.csv"]), "as_of"); len(got) != 1 || got[0] != onDisk.Period.To {
		t.Errorf("access population as_of = %q, want the manifest's period end %q", got, onDisk.Period.To)
	}
}

// TestWarnsWithoutTrustedCopy: evidence from a log compared with no
// checkpoint copy kept out of the operator's reach says so in the workbook
// (and the report), and [evidence.Check] warns; with a copy they do not,
// and Check still does, since the claim of a copy in an unsigned manifest
// is anyone's.
func TestWarnsWithoutTrustedCopy(t *testing.T) {
	store, vkey := buildLog(t)
	var newest []byte
	var size int64 = -1
	if err := store.Checkpoints(t.Context(), origin, func(n []byte) error {
		c, err := audit.ParseCheckpoint(n)
		if err == nil && c.Size > size {
			size, newest = c.Size, bytes.Clone(n)
		}
		return err
	}); err != nil || newest == nil {
		t.Fatalf("checkpoints: %v", err)
	}
	for _, tc := range []struct {
		name    string
		trusted [][]byte
		warns   bool
	}{
		{"no_copy", nil, true},
		{"copy", [][]byte{newest}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := options(vkey)
			opts.Verify.Trusted = tc.trusted
			var buf bytes.Buffer
			m, err := evidence.Write(t.Context(), &buf, store, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Verification.TrustedCopies > 0; got == tc.warns {
				t.Fatalf("trusted copies = %d", m.Verification.TrustedCopies)
			}
			files := audittest.Unzip(t, buf.Bytes())
			if got := sheetHas(t, files["report.xlsx"], "no independently kept checkpoint was compared"); got != tc.warns {
				t.Errorf("the workbook warns of no trusted copy: %t, want %t", got, tc.warns)
			}
			if got := pdfHas(t, files["report.pdf"], "WARNING: no independently kept checkpoint was compared"); got != tc.warns {
				t.Errorf("report.pdf warns of no trusted copy: %t, want %t", got, tc.warns)
			}
			rep, err := evidence.Check(bytes.NewReader(buf.Bytes()), int64(buf.Len()), evidence.CheckOptions{Keys: []string{vkey}})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(rep.Warnings, evidence.NoTrustedCopy) {
				t.Errorf("Check warnings %q lack the no-trusted-copy warning", rep.Warnings)
			}
			if !slices.ContainsFunc(rep.Warnings, func(w string) bool { return strings.Contains(w, "not for the files of this archive") }) {
				t.Errorf("Check of an unsigned archive: warnings %q do not say its rows are not authenticated", rep.Warnings)
			}
		})
	}
}
