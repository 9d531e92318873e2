package broker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/natsauth/natsauthtest"
	"github.com/sqlgate/sqlgate/identity"
)

// TestRevokedCalloutClientCannotSignInAgain runs a real NATS server with
// sqlgate's auth callout. Revoking a callout client's credential
// disconnects it, and its reconnect with the same token is refused (it
// would otherwise get a new server-generated key and a new credential at
// once), with an audited reason; a fresh sign-in still connects, and the
// principal's nats/creds path is unchanged.
func TestRevokedCalloutClientCannotSignInAgain(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	subjects := e.svc.Catalog().Subjects()
	env := natsauthtest.Start(t, natsauthtest.Config{Subjects: subjects})
	now := time.Now()
	signIn := func(issued time.Time) identity.Principal {
		p := alice
		p.IssuedAt, p.Expiry = issued, now.Add(time.Hour)
		return p
	}
	verifier := tokens{"first-sign-in": signIn(now.Add(-time.Minute)), "fresh-sign-in": signIn(now)}
	pub := env.Keys.Public()
	svc := e.serviceWith(t, func(c *broker.Config) {
		c.Minter, c.UsersAccount, c.SigningKeys, c.MaxTTL = env.Minter, pub.Users, pub.UsersSigning, time.Hour
		c.Revoker = natsauth.NewRevoker(env.SystemConn(t), env.Keys, natsauth.RevokerConfig{Subjects: subjects})
		c.Verifier = verifier
	})
	co, err := natsauth.StartCallout(ctx, env.CalloutConn(t), env.Keys, natsauth.CalloutConfig{}, svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = co.Stop() })
	sentinel, err := env.Keys.SentinelCreds()
	if err != nil {
		t.Fatal(err)
	}
	connect := func(token string, opts ...nats.Option) (*nats.Conn, error) {
		return env.Connect(t, append([]nats.Option{
			nats.UserCredentialBytes(sentinel), nats.Token(token),
			nats.CustomInboxPrefix(broker.PrincipalInboxPrefix(alice)),
		}, opts...)...)
	}

	reconnected, closed := make(chan struct{}, 1), make(chan struct{})
	var mu sync.Mutex
	var asyncErrs []error // what the server told the client
	_, err = connect("first-sign-in",
		nats.MaxReconnects(1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			asyncErrs = append(asyncErrs, err)
			mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("connect through the callout: %v", err)
	}
	key := calloutKey(t, e.registry)
	before := len(e.records(t))
	admin := identity.Principal{Issuer: "https://idp.test", Subject: "dana", Groups: []string{"admins"}}
	if err := svc.RevokeNATS(ctx, admin, []string{key}, "suspicious activity"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
		t.Fatal("the revoked callout client reconnected with the same token")
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the revoked callout client was neither disconnected for good nor reconnected")
	}
	mu.Lock()
	if len(asyncErrs) != 2 || !errors.Is(asyncErrs[0], nats.ErrAuthRevoked) || !errors.Is(asyncErrs[1], nats.ErrAuthorization) {
		t.Errorf("the revoked client was told %v, want its credential revoked, then its reconnect refused", asyncErrs)
	}
	mu.Unlock()
	if _, err := connect("first-sign-in"); err == nil {
		t.Error("a new connection with the revoked credential's token was accepted")
	}
	var refusals int
	for _, r := range e.records(t)[before:] {
		if r.Kind == audit.KindDecision && r.Credential != nil && r.Credential.Via == "callout" && r.Result != nil &&
			r.Result.Status == broker.CodeUnauthenticated && r.Actor.Subject == alice.Subject &&
			len(r.Reasons) == 1 && strings.Contains(r.Reasons[0], "revoked") {
			refusals++
		}
	}
	if refusals < 2 {
		t.Errorf("%d audited refusals of the revoked credential's token, want the reconnect and the new connection", refusals)
	}

	fresh, err := connect("fresh-sign-in")
	if err != nil {
		t.Fatalf("a fresh sign-in after the revocation: %v", err)
	}
	if err := fresh.Flush(); err != nil {
		t.Errorf("the fresh sign-in's connection: %v", err)
	}
	if _, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: signIn(now.Add(-time.Minute)), UserKey: userKey(t), Via: "creds"}); err != nil {
		t.Errorf("nats/creds for the principal after a callout revocation = %v, want a credential", err)
	}
}

// calloutKey returns alice's only callout key in the registry.
func calloutKey(t *testing.T, reg *control.Registry) string {
	t.Helper()
	list, err := reg.ByPrincipal(t.Context(), alice.ID())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, iss := range list {
		if iss.Via == "callout" {
			keys = append(keys, iss.UserKey)
		}
	}
	if len(keys) != 1 {
		t.Fatalf("callout keys of alice = %v, want one", keys)
	}
	return keys[0]
}

// brokenTokens is the control registry with its callout token refusals
// unreadable, like an unreachable control database.
type brokenTokens struct{ *control.Registry }

var _ broker.CalloutTokens = brokenTokens{}

func (brokenTokens) CalloutTokenRefused(context.Context, ...string) (bool, error) {
	return false, errors.New("connection refused")
}

// TestCalloutFailsClosedWithoutTokenRefusals: the auth callout issues
// nothing when it cannot tell whether the token is refused: the refusals
// cannot be read, or the registry cannot keep them.
func TestCalloutFailsClosedWithoutTokenRefusals(t *testing.T) {
	for name, reg := range map[string]func(e *env) broker.Registry{
		"refusals unreadable":          func(e *env) broker.Registry { return brokenTokens{e.registry} },
		"registry without refusals":    func(*env) broker.Registry { return newMemRegistry() },
		"refusals readable (baseline)": func(e *env) broker.Registry { return e.registry },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			keys, err := natsauth.GenerateKeys()
			if err != nil {
				t.Fatal(err)
			}
			pub := keys.Public()
			p := alice
			p.Expiry = time.Now().Add(time.Hour)
			svc := e.serviceWith(t, func(c *broker.Config) {
				c.Minter, c.UsersAccount, c.SigningKeys, c.MaxTTL = natsauth.NewMinter(keys), pub.Users, pub.UsersSigning, time.Hour
				c.Registry, c.Verifier = reg(e), tokens{"token": p}
			})
			key := userKey(t)
			cred, err := svc.Callout(t.Context(), broker.CalloutRequest{Token: "token", UserKey: key})
			if strings.Contains(name, "baseline") {
				if err != nil {
					t.Fatalf("Callout = %v, want a credential", err)
				}
				return
			}
			if !errors.Is(err, broker.ErrUnavailable) || cred != nil {
				t.Fatalf("Callout = %v, %v; want no credential, unavailable", cred != nil, err)
			}
			if _, err := e.registry.Lookup(t.Context(), key); !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("registry after the refused callout: %v, want the key unknown", err)
			}
		})
	}
}

// TestCalloutRacingRevocation: a callout whose token passed the refusal
// check before a revocation of another credential of the same token
// refused it, and that stores its credential after, is refused too, and
// what it stored is revoked: the token gets nothing after its refusal.
func TestCalloutRacingRevocation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub := keys.Public()
	p := alice
	p.Expiry = time.Now().Add(time.Hour)
	rev := newFlakyRevoker(0)
	g := newGate()
	service := func(minter broker.NATSMinter) *broker.Service {
		return e.serviceWith(t, func(c *broker.Config) {
			c.Minter, c.UsersAccount, c.SigningKeys, c.MaxTTL = minter, pub.Users, pub.UsersSigning, time.Hour
			c.Revoker, c.Verifier = rev, tokens{"token": p}
		})
	}
	svc, held := service(natsauth.NewMinter(keys)), service(gatedMinter{natsauth.NewMinter(keys), g})
	first := userKey(t)
	if _, err := svc.Callout(ctx, broker.CalloutRequest{Token: "token", UserKey: first}); err != nil {
		t.Fatal(err)
	}
	second := userKey(t)
	done := make(chan error)
	go func() {
		cred, err := held.Callout(ctx, broker.CalloutRequest{Token: "token", UserKey: second})
		if cred != nil {
			t.Errorf("Callout released a credential expiring %v", cred.ExpiresAt)
		}
		done <- err
	}()
	<-g.entered // past the refusal check, before the store
	admin := identity.Principal{Issuer: "https://idp.test", Subject: "dana"}
	if err := svc.RevokeNATS(ctx, admin, []string{first}, "suspicious activity"); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	err = <-done
	if !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "sign in again") {
		t.Errorf("callout during the revocation = %v, want unauthenticated, telling to sign in again", err)
	}
	iss, lerr := e.registry.Lookup(ctx, second)
	if _, enforced := rev.state(second); lerr != nil || iss.RevokedAt.IsZero() || !enforced {
		t.Errorf("the key stored during the revocation: %+v, %v, revoked on the servers %v; want it revoked", iss, lerr, enforced)
	}
}

// refuseFails is the control registry with refusing callout tokens failing.
type refuseFails struct{ *control.Registry }

func (refuseFails) RefuseCalloutTokens(context.Context, []string, time.Time) error {
	return errors.New("connection refused")
}

// TestRevokeNATSWhenTokensCannotBeRefused: when the tokens of callout
// credentials cannot be refused, the keys are revoked anyway (the client is
// disconnected rather than left connected) and the answer is unavailable,
// so that the revocation is repeated.
func TestRevokeNATSWhenTokensCannotBeRefused(t *testing.T) {
	e := newEnv(t)
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub := keys.Public()
	p := alice
	p.Expiry = time.Now().Add(time.Hour)
	svc := e.serviceWith(t, func(c *broker.Config) {
		c.Minter, c.UsersAccount, c.SigningKeys, c.MaxTTL = natsauth.NewMinter(keys), pub.Users, pub.UsersSigning, time.Hour
		c.Registry, c.Verifier = refuseFails{e.registry}, tokens{"token": p}
	})
	key := userKey(t)
	if _, err := svc.Callout(t.Context(), broker.CalloutRequest{Token: "token", UserKey: key}); err != nil {
		t.Fatalf("Callout: %v", err)
	}
	err = svc.RevokeNATS(t.Context(), alice, []string{key}, "test")
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("RevokeNATS with the refusals failing = %v, want unavailable", err)
	}
	iss, err := e.registry.Lookup(t.Context(), key)
	if err != nil || iss.RevokedAt.IsZero() {
		t.Errorf("registry after RevokeNATS = %+v, %v; want the key revoked", iss, err)
	}
}
