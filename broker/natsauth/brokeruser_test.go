package natsauth_test

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
)

// deniedPublish publishes msg on nc and reports whether the server refused
// it with a permissions violation naming its subject. The server answers a
// refused PUB with -ERR before the PONG that ends the flush.
func deniedPublish(t *testing.T, nc *nats.Conn, msg *nats.Msg) bool {
	t.Helper()
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	err := nc.LastError()
	return errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+msg.Subject+`"`)
}

// TestBrokerUserCannotForgeRequests: sqlgated's broker user may not publish
// a request to a route subject (where a Nats-Request-Info it wrote would pass
// through, as the request does not cross the users import) nor an async
// request under someone's key; nothing reaches the broker account's
// subscribers. Its emits and async replies still go out.
func TestBrokerUserCannotForgeRequests(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{
		Subjects: []string{"orders.v1.create", "orders.v1.get"}, Emits: []string{"orders.v1.created"}, JetStream: true,
	})
	spy := env.UnrestrictedBrokerConn(t)
	got := make(chan *nats.Msg, 16)
	for _, s := range []string{"orders.>", "sqlgate.>"} {
		if _, err := spy.ChanSubscribe(s, got); err != nil {
			t.Fatal(err)
		}
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	victim, _ := nkeys.CreateUser()
	victimKey, _ := victim.PublicKey()
	pub := env.Keys.Public()
	forged := `{"acc":"` + pub.Users + `","issuer_key":"` + pub.UsersSigning[0] + `","tags":["nkey:` + strings.ToLower(victimKey) + `"]}`
	for _, subject := range []string{"orders.v1.create", "orders.v1.get", broker.AsyncPrefix(victimKey) + ".orders.v1.create"} {
		bc := env.BrokerConn(t)
		msg := nats.NewMsg(subject)
		msg.Reply = bc.NewRespInbox()
		msg.Header.Set("Nats-Request-Info", forged)
		if !deniedPublish(t, bc, msg) {
			t.Errorf("broker user published %s (last error %v), want a permissions violation", subject, bc.LastError())
		}
	}
	bc := env.BrokerConn(t)
	for _, subject := range []string{"orders.v1.created", broker.ReplyPrefix(victimKey) + ".t1"} {
		if deniedPublish(t, bc, nats.NewMsg(subject)) {
			t.Errorf("broker user may not publish %s: %v", subject, bc.LastError())
		}
	}
	// One publisher's messages arrive in order: the first the spy sees is
	// the emit, so none of the refused ones got through.
	for _, want := range []string{"orders.v1.created", broker.ReplyPrefix(victimKey) + ".t1"} {
		select {
		case m := <-got:
			if m.Subject != want {
				t.Errorf("broker account saw %s, want %s", m.Subject, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s not delivered", want)
		}
	}
}

// TestBrokerUserDeniesExactlyTheServiceSubjects: the deny list of the broker
// user and the service exports of the broker account are built from one
// list, so a route cannot be exported without being denied.
func TestBrokerUserDeniesExactlyTheServiceSubjects(t *testing.T) {
	t.Parallel()
	keys, _ := natsauth.GenerateKeys()
	subjects := []string{"orders.v1.get", "orders.v1.create", "orders.v1.get"}
	jwts, err := keys.AccountJWTs(subjects, []string{"orders.v1.created"})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(jwts.Broker)
	if err != nil {
		t.Fatal(err)
	}
	var exported []string
	for _, e := range ac.Exports {
		if e.Type == jwt.Service {
			exported = append(exported, string(e.Subject))
		}
	}
	j, err := keys.BrokerUserJWT(subjects...)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(j)
	if err != nil {
		t.Fatal(err)
	}
	denied := slices.Clone([]string(uc.Pub.Deny))
	slices.Sort(exported)
	slices.Sort(denied)
	if !slices.Equal(denied, exported) || !slices.Contains(denied, natsauth.AsyncSubjects) {
		t.Errorf("broker user denies %v, broker account exports services %v", denied, exported)
	}
	if len(uc.Pub.Allow) != 0 || len(uc.Sub.Allow) != 0 || len(uc.Sub.Deny) != 0 {
		t.Errorf("broker user permissions beyond the deny list: %+v", uc.Permissions)
	}
}

func TestEmitOnRouteSubjectRefused(t *testing.T) {
	t.Parallel()
	keys, _ := natsauth.GenerateKeys()
	_, err := keys.AccountJWTs([]string{"orders.v1.create", "orders.v1.get"}, []string{"orders.v1.get"})
	if err == nil || !strings.Contains(err.Error(), `"orders.v1.get"`) {
		t.Errorf("an emit on a route subject: %v, want refused naming it", err)
	}
}

// TestMonitorCredsObserveOnly: the monitor creds `nats-setup` can write see
// the micro service (`nats micro info`) and can do nothing else: no request
// to a route, no subscription to sqlgated's inbox (where its JetStream
// deliveries arrive).
func TestMonitorCredsObserveOnly(t *testing.T) {
	t.Parallel()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: []string{"orders.v1.create"}})
	svc, err := micro.AddService(env.BrokerConn(t), micro.Config{Name: "sqlgate", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	if err := svc.AddEndpoint("create", micro.HandlerFunc(func(r micro.Request) {
		t.Errorf("monitor reached the route %s", r.Subject())
		_ = r.Respond(nil)
	}), micro.WithEndpointSubject("orders.v1.create")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := natsauth.WriteSetup(dir, env.Keys, natsauth.SetupConfig{MonitorCreds: true}); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "monitor.creds")
	mon := env.MustConnect(t, nats.UserCredentials(creds), nats.CustomInboxPrefix(natsauth.MonitorInboxPrefix))
	subj, _ := micro.ControlSubject(micro.InfoVerb, "sqlgate", "")
	m, err := mon.Request(subj, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("micro info with the monitor creds: %v", err)
	}
	if !strings.Contains(string(m.Data), `"orders.v1.create"`) {
		t.Errorf("micro info = %s, want the endpoint", m.Data)
	}
	msg := nats.NewMsg("orders.v1.create")
	msg.Reply = mon.NewRespInbox()
	if !deniedPublish(t, mon, msg) {
		t.Errorf("monitor published to a route subject (last error %v)", mon.LastError())
	}
	mon2 := env.MustConnect(t, nats.UserCredentials(creds), nats.CustomInboxPrefix(natsauth.MonitorInboxPrefix))
	if _, err := mon2.SubscribeSync("_INBOX.>"); err != nil {
		t.Fatal(err)
	}
	if err := mon2.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := mon2.LastError(); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("monitor subscribed to _INBOX.> (last error %v), want a permissions violation", err)
	}
}
