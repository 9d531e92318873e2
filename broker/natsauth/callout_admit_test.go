package natsauth_test

import (
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
)

// TestCalloutAdmitRefusedLoginIsNotHandled: a login request Admit refuses
// (sqlgated's gate while its NATS server is unchecked or too old) reaches
// no handler and gets no answer: the login fails (the server refuses the
// client when its auth timeout passes, unless the client gave up first). Once Admit lets requests through, logins work.
func TestCalloutAdmitRefusedLoginIsNotHandled(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}})
	h := &fakeVerifier{minter: env.Minter, pub: []string{"orders.v1.create"}}
	var open atomic.Bool
	c, err := natsauth.StartCallout(t.Context(), env.CalloutConn(t), env.Keys, natsauth.CalloutConfig{Admit: open.Load}, h)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Stop() }()
	sentinel, err := env.Keys.SentinelCreds()
	if err != nil {
		t.Fatal(err)
	}
	connect := func() error {
		nc, err := nats.Connect(env.URL, nats.UserCredentialBytes(sentinel), nats.Token(goodToken), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
		}
		return err
	}
	if err := connect(); err == nil {
		t.Fatal("login while Admit refuses succeeded")
	}
	if n := h.calls.Load(); n != 0 {
		t.Fatalf("the handler saw %d login requests Admit refused", n)
	}
	open.Store(true)
	if err := connect(); err != nil {
		t.Fatalf("login once Admit lets it through: %v", err)
	}
	if n := h.calls.Load(); n != 1 {
		t.Errorf("the handler saw %d login requests, want the admitted one", n)
	}
}
