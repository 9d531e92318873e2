package main

import (
	"strings"
	"testing"
	"time"
)

// TestUnreachableSaysWhatToCheck: with nothing listening at the broker or
// at NATS (sqlgated not running), the CLI says what to check, not only that
// the connection was refused: that sqlgated runs there (make run starts it)
// and that the URL is right.
func TestUnreachableSaysWhatToCheck(t *testing.T) {
	broker := closedPort(t)
	c := signedInAt(t, "http://"+broker)
	for _, args := range [][]string{{"whoami"}, {"routes"}, {"creds", "nats"}} {
		code, _, errOut := c.run("", args...)
		want := "broker unreachable at " + broker
		hint := ": is sqlgated running there (make run starts it), and is the broker URL right?"
		if code != 1 || !strings.Contains(errOut, want) || !strings.HasSuffix(strings.TrimSpace(errOut), hint) {
			t.Errorf("sqlgate %s with no broker: exit %d, %q; want %q ending with %q", strings.Join(args, " "), code, errOut, want, hint)
		}
	}

	creds, _ := writeCreds(t, time.Now().Add(time.Hour))
	nats := "nats://" + closedPort(t)
	code, _, errOut := c.run("", "call", "--creds", creds, "--nats", nats, "orders.v1.get", `{"id":1}`)
	want := "connect to NATS at " + nats + ": nats: no servers available for connection: is sqlgated running there (make run starts it), and is the NATS URL right?"
	if code != 1 || strings.TrimSpace(errOut) != "sqlgate call: "+want {
		t.Errorf("call with no NATS server: exit %d, %q; want %q", code, errOut, want)
	}
}
