package natsvc_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
)

// asyncCalloutMinter answers the auth callout with what sqlgate grants for an
// async route: publish under sqlgate.async.<server-generated key>, subscribe
// under its reply prefix. It reports each key, as GET /api/v1/leases lists it.
type asyncCalloutMinter struct {
	env  *natsauthtest.Env
	keys chan string
}

func (c *asyncCalloutMinter) Callout(ctx context.Context, req broker.CalloutRequest) (*broker.NATSCredential, error) {
	exp := time.Now().Add(time.Hour)
	m, err := c.env.Minter.MintUser(ctx, broker.UserSpec{
		UserKey: req.UserKey, Name: "00uCarol", Pub: []string{broker.AsyncPrefix(req.UserKey) + ".orders.v1.import"},
		Sub: []string{"_INBOX_carol.>", broker.ReplyPrefix(req.UserKey) + ".>"}, Expires: exp,
	})
	if err != nil {
		return nil, err
	}
	c.keys <- req.UserKey
	return &broker.NATSCredential{JWT: m.JWT, UserKey: req.UserKey, ExpiresAt: exp}, nil
}

// TestAsyncCalloutClientWithItsKey: a callout client that has looked up the
// key the server generated for its connection (docs/nats.md) queues async
// requests under it, handled as that key's; after a reconnect the server
// generated another key, and the old one's subject is refused.
func TestAsyncCalloutClientWithItsKey(t *testing.T) {
	h := &recorder{seen: make(chan broker.Request, 4)}
	f := startAsync(t, h)
	cm := &asyncCalloutMinter{env: f.env, keys: make(chan string, 4)}
	co, err := natsauth.StartCallout(t.Context(), f.env.CalloutConn(t), f.env.Keys, natsauth.CalloutConfig{}, cm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = co.Stop() })
	sentinel, err := f.env.Keys.SentinelCreds()
	if err != nil {
		t.Fatal(err)
	}
	reconnected := make(chan struct{}, 1)
	nc := f.env.MustConnect(t, nats.UserCredentialBytes(sentinel), nats.Token("tok"), nats.CustomInboxPrefix("_INBOX_carol"),
		nats.MaxReconnects(-1), nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	key := <-cm.keys
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), broker.AsyncPrefix(key)+".orders.v1.import", []byte(`{}`)); err != nil {
		t.Fatalf("async publish under the connection's key: %v", err)
	}
	if c := (<-h.seen).Caller; !c.Attested || c.UserKey != key {
		t.Errorf("caller = %+v, want the callout connection's key %s", c, key)
	}

	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	<-reconnected
	if newKey := <-cm.keys; newKey == key {
		t.Fatalf("the server kept key %s across the reconnect", key)
	}
	old := nats.NewMsg(broker.AsyncPrefix(key) + ".orders.v1.import")
	if !refusedPublish(t, nc, old) {
		t.Errorf("publish under the key of the connection before the reconnect not refused (last error %v)", nc.LastError())
	}
}
