package evidence_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/evidence"
)

// BenchmarkWrite measures the evidence of a 100,000-record log (50,000
// calls, all in the period): verification and both passes included.
func BenchmarkWrite(b *testing.B) {
	const pairs = 50_000
	store, l, c := openLog(b, day(2, 0))
	for i := range pairs {
		c.set(day(2, 0).Add(time.Duration(i) * time.Second))
		corr := fmt.Sprintf("corr-%d", i)
		in, err := l.Append(context.Background(), &audit.Record{
			Kind: audit.KindIntent, CorrelationID: corr, Actor: alice, Allow: &allow,
			Route: "orders.v1.create", Params: map[string]string{"amount": "h1"},
		})
		if err == nil {
			_, err = l.Append(context.Background(), &audit.Record{
				Kind: audit.KindOutcome, CorrelationID: corr, IntentIndex: in, Route: "orders.v1.create",
				SQL: &audit.SQL{Outcome: "commit", TransactionID: "1"}, Result: &audit.Result{Status: "ok"},
			})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	_, vkey := audittest.Key(b, origin, 1)
	opts := evidence.Options{From: day(1, 0), To: day(4, 0), Verify: audit.VerifyOptions{Keys: []string{vkey}}}
	b.ResetTimer()
	for b.Loop() {
		m, err := evidence.Write(context.Background(), io.Discard, store, opts)
		if err != nil || m.Files[0].Rows != pairs {
			b.Fatalf("Write = %v, %v", m, err)
		}
	}
	b.ReportMetric(float64(2*pairs)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
