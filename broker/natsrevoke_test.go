package broker_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
)

// flakyRevoker stands in for the NATS servers: its first fail pushes fail
// (servers unreachable), later ones take effect. Safe for concurrent use.
type flakyRevoker struct {
	mu      sync.Mutex
	fail    int
	calls   int
	revoked map[string]bool // what the servers enforce
}

func newFlakyRevoker(fail int) *flakyRevoker {
	return &flakyRevoker{fail: fail, revoked: map[string]bool{}}
}

func (r *flakyRevoker) RevokeUsers(_ context.Context, keys []string, _ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls <= r.fail {
		return errors.New("claims update: nats: no responders available for request")
	}
	for _, k := range keys {
		r.revoked[k] = true
	}
	return nil
}

// state returns how many pushes were attempted and whether the servers
// enforce the revocation of key.
func (r *flakyRevoker) state(key string) (calls int, enforced bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.revoked[key]
}

// TestRevokeNATSFailedPushIsReapplied: a revocation whose push to the NATS
// servers fails still takes effect in the registry and the audit log, the
// caller learns it is not finished (unavailable), and the next
// re-application from the registry delivers it.
func TestRevokeNATSFailedPushIsReapplied(t *testing.T) {
	e := newEnv(t)
	rev := newFlakyRevoker(1)
	var synced []error
	svc := e.serviceWith(t, func(c *broker.Config) {
		c.Revoker = rev
		c.OnRevocationSync = func(err error) { synced = append(synced, err) }
	})
	ctx := t.Context()
	key := e.keys["alice"]
	before := len(e.records(t))
	err := svc.RevokeNATS(ctx, alice, []string{key}, "lost laptop")
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("RevokeNATS with the servers unreachable = %v, want ErrUnavailable", err)
	}
	if _, enforced := rev.state(key); enforced {
		t.Fatal("the failed push took effect")
	}
	if iss, err := e.registry.Lookup(ctx, key); err != nil || iss.RevokedAt.IsZero() {
		t.Errorf("registry: %+v, %v; want the key revoked", iss, err)
	}
	var audited bool
	for _, r := range e.records(t)[before:] {
		audited = audited || (r.Kind == audit.KindCredential && r.Credential.Action == "revoke" && r.Credential.UserKey == key)
	}
	if !audited {
		t.Error("the revocation is not audited")
	}

	n, err := svc.ReapplyRevocations(ctx)
	if err != nil || n != 1 {
		t.Fatalf("ReapplyRevocations = %d, %v; want 1 key, nil", n, err)
	}
	if _, enforced := rev.state(key); !enforced {
		t.Error("the revocation did not reach the servers when re-applied")
	}
	if len(synced) != 2 || synced[0] == nil || synced[1] != nil {
		t.Errorf("OnRevocationSync saw %v, want a failure then a success", synced)
	}
}

// TestRevokeAllRepushesRevokedKeys: repeating a revoke-all whose NATS push
// failed sends the revocation again (the keys are already revoked in the
// registry), instead of answering success with nothing to do.
func TestRevokeAllRepushesRevokedKeys(t *testing.T) {
	e := newEnv(t)
	rev := newFlakyRevoker(1)
	svc := e.serviceWith(t, func(c *broker.Config) { c.Revoker = rev })
	leases := e.leasesOver(t, svc)
	ctx := t.Context()
	admin := identity.Principal{Issuer: "https://idp.test", Subject: "dana", Groups: []string{"admins"}}
	key := e.keys["alice"]
	if _, err := leases.RevokeAll(ctx, admin, alice.ID(), "offboarding"); !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("RevokeAll with the servers unreachable = %v, want ErrUnavailable", err)
	}
	if _, enforced := rev.state(key); enforced {
		t.Fatal("the failed push took effect")
	}
	res, err := leases.RevokeAll(ctx, admin, alice.ID(), "offboarding")
	if err != nil {
		t.Fatalf("RevokeAll again: %v", err)
	}
	if _, enforced := rev.state(key); !enforced {
		t.Error("repeating revoke-all did not push the revocation again")
	}
	if !slices.Equal(res.NATSKeys, []string{key}) {
		t.Errorf("NATSKeys = %v, want [%s] (revoked, and now on the servers)", res.NATSKeys, key)
	}
}

// TestRunRevocationSync: after a failed push the background job re-applies
// the registry's revocations at once, and then every interval until the
// servers hold them (fake time: testing/synctest).
func TestRunRevocationSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := newMemRegistry()
		key := "UKEY"
		if err := reg.Put(t.Context(), broker.Issuance{UserKey: key, Principal: alice, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		rev := newFlakyRevoker(2) // the revocation's push and the retry at once fail
		catalog, err := route.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		svc, err := broker.New(broker.Config{
			Catalog: catalog, Authorizer: denyAll{}, Recorder: nopRecorder{}, Registry: reg, Revoker: rev,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- svc.RunRevocationSync(ctx, time.Minute) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("RunRevocationSync = %v, want nil when ctx ends", err)
			}
		})

		if err := svc.RevokeNATS(ctx, alice, []string{key}, "test"); !errors.Is(err, broker.ErrUnavailable) {
			t.Fatalf("RevokeNATS = %v, want ErrUnavailable", err)
		}
		synctest.Wait()
		if calls, enforced := rev.state(key); calls != 2 || enforced {
			t.Fatalf("at once after the failure: %d pushes, enforced %v; want a second (failing) attempt", calls, enforced)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if calls, enforced := rev.state(key); calls != 3 || !enforced {
			t.Fatalf("a minute later: %d pushes, enforced %v; want the third to deliver it", calls, enforced)
		}
	})
}

// serviceWith is a broker over the env's policy, audit log and registry,
// changed by tweak.
func (e *env) serviceWith(t *testing.T, tweak func(*broker.Config)) *broker.Service {
	t.Helper()
	cfg := broker.Config{
		Catalog: e.svc.Catalog(), Databases: map[string]broker.Executor{"orders": e.exec},
		Authorizer: e.authz, Recorder: e.recorder, Registry: e.registry,
		UsersAccount: usersAccount, SigningKeys: []string{signingKey},
	}
	tweak(&cfg)
	svc, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// leasesOver is a lease manager over svc with a fresh lease store.
func (e *env) leasesOver(t *testing.T, svc *broker.Service) *broker.Leases {
	t.Helper()
	store, err := control.OpenLeaseStore(t.Context(), openControl(t))
	if err != nil {
		t.Fatal(err)
	}
	l, err := broker.NewLeases(broker.LeasesConfig{
		Service: svc, Store: store, Issuers: map[string]broker.SQLLoginIssuer{"orders": newFakeLogins()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// memRegistry is an in-memory issuance registry (for synctest bubbles,
// which real databases do not belong to).
type memRegistry struct {
	mu sync.Mutex
	m  map[string]broker.Issuance
}

func newMemRegistry() *memRegistry { return &memRegistry{m: map[string]broker.Issuance{}} }

func (r *memRegistry) Put(_ context.Context, iss broker.Issuance) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[iss.UserKey] = iss
	return nil
}

func (r *memRegistry) Get(ctx context.Context, k string) (broker.Issuance, error) {
	return r.Lookup(ctx, k)
}

func (r *memRegistry) Lookup(_ context.Context, k string) (broker.Issuance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	iss, ok := r.m[k]
	if !ok {
		return iss, broker.ErrNotFound
	}
	return iss, nil
}

func (r *memRegistry) Revoke(_ context.Context, k string, at time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if iss, ok := r.m[k]; ok && iss.RevokedAt.IsZero() {
		iss.RevokedAt = at
		r.m[k] = iss
	}
	return nil
}

func (r *memRegistry) Withdraw(_ context.Context, k, decisionID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if iss, ok := r.m[k]; ok && iss.RevokedAt.IsZero() && iss.DecisionID == decisionID {
		delete(r.m, k)
	}
	return nil
}

func (r *memRegistry) ByPrincipal(_ context.Context, id string) ([]broker.Issuance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []broker.Issuance
	for _, iss := range r.m {
		if iss.Principal.ID() == id {
			out = append(out, iss)
		}
	}
	return out, nil
}

func (r *memRegistry) RevokedActive(_ context.Context, at time.Time) ([]broker.Issuance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []broker.Issuance
	for _, iss := range r.m {
		if !iss.RevokedAt.IsZero() && at.Before(iss.ExpiresAt) {
			out = append(out, iss)
		}
	}
	return out, nil
}

func (r *memRegistry) Prune(context.Context, time.Time) (int, error) { return 0, nil }

type denyAll struct{}

func (denyAll) Decide(context.Context, policy.Entry, *policy.Input) (policy.Decision, error) {
	return policy.Deny("test"), nil
}

// nopRecorder accepts every record.
type nopRecorder struct{}

func (nopRecorder) Append(context.Context, *audit.Record) (int64, error) { return 0, nil }
func (nopRecorder) AppendWithInput(context.Context, *audit.Record, []byte) (int64, error) {
	return 0, nil
}

func (nopRecorder) Enqueue(_ context.Context, _ *audit.Record, then func(int64, error)) error {
	then(0, nil)
	return nil
}
func (nopRecorder) HashParams(map[string]any, []string) map[string]string { return nil }
func (nopRecorder) SealIdempotencyKey(k string) string                    { return k }
