package main

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestServerGateRefusesTheServerItLeft: the gate of a connection admits
// messages only once the server it is on has been checked; a reconnect
// attempt closes it until the next check, and one away from a server older
// than 2.15.3 refuses it for good, even if the connection then lands on a
// current server: that server's requests may still wait to be handled.
// Dropped messages are logged once per closing, not one line each.
func TestServerGateRefusesTheServerItLeft(t *testing.T) {
	t.Parallel()
	peer := startNATSPeer(t, minNATSServerVersion)
	nc, err := nats.Connect("nats://"+peer.ln.Addr().String(), nats.Token("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	logs := &syncBuffer{}
	g := newServerGate("sqlgated-test", slog.New(slog.NewTextHandler(logs, nil)))
	for range 2 { // the second drop is counted, not logged
		if g.admit() {
			t.Fatal("a message is admitted before the server was checked")
		}
	}
	if err := g.connected(nc); err != nil || !g.admit() {
		t.Fatalf("after the check of nats-server %s: %v, admitted %t", minNATSServerVersion, err, g.admit())
	}
	if err := g.reconnecting(nats.ServerInfo{Version: minNATSServerVersion}); err != nil {
		t.Fatalf("a reconnect attempt away from nats-server %s: %v", minNATSServerVersion, err)
	}
	if g.admit() {
		t.Fatal("a message is admitted during a reconnect, before the new server was checked")
	}
	if err := g.connected(nc); err != nil || !g.admit() {
		t.Fatalf("after the check of the server reconnected to: %v, admitted %t", err, g.admit())
	}
	if err := g.reconnecting(nats.ServerInfo{Version: "2.12.5"}); !errors.Is(err, errOldNATSServer) || !strings.Contains(err.Error(), "runs 2.12.5") {
		t.Fatalf("a reconnect attempt away from nats-server 2.12.5: %v, want its refusal", err)
	}
	if err := g.connected(nc); !errors.Is(err, errGateRefused) {
		t.Fatalf("the check of a current server after leaving nats-server 2.12.5: %v, want the gate refused", err)
	}
	if err := g.reconnecting(nats.ServerInfo{Version: minNATSServerVersion}); err != nil {
		t.Errorf("the refusal is reported again: %v", err)
	}
	for range 3 {
		if g.admit() {
			t.Fatal("a message is admitted after the connection left nats-server 2.12.5")
		}
	}
	if n := strings.Count(logs.String(), "nats message dropped unanswered"); n != 3 {
		t.Errorf("%d log lines for the dropped messages, want one per closing (3):\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "older than 2.15.3") {
		t.Errorf("the drops after the refusal do not say why:\n%s", logs)
	}
}

// BenchmarkServerGate compares the gate every routed call passes (one
// atomic load) with asking nats.go for the server's version (a read lock
// on the connection, which its reader and flusher take too).
func BenchmarkServerGate(b *testing.B) {
	peer := startNATSPeer(b, minNATSServerVersion)
	nc, err := nats.Connect("nats://"+peer.ln.Addr().String(), nats.Token("t"))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	g := newServerGate("bench", slog.New(slog.DiscardHandler))
	if err := g.connected(nc); err != nil {
		b.Fatal(err)
	}
	b.Run("admit", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !g.admit() {
					b.Fatal("refused")
				}
			}
		})
	})
	b.Run("ConnectedServerVersion", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if nc.ConnectedServerVersion() == "" {
					b.Fatal("not connected")
				}
			}
		})
	})
}
