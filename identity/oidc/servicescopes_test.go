package oidc

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sqlgate/sqlgate/identity/devidp"
	"github.com/sqlgate/sqlgate/identity/devidp/devidptest"
)

// tokenRequests records the client credentials requests a provider
// receives, as it sees them.
type tokenRequests struct {
	mu    sync.Mutex
	forms []url.Values
}

// record wraps next, recording the form of every client credentials token
// request before passing it on unchanged.
func (tr *tokenRequests) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if form, err := url.ParseQuery(string(body)); err == nil && form.Get("grant_type") == GrantClientCredentials {
				tr.mu.Lock()
				tr.forms = append(tr.forms, form)
				tr.mu.Unlock()
			}
		}
		next.ServeHTTP(w, r)
	})
}

// take returns the recorded requests and forgets them.
func (tr *tokenRequests) take() []url.Values {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	f := tr.forms
	tr.forms = nil
	return f
}

// TestServiceScopesSent checks the scope a client credentials sign-in
// sends, as the provider sees it: Entra's <resource>/.default derived from
// an api:// or https:// API scope, an Okta custom server's scopes kept,
// ServiceScopes as given; and that scopes a service cannot ask for are
// refused before any request.
func TestServiceScopesSent(t *testing.T) {
	t.Parallel()
	secret := rand.Text()
	var rec tokenRequests
	mux := http.NewServeMux()
	srv := httptest.NewServer(rec.record(mux))
	t.Cleanup(srv.Close)
	idp := devidptest.Mount(t, srv, mux, "/idp", devidp.WithClients(devidp.Client{ID: "svc", Secret: secret}))

	entra := []string{"openid", "profile", "offline_access", "api://11111111-1111-1111-1111-111111111111/access"}
	tests := []struct {
		name                  string
		scopes, serviceScopes []string
		want                  string // the scope form value; "-" for none
	}{
		{"entra_api_scope", entra, nil, "api://11111111-1111-1111-1111-111111111111/.default"},
		{"entra_https_scopes", []string{"openid", "https://contoso.example/sqlgate/access", "https://contoso.example/sqlgate/read", "email"}, nil, "https://contoso.example/sqlgate/.default"},
		{"entra_default_given", []string{"openid", "api://sqlgate/.default"}, nil, "api://sqlgate/.default"},
		{"okta_custom_scopes", []string{"openid", "profile", "offline_access", "groups", "sqlgate", "sqlgate.call"}, nil, "sqlgate sqlgate.call"},
		{"service_scopes_win", entra, []string{"api://22222222-2222-2222-2222-222222222222/.default"}, "api://22222222-2222-2222-2222-222222222222/.default"},
		{"oidc_scopes_only", nil, nil, "-"},
	}
	for _, tc := range tests {
		c, err := OpenClient(t.Context(), ClientConfig{Issuer: idp.Issuer(), ClientID: "svc", ClientSecret: secret, Scopes: tc.scopes, ServiceScopes: tc.serviceScopes})
		if err != nil {
			t.Fatalf("%s: OpenClient: %v", tc.name, err)
		}
		if _, err := c.LoginClientCredentials(t.Context()); err != nil {
			t.Errorf("%s: LoginClientCredentials: %v", tc.name, err)
			continue
		}
		forms := rec.take()
		if len(forms) != 1 {
			t.Errorf("%s: the provider saw %d client credentials requests, want 1", tc.name, len(forms))
			continue
		}
		got, sent := forms[0].Get("scope"), forms[0].Has("scope")
		if !sent {
			got = "-"
		}
		if got != tc.want {
			t.Errorf("%s: the provider saw scope=%q, want %q", tc.name, got, tc.want)
		}
	}

	for _, bad := range [][]string{{"openid"}, {"api://sqlgate/.default", "offline_access"}, {"a b"}, {""}, {`quo"te`}, {"sqlgate", "é"}} {
		c, err := OpenClient(t.Context(), ClientConfig{Issuer: idp.Issuer(), ClientID: "svc", ClientSecret: secret, ServiceScopes: bad})
		if err != nil {
			t.Fatalf("OpenClient: %v", err)
		}
		if _, err := c.LoginClientCredentials(t.Context()); err == nil || !strings.Contains(err.Error(), "scope") {
			t.Errorf("ServiceScopes %q: LoginClientCredentials = %v, want a scope refused", bad, err)
		}
		if forms := rec.take(); len(forms) != 0 {
			t.Errorf("ServiceScopes %q: the provider saw %d requests, want none", bad, len(forms))
		}
	}
}

func TestDefaultServiceScopes(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want []string }{
		{nil, nil},
		{DefaultScopes, nil},
		{[]string{"api://app/access", "api://app/read", "api://other/x"}, []string{"api://app/.default", "api://other/.default"}},
		// A resource's scope wins over custom ones: Entra grants a
		// service only <resource>/.default.
		{[]string{"sqlgate", "api://app/access"}, []string{"api://app/.default"}},
		{[]string{"https://host/name"}, []string{"https://host/.default"}},
		// Not of the form <resource>/<name>: kept as they are.
		{[]string{"api://app", "api://app/", "https://", "http://host/x"}, []string{"api://app", "api://app/", "https://", "http://host/x"}},
		{[]string{"sqlgate", "sqlgate", "openid"}, []string{"sqlgate"}},
	}
	for _, tc := range tests {
		if got := DefaultServiceScopes(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("DefaultServiceScopes(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
