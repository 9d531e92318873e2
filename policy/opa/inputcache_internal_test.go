package opa

import (
	"reflect"
	"slices"
	"testing"

	"github.com/sqlgate/sqlgate/policy"
)

// TestInputCacheFollowsEveryField: the engine's input cache (principal,
// route and request client terms) gives the same input as the uncached
// conversion when any field of the principal, the route or the client
// changes between requests of one caller (fields found by reflection, so a
// new one cannot be forgotten), and again when the first values come back.
func TestInputCacheFollowsEveryField(t *testing.T) {
	base := func() *policy.Input {
		return &policy.Input{
			Principal: policy.Principal{
				Issuer: "https://idp", Subject: "alice", ObjectID: "o", Email: "a@example.com", Name: "A",
				Groups: []string{"sales"}, Roles: []string{"r"}, Scopes: []string{"s"}, Tenant: "t", MFA: true,
				AMR: []string{"pwd"}, ACR: "1", AuthTime: 7,
			},
			Route:  &policy.Route{Subject: "orders.v1.create", Kind: "statement", Target: "create", Database: "orders", Mode: "sync", Tags: []string{"w"}},
			Params: map[string]any{"amount": 10.5},
			Request: &policy.Request{
				CorrelationID: "c", Time: "2026-01-01T00:00:00Z", TimeNS: 1, Transport: "nats",
				Client: policy.Client{Host: "10.0.0.1", Name: "app", Lang: "go", Version: "1.0", UserKey: "UABC", Account: "USERS"},
			},
		}
	}
	var c inputCache
	check := func(t *testing.T, in *policy.Input) {
		t.Helper()
		want, err := InputValue(in)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // a miss, then a hit
			got, err := c.value(in)
			if err != nil {
				t.Fatal(err)
			}
			if got.Compare(want) != 0 {
				t.Fatalf("cached input =\n%v\nwant\n%v", got, want)
			}
		}
	}
	check(t, base())
	parts := map[string]func(*policy.Input) reflect.Value{
		"Principal": func(in *policy.Input) reflect.Value { return reflect.ValueOf(&in.Principal).Elem() },
		"Route":     func(in *policy.Input) reflect.Value { return reflect.ValueOf(in.Route).Elem() },
		"Client":    func(in *policy.Input) reflect.Value { return reflect.ValueOf(&in.Request.Client).Elem() },
	}
	for name, part := range parts {
		n := part(base()).NumField()
		for i := range n {
			in := base()
			f := part(in).Field(i)
			switch f.Kind() {
			case reflect.String:
				f.SetString(f.String() + "-changed")
			case reflect.Bool:
				f.SetBool(!f.Bool())
			case reflect.Int64:
				f.SetInt(f.Int() + 1)
			case reflect.Slice:
				f.Set(reflect.ValueOf(append(slices.Clone(f.Interface().([]string)), "changed")))
			default:
				t.Fatalf("%s.%s: kind %s not covered by this test", name, part(in).Type().Field(i).Name, f.Kind())
			}
			t.Run(name+"."+part(in).Type().Field(i).Name, func(t *testing.T) {
				check(t, in)
				check(t, base())
			})
		}
	}
	// A request without a client's facts, and no request at all.
	in := base()
	in.Request.Client = policy.Client{}
	check(t, in)
	in.Request = nil
	check(t, in)
}
