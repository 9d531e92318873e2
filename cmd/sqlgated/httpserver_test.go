package main

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestAPIServerLimits: the API server refuses a header beyond 64 KiB (431)
// instead of Go's 1 MiB default, which let one request put a megabyte of
// User-Agent into every stored decision input; it bounds reading the
// header and the request, closes idle connections, and sets no write
// deadline, which would cut long audit downloads.
func TestAPIServerLimits(t *testing.T) {
	srv := apiServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}), slog.New(slog.DiscardHandler))
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.IdleTimeout <= 0 || srv.WriteTimeout != 0 {
		t.Errorf("timeouts: read header %v, read %v, idle %v, write %v; want the first three set and no write timeout",
			srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout, srv.WriteTimeout)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	get := func(ua string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("User-Agent", ua)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(strings.Repeat("a", 32<<10)); got != http.StatusOK {
		t.Errorf("a 32 KiB User-Agent = %d, want 200", got)
	}
	if got := get(strings.Repeat("a", 80<<10)); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("an 80 KiB User-Agent = %d, want 431", got)
	}
}
