package devidp

import (
	"crypto/rsa"
	"fmt"
)

// MintOption adjusts how [Provider.Mint] signs.
type MintOption func(*mintConfig)

type mintConfig struct {
	key    *rsa.PrivateKey
	kid    string
	kidSet bool
	header map[string]any
}

// MintKeyID sets the header's kid (e.g. one the provider never published).
func MintKeyID(kid string) MintOption {
	return func(m *mintConfig) { m.kid, m.kidSet = kid, true }
}

// MintKey signs with another key instead of the provider's (a forgery); the
// kid is that key's thumbprint unless [MintKeyID] says otherwise.
func MintKey(key *rsa.PrivateKey) MintOption {
	return func(m *mintConfig) { m.key = key }
}

// MintHeader sets a JOSE header field; a nil value removes it.
func MintHeader(name string, value any) MintOption {
	return func(m *mintConfig) {
		if m.header == nil {
			m.header = map[string]any{}
		}
		m.header[name] = value
	}
}

// Mint signs claims exactly as given (nothing is added or checked) with the
// provider's active key, as RS256. Tests use it to forge expired, foreign,
// wrongly addressed or malformed tokens that carry a real signature.
func (p *Provider) Mint(claims map[string]any, opts ...MintOption) (string, error) {
	var m mintConfig
	for _, o := range opts {
		o(&m)
	}
	p.mu.Lock()
	active := p.keys[0]
	p.mu.Unlock()
	key, kid := active.priv, active.kid
	if m.key != nil {
		sk, err := newSigningKey(m.key)
		if err != nil {
			return "", err
		}
		key, kid = sk.priv, sk.kid
	}
	if m.kidSet {
		kid = m.kid
	}
	return signJWT(key, kid, m.header, claims)
}

// testClient is the client named in tokens minted without one: the first
// registered client, else a placeholder.
func (p *Provider) testClient() *Client {
	if len(p.cfg.clients) > 0 {
		return p.clients[p.cfg.clients[0].ID]
	}
	return &Client{ID: "devidp-test-client"}
}

func (p *Provider) userGrant(username, audience string) (grant, error) {
	u, ok := p.users[username]
	if !ok {
		return grant{}, fmt.Errorf("devidp: unknown user %q", username)
	}
	if audience == "" {
		audience = p.cfg.audience
	}
	return grant{
		user: u, client: p.testClient(), scopes: []string{"openid", "profile", "email"},
		authTime: p.cfg.now(), mfa: u.MFA, acrs: mintACRS, audience: audience,
	}, nil
}

// AccessTokenClaims returns the claims the token endpoint would put in an
// access token for the user after an interactive sign-in through the first
// registered client, addressed to audience ("" = the provider's audience).
// With the entra shape that sign-in asked for the c1 authentication context
// (as sqlgate's CLI and dashboard do with mfaACRValues: [c1]): a user with
// MFA gets acrs [c1]. The map is the caller's to modify and pass to
// [Provider.Mint].
func (p *Provider) AccessTokenClaims(username, audience string) (map[string]any, error) {
	g, err := p.userGrant(username, audience)
	if err != nil {
		return nil, err
	}
	return p.accessClaims(g, p.cfg.now()), nil
}

// IDTokenClaims returns the claims of an ID token for the user, addressed
// to clientID, carrying nonce when not empty (acrs as [Provider.AccessTokenClaims]).
func (p *Provider) IDTokenClaims(username, clientID, nonce string) (map[string]any, error) {
	g, err := p.userGrant(username, "")
	if err != nil {
		return nil, err
	}
	cl, ok := p.clients[clientID]
	if !ok {
		cl = &Client{ID: clientID}
	}
	g.client, g.nonce = cl, nonce
	return p.idClaims(g, p.cfg.now()), nil
}

// ServiceTokenClaims returns the claims of a client-credentials access
// token of the registered client, addressed to audience ("" = default).
func (p *Provider) ServiceTokenClaims(clientID, audience string) (map[string]any, error) {
	cl, ok := p.clients[clientID]
	if !ok {
		return nil, fmt.Errorf("devidp: unknown client %q", clientID)
	}
	if audience == "" {
		audience = p.accessAudience(cl)
	}
	return p.serviceClaims(grant{client: cl, audience: audience}, p.cfg.now()), nil
}

// TokenFor returns a signed access token for the user, the same claims the
// token endpoint issues ([Provider.AccessTokenClaims]), without HTTP.
func (p *Provider) TokenFor(username, audience string) (string, error) {
	c, err := p.AccessTokenClaims(username, audience)
	if err != nil {
		return "", err
	}
	return p.Mint(c)
}

// IDTokenFor returns a signed ID token for the user ([Provider.IDTokenClaims]).
func (p *Provider) IDTokenFor(username, clientID, nonce string) (string, error) {
	c, err := p.IDTokenClaims(username, clientID, nonce)
	if err != nil {
		return "", err
	}
	return p.Mint(c)
}

// ServiceTokenFor returns a signed client-credentials access token
// ([Provider.ServiceTokenClaims]).
func (p *Provider) ServiceTokenFor(clientID, audience string) (string, error) {
	c, err := p.ServiceTokenClaims(clientID, audience)
	if err != nil {
		return "", err
	}
	return p.Mint(c)
}
