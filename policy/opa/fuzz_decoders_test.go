package opa

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sqlgate/sqlgate/policy"
)

// FuzzParseInput decodes arbitrary policy eval request bodies (POST
// policy/eval, sqlgate policy eval). A refusal wraps ErrInvalidInput, never
// a panic; an accepted input encodes to a document that is accepted again
// and decodes to the same input.
func FuzzParseInput(f *testing.F) {
	b, err := os.ReadFile("testdata/inputs/sales_create.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"principal":{"issuer":"https://idp","subject":"s"}}`))
	f.Add([]byte(`{"principal":{"issuer":"https://idp","subject":"s","groups":null},"params":{"n":1e400,"a":[[[[1]]]]}}`))
	f.Add([]byte(`{"principal":{"issuer":"https://idp","subject":"s"},"unknown":1}`))
	f.Add([]byte(`{"principal":{"issuer":"https://idp","subject":"s"}} {"second":1}`))
	f.Add([]byte(`{"principal":"x"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := ParseInput(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) {
				t.Fatalf("refusal %v does not wrap ErrInvalidInput", err)
			}
			return
		}
		out, err := json.Marshal(in)
		if err != nil {
			t.Fatalf("accepted input does not encode: %v", err)
		}
		again, err := ParseInput(out)
		if err != nil {
			t.Fatalf("accepted input %s encodes to %s, which is refused: %v", data, out, err)
		}
		out2, _ := json.Marshal(again)
		if string(out) != string(out2) {
			t.Fatalf("input changed in a round trip:\n%s\n%s", out, out2)
		}
	})
}

// decisionKeys is every key a decision document may hold, sorted.
var fuzzDecisionKeys = func() []string {
	keys := append([]string{"allow", "reasons", "deny", "deny_pub"}, policy.ObligationKeys...)
	slices.Sort(keys)
	return keys
}()

// FuzzDecisionDocument decodes arbitrary decision documents, written as a
// Rego object from each decision key to the array of its values (as the
// decision query returns them). Any malformed value denies with an error
// and no obligations; an accepted decision has obligations within their
// bounds, and it allows only when the document's allow is true and its deny
// is empty, and then with no subject deny_pub matches in pub.
func FuzzDecisionDocument(f *testing.F) {
	f.Add(`{"allow": [true], "reasons": [{"ok"}], "max_rows": [100], "timeout_ms": [5000], "redact_params": [{"card"}]}`)
	f.Add(`{"allow": [true], "ttl": ["15m"], "pub": [["orders.>"]], "sub": [{"_INBOX_x.>"}]}`)
	f.Add(`{"allow": [false], "reasons": [["not in sales"]], "ttl": [900.5]}`)
	f.Add(`{"allow": [true], "ttl": [1e400]}`)
	f.Add(`{"allow": [true], "ttl": ["-1s"], "max_rows": [-1]}`)
	f.Add(`{"allow": [true], "max_rows": [2147483648], "timeout_ms": [1.5]}`)
	f.Add(`{"allow": [true, false]}`)
	f.Add(`{"allow": ["yes"], "reasons": [[1]]}`)
	f.Add(`{"allow": true}`)
	f.Add(`{"reasons": [{"undefined allow"}]}`)
	f.Add(`{}`)
	f.Add(`{"allow": [true], "deny": [{"frozen"}], "redact_params": [["note"]]}`)
	f.Add(`{"allow": [true], "deny": [set()], "pub": [{"a.b", "c.d"}], "deny_pub": [{"a.*"}]}`)
	f.Add(`{"allow": [true], "pub": [{"a.b"}], "deny_pub": [{">"}]}`)
	f.Add(`{"allow": [true], "deny": [["frozen"]]}`)
	f.Fuzz(func(t *testing.T, src string) {
		term, err := ast.ParseTerm(src)
		if err != nil {
			return
		}
		obj, ok := term.Value.(ast.Object)
		if !ok {
			return
		}
		elems := make([]*ast.Term, len(fuzzDecisionKeys))
		for i, k := range fuzzDecisionKeys {
			elems[i] = ast.ArrayTerm()
			if v := obj.Get(ast.StringTerm(k)); v != nil {
				elems[i] = v
			}
		}
		doc := document{keys: fuzzDecisionKeys, values: ast.NewArray(elems...)}
		allow, reasons, ob, err := doc.decode()
		if err != nil {
			if allow || !reflect.DeepEqual(ob, policy.Obligations{}) {
				t.Fatalf("malformed decision %s: allow=%v obligations=%+v, want a deny without obligations", src, allow, ob)
			}
			return
		}
		want := obj.Get(ast.StringTerm("allow")).Value.(*ast.Array).Elem(0).Value
		if allow && want != ast.Boolean(true) {
			t.Fatalf("decision %s: allow=%v", src, allow)
		}
		if d := obj.Get(ast.StringTerm("deny")); allow && d != nil && d.Value.(*ast.Array).Len() > 0 && d.Value.(*ast.Array).Elem(0).Value.(ast.Set).Len() > 0 {
			t.Fatalf("decision %s: allowed despite deny", src)
		}
		if d := obj.Get(ast.StringTerm("deny_pub")); d != nil && d.Value.(*ast.Array).Len() > 0 {
			d.Value.(*ast.Array).Elem(0).Value.(ast.Set).Foreach(func(p *ast.Term) {
				for _, s := range ob.Pub {
					if s == string(p.Value.(ast.String)) {
						t.Fatalf("decision %s: pub holds %s, which deny_pub holds", src, s)
					}
				}
			})
		}
		if !allow && want == ast.Boolean(true) && len(reasons) == 0 {
			t.Fatalf("decision %s: a deny of an allow without reasons", src)
		}
		if ob.MaxRows < 0 || ob.MaxRows > maxCount || ob.Timeout < 0 || ob.Timeout > maxCount*time.Millisecond ||
			ob.TTL < 0 || ob.TTL > maxTTL {
			t.Fatalf("decision %s: obligations out of bounds: %+v", src, ob)
		}
	})
}

// FuzzRoutesFromCatalog reads arbitrary route catalogs, as `sqlgate policy
// check --routes` does. A refusal is an error, never a panic; every route
// read has a subject and sorted, unique parameter names; and a small file
// cannot make the reader allocate without bound (YAML aliases).
func FuzzRoutesFromCatalog(f *testing.F) {
	for _, p := range []string{"testdata/routes.yaml", "../../deploy/examples/routes.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("routes:\n- subject: a.b\n  params: {properties: {x: {type: string}, y: {}}}\n"))
	f.Add([]byte("routes:\n- subject: ''\n"))
	f.Add([]byte("routes: []\n"))
	f.Add([]byte("routes: {subject: x}\n"))
	f.Add([]byte("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\nroutes: [*d]\n"))
	f.Add([]byte("\t"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		refs, err := RoutesFromCatalog(data)
		runtime.ReadMemStats(&after)
		// encoding and decoding allocate some multiple of the input; an
		// alias bomb allocates orders of magnitude more.
		if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<20+uint64(len(data))*1024 {
			t.Fatalf("a catalog of %d bytes made the reader allocate %d bytes", len(data), grown)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "route catalog: ") {
				t.Fatalf("refusal %q does not name the route catalog", err)
			}
			return
		}
		if len(refs) == 0 {
			t.Fatal("accepted a catalog without routes")
		}
		for _, r := range refs {
			if r.Subject == "" || !slices.IsSorted(r.Params) || len(slices.Compact(slices.Clone(r.Params))) != len(r.Params) {
				t.Fatalf("route %+v: no subject, or parameters not sorted and unique", r)
			}
		}
	})
}
