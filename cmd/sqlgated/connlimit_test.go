package main

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestAPIConnectionsBounded: clients that open connections and leave them
// idle hold at most http.maxConnections of them; the next client waits
// (it is not refused, and no descriptor of the process is used for it)
// and is served as soon as one closes.
func TestAPIConnectionsBounded(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := apiServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), slog.New(slog.DiscardHandler))
	go func() { _ = srv.Serve(limitConnections(raw, httpConnections(2))) }()
	t.Cleanup(func() { _ = srv.Close() })
	addr := raw.Addr().String()

	// Two kept-alive connections, each served once and then idle.
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("idle client's first request: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("idle client's first request: %s", resp.Status)
		}
		idle = append(idle, c)
	}

	third := make(chan error, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		third <- err
	}()
	select {
	case err := <-third:
		t.Fatalf("a third client was served (err %v) while two idle connections held the bound of 2", err)
	case <-time.After(300 * time.Millisecond):
	}
	_ = idle[0].Close()
	select {
	case err := <-third:
		if err != nil {
			t.Fatalf("the waiting client, once an idle connection closed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting client was not served after an idle connection closed")
	}
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
