package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// TestHTTPConnectionsBounded: clients that open connections and leave them
// idle hold at most http.maxConnections of the API port's and 64 of the
// metrics port's; the next client waits (it is not refused, and no
// descriptor of the process is used for it) and is served as soon as one
// closes. Without the bounds, idle connections used every file descriptor,
// and NATS, the databases and the policy reload failed with them.
func TestHTTPConnectionsBounded(t *testing.T) {
	var lc net.ListenConfig
	apiLn, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsLn, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &app{cfg: runtimeConfig{Listener: apiLn, MetricsListener: metricsLn, MaxHTTPConnections: 2}, log: slog.New(slog.DiscardHandler), metrics: prometheus.NewRegistry()}
	a.group, a.groupCtx = errgroup.WithContext(t.Context())
	a.serveHTTP()
	defer a.shutdown(context.Background())

	for _, port := range []struct {
		name, addr, path string
		bound            int
	}{
		{"api", apiLn.Addr().String(), "/healthz", 2},
		{"metrics", metricsLn.Addr().String(), "/metrics", metricsConnections},
	} {
		t.Run(port.name, func(t *testing.T) {
			idle := holdIdle(t, port.addr, port.path, port.bound)
			waiting := make(chan error, 1)
			go func() {
				client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
				resp, err := client.Get("http://" + port.addr + port.path)
				if err == nil {
					_ = resp.Body.Close()
				}
				waiting <- err
			}()
			select {
			case err := <-waiting:
				t.Fatalf("a client beyond the bound of %d was served (err %v) while idle connections held it", port.bound, err)
			case <-time.After(300 * time.Millisecond):
			}
			_ = idle[0].Close()
			select {
			case err := <-waiting:
				if err != nil {
					t.Fatalf("the waiting client, once an idle connection closed: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the waiting client was not served after an idle connection closed")
			}
		})
	}
}

// holdIdle opens n kept-alive connections to addr, has each served one GET
// of path, and leaves them open and idle until the test ends.
func holdIdle(t *testing.T, addr, path string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("idle client's first request: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		conns = append(conns, c)
	}
	return conns
}

// TestHTTPConnectionsDefault: unset, the bound is half the process's file
// descriptor limit, so NATS, the databases and files keep the other half.
func TestHTTPConnectionsDefault(t *testing.T) {
	if got := httpConnections(7); got != 7 {
		t.Errorf("httpConnections(7) = %d, want the configured 7", got)
	}
	got := httpConnections(0)
	if got < 1 || got > 1<<20 {
		t.Errorf("httpConnections(0) = %d, want half the descriptor limit", got)
	}
}
