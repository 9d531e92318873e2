package devidp_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
)

func fuzzProvider(f *testing.F) *devidp.Provider {
	p, err := devidp.New(devidp.WithIssuer("http://127.0.0.1:9/idp"), devidp.WithKey(devidptest.Key(f)),
		devidp.WithUsers(alice, bob), devidp.WithClients(cli, web, svc))
	if err != nil {
		f.Fatal(err)
	}
	return p
}

// FuzzAuthorize sends arbitrary authorization requests. The provider must
// never redirect anywhere but a registered redirect URI.
func FuzzAuthorize(f *testing.F) {
	p := fuzzProvider(f)
	_, ch := pkce()
	f.Add(authParams(cli.ID, "http://127.0.0.1:5000/callback", ch).Encode(), "")
	f.Add(authParams(cli.ID, "https://evil.example/callback", ch).Encode(), "username=alice")
	f.Add(authParams(web.ID, "https://sqlgate.example.com/auth/callback", "").Encode(), "action=deny")
	f.Add("client_id=sqlgate-cli&redirect_uri=http://127.0.0.1:1/callback%23frag&response_type=token", "")
	f.Fuzz(func(t *testing.T, query, form string) {
		var req *http.Request
		if form == "" {
			req = httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9/idp/authorize", nil)
		} else {
			req = httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9/idp/authorize", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		req.URL.RawQuery = query
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("status %d", w.Code)
		}
		if w.Code != http.StatusFound {
			return
		}
		loc, err := url.Parse(w.Header().Get("Location"))
		if err != nil {
			t.Fatalf("bad Location: %v", err)
		}
		ok := false
		for _, c := range []devidp.Client{cli, web, svc} {
			for _, ru := range c.RedirectURIs {
				reg, _ := url.Parse(ru)
				if loc.Scheme == reg.Scheme && loc.Hostname() == reg.Hostname() && loc.Path == reg.Path &&
					(loc.Port() == reg.Port() || reg.Hostname() == "127.0.0.1") {
					ok = true
				}
			}
		}
		if !ok {
			t.Fatalf("redirected to unregistered %s", loc)
		}
		if loc.Query().Get("code") != "" && loc.Query().Get("error") != "" {
			t.Fatalf("redirect carries both a code and an error")
		}
	})
}

// FuzzTokenEndpoint posts arbitrary forms and credentials. It must answer
// with JSON, never a server error, and issue tokens only to authenticated
// requests.
func FuzzTokenEndpoint(f *testing.F) {
	p := fuzzProvider(f)
	f.Add("grant_type=password&username=alice&password="+url.QueryEscape(alicePassword)+"&client_id=sqlgate-cli", "", "")
	f.Add("grant_type=client_credentials&scope=x/.default", svc.ID, svcSecret)
	f.Add("grant_type=refresh_token&refresh_token=abc&client_id=sqlgate-cli", "", "")
	f.Add("grant_type=authorization_code&code=x&code_verifier=y&client_id=sqlgate-cli", "", "")
	f.Add("grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=z&client_id=sqlgate-cli", "", "")
	f.Add("grant_type=password&username=alice&password=guess&client_id=sqlgate-web&client_secret=x", "sqlgate-web", "x")
	f.Fuzz(func(t *testing.T, form, user, pass string) {
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9/idp/token", strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" || pass != "" {
			req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("status %d, non-JSON body", w.Code)
		}
		switch w.Code {
		case http.StatusOK:
			if body["access_token"] == nil {
				t.Fatalf("200 without an access token")
			}
			v, _ := url.ParseQuery(form)
			secretOK := (user == svc.ID && pass == svcSecret) || (user == web.ID && pass == webSecret) ||
				v.Get("client_secret") == svcSecret || v.Get("client_secret") == webSecret
			pwOK := v.Get("password") == alicePassword || v.Get("password") == bobPassword
			if !secretOK && !pwOK {
				t.Fatalf("tokens issued without a known secret or password")
			}
		case http.StatusBadRequest, http.StatusUnauthorized:
			if body["error"] == nil {
				t.Fatalf("error status without an error code")
			}
		default:
			t.Fatalf("status %d", w.Code)
		}
	})
}
