package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
	"github.com/sqlgate/sqlgate/identity/oidc"
	"github.com/sqlgate/sqlgate/web/api"
)

// scopeRecorder passes requests to a provider, recording the scope of each
// client credentials token request as the provider receives it ("-" when
// the request has no scope parameter).
type scopeRecorder struct {
	next   http.Handler
	mu     sync.Mutex
	scopes []string
}

func (s *scopeRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token") {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if form, err := url.ParseQuery(string(body)); err == nil && form.Get("grant_type") == oidc.GrantClientCredentials {
			scope := form.Get("scope")
			if !form.Has("scope") {
				scope = "-"
			}
			s.mu.Lock()
			s.scopes = append(s.scopes, scope)
			s.mu.Unlock()
		}
	}
	s.next.ServeHTTP(w, r)
}

// take returns the recorded scopes and forgets them.
func (s *scopeRecorder) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.scopes
	s.scopes = nil
	return got
}

// TestLoginClientCredentialsScope: sqlgate login --client-credentials
// requests, as the provider sees it, the broker's service scopes, else
// <resource>/.default derived from an Entra API scope among its user scopes
// (never api://<app>/access, which Entra refuses for client credentials),
// else the broker's custom scopes; --scope overrides them, and a renewal
// asks for the same scopes again. Scopes a service cannot ask for are
// refused before any request.
func TestLoginClientCredentialsScope(t *testing.T) {
	secret := rand.Text()
	rec := &scopeRecorder{}
	mux := http.NewServeMux()
	rec.next = mux
	idpSrv := httptest.NewServer(rec)
	t.Cleanup(idpSrv.Close)
	idp := devidptest.Mount(t, idpSrv, mux, "/idp", devidp.WithClients(devidp.Client{ID: "svc", Secret: secret}))

	var (
		mu   sync.Mutex
		disc api.Discovery
	)
	broker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		mu.Lock()
		d := disc
		mu.Unlock()
		switch r.URL.Path {
		case api.Prefix + "/config":
			_ = json.NewEncoder(w).Encode(d)
		case api.Prefix + "/whoami":
			_ = json.NewEncoder(w).Encode(api.WhoAmI{Issuer: idp.Issuer(), Subject: "svc"})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(broker.Close)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	entra := []string{"openid", "profile", "offline_access", "api://11111111-1111-1111-1111-111111111111/access"}
	login := []string{"login", "--client-credentials", "--client-id", "svc", "--client-secret-file", secretFile}

	tests := []struct {
		name                  string
		scopes, serviceScopes []string
		flags                 []string
		want                  string
	}{
		{"entra_derived", entra, nil, nil, "api://11111111-1111-1111-1111-111111111111/.default"},
		{"okta_custom_scopes", []string{"openid", "offline_access", "sqlgate", "sqlgate.call"}, nil, nil, "sqlgate sqlgate.call"},
		{"broker_service_scopes", entra, []string{"api://sqlgate/.default"}, nil, "api://sqlgate/.default"},
		{"flag_overrides", entra, []string{"api://sqlgate/.default"}, []string{"--scope", "api://22222222-2222-2222-2222-222222222222/.default"}, "api://22222222-2222-2222-2222-222222222222/.default"},
		{"flag_repeated_and_commas", entra, nil, []string{"--scope", "sqlgate.call,sqlgate.read", "--scope", "sqlgate.audit"}, "sqlgate.call sqlgate.read sqlgate.audit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			disc = api.Discovery{Issuer: idp.Issuer(), ClientID: "sqlgate-cli", Scopes: tc.scopes, ServiceScopes: tc.serviceScopes, NATSURL: "nats://127.0.0.1:4222"}
			mu.Unlock()
			rec.take()
			c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": broker.URL}}
			c.must("", slices.Concat(login, tc.flags)...)
			if got := rec.take(); len(got) != 1 || got[0] != tc.want {
				t.Errorf("the provider saw scopes %q, want [%q]", got, tc.want)
			}

			// The token expires: the renewal asks for the same scopes, even
			// after the broker changed its own.
			e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, home: c.home, getenv: func(string) string { return "" }}
			tok, err := e.tokens().Load(tokenName)
			if err != nil {
				t.Fatal(err)
			}
			tok.Expiry = time.Now().Add(-time.Minute)
			if err := e.tokens().Save(tokenName, tok); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			disc.Scopes, disc.ServiceScopes = nil, []string{"changed"}
			mu.Unlock()
			if _, err := e.accessToken(t.Context()); err != nil {
				t.Fatalf("renewal: %v", err)
			}
			if got := rec.take(); len(got) != 1 || got[0] != tc.want {
				t.Errorf("the renewal asked for scopes %q, want [%q]", got, tc.want)
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		mu.Lock()
		disc = api.Discovery{Issuer: idp.Issuer(), ClientID: "sqlgate-cli", Scopes: entra, NATSURL: "nats://127.0.0.1:4222"}
		mu.Unlock()
		rec.take()
		for _, tc := range []struct {
			args []string
			want string
		}{
			{slices.Concat(login, []string{"--scope", "openid"}), "--scope: scope openid is an OpenID Connect scope"},
			{slices.Concat(login, []string{"--scope", "api://sqlgate/.default,offline_access"}), "--scope: scope offline_access is an OpenID Connect scope"},
			{slices.Concat(login, []string{"--scope", "a b"}), `--scope: scope "a b" contains whitespace`},
			{slices.Concat(login, []string{"--scope", ""}), "--scope: empty scope"},
			{slices.Concat(login, []string{"--scope", "sqlgate,,x"}), "--scope: empty scope"},
			{[]string{"login", "--device", "--scope", "sqlgate"}, "--scope is for --client-credentials"},
		} {
			c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": broker.URL}}
			if code, _, errOut := c.run("", tc.args...); code != 2 || !strings.Contains(errOut, tc.want) {
				t.Errorf("sqlgate %q: exit %d, %q; want exit 2 and %q", tc.args, code, errOut, tc.want)
			}
		}
		// A broker publishing a scope a service cannot ask for: refused
		// before any request too.
		mu.Lock()
		disc.ServiceScopes = []string{"openid"}
		mu.Unlock()
		c := &cli{t: t, home: t.TempDir(), env: map[string]string{"SQLGATE_BROKER": broker.URL}}
		if code, _, errOut := c.run("", login...); code != 1 || !strings.Contains(errOut, "scope openid is an OpenID Connect scope") {
			t.Errorf("broker service_scopes [openid]: exit %d, %q; want a refusal", code, errOut)
		}
		if got := rec.take(); len(got) != 0 {
			t.Errorf("the provider saw client credentials requests with scopes %q, want none", got)
		}
	})
}
