package natsclient_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	_ "modernc.org/sqlite"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
	"github.com/sqlgate/sqlgate/broker/natsclient"
	"github.com/sqlgate/sqlgate/broker/natsvc"
	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/web"
)

// calloutStack is sqlgate as sqlgated wires it for the auth callout: an
// OIDC verifier for an Okta-shaped provider (the okta preset: the subject
// is the token's uid, its sub the user's login), the broker over the
// policy in ../testdata/policy, a control registry and an audit log, the
// callout and the broker's NATS service on an embedded server, and the
// HTTP API.
type calloutStack struct {
	idp      *devidptest.Server
	env      *natsauthtest.Env
	sentinel []byte
	api      *httptest.Server
}

func startCalloutStack(t *testing.T) *calloutStack {
	t.Helper()
	ctx := t.Context()
	idp := devidptest.Start(t, devidp.WithShape(devidp.ShapeOkta), devidp.WithUsers(devidp.User{
		Username: "alice@example.com", Password: rand.Text(), Email: "alice@example.com", Groups: []string{"sales"},
	}))
	verifier, err := oidc.Open(ctx, oidc.Config{Issuers: []oidc.IssuerConfig{{
		Name: "okta", Issuer: idp.Issuer(), Preset: oidc.PresetOkta, Audiences: []string{idp.Audience()},
	}}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(t.TempDir(), "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	store, err := sqlstore.Open(ctx, db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := audit.GenerateKey(rand.Reader, "test/natsclient")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(ctx, store, audit.Config{
		Origin: "test/natsclient", Instance: "test", Signer: signer,
		ParamKey: audit.ParamKey{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close(context.Background()) })
	cdb, err := control.Open(ctx, db, control.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := opa.Open(ctx, opa.Config{Dir: "../testdata/policy"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	catalog, err := brokertest.Catalog("orders", brokertest.OrdersTargets())
	if err != nil {
		t.Fatal(err)
	}

	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: catalog.Subjects()})
	pub := env.Keys.Public()
	svc, err := broker.New(broker.Config{
		Catalog: catalog, Databases: map[string]broker.Executor{"orders": brokertest.NewFake("orders", brokertest.OrdersProcs())},
		Authorizer: engine, Recorder: log, Registry: control.NewRegistry(cdb, time.Second, time.Now),
		Minter: env.Minter, UsersAccount: pub.Users, SigningKeys: pub.UsersSigning, MaxTTL: time.Hour,
		Verifier: verifier,
	})
	if err != nil {
		t.Fatal(err)
	}
	co, err := natsauth.StartCallout(ctx, env.CalloutConn(t), env.Keys, natsauth.CalloutConfig{}, svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = co.Stop() })
	ns, err := natsvc.Start(ctx, env.BrokerConn(t), natsvc.Config{
		Name: "sqlgate", Version: "0.1.0", Subjects: catalog.Subjects(), UsersAccount: pub.Users, SigningKeys: pub.UsersSigning,
	}, svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Stop() })
	h, err := web.New(web.Config{Broker: svc, Auth: verifier, NATSURL: env.URL})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(h)
	t.Cleanup(api.Close)
	sentinel, err := env.Keys.SentinelCreds()
	if err != nil {
		t.Fatal(err)
	}
	return &calloutStack{idp: idp, env: env, sentinel: sentinel, api: api}
}

// TestConnectCalloutSubjectOtherThanSub: with the okta preset the
// principal's subject is the token's uid, not its sub. A callout client
// that asks the broker (BrokerURL) subscribes under the prefix the callout
// granted and gets its reply; one that computes the prefix from the
// token's sub is told at once, instead of every request timing out.
func TestConnectCalloutSubjectOtherThanSub(t *testing.T) {
	t.Parallel()
	s := startCalloutStack(t)
	tok, err := s.idp.TokenFor("alice@example.com", "")
	if err != nil {
		t.Fatal(err)
	}
	uid := s.idp.ObjectID("alice@example.com")
	fromSub, err := natsclient.InboxPrefixFromToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	granted := natsclient.PrincipalInboxPrefix(s.idp.Issuer(), uid)
	if fromSub == granted {
		t.Fatal("the Okta-shaped token's sub is its uid: the test proves nothing")
	}

	c, err := natsclient.ConnectCallout(t.Context(), natsclient.CalloutConfig{
		NATSURL: s.env.URL, SentinelCreds: s.sentinel, Token: staticToken(tok), BrokerURL: s.api.URL,
	})
	if err != nil {
		t.Fatalf("ConnectCallout with the broker URL: %v", err)
	}
	defer c.Close()
	if c.InboxPrefix() != granted {
		t.Errorf("inbox prefix %s, want the principal's (uid) %s", c.InboxPrefix(), granted)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a bound, not a timing: the reply comes or the test fails
	defer cancel()
	resp, err := c.Request(ctx, brokertest.SubjectCreate, []byte(`{"customer":"acme","amount":12.5,"quantity":1,"express":false}`), nil)
	if err != nil {
		t.Fatalf("request through the callout: %v", err)
	}
	var reply struct {
		OK bool `json:"ok"`
	}
	if err := json.Unmarshal(resp.Data, &reply); err != nil || !reply.OK {
		t.Errorf("reply %s, want ok", resp.Data)
	}

	// The prefix from the token's sub: refused at connect, with the fix.
	_, err = natsclient.ConnectCallout(t.Context(), natsclient.CalloutConfig{
		NATSURL: s.env.URL, SentinelCreds: s.sentinel, Token: staticToken(tok),
	})
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "BrokerURL") || !strings.Contains(err.Error(), fromSub) {
		t.Errorf("ConnectCallout with the prefix from sub = %v, want a permissions violation naming the prefix and BrokerURL", err)
	}
	if err != nil && strings.Contains(err.Error(), tok) {
		t.Error("the error contains the token")
	}
	// So is a wrong configured one.
	_, err = natsclient.ConnectCallout(t.Context(), natsclient.CalloutConfig{
		NATSURL: s.env.URL, SentinelCreds: s.sentinel, Token: staticToken(tok), InboxPrefix: fromSub,
	})
	if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "CalloutConfig.InboxPrefix") {
		t.Errorf("ConnectCallout with a wrong InboxPrefix = %v, want a permissions violation", err)
	}
}

// TestConnectCalloutBrokerRefusesToken: a token the broker refuses on
// whoami fails ConnectCallout with the broker's answer, before any NATS
// connection, and the error holds no token.
func TestConnectCalloutBrokerRefusesToken(t *testing.T) {
	t.Parallel()
	s := startCalloutStack(t)
	const bad = "not-a-token-the-broker-accepts"
	_, err := natsclient.ConnectCallout(t.Context(), natsclient.CalloutConfig{
		NATSURL: s.env.URL, SentinelCreds: s.sentinel, Token: staticToken(bad), BrokerURL: s.api.URL,
	})
	var be *natsclient.BrokerError
	if !errors.As(err, &be) || be.Status != 401 || !errors.Is(err, natsclient.ErrUnauthorized) {
		t.Fatalf("ConnectCallout with a refused token = %v, want the broker's 401", err)
	}
	if strings.Contains(err.Error(), bad) {
		t.Error("the error contains the token")
	}
	if _, err := natsclient.ConnectCallout(t.Context(), natsclient.CalloutConfig{
		NATSURL: s.env.URL, SentinelCreds: s.sentinel, Token: staticToken(bad), BrokerURL: "http://broker.example.com",
	}); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("ConnectCallout with a plain http broker URL = %v, want refused", err)
	}
}
