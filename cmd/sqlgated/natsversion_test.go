package main

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestNATSServerVersion: sqlgated serves through nats-server 2.15.3 or
// later only (docs/nats.md), the version the embedded server of dev mode and
// the tests runs included; anything older, or no version, is refused with
// the version and why.
func TestNATSServerVersion(t *testing.T) {
	t.Parallel()
	for _, v := range []string{server.VERSION, "2.15.3", "2.15.4", "2.16.0", "2.16.0-dev", "3.0.0"} {
		if err := checkNATSServerVersion(v); err != nil {
			t.Errorf("version %q refused: %v", v, err)
		}
	}
	for _, v := range []string{"2.9.10", "2.11.15", "2.12.6", "2.14.9", "2.15.0", "2.15.2", "2.15.3-rc.1", "", "unknown", "v2.15.3x"} {
		err := checkNATSServerVersion(v)
		if !errors.Is(err, errOldNATSServer) || !strings.Contains(err.Error(), "2.15.3 or later") {
			t.Errorf("version %q: %v, want refused naming 2.15.3 or later", v, err)
		}
	}
	if err := checkNATSServerVersion("2.9.10"); !strings.Contains(err.Error(), "runs 2.9.10") || !strings.Contains(err.Error(), "Nats-Request-Info") {
		t.Errorf("the refusal of 2.9.10 does not say what runs and why: %v", err)
	}
}

// natsPeer is the server side of the NATS client protocol (INFO, PING/PONG),
// announcing the version its caller sets for each connection: a stand-in
// for a nats-server of another version. It accepts every CONNECT.
type natsPeer struct {
	ln       net.Listener
	mu       sync.Mutex
	versions []string // announced to the connections in order; the last one to the rest
	conns    []net.Conn
}

func startNATSPeer(t *testing.T, versions ...string) *natsPeer {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &natsPeer{ln: ln, versions: versions}
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			v := p.versions[min(len(p.conns), len(p.versions)-1)]
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			go p.serve(c, v)
		}
	}()
	return p
}

func (p *natsPeer) serve(c net.Conn, version string) {
	port := p.ln.Addr().(*net.TCPAddr).Port
	if _, err := fmt.Fprintf(c, `INFO {"server_id":"NPEER","server_name":"peer","version":%q,"proto":1,"go":"go1","host":"127.0.0.1","port":%d,"headers":true,"max_payload":1048576}`+"\r\n", version, port); err != nil {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.HasPrefix(line, "PING") {
			if _, err := c.Write([]byte("PONG\r\n")); err != nil {
				return
			}
		}
	}
}

// dropFirst closes the server side of the first connection: the client
// reconnects.
func (p *natsPeer) dropFirst() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.conns[0].Close()
}

// TestConnectRefusesOldNATSServer: sqlgated's own NATS connections refuse a
// server older than 2.15.3, at the first connect (the start fails with the
// version) and at a reconnect (the connection is closed, so that nothing
// that server delivers is taken, and the instance stops with the error).
// It used to run on nats-server 2.9.10 without a word.
func TestConnectRefusesOldNATSServer(t *testing.T) {
	t.Parallel()
	newApp := func(url string) (*app, *syncBuffer) {
		logs := &syncBuffer{}
		return &app{cfg: runtimeConfig{NATSURL: url}, log: slog.New(slog.NewTextHandler(logs, nil)), failed: make(chan error, 1)}, logs
	}

	t.Run("start", func(t *testing.T) {
		t.Parallel()
		peer := startNATSPeer(t, "2.9.10")
		a, _ := newApp("nats://" + peer.ln.Addr().String())
		nc, err := a.connect("sqlgated-test", nats.Token("t"))
		if err == nil {
			nc.Close()
		}
		if !errors.Is(err, errOldNATSServer) || !strings.Contains(err.Error(), "runs 2.9.10") || !strings.Contains(err.Error(), "sqlgated-test") {
			t.Fatalf("connect to nats-server 2.9.10: %v; want refused naming the version and the connection", err)
		}
		if len(a.conns) != 0 {
			t.Errorf("a refused connection is kept: %d", len(a.conns))
		}
	})

	t.Run("reconnect", func(t *testing.T) {
		t.Parallel()
		peer := startNATSPeer(t, minNATSServerVersion, "2.12.5")
		a, logs := newApp("nats://" + peer.ln.Addr().String())
		nc, err := a.connect("sqlgated-test", nats.Token("t"))
		if err != nil {
			t.Fatalf("connect to nats-server %s: %v", minNATSServerVersion, err)
		}
		defer nc.Close()
		peer.dropFirst()
		select {
		case err := <-a.failed:
			if !errors.Is(err, errOldNATSServer) || !strings.Contains(err.Error(), "runs 2.12.5") {
				t.Errorf("the instance stopped with %v, want the old server's refusal", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("a reconnect to nats-server 2.12.5 did not stop the instance:\n%s", logs)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !nc.IsClosed() {
			if time.Now().After(deadline) {
				t.Fatalf("the connection to nats-server 2.12.5 stays %s:\n%s", nc.Status(), logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), "nats server refused") {
			t.Errorf("the refusal is not logged:\n%s", logs)
		}
	})
}
