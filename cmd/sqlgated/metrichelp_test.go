package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestMetricHelpNamesEveryLabelValue checks that the HELP text of every
// metric that lists its label values in parentheses names each value the
// daemon exports (at 0 from the start), so an operator reading /metrics
// learns every value an alert may need.
func TestMetricHelpNamesEveryLabelValue(t *testing.T) {
	if testing.Short() {
		t.Skip("dev stack: skipped with -short")
	}
	s := startDev(t, t.TempDir())
	resp, err := http.Get(s.st.HTTPURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	metrics := string(body)
	help := regexp.MustCompile(`(?m)^# HELP (\S+) .*\(([a-z_]+(?:, [a-z_]+)+)\)\.?$`)
	sample := regexp.MustCompile(`(?m)^(\S+)\{(\w+)="([^"]*)"\}`)
	values := map[string]map[string]bool{}
	for _, m := range sample.FindAllStringSubmatch(metrics, -1) {
		if values[m[1]] == nil {
			values[m[1]] = map[string]bool{}
		}
		values[m[1]][m[3]] = true
	}
	checked := 0
	for _, m := range help.FindAllStringSubmatch(metrics, -1) {
		listed := map[string]bool{}
		for v := range strings.SplitSeq(m[2], ", ") {
			listed[v] = true
		}
		for v := range values[m[1]] {
			if !listed[v] {
				t.Errorf("HELP of %s lists (%s), not %q, which it exports", m[1], m[2], v)
			}
		}
		if m[1] == "sqlgate_async_messages_total" {
			checked++
		}
	}
	if checked != 1 {
		t.Errorf("/metrics has no HELP of sqlgate_async_messages_total listing its values\n%s", metrics)
	}
}
