package natsvc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

// natsCluster is a three-node JetStream cluster of sqlgate's embedded
// servers (operator mode, the same keys), on fixed ports so that a server
// stopped and started again keeps its addresses and its store.
type natsCluster struct {
	keys    *natsauth.Keys
	opts    []func() (*server.Options, error) // fresh each start: NewServer changes them
	servers []*server.Server
	env     *natsauthtest.Env // URL: every server's
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startCluster(t *testing.T, subjects []string) *natsCluster {
	t.Helper()
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	c := &natsCluster{keys: keys, servers: make([]*server.Server, n)}
	var routes, urls []string
	clientPorts := make([]int, n)
	clusterPorts := make([]int, n)
	for i := range n {
		clientPorts[i], clusterPorts[i] = freePort(t), freePort(t)
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(clusterPorts[i]))
		urls = append(urls, "nats://127.0.0.1:"+strconv.Itoa(clientPorts[i]))
	}
	root := t.TempDir()
	for i := range n {
		c.opts = append(c.opts, func() (*server.Options, error) {
			opts, err := natsauth.EmbeddedOptions(keys, natsauth.EmbeddedConfig{
				Dir: filepath.Join(root, strconv.Itoa(i)), Port: clientPorts[i], Subjects: subjects, JetStream: true,
			})
			if err != nil {
				return nil, err
			}
			opts.ServerName = "n" + strconv.Itoa(i)
			opts.Cluster.Name = "sqlgate"
			opts.Cluster.Host = "127.0.0.1"
			opts.Cluster.Port = clusterPorts[i]
			opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
			return opts, nil
		})
	}
	for i := range n {
		c.start(t, i)
	}
	c.env = &natsauthtest.Env{Keys: keys, URL: strings.Join(urls, ","), Minter: natsauth.NewMinter(keys)}
	c.waitPeers(t)
	return c
}

// start starts (or starts again) server i.
func (c *natsCluster) start(t *testing.T, i int) {
	t.Helper()
	opts, err := c.opts[i]()
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("server %d not ready", i)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if err := natsauth.LoadAccounts(s, c.keys); err != nil {
		t.Fatal(err)
	}
	c.servers[i] = s
}

// stop shuts the server named name down and returns its index.
func (c *natsCluster) stop(t *testing.T, name string) int {
	t.Helper()
	for i, s := range c.servers {
		if s != nil && s.Name() == name {
			s.Shutdown()
			s.WaitForShutdown()
			c.servers[i] = nil
			return i
		}
	}
	t.Fatalf("no running server %q", name)
	return -1
}

// waitPeers waits until the JetStream meta leader sees every running server.
func (c *natsCluster) waitPeers(t *testing.T) {
	t.Helper()
	want := 0
	for _, s := range c.servers {
		if s != nil {
			want++
		}
	}
	eventually(t, time.Minute, "the JetStream cluster has every server", func() bool {
		for _, s := range c.servers {
			if s != nil && len(s.JetStreamClusterPeers()) == want {
				return true
			}
		}
		return false
	})
}

// connect connects to any running server and follows the cluster.
func (c *natsCluster) connect(t *testing.T, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return c.env.MustConnect(t, append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))...)
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAsyncStreamReplicatedInCluster: in a three-node cluster a stream of
// one replica is lost with its server (async publishes find no responder,
// and the check reports it), while the default sizes the stream at three
// replicas (an existing single-replica stream is scaled up, its consumer
// follows) and async calls keep working when a server is lost.
func TestAsyncStreamReplicatedInCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node JetStream cluster: skipped with -short")
	}
	const route = "orders.v1.import"
	c := startCluster(t, []string{route})
	u := c.env.MintUserSub(t, "alice", []string{broker.AsyncSubjectPrefix + ">"},
		func(key string) []string { return []string{broker.ReplyPrefix(key) + ".>"} }, time.Hour)
	user := c.connect(t, u.Option())
	subject := broker.AsyncPrefix(u.Key) + "." + route
	publish := func(payload string) (jetstream.PubAck, error) {
		m := nats.NewMsg(subject)
		m.Data = []byte(payload)
		reply, err := user.RequestMsg(m, 2*time.Second)
		if err != nil {
			return jetstream.PubAck{}, err
		}
		var ack struct {
			jetstream.PubAck
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(reply.Data, &ack); err != nil {
			return jetstream.PubAck{}, err
		}
		if ack.Error != nil {
			return jetstream.PubAck{}, ack.Error
		}
		return ack.PubAck, nil
	}
	ran := make(chan string, 16)
	h := natsvc.HandlerFunc(func(_ context.Context, req *broker.Request) *broker.Reply {
		ran <- string(req.Payload)
		return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, AuditIndex: -1}
	})
	start := func(replicas int, log *slog.Logger) *natsvc.Async {
		t.Helper()
		a, err := natsvc.StartAsync(t.Context(), c.connect(t, c.keys.BrokerUser(route)), natsvc.AsyncConfig{
			Subjects: []string{route}, UsersAccount: c.keys.Public().Users, Workers: 2, Replicas: replicas, Logger: log,
		}, h)
		if err != nil {
			t.Fatalf("StartAsync with replicas %d: %v", replicas, err)
		}
		t.Cleanup(func() { _ = a.Stop() })
		return a
	}
	js, err := jetstream.New(c.connect(t, c.keys.BrokerUser(route)))
	if err != nil {
		t.Fatal(err)
	}
	streamInfo := func() (*jetstream.StreamInfo, error) {
		s, err := js.Stream(t.Context(), natsvc.DefaultAsyncStream)
		if err != nil {
			return nil, err
		}
		return s.Info(t.Context())
	}

	// One replica, set explicitly: a warning at start, and the stream is
	// gone with its server.
	var logs lockedBuffer
	a1 := start(1, slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "single replica in a NATS cluster") {
		t.Errorf("no warning about a single replica in a cluster; log:\n%s", logs.String())
	}
	info, err := streamInfo()
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 1 {
		t.Fatalf("stream replicas = %d, want 1 as configured", info.Config.Replicas)
	}
	lost := c.stop(t, info.Cluster.Leader)
	eventually(t, time.Minute, "an async publish finds no responder once the stream's server is down", func() bool {
		_, err := publish(`{"lost":true}`)
		return errors.Is(err, nats.ErrNoResponders)
	})
	eventually(t, time.Minute, "the check reports the lost stream", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		return a1.CheckStream(ctx) != nil
	})
	if err := a1.Stop(); err != nil {
		t.Fatal(err)
	}
	c.start(t, lost)
	c.waitPeers(t)
	eventually(t, time.Minute, "the stream is back with its server", func() bool {
		_, err := streamInfo()
		return err == nil
	})

	// Sized by default: the single-replica stream is scaled up to three.
	var logs2 lockedBuffer
	a2 := start(0, slog.New(slog.NewTextHandler(&logs2, nil)))
	eventually(t, time.Minute, "the stream and its consumer have three current replicas", func() bool {
		info, err := streamInfo()
		// (The server scales in the background: the consumer moves once the
		// stream's new peer set has settled, which clears Desired.)
		if err != nil || info.Config.Replicas != 3 || info.Cluster == nil || info.Cluster.Desired != nil || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return false
			}
		}
		s, err := js.Stream(t.Context(), natsvc.DefaultAsyncStream)
		if err != nil {
			return false
		}
		cons, err := s.Consumer(t.Context(), natsvc.DefaultAsyncDurable)
		if err != nil {
			return false
		}
		ci, err := cons.Info(t.Context())
		return err == nil && ci.Cluster != nil && ci.Cluster.Desired == nil && ci.Cluster.Leader != "" && len(ci.Cluster.Replicas) == 2
	})
	info, err = streamInfo()
	if err != nil {
		t.Fatal(err)
	}
	c.stop(t, info.Cluster.Leader)
	var ack jetstream.PubAck
	eventually(t, time.Minute, "an async publish is stored with a server of three down", func() bool {
		ack, err = publish(`{"kept":true}`)
		return err == nil
	})
	// (A publish of the first part stored before its server went down runs
	// too, once the server is back.)
	for p := ""; p != `{"kept":true}`; {
		select {
		case p = <-ran:
		case <-time.After(60 * time.Second):
			s, err := js.Stream(t.Context(), natsvc.DefaultAsyncStream)
			if err == nil {
				b, _ := json.Marshal(s.CachedInfo())
				t.Logf("stream: %s", b)
			}
			t.Logf("consumer's log:\n%s", logs2.String())
			t.Fatalf("the request stored at sequence %d did not run", ack.Sequence)
		}
	}
	eventually(t, time.Minute, "the check passes with a server of three down", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		return a2.CheckStream(ctx) == nil
	})
}
