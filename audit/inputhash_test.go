package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/audit/audittest"
)

// decisionInput is a sidecar like the broker's: parameter values, claims
// and the request time, which must not be confirmable from the record.
var decisionInput = []byte(`{"principal":{"issuer":"https://idp.test","subject":"alice","groups":["sales"]},"params":{"amount":5000},"request":{"time_ns":1767225600000000000}}`)

func plainSHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// alteredInputs is a store whose sidecars were edited by someone with
// write access: every input it hands out goes through alter.
type alteredInputs struct {
	*audittest.Store
	alter func([]byte) []byte
}

func (s alteredInputs) Inputs(ctx context.Context, origin string, since time.Time, fn func(record, input []byte) error) error {
	return s.Store.Inputs(ctx, origin, since, func(rec, in []byte) error { return fn(rec, s.alter(in)) })
}

func TestAppendWithInputKeysTheInputHash(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	r := intent("a")
	r.InputSHA256 = plainSHA256(decisionInput) // a caller's leftover: must not reach the log
	i, err := l.AppendWithInput(t.Context(), r, decisionInput)
	if err != nil {
		t.Fatal(err)
	}
	data, err := store.Record(t.Context(), origin, i)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), plainSHA256(decisionInput)) || strings.Contains(string(data), `"input_sha256"`) {
		t.Errorf("record holds the input's unkeyed SHA-256, which confirms guesses of its values: %s", data)
	}
	want := audit.HashInput(audittest.ParamKey(), decisionInput)
	if !strings.HasPrefix(want, "hmac-sha256:test-1:") || !strings.Contains(string(data), `"input_hmac":"`+want+`"`) {
		t.Errorf("record = %s, want input_hmac %s", data, want)
	}
	other := audit.ParamKey{ID: "test-1", Secret: []byte("another-param-key-0123456789abcd")}
	if audit.HashInput(other, decisionInput) == want {
		t.Error("HashInput does not depend on the key's secret")
	}
	// The parameter hash of the same bytes differs (domain separation).
	if audit.HashValue(audittest.ParamKey(), string(decisionInput)) == want {
		t.Error("the input hash equals a parameter hash")
	}
	rec, err := audit.DecodeRecord(data)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := audit.CheckInput([]audit.ParamKey{audittest.ParamKey()}, rec, decisionInput); !ok || err != nil {
		t.Errorf("CheckInput with the key = %v, %v", ok, err)
	}
	if ok, err := audit.CheckInput([]audit.ParamKey{audittest.ParamKey()}, rec, []byte(`{}`)); ok || err != nil {
		t.Errorf("CheckInput of another input = %v, %v; want false", ok, err)
	}
	if _, err := audit.CheckInput(nil, rec, decisionInput); !errors.Is(err, audit.ErrUnknownParamKey) {
		t.Errorf("CheckInput without the key = %v, want ErrUnknownParamKey", err)
	}
	var seen int
	err = l.Inputs(t.Context(), time.Time{}, func(got audit.Record, in []byte) error {
		seen++
		if got.InputHMAC != want || string(in) != string(decisionInput) {
			t.Errorf("Inputs gave %s for %+v", in, got)
		}
		return nil
	})
	if err != nil || seen != 1 {
		t.Fatalf("Inputs = %d records, %v", seen, err)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireOK(t, verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}}))
}

func TestRecordHoldsOneInputHash(t *testing.T) {
	r := &audit.Record{V: 1, Kind: audit.KindDecision, Time: time.Unix(1, 0), Origin: origin, InputSHA256: "00", InputHMAC: "hmac-sha256:k:00"}
	if _, err := r.MarshalCanonical(); err == nil {
		t.Error("MarshalCanonical accepted a record with input_sha256 and input_hmac")
	}
}

// TestLegacyInputRecordStillVerifiesAndReplays: records written before
// input_hmac carry the input's SHA-256; they verify, Inputs hands them out
// with it (what `sqlgate policy replay` checks), and an edited sidecar is
// still refused.
func TestLegacyInputRecordStillVerifiesAndReplays(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	i, err := l.AppendLegacyInput(t.Context(), intent("old"), decisionInput)
	if err != nil {
		t.Fatal(err)
	}
	j, err := l.AppendWithInput(t.Context(), intent("new"), decisionInput)
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	err = l.Inputs(t.Context(), time.Time{}, func(r audit.Record, in []byte) error {
		got = append(got, r.Index)
		if r.Index == i && (r.InputSHA256 != plainSHA256(in) || r.InputHMAC != "") {
			t.Errorf("legacy record %+v with input %s: replay would refuse it", r, in)
		}
		return nil
	})
	if err != nil || len(got) != 2 || got[0] != i || got[1] != j {
		t.Fatalf("Inputs = %v, %v; want [%d %d]", got, err, i, j)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	requireOK(t, verify(t, store, audit.VerifyOptions{Keys: []string{vkey(t, 1)}}))
}

func TestInputsRefuseAlteredInput(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(map[bool]string{false: "input_hmac", true: "input_sha256"}[legacy], func(t *testing.T) {
			store := alteredInputs{Store: audittest.NewStore(), alter: func(b []byte) []byte { return b }}
			l := openLog(t, store, nil)
			add := l.AppendWithInput
			if legacy {
				add = l.AppendLegacyInput
			}
			i, err := add(t.Context(), intent("a"), decisionInput)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Inputs(t.Context(), time.Time{}, func(audit.Record, []byte) error { return nil }); err != nil {
				t.Fatalf("Inputs before the edit = %v", err)
			}
			if err := l.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			store.alter = func(b []byte) []byte { return []byte(strings.Replace(string(b), "5000", "50", 1)) }
			l2 := openLog(t, store, nil) // the same log, its store edited since
			err = l2.Inputs(t.Context(), time.Time{}, func(r audit.Record, in []byte) error {
				t.Errorf("Inputs handed out the edited input %s of record %d", in, r.Index)
				return nil
			})
			if !errors.Is(err, audit.ErrRecordAltered) || !strings.Contains(err.Error(), "record 1") {
				t.Errorf("Inputs of an edited input of record %d = %v, want ErrRecordAltered naming it", i, err)
			}
		})
	}
}

// TestInputsUnderAnEarlierParamKey: after a parameter key rotation, the
// inputs recorded under the old key are checked with it when it is
// configured, and refused (not handed out unchecked) when it is not.
func TestInputsUnderAnEarlierParamKey(t *testing.T) {
	store := audittest.NewStore()
	l := openLog(t, store, nil)
	if _, err := l.AppendWithInput(t.Context(), intent("a"), decisionInput); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	next := audit.ParamKey{ID: "test-2", Secret: []byte("test-only-param-key-2-0123456789")}
	l2 := openLog(t, store, func(c *audit.Config) { c.ParamKey = next })
	err := l2.Inputs(t.Context(), time.Time{}, func(audit.Record, []byte) error { return nil })
	if !errors.Is(err, audit.ErrUnknownParamKey) || errors.Is(err, audit.ErrRecordAltered) {
		t.Errorf("Inputs without the earlier key = %v, want ErrUnknownParamKey", err)
	}
	_ = l2.Close(t.Context())
	l3 := openLog(t, store, func(c *audit.Config) { c.ParamKey, c.PreviousParamKeys = next, []audit.ParamKey{audittest.ParamKey()} })
	n := 0
	if err := l3.Inputs(t.Context(), time.Time{}, func(audit.Record, []byte) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("Inputs with the earlier key configured = %d, %v; want 1", n, err)
	}
}
