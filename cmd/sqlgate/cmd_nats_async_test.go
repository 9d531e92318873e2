package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestCallAsyncWithoutStream: an async call that no stream stores (the
// stream's NATS servers are down) says it was not queued, and one the
// stream does not acknowledge says it may or may not be, and how to retry.
func TestCallAsyncWithoutStream(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	creds, _ := writeCreds(t, time.Now().Add(time.Hour))
	call := func(args ...string) (int, string) {
		code, _, errOut := c.run("", append([]string{"call", "--async", "--creds", creds, "--nats", s.ClientURL(), "orders.v1.import", "{}"}, args...)...)
		return code, errOut
	}
	code, errOut := call()
	if code != 1 || !strings.Contains(errOut, "was not queued: no JetStream stream answered") || strings.Contains(errOut, "not an async route") {
		t.Errorf("no stream: exit %d, %s; want it not queued, for want of a stream", code, errOut)
	}

	// Something takes the publish and never acknowledges it: a stream
	// without a leader.
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.SubscribeSync("sqlgate.async.>"); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	code, errOut = call("--timeout", "200ms")
	if code != 1 || !strings.Contains(errOut, "may or may not be queued") || !strings.Contains(errOut, "may run it twice") {
		t.Errorf("unacknowledged, no key: exit %d, %s", code, errOut)
	}
	code, errOut = call("--timeout", "200ms", "--idempotency-key", "import-7")
	if code != 1 || !strings.Contains(errOut, "with the same --idempotency-key: it runs once") {
		t.Errorf("unacknowledged, with a key: exit %d, %s", code, errOut)
	}
}
