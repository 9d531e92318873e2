package natsvc

import (
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/internal/header"
)

// fuzzHeader builds the headers of a request from lines "Name: value",
// each name as the client spelled it (nats.go keeps the case).
func fuzzHeader(raw string) nats.Header {
	h := nats.Header{}
	for _, line := range strings.Split(raw, "\n") {
		name, value, _ := strings.Cut(line, ":")
		h[name] = append(h[name], strings.TrimPrefix(value, " "))
	}
	return h
}

// values returns the distinct values of name in h, in any case.
func values(h nats.Header, name string) []string {
	var out []string
	for k, vs := range h {
		if strings.EqualFold(k, name) {
			out = append(out, vs...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// FuzzRequestHeaders reads arbitrary request headers, as any NATS client
// may send them. A header given once, or several times (in any case) with
// one value, is that value; different values of the idempotency key in use
// or of Sqlgate-Reason make the request invalid, and of Correlation-Id or
// traceparent are dropped; without an Idempotency-Key, a Nats-Msg-Id is
// the key when valid, else a valid key derived from it. None of it depends
// on the order of the headers.
func FuzzRequestHeaders(f *testing.F) {
	for _, s := range []string{
		"Idempotency-Key: order-42\nCorrelation-Id: c1\nSqlgate-Reason: incident 7",
		"Idempotency-Key: a\nidempotency-key: a",
		"Idempotency-Key: a\nIDEMPOTENCY-KEY: b",
		"Nats-Msg-Id: m1", "Nats-Msg-Id: has space", "Nats-Msg-Id: a\nnats-msg-id: b", "Nats-Msg-Id: " + strings.Repeat("m", 300),
		"Idempotency-Key: \nNats-Msg-Id: m1", "Correlation-Id: a\ncorrelation-id: b", "traceparent: 00-x\nTraceparent: 00-y",
		"Sqlgate-Reason: a\nsqlgate-reason: b", "Sqlgate-Reason: a\nSqlgate-Reason: a", "", ":", "Idempotency-Key",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		h := fuzzHeader(raw)
		var req broker.Request
		problem := requestHeaders(&req, h)

		// The same headers in another order.
		rev := nats.Header{}
		for k, vs := range h {
			rev[k] = slices.Clone(vs)
			slices.Reverse(rev[k])
		}
		var again broker.Request
		if p := requestHeaders(&again, rev); p != problem || (problem == "" && !sameHeaders(&again, &req)) {
			t.Fatalf("%q: %q %+v, in another order %q %+v", raw, problem, req, p, again)
		}

		one := func(name string) (string, bool) {
			switch vs := values(h, name); len(vs) {
			case 0:
				return "", true
			case 1:
				return vs[0], true
			}
			return "", false
		}
		key, keyOK := one(HeaderIdempotencyKey)
		msgID, msgOK := one(HeaderMsgID)
		reason, reasonOK := one(HeaderReason)
		want := ""
		switch {
		case !keyOK:
			want = repeated(HeaderIdempotencyKey)
		case key == "" && !msgOK:
			want = repeated(HeaderMsgID)
		case !reasonOK:
			want = repeated(HeaderReason)
		}
		if problem != want {
			t.Fatalf("%q: problem %q, want %q", raw, problem, want)
		}
		if problem != "" {
			return
		}
		corr, _ := one(HeaderCorrelationID)
		tp, _ := one(HeaderTraceparent)
		if req.CorrelationID != corr || req.Traceparent != tp || req.Reason != reason {
			t.Fatalf("%q: read %+v", raw, req)
		}
		switch {
		case key != "":
			if req.IdempotencyKey != key {
				t.Fatalf("%q: idempotency key %q, want %q", raw, req.IdempotencyKey, key)
			}
		case msgID == "":
			if req.IdempotencyKey != "" {
				t.Fatalf("%q: idempotency key %q from no header", raw, req.IdempotencyKey)
			}
		default:
			k := req.IdempotencyKey
			if !header.Valid(k, header.MaxIdempotencyKey) || (header.Valid(msgID, header.MaxIdempotencyKey) != (k == msgID)) {
				t.Fatalf("%q: Nats-Msg-Id %q gave the idempotency key %q", raw, msgID, k)
			}
			if k != msgIDKey(msgID) {
				t.Fatalf("%q: the key of Nats-Msg-Id %q is not stable", raw, msgID)
			}
		}
	})
}

func sameHeaders(a, b *broker.Request) bool {
	return a.CorrelationID == b.CorrelationID && a.IdempotencyKey == b.IdempotencyKey && a.Traceparent == b.Traceparent && a.Reason == b.Reason
}
