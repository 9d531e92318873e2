package opa_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// Measured on the shared 2-vCPU development VM (AMD EPYC, other builds
// running: load average 3-7), Go 1.26, OPA v1.22.3, default library
// (policy/rules), `go test -bench . -benchtime 3s -count 3 ./policy/opa`:
//
//	Decide/call_allow  p50 39-40µs  mean 65-125µs  12.0 KB/op  251 allocs/op
//	Decide/call_deny   p50 85µs     mean 147-188µs 21.0 KB/op  431 allocs/op
//	Decide/nats        p50 44µs     mean 71-77µs   13.1 KB/op  269 allocs/op
//	InputValue         12-14µs                      5.1 KB/op  110 allocs/op
//	InputJSON          41-58µs                     13.3 KB/op  275 allocs/op
//
// The mean is above the median because of garbage collection and the other
// processes on the machine (p99 0.3-2.5ms). Since then the deny list fails
// closed and refuses credentials, and routes may be granted to roles:
// call_allow 263, call_deny 453 and nats 312 allocs/op; with the deny list
// and MFA written as deny rules (deny overrides), call_allow 278 (p50 49µs
// against 44µs before, same machine), call_deny 440 and nats 440 (from 406,
// events included). nats_large_catalog (600 routes, 15 deny entries naming
// other principals): p50 1.6-1.7ms, 4594 allocs/op, against 137ms and
// 423588 allocs/op when deny_pub checked every route against every entry;
// nats 457 allocs/op since. docs/policy.md ("Performance") explains what a
// decision costs and how to keep policies fast.

// realisticInput is a create call by a sales user as the broker builds it:
// an Entra principal with several groups, roles and MFA, a routed statement
// with tags, JSON-decoded parameters and the NATS request facts.
func realisticInput() *policy.Input {
	return &policy.Input{
		Principal: policy.Principal{
			Issuer:   "https://login.microsoftonline.com/7d9e7f6c-1f2b-4c1d-9d2a-0f3e4d5c6b7a/v2.0",
			Subject:  "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
			ObjectID: "0e6c1b8e-3c4d-4b8a-9f7e-2a1b3c4d5e6f", Email: "alice@example.com", Name: "Alice Example",
			Groups: []string{"all-staff", "emea", "sales"}, Roles: []string{"Orders.Writer"},
			Tenant: "7d9e7f6c-1f2b-4c1d-9d2a-0f3e4d5c6b7a", MFA: true, AMR: []string{"pwd", "mfa"}, AuthTime: 1767603600,
		},
		Route: &policy.Route{
			Subject: "orders.v1.create", Kind: "statement", Target: "create_order",
			Database: "orders", Mode: "sync", Tags: []string{"orders", "write"},
		},
		Params: map[string]any{"customer": "ACME Corp", "amount": json.Number("750.50"), "note": "rush delivery"},
		Request: &policy.Request{
			CorrelationID: "0194a3b2-7c1d-7e2f-8a9b-0c1d2e3f4a5b", Time: "2026-01-05T10:00:00Z", TimeNS: 1767607200000000000,
			Transport: "nats",
			Client:    policy.Client{Host: "10.1.2.3", Name: "orders-ui", Lang: "go", Version: "1.55.0", UserKey: "UABC", Account: "USERS"},
		},
	}
}

// BenchmarkDecide measures decisions of the default library, reporting the
// median and 99th percentile of individual decisions besides the mean.
func BenchmarkDecide(b *testing.B) {
	// A generous timeout: this measures speed, and a loaded machine may stall
	// one evaluation past the 100ms default.
	e, err := opa.Open(b.Context(), opa.Config{FS: rules.FS, EvalTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	// 600 routes and 15 deny entries naming other principals: the deny list
	// must not cost each route of the catalog.
	large, err := opa.Open(b.Context(), opa.Config{FS: largeCatalog(b, 600, 15), EvalTimeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer large.Close()

	over := realisticInput()
	over.Params = map[string]any{"customer": "ACME Corp", "amount": json.Number("5000")}
	cred := &policy.Input{
		Principal:  realisticInput().Principal,
		Credential: &policy.Credential{Type: "nats", UserKey: "UABC", Via: "creds"},
	}
	for _, tc := range []struct {
		name   string
		engine *opa.Engine
		entry  policy.Entry
		in     *policy.Input
		allow  bool
	}{
		{"call_allow", e, policy.Call, realisticInput(), true},
		{"call_deny", e, policy.Call, over, false},
		{"nats", e, policy.NATS, cred, true},
		{"nats_large_catalog", large, policy.NATS, catalogCredential("u-1"), true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := tc.engine
			d, err := e.Decide(b.Context(), tc.entry, tc.in)
			if err != nil || d.Allow != tc.allow {
				b.Fatalf("Decide = %+v, %v; want allow %v", d, err, tc.allow)
			}
			lat := make([]time.Duration, 0, 1<<16)
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				if _, err := e.Decide(b.Context(), tc.entry, tc.in); err != nil {
					b.Fatal(err)
				}
				if len(lat) < cap(lat) {
					lat = append(lat, time.Since(start))
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}

// BenchmarkInputValue is the uncached input conversion (Decide caches the
// principal and route parts).
func BenchmarkInputValue(b *testing.B) {
	in := realisticInput()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := opa.InputValue(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInputJSON is the JSON round trip InputValue avoids, for comparison.
func BenchmarkInputJSON(b *testing.B) {
	in := realisticInput()
	b.ReportAllocs()
	for b.Loop() {
		raw, err := json.Marshal(in)
		if err != nil {
			b.Fatal(err)
		}
		var x any
		if err := json.Unmarshal(raw, &x); err != nil {
			b.Fatal(err)
		}
		if _, err := ast.InterfaceToValue(x); err != nil {
			b.Fatal(err)
		}
	}
}
