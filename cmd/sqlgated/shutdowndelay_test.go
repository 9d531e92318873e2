package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/internal/testnet"
)

// TestServeShutdownDelay runs `sqlgated serve` with http.shutdownDelay and
// stops it (what SIGTERM does): /readyz answers 503 at once while the API
// still serves (/healthz 200), so that Kubernetes and the load balancers
// take the pod out before its listener closes; then the listener closes
// and the stop ends. The listener used to close the moment the stop
// began, while Kubernetes still sent new connections to the pod.
func TestServeShutdownDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("serve end to end: skipped with -short")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	deps := startServeDeps(ctx, t, demoRoutes, "", nil)
	dir := deps.dir
	if err := createDemoDB(t.Context(), filepath.Join(dir, "orders.db")); err != nil {
		t.Fatal(err)
	}
	httpAddr := testnet.FreeAddr(t)
	cfg := serveConfig(dir, httpAddr, deps.natsAddr, deps.idp.Issuer(), fmt.Sprintf("  - sqlite:\n      name: orders\n      path: %s/orders.db", dir))
	// Long enough for the polls below to see the delay under any load.
	cfg = strings.Replace(cfg, "  auditorGroups: [auditors]\n", "  auditorGroups: [auditors]\n  shutdownDelay: 6s\n", 1)
	cfgPath := filepath.Join(dir, "sqlgated.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfgPath, "--log-level", "info"}, logs, logs) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
	})
	// A new connection for every request, as a client that a load balancer
	// still sends here would open.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	get := func(path string) (int, error) {
		resp, err := client.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if code, err := get("/readyz"); err == nil && code == http.StatusOK {
			break
		}
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("sqlgated serve exited: %v\n%s", err, logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sqlgated serve not ready:\n%s", logs)
		}
	}

	cancel() // what SIGTERM does to serve's context (main's signal.NotifyContext)
	stopped = true
	// /readyz turns 503 while the API still answers.
	deadline = time.Now().Add(time.Minute)
	for {
		code, err := get("/readyz")
		if err != nil {
			t.Fatalf("GET /readyz after the stop began: %v: the listener closed before /readyz reported the stop\n%s", err, logs)
		}
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz = %d a minute after the stop began, want 503\n%s", code, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, err := get("/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("GET /healthz while /readyz reports the stop = %d, %v, want 200: the API must keep serving for the delay\n%s", code, err, logs)
	}
	// Then the listener closes, and the stop ends.
	deadline = time.Now().Add(time.Minute)
	for {
		if _, err := get("/healthz"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API still serves a minute after the stop began (delay 6s)\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve after a stop: %v\n%s", err, logs)
	}
	if !strings.Contains(logs.String(), `msg="audit log closed" origin=sqlgate/test-1 `) {
		t.Errorf("the stop did not close the audit log:\n%s", logs)
	}
}

// TestServeCheckStopBudgetFromEnv checks that serve --check compares a
// stop's worst case, http.shutdownDelay included, with the stop budget
// SQLGATE_STOP_BUDGET names (the unit and chart set it from their
// TimeoutStopSec and terminationGracePeriodSeconds), and refuses a value
// that is no duration. It used to compare with a fixed 90s.
func TestServeCheckStopBudgetFromEnv(t *testing.T) {
	withDelay := func(d string) func(text, _ string) string {
		return func(text, _ string) string {
			return strings.Replace(text, "  listen: 0.0.0.0:8443\n", "  listen: 0.0.0.0:8443\n  shutdownDelay: "+d+"\n", 1)
		}
	}
	for _, tc := range []struct {
		name   string
		budget string
		edit   func(text, secrets string) string
		want   string // "" for no warning
	}{
		// The example's routes time out after 5s: a stop takes up to 35s.
		{name: "default", budget: "", want: ""},
		{name: "budget_above_worst_case", budget: "40s", want: ""},
		{name: "budget_below_worst_case", budget: "30s", want: "warning: a stop may take up to 35s (the longest a call may run, 5s, plus 30s), more than the 30s"},
		// A 40s delay, then 10s of HTTP stop and 15s of last writes.
		{name: "delay_within_budget", budget: "", edit: withDelay("40s"), want: ""},
		{name: "delay_beyond_budget", budget: "1m", edit: withDelay("40s"), want: "warning: a stop may take up to 1m5s (http.shutdownDelay, 40s, plus 25s), more than the 1m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(stopBudgetEnv, tc.budget)
			out, _, err := checkWith(t, tc.edit)
			if err != nil {
				t.Fatalf("serve --check: %v\n%s", err, out)
			}
			if tc.want == "" && strings.Contains(out, "warning: a stop") {
				t.Errorf("serve --check printed %q, want no stop warning", out)
			}
			if tc.want != "" && !strings.Contains(out, tc.want) {
				t.Errorf("serve --check printed %q\nwant %q", out, tc.want)
			}
		})
	}

	t.Run("not_a_duration", func(t *testing.T) {
		t.Setenv(stopBudgetEnv, "90")
		out, _, err := checkWith(t, nil)
		if err == nil || !strings.Contains(err.Error(), stopBudgetEnv) {
			t.Errorf("serve --check with %s=90: err = %v, want one naming the variable\n%s", stopBudgetEnv, err, out)
		}
	})

	t.Run("delay_beyond_maximum", func(t *testing.T) {
		out, _, err := checkWith(t, withDelay("2m"))
		if err == nil || !strings.Contains(err.Error(), "http.shutdownDelay must be 0 to 1m0s") {
			t.Errorf("serve --check with http.shutdownDelay 2m: err = %v, want it refused\n%s", err, out)
		}
	})
}
