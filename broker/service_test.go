package broker_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"golang.org/x/mod/sumdb/tlog"
	_ "modernc.org/sqlite"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/sqlstore"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
)

const (
	usersAccount = "AUSERSACCOUNT"
	signingKey   = "ASIGNINGKEY"
)

// testEvalTimeout replaces the policy engine's 100 ms default: under -race
// on 2 loaded cores, evaluations that run side by side took longer, and a
// call was refused as "policy evaluation timed out" (TestLeaseLimitConcurrent
// and TestNATSCredentialLimitConcurrent, 7 failures in 200 runs). Timeouts
// are tested where they are made on purpose: policy/opa's TestEvalTimeout,
// and here switchAuthorizer.timeout.
const testEvalTimeout = 10 * time.Second

var (
	alice = identity.Principal{Issuer: "https://idp.test", Subject: "alice", Email: "alice@example.com", Groups: []string{"sales"}}
	bob   = identity.Principal{Issuer: "https://idp.test", Subject: "bob", Email: "bob@example.com", Groups: []string{"support"}}
	carol = identity.Principal{Issuer: "https://idp.test", Subject: "carol", Email: "carol@example.com", Groups: []string{"auditors"}}
)

// env is a broker over real parts (OPA engine, audit log and registry on
// SQLite) and the fake executor.
type env struct {
	svc      *broker.Service
	exec     *brokertest.Fake
	log      *audit.Log
	store    *sqlstore.Store
	registry *control.Registry
	authz    *switchAuthorizer
	recorder *switchRecorder
	regSw    *switchRegistry
	execSw   *switchExecutor
	now      time.Time
	keys     map[string]string // principal subject -> registered user key
}

// switchAuthorizer can be made to fail like a broken policy engine.
type switchAuthorizer struct {
	broker.Authorizer
	fail    atomic.Bool
	timeout atomic.Bool // fail as the engine does when its evaluation timeout ends
}

func (a *switchAuthorizer) Decide(ctx context.Context, e policy.Entry, in *policy.Input) (policy.Decision, error) {
	if a.fail.Load() {
		return policy.Deny("rev"), fmt.Errorf("%w: injected", policy.ErrEvaluation)
	}
	if a.timeout.Load() {
		return policy.Deny("rev", "policy evaluation timed out"), fmt.Errorf("%w: %w: injected", policy.ErrEvaluation, policy.ErrTimeout)
	}
	return a.Authorizer.Decide(ctx, e, in)
}

// switchRegistry can be made to fail like an unreachable control database.
type switchRegistry struct {
	*control.Registry
	fail atomic.Bool
}

func (r *switchRegistry) Get(ctx context.Context, userKey string) (broker.Issuance, error) {
	if r.fail.Load() {
		return broker.Issuance{}, errors.New("control database unreachable")
	}
	return r.Registry.Get(ctx, userKey)
}

// switchExecutor can be made to panic like a buggy driver, or to lose the
// reply to a COMMIT that happened.
type switchExecutor struct {
	*brokertest.Fake
	panics, loseCommit, refuse atomic.Bool
}

func (x *switchExecutor) Execute(ctx context.Context, c *broker.Call) (*broker.Result, error) {
	if x.panics.Load() {
		panic("injected driver bug")
	}
	if x.refuse.Load() { // a transient failure before anything ran (a pool timeout)
		return nil, fmt.Errorf("%w: no connection within the timeout", broker.ErrUnavailable)
	}
	res, err := x.Fake.Execute(ctx, c)
	if err == nil && x.loseCommit.Load() {
		return nil, fmt.Errorf("%w: connection reset reading the reply to COMMIT", broker.ErrUnavailable)
	}
	return res, err
}

// switchRecorder can be made to fail like an unreachable audit store.
type switchRecorder struct {
	*audit.Log
	fail atomic.Bool
}

func (r *switchRecorder) Append(ctx context.Context, rec *audit.Record) (int64, error) {
	if r.fail.Load() {
		return 0, errors.New("audit store unreachable")
	}
	return r.Log.Append(ctx, rec)
}

func (r *switchRecorder) AppendWithInput(ctx context.Context, rec *audit.Record, in []byte) (int64, error) {
	if r.fail.Load() {
		return 0, errors.New("audit store unreachable")
	}
	return r.Log.AppendWithInput(ctx, rec, in)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(dir, "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := sqlstore.Open(ctx, db, sqlstore.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := audit.GenerateKey(rand.Reader, "test/broker")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	log, err := audit.Open(ctx, store, audit.Config{
		Origin: "test/broker", Instance: "test", Signer: signer,
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
	e := &env{log: log, store: store, now: time.Now(), keys: map[string]string{}}
	e.registry = control.NewRegistry(cdb, time.Nanosecond, func() time.Time { return time.Now() })
	engine, err := opa.Open(ctx, opa.Config{Dir: "testdata/policy", EvalTimeout: testEvalTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	e.authz = &switchAuthorizer{Authorizer: engine}
	e.recorder = &switchRecorder{Log: log}
	catalog, err := brokertest.Catalog("orders", brokertest.OrdersTargets())
	if err != nil {
		t.Fatal(err)
	}
	e.exec = brokertest.NewFake("orders", brokertest.OrdersProcs())
	e.execSw = &switchExecutor{Fake: e.exec}
	e.regSw = &switchRegistry{Registry: e.registry}
	e.svc, err = broker.New(broker.Config{
		Catalog: catalog, Databases: map[string]broker.Executor{"orders": e.execSw},
		Authorizer: e.authz, Recorder: e.recorder, Registry: e.regSw,
		UsersAccount: usersAccount, SigningKeys: []string{signingKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []identity.Principal{alice, bob, carol} {
		e.keys[p.Subject] = e.register(t, p, time.Hour, false)
	}
	return e
}

// openControl opens a control database on a fresh SQLite file.
func openControl(t *testing.T) *control.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqlstore.SQLiteDSN(filepath.Join(t.TempDir(), "control.db")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cdb, err := control.Open(t.Context(), db, control.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	return cdb
}

// register records an issuance for p and returns its user key.
func (e *env) register(t *testing.T, p identity.Principal, ttl time.Duration, revoked bool) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	iss := broker.Issuance{
		UserKey: pub, Principal: p, SigningKey: signingKey, Account: usersAccount, Via: "creds",
		IssuedAt: time.Now().Add(-time.Minute), ExpiresAt: time.Now().Add(ttl), DecisionID: "d",
	}
	if revoked {
		iss.RevokedAt = time.Now().Add(-time.Second)
	}
	if err := e.registry.Put(t.Context(), iss); err != nil {
		t.Fatal(err)
	}
	return pub
}

// caller is the attested caller of a registered principal.
func (e *env) caller(p identity.Principal) broker.Caller {
	return broker.Caller{Transport: "nats", Attested: true, UserKey: e.keys[p.Subject], IssuerKey: signingKey, Account: usersAccount}
}

func (e *env) call(t *testing.T, c broker.Caller, subject, payload, key string) *broker.Reply {
	t.Helper()
	return e.svc.Handle(t.Context(), &broker.Request{Subject: subject, Payload: []byte(payload), IdempotencyKey: key, Caller: c})
}

// records returns every audit record, in order.
func (e *env) records(t *testing.T) []*audit.Record {
	t.Helper()
	if err := e.svc.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := e.log.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	var out []*audit.Record
	err := e.store.Records(t.Context(), e.log.Origin(), 0, e.log.Size(), func(_ int64, data []byte, _ *tlog.Hash) error {
		r, err := audit.DecodeRecord(data)
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// orderCount reads the number of orders straight from the fake database.
func (e *env) orderCount(t *testing.T) int64 {
	t.Helper()
	r, ok := e.svc.Catalog().Lookup(brokertest.SubjectCount)
	if !ok {
		t.Fatal("no count route")
	}
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
	switch n := d.Rows[0]["n"].(type) {
	case json.Number:
		v, _ := n.Int64()
		return v
	case float64:
		return int64(n)
	}
	t.Fatalf("count = %#v", d.Rows[0]["n"])
	return 0
}

const createAlice = `{"customer":"ACME","amount":250,"quantity":2,"express":false}`

func TestHandleRefusals(t *testing.T) {
	e := newEnv(t)
	expired := e.register(t, alice, -time.Second, false)
	revoked := e.register(t, alice, time.Hour, true)
	tests := []struct {
		name    string
		caller  broker.Caller
		subject string
		payload string
		key     string
		code    string
		reason  string // substring of a reason or the message
		audited audit.Kind
	}{
		{"unattested", broker.Caller{Transport: "nats", UserKey: e.keys["alice"], IssuerKey: signingKey, Account: usersAccount}, brokertest.SubjectCreate, createAlice, "", broker.CodeUnauthenticated, "server-attested", audit.KindDecision},
		{"unknown_user_key", broker.Caller{Transport: "nats", Attested: true, UserKey: "UNKNOWN", IssuerKey: signingKey, Account: usersAccount}, brokertest.SubjectCreate, createAlice, "", broker.CodeUnauthenticated, "issuance registry", audit.KindDecision},
		{"foreign_signing_key", broker.Caller{Transport: "nats", Attested: true, UserKey: e.keys["alice"], IssuerKey: "AOTHERKEY", Account: usersAccount}, brokertest.SubjectCreate, createAlice, "", broker.CodeUnauthenticated, "signing keys", audit.KindDecision},
		{"other_account", broker.Caller{Transport: "nats", Attested: true, UserKey: e.keys["alice"], IssuerKey: signingKey, Account: "AOTHER"}, brokertest.SubjectCreate, createAlice, "", broker.CodeUnauthenticated, "signing keys", audit.KindDecision},
		{"expired_credential", broker.Caller{Transport: "nats", Attested: true, UserKey: expired, IssuerKey: signingKey, Account: usersAccount}, brokertest.SubjectCreate, createAlice, "", broker.CodeUnauthenticated, "expired", audit.KindDecision},
		{"revoked_credential", broker.Caller{Transport: "nats", Attested: true, UserKey: revoked, IssuerKey: signingKey, Account: usersAccount}, brokertest.SubjectCreate, createAlice, "", broker.CodeUnauthenticated, "revoked", audit.KindDecision},
		{"unknown_subject", e.caller(alice), "test.orders.nope", createAlice, "", broker.CodeNotFound, "no route", ""},
		{"not_json", e.caller(alice), brokertest.SubjectCreate, `customer=ACME`, "", broker.CodeInvalidRequest, "not JSON", ""},
		{"wrong_type", e.caller(alice), brokertest.SubjectCreate, `{"customer":"ACME","amount":"250","quantity":2,"express":false}`, "", broker.CodeInvalidRequest, `field "amount"`, ""},
		{"missing_field", e.caller(alice), brokertest.SubjectCreate, `{"customer":"ACME","amount":250,"express":false}`, "", broker.CodeInvalidRequest, `field "quantity": is required`, ""},
		{"extra_field", e.caller(alice), brokertest.SubjectCreate, `{"customer":"ACME","amount":250,"quantity":2,"express":false,"admin":true}`, "", broker.CodeInvalidRequest, `field "admin": unknown field`, ""},
		{"too_large", e.caller(alice), brokertest.SubjectCreate, `{"customer":"` + strings.Repeat("x", 70<<10) + `","amount":1,"quantity":1,"express":false}`, "", broker.CodeTooLarge, "exceeds", ""},
		{"bad_idempotency_key", e.caller(alice), brokertest.SubjectCreate, createAlice, "has space", broker.CodeInvalidRequest, "Idempotency-Key", ""},
		{"not_granted", e.caller(bob), brokertest.SubjectCreate, createAlice, "", broker.CodeForbidden, "route not granted", audit.KindDecision},
		{"policy_allows_nothing", e.caller(carol), brokertest.SubjectGet, `{"id":1}`, "", broker.CodeForbidden, "route not granted", audit.KindDecision},
		{"over_limit", e.caller(alice), brokertest.SubjectCreate, `{"customer":"ACME","amount":5000,"quantity":1,"express":false}`, "", broker.CodeForbidden, "amount exceeds the limit", audit.KindDecision},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.records(t))
			orders := e.orderCount(t)
			rep := e.call(t, tc.caller, tc.subject, tc.payload, tc.key)
			if rep.OK || rep.Error == nil || rep.Error.Code != tc.code {
				t.Fatalf("reply = %s, want code %s", rep.AppendJSON(nil), tc.code)
			}
			text := rep.Error.Message + " " + strings.Join(rep.Error.Reasons, "; ")
			recs := e.records(t)
			if tc.audited != "" {
				if len(recs) != before+1 || recs[len(recs)-1].Kind != tc.audited {
					t.Fatalf("audit: %d new records, want one %s record", len(recs)-before, tc.audited)
				}
				last := recs[len(recs)-1]
				text += " " + strings.Join(last.Reasons, "; ")
				if last.Allow == nil || *last.Allow {
					t.Errorf("audit record allow = %v, want false", last.Allow)
				}
				if rep.AuditIndex != last.Index {
					t.Errorf("reply audit index = %d, want %d", rep.AuditIndex, last.Index)
				}
			} else if len(recs) != before {
				t.Errorf("audit: %d new records, want none", len(recs)-before)
			}
			if !strings.Contains(text, tc.reason) {
				t.Errorf("error and audit reasons %q do not mention %q", text, tc.reason)
			}
			if strings.Contains(text, "xxxxxxxx") {
				t.Error("error echoes the payload")
			}
			if got := e.orderCount(t); got != orders {
				t.Errorf("orders = %d after a refused call, want %d", got, orders)
			}
		})
	}
}

func TestHandleCallAndReplay(t *testing.T) {
	e := newEnv(t)
	before := len(e.records(t))
	rep := e.call(t, e.caller(alice), brokertest.SubjectCreate, `{"customer":"x'); DROP TABLE orders; --","amount":250.50,"quantity":2,"express":true,"note":"secret note"}`, "k-1")
	if !rep.OK {
		t.Fatalf("create: %s", rep.AppendJSON(nil))
	}
	d, err := brokertest.DecodeResult(rep.Result)
	if err != nil || len(d.Rows) != 1 {
		t.Fatalf("result %s: %v", rep.Result, err)
	}
	if rep.SQLTransactionID == "" || rep.Replayed {
		t.Errorf("reply = %s, want a transaction id and replayed false", rep.AppendJSON(nil))
	}
	recs := e.records(t)[before:]
	if len(recs) != 2 || recs[0].Kind != audit.KindIntent || recs[1].Kind != audit.KindOutcome {
		t.Fatalf("audit kinds = %v, want intent then outcome", kinds(recs))
	}
	intent, outcome := recs[0], recs[1]
	if outcome.IntentIndex != intent.Index || outcome.CorrelationID != rep.CorrelationID || intent.CorrelationID != rep.CorrelationID {
		t.Errorf("outcome does not link to its intent: %+v / %+v", outcome, intent)
	}
	if outcome.SQL.TransactionID != rep.SQLTransactionID || outcome.SQL.Outcome != "commit" {
		t.Errorf("outcome SQL = %+v, want commit of %s", outcome.SQL, rep.SQLTransactionID)
	}
	if rep.AuditIndex != intent.Index {
		t.Errorf("reply audit index = %d, want the durable intent's %d", rep.AuditIndex, intent.Index)
	}
	if intent.Params["note"] != audit.ParamRedacted || !strings.HasPrefix(intent.Params["customer"], "hmac-sha256:k1:") {
		t.Errorf("intent params = %v, want customer hashed and note redacted", intent.Params)
	}
	enc, _ := json.Marshal(recs)
	if strings.Contains(string(enc), "secret note") || strings.Contains(string(enc), "DROP TABLE") {
		t.Error("audit records contain parameter values")
	}
	// The stored decision input keeps the injection string as data and drops the redacted note.
	var inputs []string
	if err := e.log.Inputs(t.Context(), time.Time{}, func(r audit.Record, in []byte) error {
		if r.Index == intent.Index {
			inputs = append(inputs, string(in))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(inputs) != 1 || strings.Contains(inputs[0], "secret note") || !strings.Contains(inputs[0], "DROP TABLE orders") {
		t.Errorf("stored input = %v, want the params without the redacted note", inputs)
	}

	orders := e.orderCount(t)
	again := e.call(t, e.caller(alice), brokertest.SubjectCreate, `{"customer":"x'); DROP TABLE orders; --","amount":250.50,"quantity":2,"express":true,"note":"secret note"}`, "k-1")
	if !again.OK || !again.Replayed || string(again.Result) != string(rep.Result) || again.SQLTransactionID != rep.SQLTransactionID {
		t.Errorf("replay = %s, want the stored result with replayed true", again.AppendJSON(nil))
	}
	if got := e.orderCount(t); got != orders {
		t.Errorf("replay executed again: orders %d -> %d", orders, got)
	}
	// The same amount written another way is the same request.
	same := e.call(t, e.caller(alice), brokertest.SubjectCreate, `{"customer":"x'); DROP TABLE orders; --","amount":2.5050e2,"quantity":2,"express":true,"note":"secret note"}`, "k-1")
	if !same.OK || !same.Replayed {
		t.Errorf("retry with 2.5050e2 for 250.50 = %s, want a replay", same.AppendJSON(nil))
	}
	conflict := e.call(t, e.caller(alice), brokertest.SubjectCreate, `{"customer":"other","amount":1,"quantity":1,"express":false}`, "k-1")
	if conflict.OK || conflict.Error.Code != broker.CodeConflict {
		t.Errorf("same key, other payload = %s, want conflict", conflict.AppendJSON(nil))
	}
	// Without a key each call is its own, even under one correlation id (a
	// saga gives all its calls the same one).
	orders = e.orderCount(t)
	for range 2 {
		rep := e.svc.Handle(t.Context(), &broker.Request{Subject: brokertest.SubjectCreate, Payload: []byte(createAlice), CorrelationID: "saga-42", Caller: e.caller(alice)})
		if !rep.OK || rep.Replayed || rep.CorrelationID != "saga-42" {
			t.Errorf("call without a key = %s, want a fresh call under saga-42", rep.AppendJSON(nil))
		}
	}
	if got := e.orderCount(t); got != orders+2 {
		t.Errorf("two calls without a key: orders %d -> %d, want two more", orders, got)
	}
	// Keys are scoped to the principal: bob's k-1 is not alice's k-1.
	bobGet := e.call(t, e.caller(bob), brokertest.SubjectGet, `{"id":1}`, "k-1")
	if !bobGet.OK || bobGet.Replayed {
		t.Errorf("bob with alice's key = %s, want a fresh call", bobGet.AppendJSON(nil))
	}
}

func TestHandleFailClosed(t *testing.T) {
	e := newEnv(t)
	t.Run("database_down", func(t *testing.T) {
		e.exec.SetDown(true)
		defer e.exec.SetDown(false)
		before := len(e.records(t))
		rep := e.call(t, e.caller(alice), brokertest.SubjectCreate, createAlice, "")
		if rep.OK || rep.Error.Code != broker.CodeUnavailable || rep.TimedOut {
			t.Fatalf("reply = %s (timed out %v), want unavailable, not a timeout", rep.AppendJSON(nil), rep.TimedOut)
		}
		// The database cannot say whether anything committed either: the
		// outcome is unknown, and the reply does not claim a rollback.
		recs := e.records(t)[before:]
		if len(recs) != 2 || recs[1].Kind != audit.KindOutcome || recs[1].Result.Status != broker.CodeUnavailable || recs[1].SQL.Outcome != "unknown" {
			t.Fatalf("audit = %v, want intent and an unavailable outcome", kinds(recs))
		}
		if !strings.Contains(rep.Error.Message, "unknown") || strings.Contains(rep.Error.Message, "rolled back") {
			t.Errorf("message = %q", rep.Error.Message)
		}
	})
	t.Run("commit_reply_lost", func(t *testing.T) {
		// The transaction committed but its confirmation was lost: the
		// idempotency record says so, and the call's result stands.
		e.execSw.loseCommit.Store(true)
		before, orders := len(e.records(t)), e.orderCount(t)
		rep := e.call(t, e.caller(alice), brokertest.SubjectCreate, createAlice, "lost-1")
		e.execSw.loseCommit.Store(false)
		if !rep.OK || rep.Replayed || rep.SQLTransactionID == "" {
			t.Fatalf("reply = %s, want the committed call's result", rep.AppendJSON(nil))
		}
		if got := e.orderCount(t); got != orders+1 {
			t.Errorf("orders %d -> %d, want one more", orders, got)
		}
		recs := e.records(t)[before:]
		if len(recs) != 2 || recs[1].SQL.Outcome != "commit" || recs[1].SQL.TransactionID != rep.SQLTransactionID || recs[1].Result.Status != "ok" {
			t.Fatalf("audit outcome = %+v, want the commit", recs[len(recs)-1].SQL)
		}
	})
	t.Run("policy_error", func(t *testing.T) {
		e.authz.fail.Store(true)
		defer e.authz.fail.Store(false)
		orders := e.orderCount(t)
		rep := e.call(t, e.caller(alice), brokertest.SubjectCreate, createAlice, "")
		if rep.OK || rep.Error.Code != broker.CodeForbidden || !strings.Contains(strings.Join(rep.Error.Reasons, ";"), "policy evaluation failed") {
			t.Fatalf("reply = %s, want forbidden by a policy error", rep.AppendJSON(nil))
		}
		if got := e.orderCount(t); got != orders {
			t.Error("a call ran although the policy failed")
		}
		// The failed policy could not say which parameters are secret, so
		// the record keeps none of them, hashed or in the stored input.
		recs := e.records(t)
		last := recs[len(recs)-1]
		for name, v := range last.Params {
			if v != audit.ParamRedacted {
				t.Errorf("decision record keeps param %s = %s", name, v)
			}
		}
		var stored string
		if err := e.log.Inputs(t.Context(), time.Time{}, func(r audit.Record, in []byte) error {
			if r.Index == last.Index {
				stored = string(in)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(stored, "ACME") {
			t.Errorf("stored input keeps the parameters: %s", stored)
		}
	})
	// A policy that did not decide in time ran nothing, but it is no verdict
	// on the caller: unavailable (retry), and the async consumer gives the
	// request a few attempts (TimedOut), not a final forbidden.
	t.Run("policy_timeout", func(t *testing.T) {
		e.authz.timeout.Store(true)
		defer e.authz.timeout.Store(false)
		orders := e.orderCount(t)
		rep := e.call(t, e.caller(alice), brokertest.SubjectCreate, createAlice, "")
		if rep.OK || rep.Error.Code != broker.CodeUnavailable || !rep.TimedOut || !strings.Contains(strings.Join(rep.Error.Reasons, ";"), "policy evaluation timed out") {
			t.Fatalf("reply = %s (timed out %v), want unavailable, timed out, saying the policy timed out", rep.AppendJSON(nil), rep.TimedOut)
		}
		if got := e.orderCount(t); got != orders {
			t.Error("a call ran although the policy did not decide")
		}
		recs := e.records(t)
		if last := recs[len(recs)-1]; last.Kind != audit.KindDecision || *last.Allow || last.Result.Status != broker.CodeUnavailable {
			t.Errorf("audit record = %s %v %+v, want a deny decision with status unavailable", last.Kind, *last.Allow, last.Result)
		}
	})
	t.Run("audit_down", func(t *testing.T) {
		e.recorder.fail.Store(true)
		orders := e.orderCount(t)
		rep := e.call(t, e.caller(alice), brokertest.SubjectCreate, createAlice, "")
		e.recorder.fail.Store(false)
		if rep.OK || rep.Error.Code != broker.CodeUnavailable {
			t.Fatalf("reply = %s, want unavailable", rep.AppendJSON(nil))
		}
		if got := e.orderCount(t); got != orders {
			t.Error("a call ran although its intent was not durable")
		}
	})
	t.Run("unconfirmed_retry_of_an_earlier_call", func(t *testing.T) {
		// A retry whose own call failed before anything ran finds the key's
		// record of the earlier call: with the same request it is a replay
		// (not a second commit), with another request a conflict.
		first := e.call(t, e.caller(alice), brokertest.SubjectCreate, createAlice, "settle-1")
		if !first.OK {
			t.Fatal(first.Error)
		}
		e.execSw.refuse.Store(true)
		before := len(e.records(t))
		again := e.call(t, e.caller(alice), brokertest.SubjectCreate, createAlice, "settle-1")
		other := e.call(t, e.caller(alice), brokertest.SubjectCreate, `{"customer":"other","amount":1,"quantity":1,"express":false}`, "settle-1")
		e.execSw.refuse.Store(false)
		if !again.OK || !again.Replayed || again.SQLTransactionID != first.SQLTransactionID || again.Emit != nil {
			t.Errorf("retry = %s (emit %v), want the earlier call's result, replayed, no event", again.AppendJSON(nil), again.Emit)
		}
		if other.OK || other.Error.Code != broker.CodeConflict {
			t.Errorf("other payload under the key = %s, want conflict", other.AppendJSON(nil))
		}
		for _, r := range e.records(t)[before:] {
			if r.Kind == audit.KindOutcome && r.SQL.Outcome == "commit" {
				t.Errorf("an outcome claims a second commit: %+v", r.SQL)
			}
		}
	})
	t.Run("registry_down", func(t *testing.T) {
		// The caller is neither known nor unknown: retryable, not a refusal.
		e.regSw.fail.Store(true)
		defer e.regSw.fail.Store(false)
		before, orders := len(e.records(t)), e.orderCount(t)
		rep := e.call(t, e.caller(alice), brokertest.SubjectCreate, createAlice, "")
		if rep.OK || rep.Error.Code != broker.CodeUnavailable {
			t.Fatalf("reply = %s, want unavailable", rep.AppendJSON(nil))
		}
		if got := e.orderCount(t); got != orders || len(e.records(t)) != before {
			t.Error("a call ran or was recorded as refused although the registry could not be read")
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		// A request cancelled before it ran (the instance is stopping) is
		// unavailable, not unauthenticated or forbidden.
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		orders := e.orderCount(t)
		rep := e.svc.Handle(ctx, &broker.Request{Subject: brokertest.SubjectCreate, Payload: []byte(createAlice), Caller: e.caller(alice)})
		if rep.OK || rep.Error.Code != broker.CodeUnavailable {
			t.Fatalf("reply = %s, want unavailable", rep.AppendJSON(nil))
		}
		if got := e.orderCount(t); got != orders {
			t.Error("a cancelled call ran")
		}
	})
	t.Run("executor_panic", func(t *testing.T) {
		// The intent is durable before the call, so its outcome is recorded
		// even when the executor panics.
		e.execSw.panics.Store(true)
		before := len(e.records(t))
		rep := e.call(t, e.caller(alice), brokertest.SubjectCreate, createAlice, "")
		e.execSw.panics.Store(false)
		if rep.OK || rep.Error.Code != broker.CodeInternal {
			t.Fatalf("reply = %s, want internal", rep.AppendJSON(nil))
		}
		recs := e.records(t)[before:]
		if len(recs) != 2 || recs[0].Kind != audit.KindIntent || recs[1].Kind != audit.KindOutcome || recs[1].SQL.Outcome != "rollback" {
			t.Fatalf("audit = %v, want the intent and a rollback outcome", kinds(recs))
		}
	})
	t.Run("max_rows", func(t *testing.T) {
		for range 3 {
			if rep := e.call(t, e.caller(alice), brokertest.SubjectCreate, createAlice, ""); !rep.OK {
				t.Fatal(rep.Error)
			}
		}
		rep := e.call(t, e.caller(alice), brokertest.SubjectCancelAll, `{}`, "")
		if rep.OK || rep.Error.Code != broker.CodeForbidden || !strings.Contains(rep.Error.Reasons[0], "max_rows") {
			t.Fatalf("reply = %s, want forbidden by max_rows", rep.AppendJSON(nil))
		}
	})
}

func kinds(recs []*audit.Record) []audit.Kind {
	var out []audit.Kind
	for _, r := range recs {
		out = append(out, r.Kind)
	}
	return out
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHandleAsyncCaller: a request consumed from the async stream is
// attested by its subject's user key. Its credential must be registered, not
// revoked now, valid when the stream received the message, and signed by one
// of our keys as the registry recorded.
func TestHandleAsyncCaller(t *testing.T) {
	e := newEnv(t)
	shortLived := e.register(t, alice, 2*time.Second, false)
	revoked := e.register(t, alice, time.Hour, true)
	async := func(userKey, account string) broker.Caller {
		return broker.Caller{Transport: broker.TransportAsync, Attested: true, UserKey: userKey, Account: account}
	}
	call := func(c broker.Caller, received time.Time) *broker.Reply {
		return e.svc.Handle(t.Context(), &broker.Request{Subject: brokertest.SubjectCreate, Payload: []byte(createAlice), Caller: c, Received: received})
	}
	now := time.Now()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := kp.PublicKey()
	if err := e.registry.Put(t.Context(), broker.Issuance{
		UserKey: foreign, Principal: alice, SigningKey: "AOTHERKEY", Account: usersAccount, Via: "creds",
		IssuedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour), DecisionID: "d",
	}); err != nil {
		t.Fatal(err)
	}

	// Received while valid: runs, even if the credential expires before the
	// message is consumed.
	if rep := call(async(shortLived, usersAccount), now.Add(-time.Second)); !rep.OK {
		t.Errorf("received while valid: %s", rep.AppendJSON(nil))
	}
	for _, tc := range []struct {
		name     string
		caller   broker.Caller
		received time.Time
		reason   string
	}{
		{"received_after_expiry", async(shortLived, usersAccount), now.Add(time.Minute), "expired"},
		{"revoked_since", async(revoked, usersAccount), now, "revoked"},
		{"unregistered_key", async("UNKNOWN", usersAccount), now, "issuance registry"},
		{"other_account", async(e.keys["alice"], "AOTHER"), now, "signing keys"},
		{"signer_not_ours", async(foreign, usersAccount), now, "signing keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orders := e.orderCount(t)
			rep := call(tc.caller, tc.received)
			if rep.OK || rep.Error.Code != broker.CodeUnauthenticated {
				t.Fatalf("reply = %s, want unauthenticated", rep.AppendJSON(nil))
			}
			recs := e.records(t)
			if last := recs[len(recs)-1]; last.Kind != audit.KindDecision || !strings.Contains(strings.Join(last.Reasons, " "), tc.reason) {
				t.Errorf("audit = %+v, want a refusal naming %q", last, tc.reason)
			}
			if e.orderCount(t) != orders {
				t.Error("a refused async request ran")
			}
		})
	}
}
