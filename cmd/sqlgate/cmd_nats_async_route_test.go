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

// TestCallAsyncOnASyncRoute: `call --async` on a route the credential may
// call only synchronously (the NATS server refuses the publish to
// sqlgate.async.<user key>.<route>) says the route is not async and to call
// it without --async, instead of blaming the credential for a subject the
// user never typed. A refused synchronous call keeps its message.
func TestCallAsyncOnASyncRoute(t *testing.T) {
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

	// A credential that may call orders.v1.create synchronously and
	// orders.v1.import asynchronously, as the broker issues them.
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	seed, _ := user.Seed()
	uc := jwt.NewUserClaims(userPub)
	uc.IssuerAccount = accPub
	uc.Pub.Allow.Add("orders.v1.create", asyncSubjectPrefix+userPub+".orders.v1.import")
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
	creds := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(creds, b, 0o600); err != nil {
		t.Fatal(err)
	}

	c := &cli{t: t, home: t.TempDir(), env: map[string]string{}}
	call := func(args ...string) (int, string) {
		code, _, errOut := c.run("", append([]string{"call", "--creds", creds, "--nats", s.ClientURL(), "--timeout", "10s"}, args...)...)
		return code, errOut
	}
	code, errOut := call("--async", "orders.v1.create", "{}")
	if code != 1 || !strings.Contains(errOut, "orders.v1.create is not an async route (or not granted to you): call it without --async") {
		t.Errorf("call --async of a sync route: exit %d, %s; want it said to call without --async", code, errOut)
	}
	code, errOut = call("orders.v1.delete", "{}")
	if code != 1 || !strings.Contains(errOut, "the NATS server refused to publish to orders.v1.delete: your credential does not allow it") || strings.Contains(errOut, "--async") {
		t.Errorf("call of a route not granted: exit %d, %s; want the credential's refusal", code, errOut)
	}
}
