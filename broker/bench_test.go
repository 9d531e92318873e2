package broker_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
)

// fixedRegistry answers one issuance without I/O (the real registry serves
// the request path from its cache too).
type fixedRegistry struct{ iss broker.Issuance }

func (f fixedRegistry) Put(context.Context, broker.Issuance) error { return nil }
func (f fixedRegistry) Get(context.Context, string) (broker.Issuance, error) {
	return f.iss, nil
}

func (f fixedRegistry) Lookup(context.Context, string) (broker.Issuance, error) {
	return f.iss, nil
}
func (f fixedRegistry) Revoke(context.Context, string, time.Time) error { return nil }
func (f fixedRegistry) Withdraw(context.Context, string, string) error  { return nil }
func (f fixedRegistry) ByPrincipal(context.Context, string) ([]broker.Issuance, error) {
	return nil, nil
}

func (f fixedRegistry) RevokedActive(context.Context, time.Time) ([]broker.Issuance, error) {
	return nil, nil
}
func (f fixedRegistry) Prune(context.Context, time.Time) (int, error) { return 0, nil }

// BenchmarkHandle measures the broker's own work per call: identify, route,
// validate, decide (real OPA), audit intent and outcome (real log, in-memory
// store, so no fsync), execute (the in-memory fake), reply. The SQL and the
// durable writes are measured by the adapters' and the audit store's
// benchmarks, and the whole path by `sqlgated bench`.
func BenchmarkHandle(b *testing.B) {
	ctx := context.Background()
	skey, _, err := audit.GenerateKey(rand.Reader, "bench/broker")
	if err != nil {
		b.Fatal(err)
	}
	signer, _ := audit.NewSigner(skey)
	log, err := audit.Open(ctx, audittest.NewStore(), audit.Config{
		Origin: "bench/broker", Instance: "bench", Signer: signer,
		ParamKey: audit.ParamKey{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close(ctx)
	engine, err := opa.Open(ctx, opa.Config{Dir: "testdata/policy"})
	if err != nil {
		b.Fatal(err)
	}
	defer engine.Close()
	catalog, err := brokertest.Catalog("orders", brokertest.OrdersTargets())
	if err != nil {
		b.Fatal(err)
	}
	p := identity.Principal{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com", Groups: []string{"sales"}}
	svc, err := broker.New(broker.Config{
		Catalog: catalog, Databases: map[string]broker.Executor{"orders": brokertest.NewFake("orders", brokertest.OrdersProcs())},
		Authorizer: engine, Recorder: log,
		Registry:     fixedRegistry{broker.Issuance{UserKey: "UBENCH", Principal: p, SigningKey: signingKey, Account: usersAccount, ExpiresAt: time.Now().Add(time.Hour)}},
		UsersAccount: usersAccount, SigningKeys: []string{signingKey},
	})
	if err != nil {
		b.Fatal(err)
	}
	req := &broker.Request{
		Subject: brokertest.SubjectGet, Payload: []byte(`{"id":1}`),
		Caller: broker.Caller{Transport: "nats", Attested: true, UserKey: "UBENCH", IssuerKey: signingKey, Account: usersAccount},
	}
	b.ReportAllocs()
	for b.Loop() {
		req.CorrelationID = ""
		if rep := svc.Handle(ctx, req); !rep.OK {
			b.Fatal(rep.Error)
		}
	}
	b.StopTimer()
	if err := svc.Drain(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDecide measures one call decision of the test policy with a
// realistic input.
func BenchmarkDecide(b *testing.B) {
	ctx := context.Background()
	engine, err := opa.Open(ctx, opa.Config{Dir: "testdata/policy"})
	if err != nil {
		b.Fatal(err)
	}
	defer engine.Close()
	in := &policy.Input{
		Principal: policy.PrincipalOf(alice),
		Route:     &policy.Route{Subject: brokertest.SubjectCreate, Kind: "statement", Target: "create", Database: "orders", Mode: "sync", Tags: []string{}},
		Params:    map[string]any{"customer": "ACME", "amount": int64(250), "quantity": int64(2), "express": false},
		Request:   &policy.Request{CorrelationID: "c", Time: "2026-11-27T10:00:00Z", TimeNS: 1, Transport: "nats"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if d, err := engine.Decide(ctx, policy.Call, in); err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	}
}
