package api_test

import (
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/web/api"
)

// TestCheckBrokerURL: a broker URL a client cannot take is refused as
// NewClient refuses it; a host and port without a scheme is shown the URL
// meant (http on loopback, else https).
func TestCheckBrokerURL(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"http://127.0.0.1:8470", ""},
		{"https://sqlgate.example.com/", ""},
		{"127.0.0.1:8470", `broker URL "127.0.0.1:8470" must be an http(s) URL, like http://127.0.0.1:8470`},
		{"localhost:8470", `broker URL "localhost:8470" must be an http(s) URL, like http://localhost:8470`},
		{"sqlgate.example.com", `broker URL "sqlgate.example.com" must be an http(s) URL, like https://sqlgate.example.com`},
		{"ftp://sqlgate.example.com", `broker URL "ftp://sqlgate.example.com" must be an http(s) URL`},
		{"/sqlgate", `broker URL "/sqlgate" must be an http(s) URL`},
		{"http://sqlgate.example.com", "use https"},
	} {
		err := api.CheckBrokerURL(tc.raw)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckBrokerURL(%q) = %v, want nil", tc.raw, err)
		case tc.want != "" && (err == nil || !strings.HasSuffix(err.Error(), tc.want)):
			t.Errorf("CheckBrokerURL(%q) = %v, want it to end with %q", tc.raw, err, tc.want)
		}
		if _, nerr := api.NewClient(tc.raw, nil); (nerr == nil) != (err == nil) {
			t.Errorf("NewClient(%q) = %v, CheckBrokerURL = %v; want both to agree", tc.raw, nerr, err)
		}
	}
}
