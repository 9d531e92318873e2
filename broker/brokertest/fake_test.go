package brokertest_test

import (
	"testing"

	"github.com/sqlgate/sqlgate/broker/brokertest"
)

func TestFakeConformance(t *testing.T) {
	t.Parallel()
	brokertest.RunExecutorTests(t, func(t *testing.T) *brokertest.Harness {
		f := brokertest.NewFake("test", brokertest.OrdersProcs())
		return &brokertest.Harness{Executor: f, Targets: brokertest.OrdersTargets(), Down: func() { f.SetDown(true) }}
	})
}
