package broker_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/internal/header"
	"github.com/sqlgate/sqlgate/policy/opa"
)

// fuzzEnv is the request path over real parts (OPA engine, audit log and
// registry on SQLite) and the fake executor, built once per fuzz worker.
type fuzzEnv struct {
	svc     *broker.Service
	exec    *brokertest.Fake
	log     *audit.Log
	catalog *route.Catalog
	callers []broker.Caller // alice (sales), bob (support), carol (nothing), unattested
}

func newFuzzEnv(tb testing.TB) *fuzzEnv {
	tb.Helper()
	ctx := tb.Context()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(tb.TempDir(), "control.db")))
	must(err)
	tb.Cleanup(func() { db.Close() })
	store, err := sqlstore.Open(ctx, db, sqlstore.SQLite)
	must(err)
	skey, _, err := audit.GenerateKey(rand.Reader, "test/fuzz")
	must(err)
	signer, err := audit.NewSigner(skey)
	must(err)
	log, err := audit.Open(ctx, store, audit.Config{
		Origin: "test/fuzz", Instance: "test", Signer: signer,
		ParamKey: audit.ParamKey{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")},
	})
	must(err)
	tb.Cleanup(func() { log.Close(context.Background()) })
	cdb, err := control.Open(ctx, db, control.SQLite)
	must(err)
	registry := control.NewRegistry(cdb, time.Nanosecond, time.Now)
	engine, err := opa.Open(ctx, opa.Config{Dir: "testdata/policy"})
	must(err)
	tb.Cleanup(func() { engine.Close() })
	plain, err := brokertest.Catalog("orders", brokertest.OrdersTargets())
	must(err)
	var specs []route.Spec
	for _, s := range brokertest.Subjects() {
		r, _ := plain.Lookup(s)
		var schema map[string]any
		must(json.Unmarshal(r.SchemaJSON, &schema))
		spec := route.Spec{Subject: s, Database: "orders", Params: schema, Procedure: r.Target, Timeout: "1m", MaxRows: 100}
		switch s {
		case brokertest.SubjectCreate:
			spec.Emit = emitCreated
		case brokertest.SubjectCancel:
			spec.Emit = emitCancelled
		}
		specs = append(specs, spec)
	}
	catalog, err := route.New(specs)
	must(err)
	e := &fuzzEnv{exec: brokertest.NewFake("orders", brokertest.OrdersProcs()), log: log, catalog: catalog}
	e.svc, err = broker.New(broker.Config{
		Catalog: catalog, Databases: map[string]broker.Executor{"orders": e.exec},
		Authorizer: engine, Recorder: log, Registry: registry,
		UsersAccount: usersAccount, SigningKeys: []string{signingKey},
	})
	must(err)
	for _, p := range []identity.Principal{alice, bob, carol} {
		kp, err := nkeys.CreateUser()
		must(err)
		pub, _ := kp.PublicKey()
		must(registry.Put(ctx, broker.Issuance{
			UserKey: pub, Principal: p, SigningKey: signingKey, Account: usersAccount, Via: "creds",
			IssuedAt: time.Now().Add(-time.Minute), ExpiresAt: time.Now().Add(24 * time.Hour), DecisionID: "d",
		}))
		e.callers = append(e.callers, broker.Caller{Transport: "nats", Attested: true, UserKey: pub, IssuerKey: signingKey, Account: usersAccount})
	}
	e.callers = append(e.callers, broker.Caller{Transport: "nats", UserKey: e.callers[0].UserKey, IssuerKey: signingKey, Account: usersAccount})
	return e
}

func (e *fuzzEnv) count(t *testing.T) int64 {
	t.Helper()
	r, _ := e.catalog.Lookup(brokertest.SubjectCount)
	c, err := brokertest.NewCall(r, `{}`, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.exec.Execute(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	d, err := brokertest.DecodeResult(res.JSON)
	if err != nil {
		t.Fatal(err)
	}
	n, err := d.Rows[0]["n"].(json.Number).Int64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *fuzzEnv) auditSize(t *testing.T) int64 {
	t.Helper()
	if err := e.svc.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e.log.Size()
}

// fuzzSubjects are the routes a fuzzed request goes to (slow_create, which
// sleeps for a parameter's seconds, is left out), and one that is not a route.
var fuzzSubjects = []string{
	brokertest.SubjectCreate, brokertest.SubjectGet, brokertest.SubjectCancel, brokertest.SubjectCancelAll,
	brokertest.SubjectCount, brokertest.SubjectSession, "test.orders.nope",
}

var errorCodes = map[string]bool{
	broker.CodeInvalidRequest: true, broker.CodeUnauthenticated: true, broker.CodeForbidden: true,
	broker.CodeNotFound: true, broker.CodeConflict: true, broker.CodeTooLarge: true, broker.CodeRateLimited: true,
	broker.CodeDBError: true, broker.CodeUnavailable: true, broker.CodeInternal: true,
}

// FuzzHandle sends arbitrary payloads and client headers through the whole
// request path. Invariants:
//   - the reply is a JSON envelope whose "ok" matches, with a known error
//     code, and the client's correlation id exactly when it is a valid one;
//   - the broker refuses a payload exactly when the route's decoder does
//     (too_large exactly for a TooLargeError), and an unknown subject as
//     not_found; such refusals, and an invalid Idempotency-Key, write no
//     audit record and run nothing;
//   - an unattested caller is unauthenticated, and a policy refusal is one
//     decision record; neither runs anything;
//   - only an ok, non-replayed create adds an order (exactly one), and only
//     an ok, non-replayed call of a route with an event emits it.
func FuzzHandle(f *testing.F) {
	e := newFuzzEnv(f)
	for _, s := range []struct {
		subject, caller uint8
		payload         string
		key, corr, why  string
	}{
		{0, 0, createAlice, "k-1", "corr-1", ""},
		{0, 0, createAlice, "k-1", "", ""},
		{0, 0, `{"customer":"other","amount":1,"quantity":1,"express":false}`, "k-1", "", ""},
		{0, 0, `{"customer":"x'); DROP TABLE orders; --","amount":1,"quantity":1,"express":true,"note":null}`, "", "has space", "INC-1"},
		{0, 0, `{"customer":"c","amount":-1,"quantity":1,"express":false}`, "", "", ""},
		{0, 0, `{"customer":"c","amount":5000,"quantity":1,"express":false}`, "", "", ""},
		{0, 0, `{"customer":"c","amount":2.5e1,"quantity":1,"express":false}`, "", "", ""},
		{0, 0, `{"customer":"c","amount":1e999,"quantity":1,"express":false}`, "", "", ""},
		{0, 0, `{"customer":"a\u0000b","amount":1,"quantity":1,"express":false}`, "", "", ""},
		{0, 1, createAlice, "", "", ""},
		{0, 3, createAlice, "", "", ""},
		{1, 1, `{"id":1}`, "", "", ""},
		{1, 2, `{"id":1}`, "", "", ""},
		{2, 0, `{"id":1}`, "c-1", "", ""},
		{2, 0, `{"id":"1"}`, "", "", ""},
		{2, 0, `{"id":1,"id":2}`, "", "", ""},
		{3, 0, `{}`, "", "", ""},
		{3, 0, `{"where":"1=1"}`, "", "", ""},
		{4, 0, ``, "", "", ""},
		{5, 0, `null`, "", "", ""},
		{6, 0, `{}`, "", "", ""},
		{2, 0, `{"id":1}`, "has space", "", ""},
	} {
		f.Add(s.subject, s.caller, []byte(s.payload), s.key, s.corr, s.why)
	}
	f.Fuzz(func(t *testing.T, subjectIdx, callerIdx uint8, payload []byte, key, corr, reason string) {
		subject := fuzzSubjects[int(subjectIdx)%len(fuzzSubjects)]
		caller := e.callers[int(callerIdx)%len(e.callers)]
		orders, size := e.count(t), e.auditSize(t)
		rep := e.svc.Handle(t.Context(), &broker.Request{
			Subject: subject, Payload: payload, IdempotencyKey: key, CorrelationID: corr, Reason: reason, Caller: caller,
		})
		ordersAfter, sizeAfter := e.count(t), e.auditSize(t)

		var env struct {
			OK            *bool              `json:"ok"`
			CorrelationID string             `json:"correlation_id"`
			Error         *broker.ReplyError `json:"error"`
		}
		enc := rep.AppendJSON(nil)
		if err := json.Unmarshal(enc, &env); err != nil || env.OK == nil || *env.OK != rep.OK || env.CorrelationID != rep.CorrelationID {
			t.Fatalf("reply envelope %q: %v", enc, err)
		}
		if header.Valid(corr, header.MaxCorrelationID) != (rep.CorrelationID == corr) || rep.CorrelationID == "" {
			t.Fatalf("correlation id %q for the client's %q", rep.CorrelationID, corr)
		}
		code := ""
		if !rep.OK {
			if rep.Error == nil || !errorCodes[rep.Error.Code] || env.Error == nil || env.Error.Code != rep.Error.Code {
				t.Fatalf("error reply %q has no known code", enc)
			}
			code = rep.Error.Code
			if rep.Emit != nil || rep.Replayed || len(rep.Result) != 0 {
				t.Fatalf("error reply with a result or an event: %q, emit %v", enc, rep.Emit)
			}
		}
		nothing := func(what string) {
			t.Helper()
			if ordersAfter != orders || sizeAfter != size || rep.AuditIndex != -1 {
				t.Fatalf("%s: orders %d -> %d, audit records %d -> %d (reply index %d), want no change", what, orders, ordersAfter, size, sizeAfter, rep.AuditIndex)
			}
		}
		if !caller.Attested {
			if code != broker.CodeUnauthenticated || ordersAfter != orders || sizeAfter != size+1 {
				t.Fatalf("unattested caller: %q, orders %d -> %d, audit records %d -> %d", enc, orders, ordersAfter, size, sizeAfter)
			}
			return
		}
		r, found := e.catalog.Lookup(subject)
		if !found {
			if code != broker.CodeNotFound {
				t.Fatalf("unknown subject: %q, want not_found", enc)
			}
			nothing("unknown subject")
			return
		}
		_, derr := r.Decode(payload)
		if derr != nil {
			var tl *route.TooLargeError
			want := broker.CodeInvalidRequest
			if errors.As(derr, &tl) {
				want = broker.CodeTooLarge
			}
			if code != want {
				t.Fatalf("payload %q refused by the route (%v): reply %q, want %s", payload, derr, enc, want)
			}
			nothing("payload refused by the route")
			return
		}
		if code == broker.CodeInvalidRequest || code == broker.CodeTooLarge {
			if key != "" && !header.Valid(key, header.MaxIdempotencyKey) {
				nothing("invalid Idempotency-Key")
				return
			}
			t.Fatalf("payload %q accepted by the route, but the broker says %q", payload, enc)
		}
		if key != "" && !header.Valid(key, header.MaxIdempotencyKey) {
			t.Fatalf("invalid Idempotency-Key %q accepted: %q", key, enc)
		}
		wantOrders := orders
		if rep.OK && !rep.Replayed && subject == brokertest.SubjectCreate {
			wantOrders++
		}
		if ordersAfter != wantOrders {
			t.Fatalf("%s %q: %q, orders %d -> %d, want %d", subject, payload, enc, orders, ordersAfter, wantOrders)
		}
		if emits := rep.OK && !rep.Replayed && r.Emit != ""; emits != (rep.Emit != nil) || (emits && rep.Emit.Subject != r.Emit) {
			t.Fatalf("%s: reply %q, emit %+v", subject, enc, rep.Emit)
		}
	})
}
