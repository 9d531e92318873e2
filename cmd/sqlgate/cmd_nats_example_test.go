package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	broute "github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/web/api"
)

// routesBroker is a broker stand-in whose credentials may publish pub and
// whose routes API lists routes (or fails with 503 when routes is nil).
func routesBroker(t *testing.T, pub []string, routes []api.Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case api.Prefix + "/routes":
			if routes == nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"a backing service is unavailable; try again"}}`))
				return
			}
			_ = json.NewEncoder(w).Encode(api.Routes{Routes: routes})
		case api.Prefix + "/nats/creds":
			var req api.NATSCredsRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			exp := time.Now().Add(15 * time.Minute)
			inbox := "_INBOX_" + req.PublicKey
			_ = json.NewEncoder(w).Encode(api.NATSCreds{
				JWT: userJWT(t, req.PublicKey, exp), ExpiresAt: exp, InboxPrefix: inbox,
				NATSURL: "nats://127.0.0.1:4222", Pub: pub, Sub: []string{inbox + ".>"},
			})
		default:
			http.NotFound(w, r)
		}
	})
}

func route(subject string, tags []string, params string) api.Route {
	return api.Route{Subject: subject, Kind: "statement", Target: "t", Database: "orders", Mode: "sync", TimeoutMS: 5000, Tags: tags, Params: json.RawMessage(params)}
}

// TestCredsNATSExamplePayload: the nats req that creds nats suggests calls a
// route tagged read, with a payload holding an example value for each
// parameter it requires; it suggested the first route granted (a write,
// orders.v1.cancel, for sales) with '{}', which the route refused for its
// required id. A route not marked as a read, or whose parameters cannot
// be made up, gets a PAYLOAD placeholder and a pointer to sqlgate routes,
// and so does every route when the routes cannot be read.
func TestCredsNATSExamplePayload(t *testing.T) {
	const id = `{"type":"object","properties":{"id":{"type":"integer","minimum":1}},"required":["id"],"additionalProperties":false}`
	cancel := route("orders.v1.cancel", []string{"write"}, id)
	get := route("orders.v1.get", []string{"read"}, id)
	search := route("orders.v1.search", []string{"read"}, `{"type":"object","properties":{
		"status":{"type":"string","enum":["open","cancelled"]},
		"min":{"type":["number","null"],"exclusiveMinimum":5.5},
		"max":{"type":"integer","maximum":-3},
		"code":{"type":"string","minLength":3,"maxLength":8},
		"since":{"type":"string","format":"date-time"},
		"paid":{"type":"boolean"},
		"note":{"type":"string"}},
		"required":["status","min","max","code","since","paid"]}`)
	byPattern := route("orders.v1.by_ref", []string{"read"}, `{"type":"object","properties":{"ref":{"type":"string","pattern":"^R[0-9]+$"}},"required":["ref"]}`)
	for _, tc := range []struct {
		name      string
		pub       []string
		routes    []api.Route
		want, not []string
	}{
		{
			"the read, not the first route",
			[]string{"orders.v1.cancel", "orders.v1.get"},
			[]api.Route{cancel, get},
			[]string{` orders.v1.get '{"id":1}'` + "\n"},
			[]string{" orders.v1.cancel '", "PAYLOAD"},
		},
		{
			"every required parameter by its schema",
			[]string{"orders.v1.search"},
			[]api.Route{search},
			[]string{` orders.v1.search '{"code":"xxx","max":-3,"min":6,"paid":false,"since":"2024-01-01T00:00:00Z","status":"open"}'` + "\n"},
			[]string{"note", "PAYLOAD"},
		},
		{
			"a read only if granted",
			[]string{"orders.v1.cancel"},
			[]api.Route{get, cancel},
			[]string{" orders.v1.cancel 'PAYLOAD'\n    (PAYLOAD: the JSON parameters of orders.v1.cancel, as sqlgate routes shows them; orders.v1.cancel is tagged write: calling it changes data)\n"},
			[]string{" orders.v1.get '", "'{"},
		},
		{
			"a parameter it cannot make up",
			[]string{"orders.v1.by_ref"},
			[]api.Route{byPattern},
			[]string{" orders.v1.by_ref 'PAYLOAD'\n    (PAYLOAD: the JSON parameters of orders.v1.by_ref, as sqlgate routes shows them)\n"},
			[]string{"'{"},
		},
		{
			"routes unavailable",
			[]string{"orders.v1.cancel", "orders.v1.get"},
			nil,
			[]string{" orders.v1.cancel 'PAYLOAD'\n    (PAYLOAD: the JSON parameters of orders.v1.cancel, as sqlgate routes shows them)\n"},
			[]string{"'{"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := signedInCLI(t, routesBroker(t, tc.pub, tc.routes))
			out := c.must("", "creds", "nats", "-o", filepath.Join(t.TempDir(), "a.creds"))
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("creds nats printed\n%s\nwant %q", out, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("creds nats printed\n%s\nwant no %q", out, n)
				}
			}
		})
	}
}

// TestCredsNATSExampleWorksAsPasted: against the dev daemon, the nats req
// that creds nats prints for alice (sales: her first granted route is the
// write orders.v1.cancel) and for bob (support: only orders.v1.get) is a
// read that succeeds as printed; both were '{}', refused for the required
// id, and alice's cancelled orders. The printed request is sent as
// sqlgate call (the same request over NATS; the nats CLI is not needed).
func TestCredsNATSExampleWorksAsPasted(t *testing.T) {
	if testing.Short() {
		t.Skip("CLI against a dev daemon: skipped with -short")
	}
	d := startDaemon(t)
	req := regexp.MustCompile(`(?m)^  nats req --server \S+ --creds \S+ --inbox-prefix _INBOX_U\S+ (\S+) '([^']*)'$`)
	for _, user := range []string{"alice", "bob"} {
		t.Run(user, func(t *testing.T) {
			c := newCLI(t, d)
			c.must(d.password(user)+"\n", "login", "--username", user, "--password-stdin")
			out := c.must("", "creds", "nats")
			m := req.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("creds nats printed\n%s\nwant a nats req line", out)
			}
			if m[1] != "orders.v1.get" || m[2] != `{"id":1}` {
				t.Errorf("suggested %s %s, want the read orders.v1.get with its required id", m[1], m[2])
			}
			code, reply, errOut := c.run("", "call", m[1], m[2])
			var env struct {
				OK bool `json:"ok"`
			}
			if code != 0 || json.Unmarshal([]byte(reply), &env) != nil || !env.OK {
				t.Errorf("the suggested request %s %s: exit %d\n%s%s", m[1], m[2], code, reply, errOut)
			}
		})
	}
}

// TestCredsNATSExampleQuotesThePath: a creds file whose path holds a space
// or shell syntax is one quoted word of the printed commands (it split into
// several, and $(…) would have run when pasted).
func TestCredsNATSExampleQuotesThePath(t *testing.T) {
	get := api.Route{Subject: "orders.v1.get", Tags: []string{"read"}, Params: json.RawMessage(`{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}`)}
	c := signedInCLI(t, routesBroker(t, []string{"orders.v1.get"}, []api.Route{get}))
	dir := filepath.Join(t.TempDir(), "my creds $(touch pwned)")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "a b.creds")
	out := c.must("", "creds", "nats", "-o", path)
	if want := " --creds " + shellQuote(path) + " "; !strings.Contains(out, want) {
		t.Errorf("creds nats printed\n%s\nwant the path as one quoted word %q", out, want)
	}
}

// TestExamplePayloadTheRouteTakes: the example payload creds nats suggests
// is one the route accepts, or none (the PAYLOAD placeholder). An integer
// whose minimum is beyond int64 gave {"n":-9223372036854775808}, and a
// minLength of 2,000,000 a 2 MB string the route refuses as too large.
func TestExamplePayloadTheRouteTakes(t *testing.T) {
	for _, tc := range []struct {
		params     map[string]any
		maxPayload int
		want       string // "" for no example
	}{
		{map[string]any{"type": "integer", "minimum": 1e300}, 0, ""},
		{map[string]any{"type": "integer", "minimum": float64(1 << 63)}, 0, ""},
		{map[string]any{"type": "integer", "maximum": -1e300}, 0, ""},
		{map[string]any{"type": "integer", "minimum": json.Number("9007199254740993")}, 0, ""},
		{map[string]any{"type": "number", "minimum": 1e300}, 0, `{"n":1e+300}`},
		{map[string]any{"type": "integer", "minimum": 5}, 0, `{"n":5}`},
		{map[string]any{"type": "string", "minLength": 2000000}, 0, ""},
		{map[string]any{"type": "string", "minLength": 100}, 64, ""},
		{map[string]any{"type": "string", "minLength": 3}, 64, `{"n":"xxx"}`},
	} {
		schema := map[string]any{"type": "object", "properties": map[string]any{"n": tc.params}, "required": []any{"n"}}
		c, err := broute.New([]broute.Spec{{Subject: "t.v1.get", Procedure: "p", Database: "d", Tags: []string{"read"}, Params: schema, MaxPayload: tc.maxPayload}})
		if err != nil {
			t.Fatalf("%v: %v", tc.params, err)
		}
		r, _ := c.Lookup("t.v1.get")
		payload, ok := examplePayload(r.SchemaJSON, r.MaxPayload)
		if !ok {
			payload = ""
		}
		if payload != tc.want {
			t.Errorf("%v (maxPayload %d): example %.80q, want %q", tc.params, r.MaxPayload, payload, tc.want)
		}
		if ok {
			if _, err := r.Decode([]byte(payload)); err != nil {
				t.Errorf("%v: the route refuses the example %.80q: %v", tc.params, payload, err)
			}
		}
	}
}
