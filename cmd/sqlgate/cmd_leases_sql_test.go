package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/web/api"
)

// TestLeaseClient checks the requests of `leases renew` and `leases
// revoke-all` and how answers are printed, against a stand-in broker.
func TestLeaseClient(t *testing.T) {
	var got struct {
		method, path, auth string
		body               map[string]any
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path, got.auth = r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization")
		got.body = nil
		_ = json.NewDecoder(r.Body).Decode(&got.body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/renew") && strings.Contains(r.URL.Path, "gone"):
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"not found"}}`))
		case strings.HasSuffix(r.URL.Path, "/renew"):
			_, _ = w.Write([]byte(`{"id":"L1","type":"sql","principal":"alice","username":"sg_alice_abcdefghij","state":"active",
				"issued_at":"2026-11-27T10:00:00Z","expires_at":"2026-11-27T10:30:00Z","max_expires_at":"2026-11-27T11:00:00Z","capped":"capped at the maximum"}`))
		case r.URL.Path == api.Prefix+"/leases/revoke-all":
			_, _ = w.Write([]byte(`{"principal":"https://idp.test alice","nats_revoked":["UKEY"],"leases":[
				{"id":"L1","type":"sql","username":"u1","database":"orders","role":"reader","state":"revoked"},
				{"id":"L2","type":"sql","username":"u2","database":"orders","role":"reader","state":"revoking",
				 "last_error":"sql error 42501: must be a member of the role whose process is being terminated or member of pg_signal_backend"}],"pending":1}`))
		}
	}))
	defer srv.Close()
	c, err := api.NewClient(srv.URL, func(context.Context) (string, error) { return "tok", nil })
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr}

	r, err := c.RenewLease(t.Context(), "L 1", 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got.method != "POST" || got.auth != "Bearer tok" || got.body["ttl_seconds"] != float64(600) {
		t.Errorf("request = %+v", got)
	}
	if err := printRenewal(e, "text", r); err != nil {
		t.Fatal(err)
	}
	if out := stdout.String(); !strings.Contains(out, "renewed sql credential L1 (sg_alice_abcdefghij)") || !strings.Contains(out, "capped: capped at the maximum") {
		t.Errorf("renew output = %q", out)
	}
	if !r.MaxExpiry.Equal(time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC)) {
		t.Errorf("max expiry = %s", r.MaxExpiry)
	}

	_, err = c.RenewLease(t.Context(), "gone", 0)
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != 404 || se.Body.Code != "not_found" {
		t.Errorf("renew of a gone lease = %v, want a 404 StatusError", err)
	}

	all, err := c.RevokeAll(t.Context(), "https://idp.test alice", "left")
	if err != nil {
		t.Fatal(err)
	}
	if got.body["principal"] != "https://idp.test alice" || got.body["reason"] != "left" {
		t.Errorf("revoke-all body = %v", got.body)
	}
	stdout.Reset()
	if err := printRevokeAll(e, "text", all); !errors.Is(err, errSilent) {
		t.Errorf("revoke-all with a pending revocation = %v, want a failure exit", err)
	}
	if out := stdout.String(); !strings.Contains(out, "1 NATS credential(s), 1 SQL credential(s)") ||
		!strings.Contains(out, "L2 u2 orders/reader: revoking (last attempt: sql error 42501: must be a member of the role") {
		t.Errorf("revoke-all output = %q, want the pending lease with its last error", out)
	}
	if !strings.Contains(stderr.String(), "the revocation of 1 SQL credential(s) has not finished yet") {
		t.Errorf("stderr = %q", stderr.String())
	}
}

// TestLeasesRevokePending: a revocation that has not finished (202,
// revoking) exits 1 like revoke-all does, and says why the last attempt
// failed instead of guessing that the database is unreachable; a finished
// one exits 0.
func TestLeasesRevokePending(t *testing.T) {
	pending := true
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !pending {
			_, _ = w.Write([]byte(`{"id":"L1","type":"sql","username":"u1","database":"orders","role":"reader","state":"revoked"}`))
			return
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"id":"L1","type":"sql","username":"u1","database":"orders","role":"reader","state":"revoking",
			"last_error":"sql error 2BP01: role cannot be dropped because some objects depend on it"}`))
	}))
	code, out, errOut := c.run("", "leases", "revoke", "L1")
	if code != 1 || strings.Contains(out+errOut, "unreachable") ||
		!strings.Contains(errOut, "the revocation of sql credential L1 has not finished yet (last attempt: sql error 2BP01: role cannot be dropped") {
		t.Errorf("pending revoke: exit %d, stdout %q, stderr %q; want exit 1 with the last error", code, out, errOut)
	}
	code, out, errOut = c.run("", "leases", "revoke", "L1", "--output", "json")
	if code != 1 || !strings.Contains(out, `"last_error": "sql error 2BP01`) || !strings.Contains(errOut, "has not finished yet") {
		t.Errorf("pending revoke, json: exit %d, stdout %q, stderr %q; want the lease and exit 1", code, out, errOut)
	}
	pending = false
	if code, out, errOut := c.run("", "leases", "revoke", "L1"); code != 0 || !strings.Contains(out, "revoked sql credential L1") {
		t.Errorf("finished revoke: exit %d, %s %s", code, out, errOut)
	}
}

func TestLeaseCommandsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"leases", "renew"},
		{"leases", "renew", "a", "b"},
		{"leases", "renew", "L1", "--ttl", "-5m"},
		{"leases", "revoke-all"},
	} {
		var out, errOut bytes.Buffer
		e := &env{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }, home: t.TempDir()}
		var err error
		if args[1] == "renew" {
			err = cmdLeasesRenew(t.Context(), e, args[2:])
		} else {
			err = cmdLeasesRevokeAll(t.Context(), e, args[2:])
		}
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v = %v, want a usage error", args, err)
		}
	}
}

// TestRevokeAllPrincipalShape: revoke-all of something that cannot be a
// principal id (an e-mail address, a bare subject, a reversed pair) is a
// usage error and asks the broker nothing: it would offboard nobody while
// the real user keeps access.
func TestRevokeAllPrincipalShape(t *testing.T) {
	var requests int
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests++
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"principal":"https://idp.test alice","nats_revoked":[],"leases":[],"pending":0}`))
	}))
	for _, p := range []string{"alice@example.com", "alice", "alice https://idp.test", "idp.test alice", "https://idp.test", "https://idp.test ", "ftp://idp.test alice", "https://idp.test alice "} {
		code, _, errOut := c.run("", "leases", "revoke-all", "--principal", p)
		if code != 2 || !strings.Contains(errOut, `--principal must be "<issuer> <subject>"`) {
			t.Errorf("revoke-all --principal %q: exit %d, %s; want a usage error naming the shape", p, code, errOut)
		}
	}
	if requests != 0 {
		t.Errorf("refused revoke-alls sent %d requests to the broker, want none", requests)
	}
	if code, out, errOut := c.run("", "leases", "revoke-all", "--principal", "https://idp.test alice"); code != 0 || !strings.Contains(out, "revoked for https://idp.test alice") {
		t.Errorf("revoke-all of a principal id: exit %d, %s %s", code, out, errOut)
	}
}

// TestRevokeAllUnknownPrincipal: a revoke-all that the broker answers with
// unknown_principal (nothing it keeps names the principal: a mistyped id
// offboards nobody) prints the answer, warns on stderr that the id should
// be checked, and exits 1, in both output modes; a 400 refusal (an issuer
// that is not configured) is an error with the broker's message.
func TestRevokeAllUnknownPrincipal(t *testing.T) {
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req api.RevokeAllRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(req.Principal, "https://idp.test/ ") {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"code":"invalid_request","message":"the principal's issuer \"https://idp.test/\" is none of the configured identity issuers (https://idp.test)"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"principal":"` + req.Principal + `","nats_revoked":[],"leases":[],"pending":0,"sessions_ended":0,"unknown_principal":true}`))
	}))
	const who = "https://idp.test alice@example.com"
	code, out, errOut := c.run("", "leases", "revoke-all", "--principal", who)
	if code != 1 || !strings.Contains(out, "revoked for "+who) ||
		!strings.Contains(errOut, `warning: no NATS credential, SQL lease or dashboard session names "`+who+`"`) || !strings.Contains(errOut, "not an e-mail address") {
		t.Errorf("revoke-all of a principal nothing names: exit %d, stdout %q, stderr %q; want exit 1 and a warning to check the id", code, out, errOut)
	}
	code, out, errOut = c.run("", "leases", "revoke-all", "--principal", who, "--output", "json")
	if code != 1 || !strings.Contains(out, `"unknown_principal": true`) || !strings.Contains(errOut, "warning: no NATS credential") {
		t.Errorf("revoke-all of a principal nothing names, json: exit %d, stdout %q, stderr %q; want the answer, the warning and exit 1", code, out, errOut)
	}
	code, _, errOut = c.run("", "leases", "revoke-all", "--principal", "https://idp.test/ alice")
	if code != 1 || !strings.Contains(errOut, "none of the configured identity issuers") {
		t.Errorf("revoke-all of an issuer not configured: exit %d, stderr %q; want exit 1 with the broker's refusal", code, errOut)
	}
}

// TestLeasesFollowsPages: `leases list` (api.Client.Leases) reads every
// page the broker sends, passing each page's next cursor back.
func TestLeasesFollowsPages(t *testing.T) {
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("cursor") == "" {
			_, _ = w.Write([]byte(`{"leases":[{"id":"L3","type":"sql"},{"id":"L2","type":"nats"}],"next":"c2"}`))
			return
		}
		_, _ = w.Write([]byte(`{"leases":[{"id":"L1","type":"sql"}]}`))
	}))
	defer srv.Close()
	c, err := api.NewClient(srv.URL, func(context.Context) (string, error) { return "tok", nil })
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range got.Leases {
		ids = append(ids, l.ID)
	}
	if strings.Join(ids, ",") != "L3,L2,L1" || got.Next != "" {
		t.Errorf("leases = %v (next %q), want L3,L2,L1 from both pages", ids, got.Next)
	}
	if len(queries) != 2 || queries[0] != "limit=1000" || queries[1] != "cursor=c2&limit=1000" {
		t.Errorf("queries = %q, want the first page and then cursor=c2", queries)
	}
}
