package main

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestDevCountsWhatItDoesNotAudit: what anyone may send without naming
// anyone is refused without an audit record, and operators see it in
// /metrics instead: a message-trace event the server publishes on a route
// subject (a user's Nats-Trace-Dest), and a callout connection with a token
// that is not a JWT.
func TestDevCountsWhatItDoesNotAudit(t *testing.T) {
	if testing.Short() {
		t.Skip("dev stack: skipped with -short")
	}
	s := startDev(t, t.TempDir())
	alice, _ := s.login(t, "alice")
	nc, _, _ := s.natsUser(t, alice, 0)
	m := nats.NewMsg("orders.v1.get")
	m.Data = []byte(`{"id":1}`)
	m.Header.Set("Nats-Trace-Dest", "orders.v1.get")
	m.Header.Set("Nats-Trace-Only", "true")
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	sentinel := s.st.Sentinel
	if _, err := os.Stat(sentinel); err != nil {
		t.Fatal(err)
	}
	if bad, err := nats.Connect(s.st.NATSURL, nats.UserCredentials(sentinel), nats.Token("not-a-jwt"), nats.MaxReconnects(0)); err == nil {
		bad.Close()
		t.Fatal("a callout connection with a token that is not a JWT was let in")
	}

	want := []string{`sqlgate_nats_server_published_dropped_total{kind="Account"} 1`, "sqlgate_nats_callout_unverified_total 1"}
	var metrics string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(s.st.HTTPURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if metrics = string(b); strings.Contains(metrics, want[0]) && strings.Contains(metrics, want[1]) {
			return
		}
	}
	for _, w := range want {
		if !strings.Contains(metrics, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
}
