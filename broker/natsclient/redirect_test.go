package natsclient_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker/natsclient"
	"github.com/sqlgate/sqlgate/web/api"
)

// TestFetchFollowsNoRedirect: a broker answering a credential request with
// a redirect to plain http on the same host gets no bearer token and no
// body there (Go would resend both), even with a caller's own HTTP client;
// the error names the redirect.
func TestFetchFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var leaked []string
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		leaked = append(leaked, r.Method+" "+r.Header.Get("Authorization")+" "+string(b))
		mu.Unlock()
	}))
	defer plain.Close()
	brk := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusTemporaryRedirect
		if r.Method == http.MethodGet {
			code = http.StatusFound
		}
		http.Redirect(w, r, plain.URL+r.URL.Path, code)
	}))
	defer brk.Close()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	cfg := natsclient.FetchConfig{BrokerURL: brk.URL, Token: staticToken(serviceToken), HTTPClient: brk.Client()}
	_, fetchErr := natsclient.FetchCreds(t.Context(), cfg, kp)
	_, whoErr := natsclient.WhoAmI(t.Context(), cfg, serviceToken)
	for name, err := range map[string]error{"creds (307)": fetchErr, "whoami (302)": whoErr} {
		var re *api.RedirectError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), plain.URL) {
			t.Errorf("%s = %v, want a refused redirect naming its target", name, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) != 0 {
		t.Errorf("the redirect target received %q, want nothing", leaked)
	}
}
