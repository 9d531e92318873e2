package devidp

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

var errNoBearer = errors.New("missing bearer token")

// verifyOwn checks a token this provider signed: signature by a published
// key, issuer, expiry. It returns the claims.
func (p *Provider) verifyOwn(raw string) (map[string]any, error) {
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, errors.New("malformed token")
	}
	kid := jws.Signatures[0].Header.KeyID
	p.mu.Lock()
	var pub any
	for _, k := range p.keys {
		if k.kid == kid {
			pub = &k.priv.PublicKey
		}
	}
	p.mu.Unlock()
	if pub == nil {
		return nil, errors.New("unknown key")
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		return nil, errors.New("bad signature")
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, errors.New("malformed claims")
	}
	if c["iss"] != p.cfg.issuer {
		return nil, errors.New("foreign token")
	}
	exp, ok := c["exp"].(float64)
	if !ok || float64(p.cfg.now().Unix()) >= exp {
		return nil, errors.New("expired token")
	}
	return c, nil
}

// userFromClaims finds the user an access token was issued to.
func (p *Provider) userFromClaims(c map[string]any) *User {
	var oid string
	switch p.cfg.shape {
	case ShapeEntra:
		oid, _ = c["oid"].(string)
	case ShapeOkta:
		oid, _ = c["uid"].(string)
	default:
		oid, _ = c["sub"].(string)
	}
	for _, u := range p.users {
		if oid != "" && u.ObjectID == oid {
			return u
		}
	}
	return nil
}

func (p *Provider) serveUserinfo(w http.ResponseWriter, r *http.Request) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request"`)
		http.Error(w, errNoBearer.Error(), http.StatusUnauthorized)
		return
	}
	c, err := p.verifyOwn(raw)
	if err == nil {
		// Access tokens only: an ID token is addressed to a client.
		if aud, _ := c["aud"].(string); p.clients[aud] != nil && !slices.ContainsFunc(p.cfg.clients, func(cl Client) bool { return cl.Audience == aud }) {
			err = errors.New("not an access token")
		}
	}
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "invalid token", http.StatusUnauthorized)
		return
	}
	out := map[string]any{"sub": c["sub"]}
	if u := p.userFromClaims(c); u != nil {
		out["name"] = u.Name
		out["preferred_username"] = login(u)
		if u.Email != "" {
			out["email"] = u.Email
			out["email_verified"] = true
		}
		if len(u.Groups) > 0 {
			out["groups"] = p.groupClaim(u)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
