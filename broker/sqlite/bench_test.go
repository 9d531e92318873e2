package sqlite_test

import (
	"strconv"
	"testing"

	"github.com/sqlgate/sqlgate/broker/brokertest"
)

// BenchmarkExecuteCreate measures one insert call with its idempotency record
// (synchronous=FULL: every call is a durable commit).
func BenchmarkExecuteCreate(b *testing.B) {
	e := openTest(b)
	r := createRoute(b)
	c, err := brokertest.NewCall(r, `{"customer":"bench","amount":12.5,"quantity":1,"express":false}`, "")
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		c.IdempotencyKey = "bench-" + strconv.Itoa(i)
		if _, err := e.Execute(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}
