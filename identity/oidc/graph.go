package oidc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// maxGraphPages and maxGraphBytes bound one group lookup.
const (
	maxGraphPages = 20
	maxGraphBytes = 4 << 20
)

// graphClient reads a user's group memberships from Microsoft Graph
// (POST /v1.0/users/{oid}/getMemberObjects, which needs the application
// permissions User.ReadBasic.All and GroupMember.Read.All; for a service
// principal /servicePrincipals/{oid}/getMemberObjects, which needs
// Application.Read.All) with an app token obtained through client
// credentials, one token source per tenant.
type graphClient struct {
	base     string
	tokenURL string // may contain {tenantid}
	scope    string
	clientID string
	secret   string
	secOnly  bool
	timeout  time.Duration
	http     *http.Client

	mu      sync.Mutex
	sources map[string]oauth2.TokenSource
}

func newGraphClient(o OverageConfig, secret string, hc *http.Client) *graphClient {
	c := *hc
	c.Timeout = time.Duration(o.Timeout)
	return &graphClient{
		base: strings.TrimSuffix(o.GraphURL, "/"), tokenURL: o.TokenURL, scope: o.Scope,
		clientID: o.ClientID, secret: secret, secOnly: o.SecurityEnabledOnly,
		timeout: time.Duration(o.Timeout), http: &c, sources: map[string]oauth2.TokenSource{},
	}
}

// validDirectoryID accepts the characters of Entra object and tenant ids
// (GUIDs), so a claim can never steer the request elsewhere.
func validDirectoryID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
		default:
			return false
		}
	}
	return true
}

func (g *graphClient) source(tenant string) oauth2.TokenSource {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ts, ok := g.sources[tenant]; ok {
		return ts
	}
	cc := clientcredentials.Config{
		ClientID: g.clientID, ClientSecret: g.secret, Scopes: []string{g.scope},
		TokenURL: strings.Replace(g.tokenURL, TenantPlaceholder, tenant, 1),
	}
	// The token source keeps this context for later refreshes: it only
	// carries the HTTP client, whose Timeout bounds each request.
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, g.http)
	ts := cc.TokenSource(ctx)
	g.sources[tenant] = ts
	return ts
}

// memberObjects returns the ids of the groups (and directory roles) the
// user or service principal oid in tenant belongs to, transitively.
func (g *graphClient) memberObjects(ctx context.Context, tenant, oid string, service bool) ([]string, error) {
	if !validDirectoryID(tenant) || !validDirectoryID(oid) {
		return nil, errors.New("graph lookup needs valid tid and oid claims")
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	tok, err := g.source(tenant).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("graph app token: %s", re.ErrorCode)
		}
		return nil, fmt.Errorf("graph app token: %w", err)
	}
	body, _ := json.Marshal(map[string]bool{"securityEnabledOnly": g.secOnly})
	kind := "users"
	if service {
		kind = "servicePrincipals"
	}
	next := g.base + "/v1.0/" + kind + "/" + url.PathEscape(oid) + "/getMemberObjects"
	var ids []string
	for page := 0; next != ""; page++ {
		if page == maxGraphPages {
			return nil, fmt.Errorf("graph lookup: more than %d pages", maxGraphPages)
		}
		method, payload := http.MethodPost, body
		if page > 0 {
			method, payload = http.MethodGet, nil
		}
		var resp struct {
			Value    []string `json:"value"`
			NextLink string   `json:"@odata.nextLink"`
		}
		if err := g.call(ctx, method, next, payload, tok.AccessToken, &resp); err != nil {
			return nil, err
		}
		ids = append(ids, resp.Value...)
		next = ""
		if resp.NextLink != "" {
			if !strings.HasPrefix(resp.NextLink, g.base+"/") {
				return nil, errors.New("graph lookup: next link leaves the Graph endpoint")
			}
			next = resp.NextLink
		}
	}
	return ids, nil
}

func (g *graphClient) call(ctx context.Context, method, u string, body []byte, token string, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("graph request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.http.Do(req)
	if err != nil {
		return fmt.Errorf("graph request: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("graph request: status %s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxGraphBytes)).Decode(out); err != nil {
		return fmt.Errorf("graph response: %w", err)
	}
	return nil
}
