package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/web/api"
)

// userJWT returns a user JWT for pub, signed by a throwaway account key,
// expiring at exp (zero: never).
func userJWT(t *testing.T, pub string, exp time.Time) string {
	t.Helper()
	account, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	uc := jwt.NewUserClaims(pub)
	if !exp.IsZero() {
		uc.Expires = exp.Unix()
	}
	tok, err := uc.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// writeCreds writes a creds file for a new user key expiring at exp and
// returns its path and the user's public key.
func writeCreds(t *testing.T, exp time.Time) (path, userKey string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	b, err := jwt.FormatUserConfig(userJWT(t, pub, exp), seed)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pub
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestCallUsage checks that call refuses, as usage errors and before
// connecting, headers the broker would refuse or replace and a timeout that
// cannot be waited for.
func TestCallUsage(t *testing.T) {
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"correlation_id_with_space", []string{"--correlation-id", "saga 7"}, "--correlation-id must be 1 to 128 printable ASCII characters without spaces"},
		{"correlation_id_non_ascii", []string{"--correlation-id", "bestellung-ä"}, "--correlation-id must be"},
		{"correlation_id_too_long", []string{"--correlation-id", strings.Repeat("c", 129)}, "--correlation-id must be"},
		{"idempotency_key_with_tab", []string{"--idempotency-key", "order\t1"}, "--idempotency-key must be 1 to 256 printable ASCII characters without spaces"},
		{"idempotency_key_too_long", []string{"--idempotency-key", strings.Repeat("k", 257)}, "--idempotency-key must be"},
		{"timeout_zero", []string{"--timeout", "0"}, "--timeout must be positive"},
		{"timeout_negative", []string{"--timeout", "-1s"}, "--timeout must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"call", "orders.v1.get", `{"id":1}`}, tc.args...)
			if code, _, errOut := c.run("", args...); code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("sqlgate %q: exit %d, %s; want exit 2 and %q", args, code, errOut, tc.want)
			}
		})
	}
	// The longest values the broker takes pass the check (and fail later:
	// there are no credentials here).
	args := []string{"call", "orders.v1.get", "{}", "--correlation-id", strings.Repeat("c", 128), "--idempotency-key", strings.Repeat("k", 256)}
	if code, _, errOut := c.run("", args...); code != 1 || !strings.Contains(errOut, "no NATS credentials") {
		t.Errorf("longest valid headers: exit %d, %s; want them accepted", code, errOut)
	}
}

// TestTTLUsage checks that a lifetime the broker would take for "the
// default" (it counts whole seconds) is a usage error.
func TestTTLUsage(t *testing.T) {
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	for _, args := range [][]string{
		{"creds", "nats", "--ttl", "500ms"},
		{"creds", "nats", "--ttl", "-5m"},
		{"creds", "sql", "--database", "orders", "--role", "reader", "--ttl", "999ms"},
		{"creds", "sql", "--database", "orders", "--role", "reader", "--ttl", "-1s"},
		{"leases", "renew", "L1", "--ttl", "500ms"},
	} {
		if code, _, errOut := c.run("", args...); code != 2 || !strings.Contains(errOut, "--ttl must be at least 1s") {
			t.Errorf("sqlgate %q: exit %d, %s; want exit 2 and the --ttl rule", args, code, errOut)
		}
	}
}

// TestCallCredentials checks what call takes from the creds file rather
// than nats.json, and that only an authorization problem suggests new
// credentials.
func TestCallCredentials(t *testing.T) {
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	e := &env{home: c.home, getenv: func(string) string { return "" }}
	creds, userKey := writeCreds(t, time.Now().Add(time.Hour))
	const alice = "https://idp.test alice"
	if err := e.saveState(&state{Broker: "http://127.0.0.1:8470", Principal: alice}); err != nil {
		t.Fatal(err)
	}
	// nats.json from an earlier credential, the creds file since replaced.
	stale := natsInfo{Creds: creds, InboxPrefix: "_INBOX_UOLDKEY", NATSURL: "nats://" + closedPort(t), Principal: alice, Broker: "http://127.0.0.1:8470"}
	b, _ := json.Marshal(stale)
	if err := os.WriteFile(e.path(natsInfoFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := e.natsInfo("", "")
	if err != nil || info.InboxPrefix != "_INBOX_"+userKey || info.Creds != creds {
		t.Errorf("natsInfo = %+v, %v; want the inbox prefix of %s's user key", info, err, creds)
	}

	code, _, errOut := c.run("", "call", "orders.v1.get", `{"id":1}`)
	if code != 1 || !strings.Contains(errOut, "connect to NATS") || strings.Contains(errOut, "creds nats") {
		t.Errorf("call with nothing listening: exit %d, %s; want a connection error without the credentials hint", code, errOut)
	}

	expired, _ := writeCreds(t, time.Now().Add(-time.Minute))
	code, _, errOut = c.run("", "call", "--creds", expired, "orders.v1.get", `{"id":1}`)
	if code != 1 || !strings.Contains(errOut, "expired at") || !strings.Contains(errOut, "run sqlgate creds nats") {
		t.Errorf("call with expired credentials: exit %d, %s; want them refused as expired", code, errOut)
	}
}

// TestCredsNATSRelativeOutput checks that nats.json names the creds file
// written with a relative -o by its absolute path, so call finds it from any
// directory.
func TestCredsNATSRelativeOutput(t *testing.T) {
	c := signedInCLI(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req api.NATSCredsRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		exp := time.Now().Add(15 * time.Minute)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(api.NATSCreds{
			JWT: userJWT(t, req.PublicKey, exp), ExpiresAt: exp, InboxPrefix: "_INBOX_" + req.PublicKey,
			NATSURL: "nats://127.0.0.1:4222", Pub: []string{"orders.v1.get"},
		})
	}))
	dir := t.TempDir()
	t.Chdir(dir)
	if code, out, errOut := c.run("", "creds", "nats", "-o", "rel.creds"); code != 0 {
		t.Fatalf("creds nats -o rel.creds: exit %d, %s %s", code, out, errOut)
	}
	b, err := os.ReadFile(filepath.Join(c.home, natsInfoFile))
	if err != nil {
		t.Fatal(err)
	}
	var info natsInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	want, _ := os.Stat(filepath.Join(dir, "rel.creds"))
	got, err := os.Stat(info.Creds)
	if !filepath.IsAbs(info.Creds) || err != nil || !os.SameFile(got, want) {
		t.Errorf("nats.json creds = %q (%v), want the absolute path of %s", info.Creds, err, filepath.Join(dir, "rel.creds"))
	}
}

// TestReadPayload checks the payload forms of call.
func TestReadPayload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "order.json")
	if err := os.WriteFile(file, []byte(`{"from":"file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ arg, want string }{
		{`{"inline":1}`, `{"inline":1}`},
		{"-", `{"from":"stdin"}`},
		{"@-", `{"from":"stdin"}`},
		{"@" + file, `{"from":"file"}`},
	} {
		e := &env{stdin: strings.NewReader(`{"from":"stdin"}`)}
		got, err := readPayload(e, tc.arg)
		if err != nil || string(got) != tc.want {
			t.Errorf("readPayload(%q) = %q, %v; want %q", tc.arg, got, err, tc.want)
		}
	}
	if _, err := readPayload(&env{}, "@"+filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "read the payload") {
		t.Errorf("readPayload of a missing file = %v, want an error naming the payload", err)
	}
}

// TestPermissionError checks that a refused subscription is not reported
// as a refused publish, from the errors nats.go reports for each.
func TestPermissionError(t *testing.T) {
	pub := fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Publish to "orders.v1.get"`)
	if got := permissionError(pub, "orders.v1.get").Error(); !strings.HasPrefix(got, "the NATS server refused to publish to orders.v1.get:") {
		t.Errorf("publish violation = %q", got)
	}
	sub := fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Subscription to "_INBOX_UABC.xyz.*"`)
	got := permissionError(sub, "orders.v1.get").Error()
	if !strings.HasPrefix(got, "the NATS server refused the subscription to _INBOX_UABC.xyz.* that the call to orders.v1.get needs:") || strings.Contains(got, "refused to publish") {
		t.Errorf("subscription violation = %q", got)
	}
}

// TestCallRefusesAnotherPrincipalsCreds: the saved NATS credential acts only
// for the principal it was issued to: after signing in as someone else (or
// to another broker), or with one saved by an earlier sqlgate that does not
// say whose it is, call refuses before connecting; --creds FILE still
// chooses a credential explicitly.
func TestCallRefusesAnotherPrincipalsCreds(t *testing.T) {
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	e := &env{home: c.home, getenv: func(string) string { return "" }}
	creds, key := writeCreds(t, time.Now().Add(time.Hour))
	nats := "nats://" + closedPort(t)
	const broker, alice, bob = "http://127.0.0.1:8470", "https://idp.test alice", "https://idp.test bob"
	save := func(st state, info natsInfo) {
		t.Helper()
		if err := e.saveState(&st); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(info)
		if err := os.WriteFile(e.path(natsInfoFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	alices := natsInfo{Creds: creds, NATSURL: nats, Principal: alice, Broker: broker, UserKey: key}
	for _, tc := range []struct {
		name string
		st   state
		info natsInfo
		want string
	}{
		{"signed_in_as_bob", state{Broker: broker, Principal: bob}, alices, "belong to " + alice + " at " + broker + ", but you are signed in as " + bob},
		{"other_broker", state{Broker: "https://sqlgate.example.com", Principal: alice}, alices, "but you are signed in as " + alice + " at https://sqlgate.example.com"},
		{"signed_out", state{Broker: broker}, alices, "do not say whose they are"},
		{"older_nats_json", state{Broker: broker, Principal: alice}, natsInfo{Creds: creds, NATSURL: nats}, "do not say whose they are"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			save(tc.st, tc.info)
			code, _, errOut := c.run("", "call", "orders.v1.get", `{"id":1}`)
			if code != 1 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "run sqlgate creds nats") {
				t.Errorf("call: exit %d, %s; want a refusal containing %q", code, errOut, tc.want)
			}
			code, _, errOut = c.run("", "call", "--creds", creds, "orders.v1.get", `{"id":1}`)
			if code != 1 || !strings.Contains(errOut, "connect to NATS") {
				t.Errorf("call --creds FILE: exit %d, %s; want the explicit credential used", code, errOut)
			}
		})
	}
	save(state{Broker: broker + "/", Principal: alice}, alices)
	if code, _, errOut := c.run("", "call", "orders.v1.get", `{"id":1}`); code != 1 || !strings.Contains(errOut, "connect to NATS") {
		t.Errorf("call with alice's own credential: exit %d, %s; want it used", code, errOut)
	}
}
