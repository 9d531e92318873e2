package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/web/api"
)

// eventsBroker is a broker stand-in whose credentials may publish pub and
// subscribe to their inbox and to events, and whose one route emits.
func eventsBroker(t *testing.T, pub []string, events ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case api.Prefix + "/routes":
			_ = json.NewEncoder(w).Encode(api.Routes{Routes: []api.Route{
				{Subject: "invoices.v1.void", Kind: "procedure", Target: "dbo.void_invoice", Database: "billing", Mode: "sync", TimeoutMS: 5000, Emit: "invoices.v1.voided", Tags: []string{"write"}, Params: json.RawMessage(`{}`)},
				{Subject: "invoices.v1.list", Kind: "statement", Target: "list_invoices", Database: "billing", Mode: "sync", TimeoutMS: 5000, Tags: []string{"read"}, Params: json.RawMessage(`{}`)},
			}})
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
				NATSURL: "nats://127.0.0.1:4222", Pub: pub, Sub: append([]string{inbox + ".>"}, events...),
			})
		default:
			http.NotFound(w, r)
		}
	})
}

// TestCredsNATSShowsSubscriptions: `sqlgate creds nats` says what the
// credential may subscribe to, the granted events included, in text and in
// JSON (it showed only what it may publish).
func TestCredsNATSShowsSubscriptions(t *testing.T) {
	c := signedInCLI(t, eventsBroker(t, []string{"invoices.v1.list"}, "invoices.v1.voided"))
	out := c.must("", "creds", "nats", "-o", filepath.Join(t.TempDir(), "a.creds"))
	if !strings.Contains(out, "may subscribe: [_INBOX_U") || !strings.Contains(out, ".> invoices.v1.voided]") ||
		!strings.Contains(out, "may publish:   [invoices.v1.list]") {
		t.Errorf("creds nats printed\n%s\nwant what it may publish and subscribe to", out)
	}
	var got struct {
		Pub []string `json:"pub"`
		Sub []string `json:"sub"`
	}
	out = c.must("", "creds", "nats", "-o", filepath.Join(t.TempDir(), "b.creds"), "--output", "json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || !slices.Equal(got.Pub, []string{"invoices.v1.list"}) ||
		len(got.Sub) != 2 || !strings.HasPrefix(got.Sub[0], "_INBOX_U") || got.Sub[1] != "invoices.v1.voided" {
		t.Errorf("creds nats --output json = %s (%v), want pub and sub", out, err)
	}
}

// TestRoutesShowEmitSubject: `sqlgate routes` names the subject a route
// emits on (and the header its events carry), so that a consumer knows what
// to subscribe to and which route's events to accept there.
func TestRoutesShowEmitSubject(t *testing.T) {
	c := signedInCLI(t, eventsBroker(t, nil))
	out := c.must("", "routes")
	void, list, _ := strings.Cut(out, "invoices.v1.list\n")
	if !strings.Contains(void, "  emits: invoices.v1.voided (after each commit; the event's Sqlgate-Event header is invoices.v1.void)") {
		t.Errorf("routes printed\n%s\nwant invoices.v1.void's emit subject", out)
	}
	if strings.Contains(list, "emits") {
		t.Errorf("routes printed an emit subject for invoices.v1.list, which emits nothing:\n%s", out)
	}
}

// TestCredsNATSExampleUsesGrantedSubjects: the `nats` command lines that
// creds nats suggests use what the credential grants; it suggested a get of
// orders.v1.get to credentials that may not publish it. An async subject is
// not suggested for a request (the stream answers it), and a credential
// that may only follow events gets only the subscription. A route the
// routes API does not list as a read gets a placeholder payload.
func TestCredsNATSExampleUsesGrantedSubjects(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pub       []string
		events    []string
		want, not []string
	}{
		{
			"route and event",
			[]string{"invoices.v1.list"},
			[]string{"invoices.v1.voided"},
			[]string{" invoices.v1.list '{}'\n", "nats sub --server nats://127.0.0.1:4222 --creds ", " invoices.v1.voided   (keep only messages with the Sqlgate-Event header)"},
			[]string{"orders.v1.get"},
		},
		{
			"async first",
			[]string{"sqlgate.async.UKEY.invoices.v1.import", "invoices.v1.import"},
			nil,
			[]string{" invoices.v1.import 'PAYLOAD'\n    (PAYLOAD: the JSON parameters of invoices.v1.import, as sqlgate routes shows them)\n"},
			[]string{"nats sub", " sqlgate.async.UKEY.invoices.v1.import '", "orders.v1.get", "'{}'"},
		},
		{
			"events only", nil,
			[]string{"invoices.v1.voided"},
			[]string{"nats sub --server "},
			[]string{"nats req", "orders.v1.get"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := signedInCLI(t, eventsBroker(t, tc.pub, tc.events...))
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
