package sqlstore_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
)

// Benchmarks of the durable append path: SQLite in WAL mode with
// synchronous=FULL on the machine's disk (the file lives in b.TempDir), and
// PostgreSQL when SQLGATE_TEST_POSTGRES_DSN is set.

func benchStores(b *testing.B) map[string]func(b *testing.B) *sqlstore.Store {
	return map[string]func(b *testing.B) *sqlstore.Store{
		"sqlite":   func(b *testing.B) *sqlstore.Store { s, _, _ := newSQLite(b); return s },
		"postgres": func(b *testing.B) *sqlstore.Store { return newPostgres(b) },
	}
}

func benchRecord() *audit.Record {
	allow := true
	return &audit.Record{
		Kind: audit.KindIntent, CorrelationID: "0193b1f2-7c4e-7a00-8d3b-5c6f7e8a9b0c",
		Actor: &audit.Actor{
			Issuer: "https://login.microsoftonline.com/tenant/v2.0", Subject: "alice-subject-123",
			Email: "alice@example.com", MFA: true, NATSUserKey: "UABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUV", Transport: "nats",
		},
		DecisionID: "0193b1f2-7c4e-7a00-8d3b-5c6f7e8a9b0d", Entry: "call", Allow: &allow,
		PolicyRevision: "3f2a9c4e8b1d7f6a5e4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e",
		Route:          "orders.v1.create", TargetKind: "statement", Target: "orders_create",
		Params: map[string]string{
			"amount":   "hmac-sha256:k1:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			"customer": "hmac-sha256:k1:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
		},
		IdempotencyKey: "idem-1",
	}
}

func openBenchLog(b *testing.B, s audit.Store) *audit.Log {
	l, err := audit.Open(context.Background(), s, audittest.Config(b, "sqlgate.bench/append"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = l.Close(context.Background()) })
	return l
}

// BenchmarkAppendDurable is closed-loop: c goroutines append as fast as
// their previous append became durable.
func BenchmarkAppendDurable(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, c := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("%s/c=%d", backend, c), func(b *testing.B) {
				l := openBenchLog(b, benchStores(b)[backend](b))
				tmpl := benchRecord()
				b.SetParallelism(max(1, c/runtime.GOMAXPROCS(0)))
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						r := *tmpl
						if _, err := l.Append(context.Background(), &r); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				st := l.Stats()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(st.Records)/float64(max(st.Batches, 1)), "records/batch")
			})
		}
	}
}

// BenchmarkAppendOpenLoop offers appends at a fixed rate for two seconds
// per iteration (each from its own goroutine, as concurrent requests do) and
// reports the latency distribution and the rate achieved.
func BenchmarkAppendOpenLoop(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		for _, rate := range []int{1000, 5000, 14000} {
			b.Run(fmt.Sprintf("%s/rate=%d", backend, rate), func(b *testing.B) {
				l := openBenchLog(b, benchStores(b)[backend](b))
				var lat []time.Duration
				var done int64
				start := time.Now()
				for b.Loop() {
					got := openLoop(b, l, rate, 2*time.Second)
					lat = append(lat, got...)
					done += int64(len(got))
				}
				elapsed := time.Since(start)
				slices.Sort(lat)
				q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
				b.ReportMetric(q(0.50), "p50-ms")
				b.ReportMetric(q(0.99), "p99-ms")
				b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
				b.ReportMetric(float64(done)/elapsed.Seconds(), "records/s")
				st := l.Stats()
				b.ReportMetric(float64(st.Records)/float64(max(st.Batches, 1)), "records/batch")
			})
		}
	}
}

func openLoop(b *testing.B, l *audit.Log, rate int, d time.Duration) []time.Duration {
	var (
		mu   sync.Mutex
		lat  = make([]time.Duration, 0, rate*int(d/time.Second))
		wg   sync.WaitGroup
		fail atomic.Bool
	)
	tmpl := benchRecord()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	sent := 0
	for now := range tick.C {
		if now.Sub(start) > d {
			break
		}
		due := int(float64(rate) * now.Sub(start).Seconds())
		for ; sent < due; sent++ {
			wg.Go(func() {
				r := *tmpl
				t0 := time.Now()
				if _, err := l.Append(context.Background(), &r); err != nil {
					fail.Store(true)
					return
				}
				el := time.Since(t0)
				mu.Lock()
				lat = append(lat, el)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if fail.Load() {
		b.Fatal("an append failed")
	}
	return lat
}

// BenchmarkVerifySQLite verifies 100,000 records straight from the control
// database (the log is written once, outside the timed part).
func BenchmarkVerifySQLite(b *testing.B) {
	const n = 100_000
	s, _, _ := newSQLite(b)
	l := openBenchLog(b, s)
	var wg sync.WaitGroup
	per := n / 64
	for range 64 {
		wg.Go(func() {
			for range per {
				r := benchRecord()
				if _, err := l.Append(context.Background(), r); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	_, vkey := audittest.Key(b, "sqlgate.bench/append", 1)
	b.ReportAllocs()
	var recs int64
	for b.Loop() {
		rep, err := audit.Verify(context.Background(), s, audit.VerifyOptions{Keys: []string{vkey}})
		if err != nil || !rep.OK() {
			b.Fatalf("Verify = %v %v", rep.Failures, err)
		}
		recs += rep.Records
	}
	b.ReportMetric(float64(recs)/b.Elapsed().Seconds(), "records/s")
}
