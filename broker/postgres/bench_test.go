package postgres_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sqlgate/sqlgate/broker/brokertest"
)

// The benchmarks compare Execute (idempotency record, session context,
// txid, the function call, result store, commit: three round trips) with
// the bare path (one autocommit call of the same function) on the same
// pool size, serially and with 64 concurrent callers. Figures measured on
// the project's 2-vCPU machine are in docs/postgres.md.

const benchPayload = `{"customer":"bench","amount":12.5,"quantity":1,"express":false}`

var benchKey atomic.Int64

func benchExecute(b *testing.B, parallel bool) {
	e := openTest(b, 16)
	r := catalogRoute(b, brokertest.SubjectCreate)
	proto, err := brokertest.NewCall(r, benchPayload, "")
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	one := func() {
		c := *proto
		c.IdempotencyKey = fmt.Sprintf("bench-%d", benchKey.Add(1))
		if _, err := e.Execute(ctx, &c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	if !parallel {
		for b.Loop() {
			one()
		}
		return
	}
	b.SetParallelism(64 / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			one()
		}
	})
}

func benchBare(b *testing.B, parallel bool) {
	e := openTest(b, 16)
	cfg := e.Pool().Config().Copy()
	pool, err := pgxpool.NewWithConfig(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	ctx := b.Context()
	const q = `SELECT * FROM orders_create(customer => $1, amount => $2::numeric(12,2), quantity => $3, express => $4)`
	one := func() {
		var id int64
		if err := pool.QueryRow(ctx, q, "bench", "12.5", int64(1), false).Scan(&id); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	if !parallel {
		for b.Loop() {
			one()
		}
		return
	}
	b.SetParallelism(64 / runtime.GOMAXPROCS(0))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			one()
		}
	})
}

func BenchmarkBareCall(b *testing.B)       { benchBare(b, false) }
func BenchmarkExecute(b *testing.B)        { benchExecute(b, false) }
func BenchmarkBareCallConc64(b *testing.B) { benchBare(b, true) }
func BenchmarkExecuteConc64(b *testing.B)  { benchExecute(b, true) }
