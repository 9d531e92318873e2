package broker_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/route"
)

// The bad inputs of issue #2, each asserting its error code and that nothing
// changed: no row written or modified, no follow-up event, and an audit
// record exactly where one belongs. TestHandleRefusals and TestHandleFailClosed
// check the codes; these tests run against routes that emit an event, so
// that "no event" is something a refusal could get wrong.

const (
	emitCreated   = "test.orders.created"
	emitCancelled = "test.orders.cancelled"
	// injection is an SQL injection attempt with a space in it (so it is not
	// a valid header value either).
	injection = `Robert'); DROP TABLE orders; -- ☃ "quoted" \ back`
	// headerInjection is one that is a valid header value (printable ASCII,
	// no space).
	headerInjection = `x');DROP/**/TABLE/**/orders;--`
)

// newEmitEnv is newEnv whose create and cancel routes emit follow-up events.
func newEmitEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	var specs []route.Spec
	for _, s := range brokertest.Subjects() {
		r, ok := e.svc.Catalog().Lookup(s)
		if !ok {
			t.Fatalf("no route %s", s)
		}
		var schema map[string]any
		if err := json.Unmarshal(r.SchemaJSON, &schema); err != nil {
			t.Fatal(err)
		}
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
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = broker.New(broker.Config{
		Catalog: catalog, Databases: map[string]broker.Executor{"orders": e.execSw},
		Authorizer: e.authz, Recorder: e.recorder, Registry: e.regSw,
		UsersAccount: usersAccount, SigningKeys: []string{signingKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// snapshot is every order row as the get route returns it, by id.
func (e *env) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	n := e.orderCount(t)
	for id := int64(0); id <= n+1; id++ {
		rep := e.call(t, e.caller(alice), brokertest.SubjectGet, `{"id":`+jsonInt(id)+`}`, "")
		if !rep.OK {
			t.Fatalf("get %d: %s", id, rep.AppendJSON(nil))
		}
		d, err := brokertest.DecodeResult(rep.Result)
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range d.Rows {
			b, _ := json.Marshal(row)
			out[jsonInt(id)] = string(b)
		}
	}
	if int64(len(out)) != n {
		t.Fatalf("snapshot found %d rows, count says %d", len(out), n)
	}
	return out
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

// auditSize is the number of audit records once pending outcomes are in.
func (e *env) auditSize(t *testing.T) int64 {
	t.Helper()
	if err := e.svc.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e.log.Size()
}

// get returns the order row with id, via the get route.
func (e *env) get(t *testing.T, id any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"id": id})
	rep := e.call(t, e.caller(alice), brokertest.SubjectGet, string(b), "")
	d, err := brokertest.DecodeResult(rep.Result)
	if !rep.OK || err != nil || len(d.Rows) != 1 {
		t.Fatalf("get %v = %s (%v), want one row", id, rep.AppendJSON(nil), err)
	}
	return d.Rows[0]
}

// seed writes two orders so that a refused call has rows it could damage.
func (e *env) seed(t *testing.T) {
	t.Helper()
	for _, c := range []string{"first", "second"} {
		if rep := e.call(t, e.caller(alice), brokertest.SubjectCreate, `{"customer":"`+c+`","amount":1,"quantity":1,"express":false}`, ""); !rep.OK || rep.Emit == nil {
			t.Fatalf("seed create = %s (emit %v), want ok with an event", rep.AppendJSON(nil), rep.Emit)
		}
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	e := newEmitEnv(t)
	e.seed(t)
	expired := e.register(t, alice, -time.Second, false)
	inj, _ := json.Marshal(injection)
	sInj := string(inj)
	create := func(customer, amount, quantity, express string) string {
		return `{"customer":` + customer + `,"amount":` + amount + `,"quantity":` + quantity + `,"express":` + express + `}`
	}
	tests := []struct {
		name     string
		caller   broker.Caller
		subject  string
		payload  string
		key      string
		code     string
		decision bool // a refusal the audit log records (one decision record, allow false)
	}{
		{"unknown_subject", e.caller(alice), "test.orders.delete", `{"id":1}`, "", broker.CodeNotFound, false},
		{"injection_in_subject", e.caller(alice), brokertest.SubjectCreate + "'; DROP TABLE orders; --", createAlice, "", broker.CodeNotFound, false},
		{"empty_payload", e.caller(alice), brokertest.SubjectCancel, ``, "", broker.CodeInvalidRequest, false},
		{"not_json", e.caller(alice), brokertest.SubjectCancel, `id=1`, "", broker.CodeInvalidRequest, false},
		{"truncated_json", e.caller(alice), brokertest.SubjectCancel, `{"id":1`, "", broker.CodeInvalidRequest, false},
		{"two_documents", e.caller(alice), brokertest.SubjectCancel, `{"id":1}{"id":2}`, "", broker.CodeInvalidRequest, false},
		{"json_array", e.caller(alice), brokertest.SubjectCancelAll, `[]`, "", broker.CodeInvalidRequest, false},
		{"json_null", e.caller(alice), brokertest.SubjectCancelAll, `null`, "", broker.CodeInvalidRequest, false},
		{"duplicate_key", e.caller(alice), brokertest.SubjectCancel, `{"id":1,"id":2}`, "", broker.CodeInvalidRequest, false},
		{"wrong_type_id_string", e.caller(alice), brokertest.SubjectCancel, `{"id":"1"}`, "", broker.CodeInvalidRequest, false},
		{"wrong_type_id_fraction", e.caller(alice), brokertest.SubjectCancel, `{"id":1.5}`, "", broker.CodeInvalidRequest, false},
		{"wrong_type_customer", e.caller(alice), brokertest.SubjectCreate, create(`42`, `1`, `1`, `false`), "", broker.CodeInvalidRequest, false},
		{"wrong_type_amount", e.caller(alice), brokertest.SubjectCreate, create(`"c"`, `"1"`, `1`, `false`), "", broker.CodeInvalidRequest, false},
		{"wrong_type_quantity", e.caller(alice), brokertest.SubjectCreate, create(`"c"`, `1`, `1.5`, `false`), "", broker.CodeInvalidRequest, false},
		{"wrong_type_express", e.caller(alice), brokertest.SubjectCreate, create(`"c"`, `1`, `1`, `"false"`), "", broker.CodeInvalidRequest, false},
		{"wrong_type_note", e.caller(alice), brokertest.SubjectCreate, `{"customer":"c","amount":1,"quantity":1,"express":false,"note":7}`, "", broker.CodeInvalidRequest, false},
		{"missing_customer", e.caller(alice), brokertest.SubjectCreate, `{"amount":1,"quantity":1,"express":false}`, "", broker.CodeInvalidRequest, false},
		{"missing_id", e.caller(alice), brokertest.SubjectCancel, `{}`, "", broker.CodeInvalidRequest, false},
		{"extra_field", e.caller(alice), brokertest.SubjectCancel, `{"id":1,"status":"open"}`, "", broker.CodeInvalidRequest, false},
		{"extra_field_on_empty_schema", e.caller(alice), brokertest.SubjectCancelAll, `{"where":"1=1"}`, "", broker.CodeInvalidRequest, false},
		{"oversized", e.caller(alice), brokertest.SubjectCreate, create(`"`+strings.Repeat("x", 70<<10)+`"`, `1`, `1`, `false`), "", broker.CodeTooLarge, false},
		// SQL injection in every parameter that is not a string: refused by
		// type, never executed.
		{"injection_in_amount", e.caller(alice), brokertest.SubjectCreate, create(`"c"`, sInj, `1`, `false`), "", broker.CodeInvalidRequest, false},
		{"injection_in_quantity", e.caller(alice), brokertest.SubjectCreate, create(`"c"`, `1`, sInj, `false`), "", broker.CodeInvalidRequest, false},
		{"injection_in_express", e.caller(alice), brokertest.SubjectCreate, create(`"c"`, `1`, `1`, sInj), "", broker.CodeInvalidRequest, false},
		{"injection_in_cancel_id", e.caller(alice), brokertest.SubjectCancel, `{"id":` + sInj + `}`, "", broker.CodeInvalidRequest, false},
		{"injection_in_get_id", e.caller(alice), brokertest.SubjectGet, `{"id":` + sInj + `}`, "", broker.CodeInvalidRequest, false},
		{"injection_as_field_name", e.caller(alice), brokertest.SubjectCancelAll, `{` + sInj + `:1}`, "", broker.CodeInvalidRequest, false},
		{"injection_in_idempotency_key", e.caller(alice), brokertest.SubjectCancel, `{"id":1}`, injection, broker.CodeInvalidRequest, false},
		{"idempotency_key_too_long", e.caller(alice), brokertest.SubjectCancel, `{"id":1}`, strings.Repeat("k", 257), broker.CodeInvalidRequest, false},
		// Callers the broker must not believe.
		{"unattested_caller", broker.Caller{Transport: "nats", UserKey: e.keys["alice"], IssuerKey: signingKey, Account: usersAccount}, brokertest.SubjectCancel, `{"id":1}`, "", broker.CodeUnauthenticated, true},
		{"expired_credential", broker.Caller{Transport: "nats", Attested: true, UserKey: expired, IssuerKey: signingKey, Account: usersAccount}, brokertest.SubjectCancel, `{"id":1}`, "", broker.CodeUnauthenticated, true},
		{"policy_allows_nothing", e.caller(carol), brokertest.SubjectCancel, `{"id":1}`, "", broker.CodeForbidden, true},
		{"not_granted", e.caller(bob), brokertest.SubjectCancel, `{"id":1}`, "", broker.CodeForbidden, true},
		{"over_policy_limit", e.caller(alice), brokertest.SubjectCreate, create(`"c"`, `5000`, `1`, `false`), "", broker.CodeForbidden, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, size := e.snapshot(t), e.auditSize(t)
			rep := e.call(t, tc.caller, tc.subject, tc.payload, tc.key)
			if rep.OK || rep.Error == nil || rep.Error.Code != tc.code {
				t.Fatalf("reply = %.300s, want code %s", rep.AppendJSON(nil), tc.code)
			}
			if rep.Emit != nil {
				t.Errorf("refused call emits %s", rep.Emit.Subject)
			}
			if rep.SQLTransactionID != "" || rep.Replayed || len(rep.Result) != 0 {
				t.Errorf("refused reply carries a result: %s", rep.AppendJSON(nil))
			}
			var env map[string]any
			if err := json.Unmarshal(rep.AppendJSON(nil), &env); err != nil || env["ok"] != false {
				t.Errorf("reply envelope %.300s is not a JSON error envelope: %v", rep.AppendJSON(nil), err)
			}
			after := e.auditSize(t)
			switch {
			case tc.decision:
				recs := e.records(t)
				last := recs[len(recs)-1]
				if after != size+1 || last.Kind != audit.KindDecision || last.Allow == nil || *last.Allow || rep.AuditIndex != last.Index {
					t.Errorf("audit: %d new records, last %s allow %v (reply index %d), want one refusal decision", after-size, last.Kind, last.Allow, rep.AuditIndex)
				}
			case after != size || rep.AuditIndex != -1:
				t.Errorf("audit: %d new records (reply index %d), want none for input refused before the policy", after-size, rep.AuditIndex)
			}
			if got := e.snapshot(t); !sameRows(got, rows) {
				t.Errorf("orders changed by a refused call:\nbefore %v\nafter  %v", rows, got)
			}
		})
	}
}

func sameRows(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestInjectionStoredVerbatim: an injection attempt in every string
// parameter and in every header a client sets is data. It is stored as it
// was sent, the call writes exactly its own row, and the other rows are
// untouched.
func TestInjectionStoredVerbatim(t *testing.T) {
	e := newEmitEnv(t)
	e.seed(t)
	rows := e.snapshot(t)
	payload, _ := json.Marshal(map[string]any{"customer": injection, "note": injection, "amount": 1, "quantity": 1, "express": true})
	rep := e.svc.Handle(t.Context(), &broker.Request{
		Subject: brokertest.SubjectCreate, Payload: payload, Caller: e.caller(alice),
		CorrelationID: headerInjection, IdempotencyKey: headerInjection, Reason: injection,
	})
	if !rep.OK || rep.CorrelationID != headerInjection {
		t.Fatalf("create = %s, want ok under the client's correlation id", rep.AppendJSON(nil))
	}
	if rep.Emit == nil || rep.Emit.Subject != emitCreated || !strings.Contains(string(rep.Emit.Data), headerInjection) {
		t.Errorf("emit = %+v, want %s naming the correlation id", rep.Emit, emitCreated)
	}
	d, err := brokertest.DecodeResult(rep.Result)
	if err != nil || len(d.Rows) != 1 {
		t.Fatalf("result %s: %v", rep.Result, err)
	}
	row := e.get(t, d.Rows[0]["id"])
	if row["customer"] != injection || row["note"] != injection || row["correlation_id"] != headerInjection || row["status"] != "open" {
		t.Errorf("stored row = %v, want the injection strings verbatim", row)
	}
	after := e.snapshot(t)
	if len(after) != len(rows)+1 {
		t.Errorf("orders %d -> %d, want exactly one more", len(rows), len(after))
	}
	for id, r := range rows {
		if after[id] != r {
			t.Errorf("order %s changed: %s -> %s", id, r, after[id])
		}
	}
	// The reason reaches the policy and the stored decision input as data.
	var input string
	if err := e.log.Inputs(t.Context(), time.Time{}, func(r audit.Record, in []byte) error {
		if r.Index == rep.AuditIndex {
			input = string(in)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var in struct {
		Request struct {
			Reason string `json:"reason"`
		} `json:"request"`
	}
	if err := json.Unmarshal([]byte(input), &in); err != nil || in.Request.Reason != injection {
		t.Errorf("stored input reason = %q (%v), want the Sqlgate-Reason verbatim", in.Request.Reason, err)
	}
	// The same key replays; the injection in the key is just a key.
	again := e.svc.Handle(t.Context(), &broker.Request{
		Subject: brokertest.SubjectCreate, Payload: payload, Caller: e.caller(alice), IdempotencyKey: headerInjection,
	})
	if !again.OK || !again.Replayed || string(again.Result) != string(rep.Result) {
		t.Errorf("replay under the injection key = %s", again.AppendJSON(nil))
	}
	if got := e.snapshot(t); len(got) != len(after) {
		t.Errorf("replay wrote: orders %d -> %d", len(after), len(got))
	}
}

// TestReplayAndConflictChangeNothing: a replayed key returns the stored
// result without running or emitting anything again; another payload under
// the key is a conflict that runs nothing. Both leave an outcome record
// that says no SQL ran.
func TestReplayAndConflictChangeNothing(t *testing.T) {
	e := newEmitEnv(t)
	e.seed(t)
	const key = "replay-1"
	first := e.call(t, e.caller(alice), brokertest.SubjectCancel, `{"id":1}`, key)
	if !first.OK || first.Emit == nil || first.Emit.Subject != emitCancelled {
		t.Fatalf("cancel = %s (emit %+v), want ok with an event", first.AppendJSON(nil), first.Emit)
	}
	rows, size := e.snapshot(t), e.auditSize(t)

	again := e.call(t, e.caller(alice), brokertest.SubjectCancel, `{ "id" : 1 }`, key)
	if !again.OK || !again.Replayed || string(again.Result) != string(first.Result) || again.SQLTransactionID != first.SQLTransactionID {
		t.Fatalf("replay = %s, want the stored result with replayed true", again.AppendJSON(nil))
	}
	if again.Emit != nil {
		t.Errorf("replay emits %s again", again.Emit.Subject)
	}
	recs := e.records(t)[size:]
	if len(recs) != 2 || recs[0].Kind != audit.KindIntent || recs[1].Kind != audit.KindOutcome ||
		recs[1].SQL.Outcome != "none" || !recs[1].Result.Replayed || recs[1].Result.Status != "ok" {
		t.Errorf("replay audit = %v, want an intent and an outcome with SQL outcome none, replayed", describe(recs))
	}
	if got := e.snapshot(t); !sameRows(got, rows) {
		t.Errorf("replay changed orders:\nbefore %v\nafter  %v", rows, got)
	}

	size = e.auditSize(t)
	conflict := e.call(t, e.caller(alice), brokertest.SubjectCancel, `{"id":2}`, key)
	if conflict.OK || conflict.Error.Code != broker.CodeConflict {
		t.Fatalf("same key, other payload = %s, want conflict", conflict.AppendJSON(nil))
	}
	if conflict.Emit != nil || conflict.Replayed {
		t.Errorf("conflict emits %v / replayed %v", conflict.Emit, conflict.Replayed)
	}
	recs = e.records(t)[size:]
	if len(recs) != 2 || recs[1].Kind != audit.KindOutcome || recs[1].SQL.Outcome != "none" || recs[1].Result.Status != broker.CodeConflict {
		t.Errorf("conflict audit = %v, want an intent and an outcome with SQL outcome none, status conflict", describe(recs))
	}
	if got := e.snapshot(t); !sameRows(got, rows) {
		t.Errorf("conflict changed orders (order 2 must stay open):\nbefore %v\nafter  %v", rows, got)
	}
}

// TestDatabaseDownChangesNothing: the call is refused as unavailable, the
// audit log has the intent and an outcome that says so, no event is sent,
// and when the database is back nothing of the call is in it.
func TestDatabaseDownChangesNothing(t *testing.T) {
	e := newEmitEnv(t)
	e.seed(t)
	rows, size := e.snapshot(t), e.auditSize(t)
	e.exec.SetDown(true)
	rep := e.call(t, e.caller(alice), brokertest.SubjectCancel, `{"id":1}`, "down-1")
	e.exec.SetDown(false)
	if rep.OK || rep.Error.Code != broker.CodeUnavailable || rep.Emit != nil {
		t.Fatalf("reply = %s (emit %v), want unavailable and no event", rep.AppendJSON(nil), rep.Emit)
	}
	recs := e.records(t)[size:]
	if len(recs) != 2 || recs[0].Kind != audit.KindIntent || recs[1].Kind != audit.KindOutcome ||
		recs[1].IntentIndex != recs[0].Index || recs[1].Result.Status != broker.CodeUnavailable || recs[1].SQL.Outcome == "commit" {
		t.Fatalf("audit = %v, want the intent and its unavailable outcome", describe(recs))
	}
	if rep.AuditIndex != recs[0].Index {
		t.Errorf("reply audit index = %d, want the intent's %d", rep.AuditIndex, recs[0].Index)
	}
	if got := e.snapshot(t); !sameRows(got, rows) {
		t.Errorf("orders changed while the database was down:\nbefore %v\nafter  %v", rows, got)
	}
	// The retry with the same key runs once the database is back.
	if retry := e.call(t, e.caller(alice), brokertest.SubjectCancel, `{"id":1}`, "down-1"); !retry.OK || retry.Replayed || retry.Emit == nil {
		t.Errorf("retry after the outage = %s, want a fresh call with its event", retry.AppendJSON(nil))
	}
}

// TestPolicyErrorChangesNothing: a policy that cannot be evaluated is a deny
// recorded as one refusal decision; no intent, no SQL, no event.
func TestPolicyErrorChangesNothing(t *testing.T) {
	e := newEmitEnv(t)
	e.seed(t)
	rows, size := e.snapshot(t), e.auditSize(t)
	e.authz.fail.Store(true)
	rep := e.call(t, e.caller(alice), brokertest.SubjectCancel, `{"id":1}`, "")
	e.authz.fail.Store(false)
	if rep.OK || rep.Error.Code != broker.CodeForbidden || rep.Emit != nil {
		t.Fatalf("reply = %s (emit %v), want forbidden and no event", rep.AppendJSON(nil), rep.Emit)
	}
	recs := e.records(t)[size:]
	if len(recs) != 1 || recs[0].Kind != audit.KindDecision || recs[0].Allow == nil || *recs[0].Allow ||
		!strings.Contains(strings.Join(recs[0].Reasons, ";"), "policy evaluation failed") {
		t.Fatalf("audit = %v, want one refusal decision naming the policy failure", describe(recs))
	}
	if got := e.snapshot(t); !sameRows(got, rows) {
		t.Errorf("orders changed although the policy failed:\nbefore %v\nafter  %v", rows, got)
	}
}

func describe(recs []*audit.Record) []string {
	var out []string
	for _, r := range recs {
		s := string(r.Kind)
		if r.SQL != nil {
			s += " sql=" + r.SQL.Outcome
		}
		if r.Result != nil {
			s += " status=" + r.Result.Status
			if r.Result.Replayed {
				s += " replayed"
			}
		}
		out = append(out, s)
	}
	return out
}
