package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
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
// for a nats-server of another version. It accepts every CONNECT, and
// answers every SUB of a routed subject at once with a request on it whose
// payload names the version announced ("from 2.12.5"), as a client of that
// server would send one. The micro framework's own subjects ($SRV.PING,
// INFO, STATS) get nothing: nats.go's micro.AddService (v1.55.0) writes the
// service's start time after it subscribes them, unlocked, so a STATS
// request answered within that instant is a data race inside nats.go (the
// race detector caught it in CI), not the behaviour this test is about.
type natsPeer struct {
	ln       net.Listener
	mu       sync.Mutex
	versions []string // announced to the connections in order; the last one to the rest
	conns    []net.Conn
}

func startNATSPeer(t testing.TB, versions ...string) *natsPeer {
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
		switch f := strings.Fields(line); {
		case strings.HasPrefix(line, "PING"):
			if _, err := c.Write([]byte("PONG\r\n")); err != nil {
				return
			}
		case len(f) >= 3 && f[0] == "SUB" && !strings.HasPrefix(f[1], "$SRV."): // SUB <subject> [queue group] <sid>
			payload := "from " + version
			if _, err := fmt.Fprintf(c, "MSG %s %s _INBOX.peer %d\r\n%s\r\n", f[1], f[len(f)-1], len(payload), payload); err != nil {
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
// version) and at a reconnect (nothing that server delivers reaches the
// routed-call handler, the connection is closed and the instance stops with
// the error). It used to run on nats-server 2.9.10 without a word; then the
// reconnect's check ran after nats.go had re-sent the subscriptions and
// handed the old server's requests to the handler.
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
		nc, _, err := a.connect("sqlgated-test", nats.Token("t"))
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

	// A ReconnectHandler among the caller's options (runtimeConfig.NATSConnect)
	// must not replace the one that opens the gate: the instance would drop
	// every message after the first reconnect while it looked healthy.
	t.Run("caller_reconnect_handler", func(t *testing.T) {
		t.Parallel()
		peer := startNATSPeer(t, minNATSServerVersion, minNATSServerVersion)
		a, logs := newApp("nats://" + peer.ln.Addr().String())
		a.cfg.NATSConnect = []nats.Option{nats.ReconnectHandler(func(*nats.Conn) {})}
		nc, gate, err := a.connect("sqlgated-test", nats.Token("t"))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		peer.dropFirst()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(logs.String(), "nats reconnected") || !gate.admit() {
			if time.Now().After(deadline) {
				t.Fatalf("after a reconnect to nats-server %s the gate stays shut:\n%s", minNATSServerVersion, logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("reconnect", func(t *testing.T) {
		t.Parallel()
		peer := startNATSPeer(t, minNATSServerVersion, "2.12.5")
		a, logs := newApp("nats://" + peer.ln.Addr().String())
		// nats.go runs a connection's callbacks in order on one goroutine:
		// holding the log line of the disconnect holds the version check
		// of the reconnect behind it, as a busy goroutine or a loaded host
		// would, until the request of nats-server 2.12.5 was handled or
		// dropped (else the connection's close may win the race and drop it).
		release := make(chan struct{})
		a.log = slog.New(slog.NewTextHandler(holdingWriter{w: logs, hold: "nats disconnected", until: release}, nil))
		nc, gate, err := a.connect("sqlgated-test", nats.Token("t"))
		if err != nil {
			t.Fatalf("connect to nats-server %s: %v", minNATSServerVersion, err)
		}
		defer nc.Close()
		// The routed-call service as startMicro wires it.
		var mu sync.Mutex
		var handled []string
		users, signing := accountKey(t), accountKey(t)
		svc, err := natsvc.Start(t.Context(), nc, natsvc.Config{
			Name: "sqlgate", Version: "1.0.0", Subjects: []string{"orders.v1.get"},
			UsersAccount: users, SigningKeys: []string{signing}, Admit: gate.admit,
		}, natsvc.HandlerFunc(func(_ context.Context, req *broker.Request) *broker.Reply {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, string(req.Payload))
			return &broker.Reply{OK: true, AuditIndex: -1}
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = svc.Stop() }()
		took := func(payload string) bool {
			mu.Lock()
			defer mu.Unlock()
			return slices.Contains(handled, payload)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !took("from " + minNATSServerVersion) {
			if time.Now().After(deadline) {
				t.Fatalf("the request from nats-server %s was not handled:\n%s", minNATSServerVersion, logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
		go func() {
			defer close(release)
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if took("from 2.12.5") || gate.dropped.Load() > 0 {
					return
				}
			}
		}()
		peer.dropFirst()
		select {
		case err := <-a.failed:
			if !errors.Is(err, errOldNATSServer) || !strings.Contains(err.Error(), "runs 2.12.5") {
				t.Errorf("the instance stopped with %v, want the old server's refusal", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("a reconnect to nats-server 2.12.5 did not stop the instance:\n%s", logs)
		}
		deadline = time.Now().Add(10 * time.Second)
		for !nc.IsClosed() {
			if time.Now().After(deadline) {
				t.Fatalf("the connection to nats-server 2.12.5 stays %s:\n%s", nc.Status(), logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), "nats server refused") {
			t.Errorf("the refusal is not logged:\n%s", logs)
		}
		_ = svc.Stop() // the requests received are handled (or dropped) by now
		if took("from 2.12.5") {
			t.Errorf("a request delivered by nats-server 2.12.5 reached the handler: its Nats-Request-Info can be forged")
		}
	})
}

// holdingWriter writes to w, holding a write that contains hold until
// until is closed.
type holdingWriter struct {
	w     io.Writer
	hold  string
	until <-chan struct{}
}

func (h holdingWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(h.hold)) {
		<-h.until
	}
	return h.w.Write(p)
}

// accountKey is a new account public key.
func accountKey(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
