package broker_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/identity"
)

// limitedIssuer is a broker like [env.issuer] over reg that allows limit
// live NATS credentials per principal, answering the auth callout for the
// tokens of verifier.
func (e *env) limitedIssuer(t *testing.T, reg broker.Registry, limit int, verifier tokens) *broker.Service {
	t.Helper()
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	return e.serviceWith(t, func(c *broker.Config) {
		pub := keys.Public()
		c.Registry, c.Minter, c.UsersAccount, c.SigningKeys = reg, natsauth.NewMinter(keys), pub.Users, pub.UsersSigning
		c.MaxNATSCredentialsPerPrincipal, c.Verifier = limit, verifier
	})
}

// limitRefusals returns the rate_limited decision records among recs.
func limitRefusals(recs []*audit.Record) []*audit.Record {
	var out []*audit.Record
	for _, r := range recs {
		if r.Kind == audit.KindDecision && r.Result != nil && r.Result.Status == broker.CodeRateLimited {
			out = append(out, r)
		}
	}
	return out
}

// TestNATSCredentialLimit: a principal holding maxNATSCredentialsPerPrincipal
// live NATS credentials gets none for a new key, on the creds path and the
// auth callout alike: refused before anything is minted or recorded, with a
// message naming the limit and how to free credentials, and an audited
// decision (rate_limited). Expired and revoked keys do not count, a refresh
// of a key the principal holds is never refused, another principal is not
// affected, and revoking a credential makes room again.
func TestNATSCredentialLimit(t *testing.T) {
	e := newEnv(t) // alice holds one live key (e.keys)
	ctx := t.Context()
	e.register(t, alice, -time.Minute, false) // expired, not pruned yet
	e.register(t, alice, time.Hour, true)     // revoked
	svc := e.limitedIssuer(t, e.registry, 3, tokens{"alice-token": alice})
	issue := func(p identity.Principal, key string) error {
		_, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: p, UserKey: key, Via: "creds"})
		return err
	}

	held := []string{e.keys[alice.Subject]}
	for range 2 {
		key := userKey(t)
		if err := issue(alice, key); err != nil {
			t.Fatalf("credential %d of 3 (expired and revoked keys not counted) = %v, want it issued", len(held)+1, err)
		}
		held = append(held, key)
	}

	before := len(e.records(t))
	refusedKey := userKey(t)
	err := issue(alice, refusedKey)
	if !errors.Is(err, broker.ErrTooManyNATSCredentials) {
		t.Fatalf("a fourth credential at the limit 3 = %v, want ErrTooManyNATSCredentials", err)
	}
	for _, want := range []string{"you hold 3 live NATS credentials", "the limit is 3", "sqlgate leases revoke", "wait for them to expire"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if iss, err := e.registry.Lookup(ctx, refusedKey); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("registry holds the refused key: %+v, %v; want nothing recorded", iss, err)
	}
	recs := e.records(t)[before:]
	if len(recs) != 1 {
		t.Fatalf("audit after the refusal = %v, want one decision record", kinds(recs))
	}
	if r := recs[0]; r.Kind != audit.KindDecision || r.Allow == nil || *r.Allow || r.Result == nil || r.Result.Status != broker.CodeRateLimited ||
		r.Credential == nil || r.Credential.UserKey != refusedKey || r.Credential.Via != "creds" || r.DecisionID == "" ||
		len(r.Reasons) != 1 || !strings.Contains(r.Reasons[0], "the limit is 3") || r.Actor == nil || r.Actor.Subject != alice.Subject {
		t.Errorf("refusal record = %+v, want a rate_limited nats issue decision for the key, with the limit as its reason", r)
	}

	// A refresh of a key alice holds is not a new credential.
	before = len(e.records(t))
	for _, key := range held {
		if err := issue(alice, key); err != nil {
			t.Errorf("refresh of a held key at the limit = %v, want it issued", err)
		}
	}
	if n := len(limitRefusals(e.records(t)[before:])); n != 0 {
		t.Errorf("%d limit refusals audited for refreshes, want 0", n)
	}
	// The auth callout is held to the same limit (every connection gets
	// a new server-generated key).
	calloutKey := userKey(t)
	if _, err := svc.Callout(ctx, broker.CalloutRequest{Token: "alice-token", UserKey: calloutKey}); !errors.Is(err, broker.ErrTooManyNATSCredentials) {
		t.Errorf("callout at the limit = %v, want ErrTooManyNATSCredentials", err)
	}
	if _, err := e.registry.Lookup(ctx, calloutKey); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("registry lookup of the refused callout key = %v, want not found", err)
	}
	if got := limitRefusals(e.records(t)); len(got) != 2 || got[1].Credential.Via != "callout" || got[1].Actor.Transport != "nats" {
		t.Errorf("limit refusals = %d, the last %+v; want the callout's refusal audited (via callout, over nats)", len(got), got[len(got)-1].Credential)
	}
	// Another principal has a limit of its own.
	if err := issue(bob, userKey(t)); err != nil {
		t.Errorf("bob's credential while alice is at the limit = %v, want it issued", err)
	}
	// Revoking one makes room for one.
	if err := svc.RevokeNATS(ctx, alice, held[:1], "done with it"); err != nil {
		t.Fatal(err)
	}
	if err := issue(alice, userKey(t)); err != nil {
		t.Errorf("a credential after revoking one = %v, want it issued", err)
	}
	if err := issue(alice, userKey(t)); !errors.Is(err, broker.ErrTooManyNATSCredentials) {
		t.Errorf("one more = %v, want ErrTooManyNATSCredentials", err)
	}
}

// TestNATSCredentialLimitConcurrent: concurrent requests for new keys
// cannot pass the limit together; the refused ones are audited and leave
// no live key (one refused after it was recorded is withdrawn).
func TestNATSCredentialLimitConcurrent(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	dave := identity.Principal{Issuer: "https://idp.test", Subject: "dave", Email: "dave@example.com", Groups: []string{"sales"}}
	svc := e.limitedIssuer(t, e.registry, 2, nil)
	before := len(e.records(t))
	var (
		wg            sync.WaitGroup
		mu            sync.Mutex
		issued, total int
	)
	for range 12 {
		wg.Go(func() {
			_, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: dave, UserKey: userKey(t), Via: "creds"})
			mu.Lock()
			defer mu.Unlock()
			total++
			switch {
			case err == nil:
				issued++
			case !errors.Is(err, broker.ErrTooManyNATSCredentials):
				t.Errorf("IssueNATS = %v, want a credential or ErrTooManyNATSCredentials", err)
			}
		})
	}
	wg.Wait()
	if issued > 2 {
		t.Errorf("limit 2, but %d concurrent requests got a credential", issued)
	}
	live := func() int {
		t.Helper()
		n, err := e.registry.CountLive(ctx, dave.ID(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := live(); n != issued {
		t.Errorf("%d credentials issued, but %d live keys in the registry", issued, n)
	}
	if n := len(limitRefusals(e.records(t)[before:])); n != total-issued {
		t.Errorf("%d refusals audited, want %d", n, total-issued)
	}
	// The refused ones do not count: the limit is reached one by one.
	for i := issued; i < 2; i++ {
		if _, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: dave, UserKey: userKey(t), Via: "creds"}); err != nil {
			t.Fatalf("credential %d of 2 after the race = %v", i+1, err)
		}
	}
	if _, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: dave, UserKey: userKey(t), Via: "creds"}); !errors.Is(err, broker.ErrTooManyNATSCredentials) {
		t.Errorf("third credential = %v, want ErrTooManyNATSCredentials", err)
	}
	if n := live(); n != 2 {
		t.Errorf("%d live keys, want 2", n)
	}
}

// TestNATSCredentialLimitDefault: unset, the limit is
// DefaultMaxNATSCredentials (counted over a registry that only lists a
// principal's issuances); negative, there is none.
func TestNATSCredentialLimitDefault(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	now := time.Now()
	reg := newMemRegistry()
	fill := func(p identity.Principal, n int) {
		for range n {
			if err := reg.Put(ctx, broker.Issuance{UserKey: userKey(t), Principal: p, Via: "callout", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	fill(alice, broker.DefaultMaxNATSCredentials-1)
	// Expired and revoked ones do not count.
	if err := reg.Put(ctx, broker.Issuance{UserKey: userKey(t), Principal: alice, IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Put(ctx, broker.Issuance{UserKey: userKey(t), Principal: alice, IssuedAt: now, ExpiresAt: now.Add(time.Hour), RevokedAt: now}); err != nil {
		t.Fatal(err)
	}
	fill(bob, broker.DefaultMaxNATSCredentials)

	def := e.limitedIssuer(t, reg, 0, nil)
	issue := func(svc *broker.Service, p identity.Principal) error {
		_, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: p, UserKey: userKey(t), Via: "creds"})
		return err
	}
	if err := issue(def, alice); err != nil {
		t.Fatalf("credential %d of the default %d = %v, want it issued", broker.DefaultMaxNATSCredentials, broker.DefaultMaxNATSCredentials, err)
	}
	for _, p := range []identity.Principal{alice, bob} {
		if err := issue(def, p); !errors.Is(err, broker.ErrTooManyNATSCredentials) {
			t.Errorf("%s: one more than the default = %v, want ErrTooManyNATSCredentials", p.Subject, err)
		}
	}
	if err := issue(e.limitedIssuer(t, reg, -1, nil), alice); err != nil {
		t.Errorf("no limit (negative) = %v, want a credential", err)
	}
}

// racingRegistry records, with the first Put of key, a live issuance of
// another key of the same principal: what a concurrent request does between
// IssueNATS's first count and its recount.
type racingRegistry struct {
	*control.Registry
	key, other string
	done       bool
}

func (r *racingRegistry) PutIssuance(ctx context.Context, iss broker.Issuance) (bool, error) {
	if iss.UserKey == r.key && !r.done {
		r.done = true
		o := iss
		o.UserKey = r.other
		if err := r.Registry.Put(ctx, o); err != nil {
			return false, err
		}
	}
	return r.Registry.PutIssuance(ctx, iss)
}

func (r *racingRegistry) Put(ctx context.Context, iss broker.Issuance) error {
	_, err := r.PutIssuance(ctx, iss)
	return err
}

// TestNATSCredentialLimitRaceLoserMayRetry: a key refused by the recount
// (another request took the last place meanwhile) is withdrawn, not
// revoked: its JWT never left sqlgated, and the same key gets a credential
// once there is room (natsclient keeps its key pair and retries a 429; a
// revoked key would stop it for good).
func TestNATSCredentialLimitRaceLoserMayRetry(t *testing.T) {
	e := newEnv(t) // alice holds one live key (e.keys)
	ctx := t.Context()
	held := e.keys[alice.Subject]
	key := userKey(t)
	reg := &racingRegistry{Registry: e.registry, key: key, other: userKey(t)}
	svc := e.limitedIssuer(t, reg, 2, nil)
	_, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: alice, UserKey: key, Via: "creds"})
	if !errors.Is(err, broker.ErrTooManyNATSCredentials) {
		t.Fatalf("the request that lost the race = %v, want ErrTooManyNATSCredentials", err)
	}
	if _, err := e.registry.Lookup(ctx, key); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("the refused key in the registry: %v, want it withdrawn (not found, not revoked)", err)
	}
	// Room again: the concurrent credential is revoked.
	if err := e.registry.Revoke(ctx, held, time.Now()); err != nil {
		t.Fatal(err)
	}
	cred, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: alice, UserKey: key, Via: "creds"})
	if err != nil || cred.JWT == "" {
		t.Fatalf("the same key once there is room = %v, want a credential", err)
	}
}

// sameKeyRegistry: while request X for key is between its registry lookup
// and its Put, request Y for the same key (natsclient retrying on another
// instance) is issued and released, and then a third key of the principal
// is recorded (a concurrent request), so that a recount of X would refuse it.
type sameKeyRegistry struct {
	*control.Registry
	key   string
	third string
	y     func() (*broker.NATSCredential, error)
	yCred *broker.NATSCredential
	yErr  error
	fired bool
}

func (r *sameKeyRegistry) PutIssuance(ctx context.Context, iss broker.Issuance) (bool, error) {
	if iss.UserKey == r.key && !r.fired {
		r.fired = true
		r.yCred, r.yErr = r.y()
		o := iss
		o.UserKey = r.third
		if err := r.Registry.Put(ctx, o); err != nil {
			return false, err
		}
	}
	return r.Registry.PutIssuance(ctx, iss)
}

func (r *sameKeyRegistry) Put(ctx context.Context, iss broker.Issuance) error {
	_, err := r.PutIssuance(ctx, iss)
	return err
}

// TestNATSCredentialLimitSameKeyTwice: two requests for one new key, the
// second released while the first is recording: the first finds the key
// live at its Put and is a refresh of it (no recount, nothing withdrawn), so
// the released credential stays in the registry, where a revoke-all finds
// it (withdrawing it would have left a live JWT no revocation can reach).
func TestNATSCredentialLimitSameKeyTwice(t *testing.T) {
	e := newEnv(t) // alice holds one live key
	ctx := t.Context()
	key := userKey(t)
	reg := &sameKeyRegistry{Registry: e.registry, key: key, third: userKey(t)}
	svc := e.limitedIssuer(t, reg, 2, nil)
	reg.y = func() (*broker.NATSCredential, error) {
		return svc.IssueNATS(ctx, broker.NATSRequest{Principal: alice, UserKey: key, Via: "creds"})
	}
	x, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: alice, UserKey: key, Via: "creds"})
	if reg.yErr != nil || reg.yCred == nil || reg.yCred.JWT == "" {
		t.Fatalf("Y = %v, %v; want a released credential", reg.yCred, reg.yErr)
	}
	if err != nil || x.JWT == "" {
		t.Fatalf("X = %v, want a credential (a refresh of the key Y holds)", err)
	}
	if iss, err := e.registry.Lookup(ctx, key); err != nil || !iss.RevokedAt.IsZero() {
		t.Fatalf("registry holds %+v, %v; want the key live", iss, err)
	}
	admin := identity.Principal{Issuer: "https://idp.test", Subject: "dana", Groups: []string{"admins"}}
	res, err := svc.RevokeAll(ctx, admin, alice.ID(), "offboarding")
	if err != nil || !slices.Contains(res.NATSKeys, key) {
		t.Errorf("RevokeAll = %v, %v; want the key among the revoked", res, err)
	}
}
