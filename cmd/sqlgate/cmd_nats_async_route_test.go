package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// natsWithCreds starts a NATS server in operator mode and writes a creds
// file for a new user who may publish to pub(its user key) and subscribe
// under its inbox prefix, as the broker issues them; it returns the
// server's URL and the file.
func natsWithCreds(t *testing.T, pub func(userKey string) []string) (url, creds string) {
	t.Helper()
	operator, _ := nkeys.CreateOperator()
	opPub, _ := operator.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	opJWT, err := oc.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	opClaims, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	account, _ := nkeys.CreateAccount()
	accPub, _ := account.PublicKey()
	accJWT, err := jwt.NewAccountClaims(accPub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accPub, accJWT); err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		TrustedOperators: []*jwt.OperatorClaims{opClaims}, AccountResolver: resolver,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)

	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	seed, _ := user.Seed()
	uc := jwt.NewUserClaims(userPub)
	uc.IssuerAccount = accPub
	uc.Pub.Allow.Add(pub(userPub)...)
	uc.Sub.Allow.Add("_INBOX_" + userPub + ".>")
	uc.Expires = time.Now().Add(time.Hour).Unix()
	userJWT, err := uc.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	b, err := jwt.FormatUserConfig(userJWT, seed)
	if err != nil {
		t.Fatal(err)
	}
	creds = filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(creds, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return s.ClientURL(), creds
}

// TestCallAsyncOnASyncRoute: `call --async` on a route the credential may
// call only synchronously (the NATS server refuses the publish to
// sqlgate.async.<user key>.<route>) says the route is not async and to call
// it without --async, instead of blaming the credential for a subject the
// user never typed.
func TestCallAsyncOnASyncRoute(t *testing.T) {
	// A credential that may call orders.v1.create synchronously and
	// orders.v1.import asynchronously.
	url, creds := natsWithCreds(t, func(userKey string) []string {
		return []string{"orders.v1.create", asyncSubjectPrefix + userKey + ".orders.v1.import"}
	})
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	call := func(args ...string) (int, string) {
		code, _, errOut := c.run("", append([]string{"call", "--creds", creds, "--nats", url, "--timeout", "10s"}, args...)...)
		return code, errOut
	}
	code, errOut := call("--async", "orders.v1.create", "{}")
	if code != 1 || !strings.Contains(errOut, "orders.v1.create is not an async route (or not granted to you): call it without --async") {
		t.Errorf("call --async of a sync route: exit %d, %s; want it said to call without --async", code, errOut)
	}
	code, errOut = call("orders.v1.delete", "{}")
	if code != 1 || !strings.Contains(errOut, "orders.v1.delete is not a route you may call: sqlgate routes lists them") || strings.Contains(errOut, "--async") {
		t.Errorf("call of a route not granted: exit %d, %s; want it said not to be a route you may call", code, errOut)
	}
}

// TestCallSubjectNotGranted: a call to a subject the credential does not
// list (a typo of a route) says that it is not a route you may call and
// where they are listed, instead of blaming the credential; so does an
// async call of one, instead of sending the caller to call it without
// --async, which fails the same way.
func TestCallSubjectNotGranted(t *testing.T) {
	url, creds := natsWithCreds(t, func(userKey string) []string {
		return []string{"orders.v1.create", "orders.v1.get", asyncSubjectPrefix + userKey + ".orders.v1.import"}
	})
	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"typo", []string{"orders.v1.creat", `{"customer":"ACME","amount":250}`}, "orders.v1.creat is not a route you may call: sqlgate routes lists them"},
		{"async_typo", []string{"--async", "orders.v1.imprt", "{}"}, "orders.v1.imprt is not a route you may call: sqlgate routes lists them"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"call", "--creds", creds, "--nats", url, "--timeout", "10s"}, tc.args...)
			code, _, errOut := c.run("", args...)
			if code != 1 || !strings.HasSuffix(strings.TrimSpace(errOut), tc.want) {
				t.Errorf("sqlgate %q: exit %d, %s; want it to end with %q", args, code, errOut, tc.want)
			}
		})
	}
}
