package api_test

import (
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/web/api"
)

// TestCredentialsOnlyOverTLS: the client refuses to send tokens in clear to
// another host; this machine's loopback may be plain http (the dev mode).
func TestCredentialsOnlyOverTLS(t *testing.T) {
	for _, ok := range []string{"https://sqlgate.example.com", "http://127.0.0.1:8470", "http://localhost:8470", "http://[::1]:8470", "http://127.9.9.9"} {
		if _, err := api.NewClient(ok, nil); err != nil {
			t.Errorf("NewClient(%s): %v", ok, err)
		}
	}
	for _, bad := range []string{"http://sqlgate.example.com", "http://10.0.0.5:8470", "http://localhost.example.com", "http://user:secret@sqlgate.example.com"} {
		_, err := api.NewClient(bad, nil)
		if err == nil || !strings.Contains(err.Error(), "use https") || strings.Contains(err.Error(), "secret") {
			t.Errorf("NewClient(%s) = %v, want a refusal that asks for https and hides the password", bad, err)
		}
	}
	if err := api.RequireTLS("identity provider", "ftp://idp.example.com"); err == nil {
		t.Error("an ftp identity provider was accepted")
	}
}
