package api

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// shortLimits returns a client of srv whose limits are shortened so that a
// test can run past them in a few seconds.
func shortLimits(t *testing.T, srv *httptest.Server) *Client {
	t.Helper()
	c, err := NewClient(srv.URL, func(context.Context) (string, error) { return "tok", nil })
	if err != nil {
		t.Fatal(err)
	}
	c.callTimeout, c.downloadWait, c.downloadIdle = 300*time.Millisecond, 5*time.Second, 3*time.Second
	return c
}

// TestDownloadRunsWhileDataFlows: an audit export that streams for longer
// than a JSON call may take (a big log, a slow link) is downloaded whole;
// one that stops sending fails, saying it stalled, and the JSON calls stay
// bounded.
func TestDownloadRunsWhileDataFlows(t *testing.T) {
	const chunks = 12
	chunk := bytes.Repeat([]byte("x"), 1<<14)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case Prefix + "/audit/export":
			w.WriteHeader(http.StatusOK)
			for range chunks {
				_, _ = w.Write(chunk)
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			if r.URL.Query().Get("from") == "1" { // a stalled stream
				<-r.Context().Done()
			}
		case Prefix + "/whoami":
			<-r.Context().Done() // never answers
		}
	}))
	defer srv.Close()
	c := shortLimits(t, srv)

	var got bytes.Buffer
	if err := c.AuditExport(t.Context(), &got, 0, 0); err != nil || got.Len() != chunks*len(chunk) {
		t.Errorf("a steadily streaming export (longer than a JSON call may take) = %d bytes, %v; want all %d bytes", got.Len(), err, chunks*len(chunk))
	}

	got.Reset()
	err := c.AuditExport(t.Context(), &got, 1, 0)
	if err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Errorf("an export that stops sending = %v, want a failure saying it stalled", err)
	}

	if _, err := c.WhoAmI(t.Context()); err == nil || !strings.Contains(err.Error(), "no complete answer") {
		t.Errorf("a JSON call that gets no answer = %v, want it bounded", err)
	}
}
