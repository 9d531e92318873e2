package main

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sqlgate/sqlgate/broker/route"
)

// TestCallDurationBuckets: sqlgate_call_duration_seconds has buckets up to
// the longest a call may run (three route timeouts of at most
// route.MaxTimeout with batch): they stopped at 8.192s, and a call of a
// route with a minute's timeout fell into +Inf, its latency unknown.
func TestCallDurationBuckets(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMeteredHandler(nil, reg)
	m.duration.WithLabelValues("orders.v1.create").Observe(90)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "sqlgate_call_duration_seconds" {
			continue
		}
		h := f.GetMetric()[0].GetHistogram()
		buckets := h.GetBucket()
		if last := buckets[len(buckets)-1].GetUpperBound(); last < (3 * route.MaxTimeout).Seconds() {
			t.Errorf("the largest bucket is %gs, below the longest a call may run, %s", last, 3*route.MaxTimeout)
		}
		if buckets[0].GetUpperBound() > 0.001 {
			t.Errorf("the smallest bucket is %gs: fast calls lose their resolution", buckets[0].GetUpperBound())
		}
		for _, b := range buckets {
			if b.GetUpperBound() >= 90 && b.GetCumulativeCount() != 1 {
				t.Errorf("a 90s call is not counted in bucket %gs", b.GetUpperBound())
			}
		}
		return
	}
	t.Fatal("no sqlgate_call_duration_seconds")
}
