package broker_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker/brokertest"
)

// The audit records of a call hold its idempotency key sealed under the
// parameter key: not the plain SHA-256 of "<issuer> <subject>\n<key>",
// whose parts an evidence reader has (the actor is in the same row), so a
// business id used as the key was found by hashing guesses. The value is
// the same on the intent, the outcome and a replay of the key, differs for
// another key, and the parameter key opens it to the key the target
// database holds the call under (crash recovery looks it up).
func TestAuditRecordsSealTheIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	before := len(e.records(t))
	const payload = `{"customer":"ACME","amount":5,"quantity":1,"express":false}`
	for i, key := range []string{"order-1", "order-1", "order-2"} {
		if rep := e.call(t, e.caller(alice), brokertest.SubjectCreate, payload, key); !rep.OK || rep.Replayed != (i == 1) {
			t.Fatalf("call %d with key %s: %s", i, key, rep.AppendJSON(nil))
		}
	}
	recs := e.records(t)[before:]
	if len(recs) != 6 {
		t.Fatalf("got %d records, want an intent and an outcome per call: %v", len(recs), kinds(recs))
	}
	plain := func(key string) string {
		sum := sha256.Sum256([]byte(alice.ID() + "\n" + key))
		return hex.EncodeToString(sum[:])
	}
	first := recs[0].IdempotencyKey
	for i, r := range recs {
		want, key := first, "order-1"
		if i >= 4 {
			want, key = recs[4].IdempotencyKey, "order-2"
		}
		if r.IdempotencyKey != want {
			t.Errorf("record %d (%s) idempotency_key = %q, want %q like the other records of key %s", i, r.Kind, r.IdempotencyKey, want, key)
		}
		if strings.Contains(r.IdempotencyKey, plain(key)) || strings.Contains(r.IdempotencyKey, key) {
			t.Errorf("record %d idempotency_key = %q holds the key or its plain hash %s", i, r.IdempotencyKey, plain(key))
		}
		if !strings.HasPrefix(r.IdempotencyKey, "sealed:k1:") {
			t.Errorf("record %d idempotency_key = %q, want it sealed under parameter key k1", i, r.IdempotencyKey)
		}
	}
	if recs[4].IdempotencyKey == first {
		t.Errorf("keys order-1 and order-2 recorded the same value %q", first)
	}
	keys := []audit.ParamKey{{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")}}
	opened, err := audit.OpenKey(keys, first)
	if err != nil || opened != plain("order-1") {
		t.Fatalf("OpenKey = %q, %v; want the target database's key %s", opened, err, plain("order-1"))
	}
	if res, found, err := e.exec.Lookup(t.Context(), opened); err != nil || !found || res.TransactionID == "" {
		t.Errorf("Lookup(opened key) = %+v, %v, %v; want the call's committed record", res, found, err)
	}
}
