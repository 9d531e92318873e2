package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/internal/testnet"
)

// TestServeMetricsFromStartAndStopLog runs `sqlgated serve` with the demo
// routes (one async) at log level info, and checks that:
//
//   - right after start, /metrics already has, at 0, the labelled counters
//     the documented alerts watch with increase(): a series that appears
//     with its first event has no sample to increase from, so the first
//     error went unseen;
//   - a stop (SIGTERM cancels serve's context) logs the drain's start and
//     end, the audit log's final checkpoint, covering every record, and the
//     end: it used to log nothing.
func TestServeMetricsFromStartAndStopLog(t *testing.T) {
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
	base := "http://" + httpAddr
	for ready := false; !ready; {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("sqlgated serve exited: %v\n%s", err, logs)
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := http.Get(base + "/readyz"); err == nil {
			ready = resp.StatusCode == http.StatusOK
			_ = resp.Body.Close()
		}
	}

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	metrics := string(body)
	for _, series := range []string{
		`sqlgate_calls_total{code="unavailable",route="orders.v1.create"} 0`,
		`sqlgate_calls_total{code="internal",route="orders.v1.import"} 0`,
		`sqlgate_calls_total{code="db_error",route="orders.v1.get"} 0`,
		`sqlgate_calls_total{code="ok",route="orders.v1.cancel"} 0`,
		`sqlgate_calls_total{code="forbidden",route="orders.v1.create"} 0`,
		`sqlgate_async_messages_total{settled="gave_up"} 0`,
		`sqlgate_async_messages_total{settled="retry"} 0`,
		`sqlgate_nats_revocation_syncs_total{result="error"} 0`,
		`sqlgate_policy_reloads_total{result="error"} 0`,
		`sqlgate_idempotency_prune_errors_total{database="orders"} 0`,
		`sqlgate_idempotency_pruned_total{database="orders"} 0`,
	} {
		if !strings.Contains(metrics, "\n"+series+"\n") {
			t.Errorf("/metrics right after start lacks %s", series)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", metrics)
	}

	cancel() // what SIGTERM does to serve's context (main's signal.NotifyContext)
	stopped = true
	if err := <-done; err != nil {
		t.Fatalf("serve after a stop: %v\n%s", err, logs)
	}
	out := logs.String()
	stop := out[strings.Index(out, `msg="sqlgated serving"`)+1:]
	var order []int
	for _, want := range []string{
		`msg="stopping: taking no new calls, answering the accepted ones"`,
		`msg="stopping: the accepted calls are answered"`,
		`msg="audit log closed" origin=sqlgate/test-1 `,
		"msg=stopped",
	} {
		i := strings.Index(stop, want)
		if i < 0 {
			t.Errorf("the log of a stop lacks %s", want)
		}
		order = append(order, i)
	}
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			t.Errorf("the stop's log lines are out of order: %v", order)
		}
	}
	// The final checkpoint covers every record of the log.
	m := regexp.MustCompile(`msg="audit log closed" origin=\S+ size=(\d+) checkpoint_size=(\d+) checkpoint_root=\S+ checkpoint_time=\S+`).FindStringSubmatch(stop)
	if m == nil || m[1] != m[2] || m[1] == "0" {
		t.Errorf("the final checkpoint line: %q, want checkpoint_size equal to the log's size", m)
	}
	if t.Failed() {
		t.Logf("serve's log:\n%s", out)
	}
}

// TestRVStopWithStalledHTTPClientClosesAuditLog runs `sqlgated serve`, opens
// an HTTP request that stalls in the middle of its body (a raw TCP client),
// and stops serve (what SIGTERM does): the stop closes that connection
// after a few seconds and still writes the audit log's final checkpoint.
// The HTTP server's shutdown used to share the 15 s budget of the audit
// log's last writes and wait for the stalled request until it ran out, and
// the close of the audit log then failed with "context deadline exceeded".
func TestRVStopWithStalledHTTPClientClosesAuditLog(t *testing.T) {
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
	for ready := false; !ready; {
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("sqlgated serve exited: %v\n%s", err, logs)
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := http.Get("http://" + httpAddr + "/readyz"); err == nil {
			ready = resp.StatusCode == http.StatusOK
			_ = resp.Body.Close()
		}
	}

	// A request whose header arrived and whose body never completes: the
	// server counts its connection active until the body is read.
	var d net.Dialer
	conn, err := d.DialContext(t.Context(), "tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := io.WriteString(conn, "POST /api/v1/policy/eval HTTP/1.1\r\nHost: "+httpAddr+"\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{\"input\":"); err != nil {
		t.Fatal(err)
	}

	cancel() // what SIGTERM does to serve's context
	stopped = true
	if err := <-done; err != nil {
		t.Fatalf("serve after a stop: %v\n%s", err, logs)
	}
	out := logs.String()
	if !strings.Contains(out, `msg="audit log closed" origin=sqlgate/test-1 `) {
		t.Errorf("a stop with a stalled HTTP client did not close the audit log:\n%s", out)
	}
	if strings.Contains(out, "close audit log") {
		t.Errorf("the audit log's close ran out of time:\n%s", out)
	}
	if !strings.Contains(out, "msg=stopped") {
		t.Errorf("the stop did not end:\n%s", out)
	}
	if t.Failed() {
		return
	}
	// The stalled connection was closed, not waited for until the client
	// gave up: it reads the end of the stream.
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(conn); err != nil {
		t.Errorf("the stalled connection after the stop: %v, want it closed by the server", err)
	}
}
