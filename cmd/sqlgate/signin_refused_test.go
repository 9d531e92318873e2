package main

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/web/api"
)

// refusingBroker answers every API request 401 with message, as a broker
// that does not accept the bearer token does.
func refusingBroker(message string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"unauthenticated","message":"` + message + `"}}`))
	})
}

// TestBrokerRefusedSignInSaysLogin: a sign-in that has not expired here but
// that the broker refuses (made with an earlier sqlgated dev, or another
// broker) says so and to run sqlgate login, instead of the broker's
// "authentication required or token invalid (HTTP 401)"; a refusal with
// its own reason (offboarding) keeps it.
func TestBrokerRefusedSignInSaysLogin(t *testing.T) {
	c := signedInCLI(t, refusingBroker("authentication required or token invalid"))
	const want = "the broker refused your sign-in (it may come from an earlier sqlgated or another broker): run sqlgate login"
	for _, args := range [][]string{{"whoami"}, {"routes"}, {"creds", "nats"}, {"leases", "list"}} {
		code, _, errOut := c.run("", args...)
		if code != 1 || errOut != "sqlgate "+strings.Join(args, " ")+": "+want+"\n" {
			t.Errorf("sqlgate %s refused by the broker: exit %d, %q; want %q", strings.Join(args, " "), code, errOut, want)
		}
	}

	const revoked = "your credentials were revoked at 2026-01-02T03:04:05Z and your sign-in is older; sign in again"
	c = signedInCLI(t, refusingBroker(revoked))
	code, _, errOut := c.run("", "whoami")
	if want := "the broker refused your sign-in: " + revoked + ": run sqlgate login"; code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("whoami of a revoked sign-in: exit %d, %q; want %q", code, errOut, want)
	}

	// Callers that branch on the status still see it.
	cl, err := (&env{home: c.home, getenv: func(string) string { return "" }}).client("")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.WhoAmI(t.Context())
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Errorf("WhoAmI refused = %v, want it to wrap the 401 StatusError", err)
	}
}
