package opa_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sqlgate/sqlgate/policy"
	"github.com/sqlgate/sqlgate/policy/opa"
	"github.com/sqlgate/sqlgate/policy/rules"
)

// inputs are the table of InputValue and schema tests.
func inputs() map[string]*policy.Input {
	minimal := &policy.Input{Principal: policy.Principal{Issuer: "https://idp", Subject: "s"}}
	svc := &policy.Input{
		Principal:  policy.Principal{Issuer: "https://idp", Subject: "svc-1", Service: true, Groups: []string{}, Roles: []string{"Orders.Reader"}, Scopes: []string{"api://sqlgate/.default"}},
		Credential: &policy.Credential{Type: "sql", Database: "orders", Role: "reader", TTL: 3600},
	}
	nested := realisticInput()
	nested.Params = map[string]any{
		"lines": []any{map[string]any{"sku": "A-1", "qty": json.Number("2")}, map[string]any{"sku": "B-2", "qty": 1.5}},
		"flags": map[string]any{"rush": true, "gift": nil}, "big": json.Number("123456789012345678901234567890"),
		"neg": json.Number("-0.5e-3"), "int": 42, "uint": uint64(7), "empty": "", "unicode": "Grüße ✓",
	}
	nested.Request.Reason = "INC-1"
	nats := &policy.Input{
		Principal:  realisticInput().Principal,
		Credential: &policy.Credential{Type: "nats", UserKey: "UABC", Via: "callout"},
	}
	return map[string]*policy.Input{"minimal": minimal, "service": svc, "realistic": realisticInput(), "nested_params": nested, "nats": nats}
}

// normalized is the JSON form of in as InputValue sees it: nil groups, roles
// and tags are empty arrays.
func normalized(t testing.TB, in *policy.Input) []byte {
	c := *in
	if c.Principal.Groups == nil {
		c.Principal.Groups = []string{}
	}
	if c.Principal.Roles == nil {
		c.Principal.Roles = []string{}
	}
	if c.Route != nil && c.Route.Tags == nil {
		r := *c.Route
		r.Tags = []string{}
		c.Route = &r
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInputValueMatchesJSON: the hand-written conversion gives policies the
// same input as OPA's own conversion of the JSON form.
func TestInputValueMatchesJSON(t *testing.T) {
	for name, in := range inputs() {
		t.Run(name, func(t *testing.T) {
			got, err := opa.InputValue(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ast.ValueFromReader(bytes.NewReader(normalized(t, in)))
			if err != nil {
				t.Fatal(err)
			}
			if got.Compare(want) != 0 {
				t.Errorf("InputValue =\n%v\nwant (from JSON)\n%v", got, want)
			}
		})
	}
}

// FuzzInputValue decodes arbitrary JSON as an input: the conversion never
// panics, and when it succeeds it agrees with OPA's conversion of the JSON.
func FuzzInputValue(f *testing.F) {
	for _, in := range inputs() {
		b, err := json.Marshal(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"principal":{"groups":null},"params":{"a":[[[[1]]]],"b":1e400}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var in policy.Input
		if dec.Decode(&in) != nil {
			return
		}
		got, err := opa.InputValue(&in)
		if err != nil {
			return
		}
		want, err := ast.ValueFromReader(bytes.NewReader(normalized(t, &in)))
		if err != nil {
			t.Fatalf("JSON form does not parse: %v", err)
		}
		if got.Compare(want) != 0 {
			t.Errorf("InputValue =\n%v\nwant\n%v", got, want)
		}
	})
}

// TestDecideSeesChangedPrincipals: Decide caches converted principals and
// routes; a change to any field must reach the policy.
func TestDecideSeesChangedPrincipals(t *testing.T) {
	e := openFS(t, rules.FS)
	in := realisticInput()
	if d, err := e.Decide(t.Context(), policy.Call, in); err != nil || !d.Allow {
		t.Fatalf("Decide = %+v, %v", d, err)
	}
	// Same subject, other groups: no longer sales.
	in = realisticInput()
	in.Principal.Groups = []string{"all-staff", "support"}
	if d, err := e.Decide(t.Context(), policy.Call, in); err != nil || d.Allow {
		t.Fatalf("Decide after the principal changed groups = %+v, %v; want deny", d, err)
	}
	// The caller's slice is copied: changing it in place after a decision
	// changes the next one too.
	in.Principal.Groups[1] = "sales"
	if d, err := e.Decide(t.Context(), policy.Call, in); err != nil || !d.Allow {
		t.Fatalf("Decide after an in-place change = %+v, %v; want allow", d, err)
	}
	// Same subject, other route configuration.
	in.Route.Subject = "orders.v1.cancel"
	if d, err := e.Decide(t.Context(), policy.Call, in); err != nil || !d.Allow {
		t.Fatalf("Decide cancel = %+v, %v", d, err)
	}
	in.Principal.Groups = []string{"support"}
	if d, err := e.Decide(t.Context(), policy.Call, in); err != nil || d.Allow {
		t.Fatalf("Decide cancel as support = %+v, %v; want deny", d, err)
	}
}

// TestEveryPrincipalFieldReachesThePolicy changes each field of Principal and
// Route in turn (found by reflection, so a new field cannot be forgotten) and
// checks that the converted input changes, with the cache in play.
func TestEveryPrincipalFieldReachesThePolicy(t *testing.T) {
	base := realisticInput()
	baseValue, err := opa.InputValue(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []reflect.Value{reflect.ValueOf(&base.Principal).Elem(), reflect.ValueOf(base.Route).Elem()} {
		for i := range part.NumField() {
			field := part.Type().Field(i)
			t.Run(part.Type().Name()+"."+field.Name, func(t *testing.T) {
				in := realisticInput()
				target := reflect.ValueOf(&in.Principal).Elem()
				if part.Type() == reflect.TypeOf(policy.Route{}) {
					target = reflect.ValueOf(in.Route).Elem()
				}
				f := target.Field(i)
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
					t.Fatalf("field kind %s not covered by this test", f.Kind())
				}
				got, err := opa.InputValue(in)
				if err != nil {
					t.Fatal(err)
				}
				if got.Compare(baseValue) == 0 {
					t.Errorf("changing %s does not change the input", field.Name)
				}
			})
		}
	}
}

// TestInputSchema: the JSON form of every input validates against the
// embedded schema, and the schema names exactly the fields of policy.Input.
func TestInputSchema(t *testing.T) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(opa.InputSchema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("input.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("input.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range inputs() {
		t.Run(name, func(t *testing.T) {
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(normalized(t, in)))
			if err != nil {
				t.Fatal(err)
			}
			if err := schema.Validate(v); err != nil {
				t.Errorf("input does not validate: %v", err)
			}
		})
	}

	var raw map[string]any
	if err := json.Unmarshal(opa.InputSchema, &raw); err != nil {
		t.Fatal(err)
	}
	props := func(m map[string]any) []string {
		p, _ := m["properties"].(map[string]any)
		var keys []string
		for k := range p {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return keys
	}
	sub := func(m map[string]any, name string) map[string]any {
		return m["properties"].(map[string]any)[name].(map[string]any)
	}
	for _, tc := range []struct {
		schema map[string]any
		typ    reflect.Type
	}{
		{raw, reflect.TypeOf(policy.Input{})},
		{sub(raw, "principal"), reflect.TypeOf(policy.Principal{})},
		{sub(raw, "route"), reflect.TypeOf(policy.Route{})},
		{sub(raw, "request"), reflect.TypeOf(policy.Request{})},
		{sub(sub(raw, "request"), "client"), reflect.TypeOf(policy.Client{})},
		{sub(raw, "credential"), reflect.TypeOf(policy.Credential{})},
	} {
		var fields []string
		for i := range tc.typ.NumField() {
			fields = append(fields, strings.Split(tc.typ.Field(i).Tag.Get("json"), ",")[0])
		}
		slices.Sort(fields)
		if got := props(tc.schema); !slices.Equal(got, fields) {
			t.Errorf("schema properties of %s = %v, want the JSON fields %v", tc.typ.Name(), got, fields)
		}
	}
}
