package natsvc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsvc"
)

func okHandler() natsvc.Handler {
	return natsvc.HandlerFunc(func(_ context.Context, req *broker.Request) *broker.Reply {
		return &broker.Reply{OK: true, CorrelationID: req.CorrelationID, AuditIndex: -1}
	})
}

// TestAsyncConfigReplicas: replicas are 1 to 5, or 0 to size them; the
// stream check interval is not negative.
func TestAsyncConfigReplicas(t *testing.T) {
	base := natsvc.AsyncConfig{Subjects: []string{"orders.v1.import"}, UsersAccount: mustAccountKey(t)}
	for _, n := range []int{0, 1, 3, natsvc.MaxAsyncReplicas} {
		c := base
		c.Replicas = n
		if err := c.Validate(); err != nil {
			t.Errorf("replicas %d: %v", n, err)
		}
	}
	for _, n := range []int{-1, natsvc.MaxAsyncReplicas + 1} {
		c := base
		c.Replicas = n
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "replicas must be 1 to 5") {
			t.Errorf("replicas %d: error %v, want replicas must be 1 to 5", n, err)
		}
	}
	c := base
	c.StreamCheckInterval = -time.Second
	if err := c.Validate(); err == nil {
		t.Error("a negative stream check interval passed")
	}
}

// TestAsyncReplicasOnSingleServer: on a server that is not part of a
// cluster the stream gets one replica by default; asked for more, the
// start fails and says why, and leaves the existing stream as it was.
func TestAsyncReplicasOnSingleServer(t *testing.T) {
	f := newAsyncFixture(t)
	a := f.start(t.Context(), t, okHandler())
	if got := f.streamConfig(t).Replicas; got != 1 {
		t.Errorf("stream replicas = %d, want 1 on a single server", got)
	}
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err := natsvc.StartAsync(t.Context(), f.env.BrokerConn(t), natsvc.AsyncConfig{
		Subjects: []string{"orders.v1.import"}, UsersAccount: f.env.Keys.Public().Users, Replicas: 3,
	}, okHandler())
	if err == nil || !strings.Contains(err.Error(), "3 replicas") || !strings.Contains(err.Error(), "non-clustered") {
		t.Fatalf("StartAsync with 3 replicas on a single server: %v; want a refusal naming the replicas", err)
	}
	if got := f.streamConfig(t).Replicas; got != 1 {
		t.Errorf("stream replicas after the refused start = %d, want 1", got)
	}
}

// TestAsyncStreamHealth: the check reports a stream and consumer that
// answer; when the consumer is gone, the fetch's error reports it and the
// check recreates it.
func TestAsyncStreamHealth(t *testing.T) {
	f := newAsyncFixture(t)
	reports := make(chan error, 16)
	a := f.start(t.Context(), t, okHandler(), func(c *natsvc.AsyncConfig) {
		c.OnStreamHealth = func(err error) {
			select {
			case reports <- err:
			default:
			}
		}
	})
	if err := <-reports; err != nil {
		t.Fatalf("first report after start: %v, want nil", err)
	}
	if err := a.CheckStream(t.Context()); err != nil {
		t.Fatalf("CheckStream: %v", err)
	}
	if err := <-reports; err != nil {
		t.Fatalf("report of a passing check: %v, want nil", err)
	}
	if err := f.js.DeleteConsumer(t.Context(), natsvc.DefaultAsyncStream, natsvc.DefaultAsyncDurable); err != nil {
		t.Fatal(err)
	}
	// The server ends the consumer's pending fetch: its error is reported.
	select {
	case err := <-reports:
		if !errors.Is(err, jetstream.ErrConsumerDeleted) {
			t.Errorf("report after the consumer was deleted: %v, want %v", err, jetstream.ErrConsumerDeleted)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the deleted consumer was not reported")
	}
	// The check recreates it (the deletion asked for one at once).
	if err := a.CheckStream(t.Context()); err != nil {
		t.Errorf("CheckStream after the consumer was deleted: %v, want it recreated", err)
	}
	if got := a.StreamError(); got != nil {
		t.Errorf("StreamError = %v, want nil once the consumer is recreated", got)
	}
}

func mustAccountKey(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	key, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return key
}
