package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestNoRedirectIsFollowed: a broker answering with a redirect (here from
// https to plain http on the same host, which Go would follow with the
// Authorization header, and a 307 with the request body too) gets an error
// naming the redirect, without its password; the other end receives
// nothing: neither the bearer token nor the body.
func TestNoRedirectIsFollowed(t *testing.T) {
	var mu sync.Mutex
	var leaked []string
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		leaked = append(leaked, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	defer plain.Close()
	target := strings.Replace(plain.URL, "http://", "http://admin:hunter2@", 1)
	broker := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusTemporaryRedirect
		if r.Method == http.MethodGet {
			code = http.StatusFound
		}
		http.Redirect(w, r, target+r.URL.Path, code)
	}))
	defer broker.Close()
	c, err := NewClient(broker.URL, func(context.Context) (string, error) { return "SECRET-TOKEN", nil })
	if err != nil {
		t.Fatal(err)
	}
	c.http.Transport.(*http.Transport).TLSClientConfig = broker.Client().Transport.(*http.Transport).TLSClientConfig

	_, postErr := c.NATSCreds(t.Context(), NATSCredsRequest{PublicKey: "UPUBLICKEY"})
	_, getErr := c.WhoAmI(t.Context())
	_, rawErr := c.AuditCheckpoint(t.Context())
	for name, err := range map[string]error{"POST /nats/creds (307)": postErr, "GET /whoami (302)": getErr, "GET /audit/checkpoint (302)": rawErr} {
		var re *RedirectError
		if !errors.As(err, &re) || errors.Is(err, ErrUnreachable) {
			t.Errorf("%s = %v, want a refused redirect", name, err)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "redirect to http://REDACTED@"+strings.TrimPrefix(plain.URL, "http://")+Prefix) || strings.Contains(msg, "hunter2") || strings.Contains(msg, "admin") {
			t.Errorf("%s error = %q, want the Location named without its user name and password", name, msg)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) != 0 {
		t.Errorf("the redirect target received %q, want nothing", leaked)
	}
}

// TestBrokerURLWithoutUserinfo: a broker URL holding a user name and
// password is refused, and the error does not repeat the password.
func TestBrokerURLWithoutUserinfo(t *testing.T) {
	for _, raw := range []string{"https://u:s3cret@sqlgate.example.com", "http://u:s3cret@127.0.0.1:8470", "https://s3cret@sqlgate.example.com", "ftp://u:s3cret@x", "https://u:s3cret@%zz/"} {
		_, err := NewClient(raw, nil)
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("NewClient(%s) = %v, want a refusal without the password", raw, err)
		}
	}
	for raw, want := range map[string]string{
		"https://u:s3cret@host/x":   "https://REDACTED@host/x",
		"https://u:s3cret@%zz/x":    "https://REDACTED@%zz/x",
		"u:s3cret@host":             "REDACTED@host",
		"https://sqlgate.example/a": "https://sqlgate.example/a",
	} {
		if got := RedactURL(raw); got != want {
			t.Errorf("RedactURL(%s) = %s, want %s", raw, got, want)
		}
	}
}
