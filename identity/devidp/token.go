package devidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// maxFormBytes bounds every form body the provider reads.
const maxFormBytes = 64 << 10

// oauthError is an RFC 6749 section 5.2 error response.
type oauthError struct {
	status int
	code   string
	desc   string
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func errInvalidRequest(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_request", desc}
}

func errInvalidGrant(desc string) *oauthError {
	return &oauthError{http.StatusBadRequest, "invalid_grant", desc}
}

func errInvalidClient(desc string) *oauthError {
	return &oauthError{http.StatusUnauthorized, "invalid_client", desc}
}

func (p *Provider) writeOAuthError(w http.ResponseWriter, r *http.Request, e *oauthError) {
	if e.status == http.StatusUnauthorized {
		if _, _, basic := r.BasicAuth(); basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="devidp"`)
		}
	}
	w.Header().Set("Pragma", "no-cache")
	p.log.InfoContext(r.Context(), "devidp request refused", "path", r.URL.Path, "error", e.code, "description", e.desc)
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.desc})
}

// tokenResponse is an RFC 6749 section 5.1 token response.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// authCode is an issued, not yet redeemed authorization code.
type authCode struct {
	clientID    string
	redirectURI string
	challenge   string
	username    string
	scopes      []string
	nonce       string
	acrs        requestedACRS
	authTime    time.Time
	expires     time.Time
}

// refreshGrant is an issued refresh token (stored by hash). Rotation marks
// it used; presenting a used token again revokes its whole family.
type refreshGrant struct {
	clientID string
	username string
	scopes   []string
	authTime time.Time
	mfa      bool
	family   string
	expires  time.Time
	used     bool
}

func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return hex.EncodeToString(sum[:])
}

// secretEqual compares two secrets in constant time (hashing first so the
// comparison does not leak the length either).
func secretEqual(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// checkPassword reports whether password is the user's, in constant time
// whether or not the user exists.
func (p *Provider) checkPassword(username, password string) (*User, bool) {
	u, ok := p.users[username]
	want := "\x00devidp-no-such-user"
	if ok {
		want = u.Password
	}
	match := secretEqual(password, want)
	if !ok || !match {
		return nil, false
	}
	return u, true
}

func parseScope(s string) []string {
	var out []string
	for f := range strings.FieldsSeq(s) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

func parseForm(w http.ResponseWriter, r *http.Request) *oauthError {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return errInvalidRequest("malformed form body")
	}
	return nil
}

// authenticateClient identifies the client of a token or device request
// (client_secret_basic, client_secret_post, or a public client's client_id).
func (p *Provider) authenticateClient(r *http.Request) (*Client, *oauthError) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, errInvalidClient("malformed basic credentials")
		}
		if r.PostForm.Get("client_secret") != "" {
			return nil, errInvalidRequest("more than one client authentication method")
		}
		if fid := r.PostForm.Get("client_id"); fid != "" && fid != id {
			return nil, errInvalidRequest("client_id does not match the authenticated client")
		}
	} else {
		id = r.PostForm.Get("client_id")
		secret = r.PostForm.Get("client_secret")
	}
	if id == "" {
		return nil, errInvalidClient("client authentication required")
	}
	cl, ok := p.clients[id]
	if !ok {
		return nil, errInvalidClient("unknown client")
	}
	if cl.Secret != "" {
		if !secretEqual(secret, cl.Secret) {
			return nil, errInvalidClient("client authentication failed")
		}
	} else if secret != "" {
		return nil, errInvalidClient("public client must not send a secret")
	}
	return cl, nil
}

func (c *Client) allows(grantType string) bool {
	if len(c.Grants) > 0 && !slices.Contains(c.Grants, grantType) {
		return false
	}
	return grantType != grantClientCredentials || c.Secret != ""
}

func (p *Provider) serveToken(w http.ResponseWriter, r *http.Request) {
	if e := parseForm(w, r); e != nil {
		p.writeOAuthError(w, r, e)
		return
	}
	cl, e := p.authenticateClient(r)
	if e != nil {
		p.writeOAuthError(w, r, e)
		return
	}
	gt := r.PostForm.Get("grant_type")
	if !slices.Contains(allGrants, gt) {
		p.writeOAuthError(w, r, &oauthError{http.StatusBadRequest, "unsupported_grant_type", "unsupported grant type"})
		return
	}
	if !cl.allows(gt) {
		p.writeOAuthError(w, r, &oauthError{http.StatusBadRequest, "unauthorized_client", "the client may not use this grant type"})
		return
	}
	var resp *tokenResponse
	switch gt {
	case grantAuthorizationCode:
		resp, e = p.grantCode(r, cl)
	case grantPassword:
		resp, e = p.grantPassword(r, cl)
	case grantClientCredentials:
		resp, e = p.grantClientCredentials(r, cl)
	case grantRefreshToken:
		resp, e = p.grantRefresh(r, cl)
	case grantDeviceCode:
		resp, e = p.grantDevice(r, cl)
	}
	if e != nil {
		p.writeOAuthError(w, r, e)
		return
	}
	w.Header().Set("Pragma", "no-cache")
	p.log.InfoContext(r.Context(), "devidp token issued", "grant_type", gt, "client_id", cl.ID)
	writeJSON(w, http.StatusOK, resp)
}

func (p *Provider) accessAudience(cl *Client) string {
	if cl.Audience != "" {
		return cl.Audience
	}
	return p.cfg.audience
}

// s256 returns the PKCE S256 challenge of verifier.
func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// validVerifier checks RFC 7636 section 4.1: 43-128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

func (p *Provider) grantCode(r *http.Request, cl *Client) (*tokenResponse, *oauthError) {
	code := r.PostForm.Get("code")
	if code == "" {
		return nil, errInvalidRequest("missing code")
	}
	p.mu.Lock()
	ac := p.codes[code]
	delete(p.codes, code) // single use, whatever happens next
	p.mu.Unlock()
	now := p.cfg.now()
	switch {
	case ac == nil:
		return nil, errInvalidGrant("unknown, already used or expired authorization code")
	case now.After(ac.expires):
		return nil, errInvalidGrant("authorization code expired")
	case ac.clientID != cl.ID:
		return nil, errInvalidGrant("authorization code was issued to another client")
	case r.PostForm.Get("redirect_uri") != ac.redirectURI:
		return nil, errInvalidGrant("redirect_uri does not match the authorization request")
	}
	v := r.PostForm.Get("code_verifier")
	if !validVerifier(v) || !secretEqual(s256(v), ac.challenge) {
		return nil, errInvalidGrant("PKCE verification failed")
	}
	u, ok := p.users[ac.username]
	if !ok {
		return nil, errInvalidGrant("unknown user")
	}
	return p.issue(grant{
		user: u, client: cl, scopes: ac.scopes, nonce: ac.nonce, authTime: ac.authTime,
		mfa: u.MFA, acrs: ac.acrs, audience: p.accessAudience(cl),
	})
}

func (p *Provider) grantPassword(r *http.Request, cl *Client) (*tokenResponse, *oauthError) {
	username := r.PostForm.Get("username")
	password := r.PostForm.Get("password")
	if username == "" || password == "" {
		return nil, errInvalidRequest("missing username or password")
	}
	u, ok := p.checkPassword(username, password)
	if !ok {
		return nil, errInvalidGrant("invalid username or password")
	}
	scopes := parseScope(r.PostForm.Get("scope"))
	if len(scopes) == 0 {
		scopes = []string{"openid"}
	}
	return p.issue(grant{
		user: u, client: cl, scopes: scopes, authTime: p.cfg.now(), audience: p.accessAudience(cl),
	})
}

func (p *Provider) grantClientCredentials(r *http.Request, cl *Client) (*tokenResponse, *oauthError) {
	scopes := parseScope(r.PostForm.Get("scope"))
	aud := p.accessAudience(cl)
	for _, s := range scopes {
		if res, ok := strings.CutSuffix(s, "/.default"); ok && res != "" {
			// Entra style: the resource's .default scope names the audience.
			aud = res
		}
	}
	return p.issue(grant{client: cl, scopes: scopes, audience: aud})
}

func (p *Provider) grantRefresh(r *http.Request, cl *Client) (*tokenResponse, *oauthError) {
	rt := r.PostForm.Get("refresh_token")
	if rt == "" {
		return nil, errInvalidRequest("missing refresh_token")
	}
	// Entra adds acrs to a refreshed token, as to any other, only when
	// the refresh request asks for it: the sign-in's request is not kept.
	acrs, e := p.entraClaimsRequest(r.PostForm)
	if e != nil {
		return nil, e
	}
	next, g, e := p.rotateRefresh(r, cl, hashToken(rt))
	if e != nil {
		return nil, e
	}
	g.acrs = acrs
	return p.signGrant(g, next)
}

// rotateRefresh checks the refresh token of hash h, marks it used and
// records its successor ("" when the new grant has no offline_access) in
// one critical section: a concurrent replay of the same token, which
// revokes the family, either comes after and revokes the successor too, or
// comes first and leaves nothing to rotate.
func (p *Provider) rotateRefresh(r *http.Request, cl *Client, h string) (string, grant, *oauthError) {
	now := p.cfg.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	rg := p.refresh[h]
	switch {
	case rg == nil:
		return "", grant{}, errInvalidGrant("unknown or revoked refresh token")
	case rg.used:
		p.revokeFamilyLocked(rg.family)
		return "", grant{}, errInvalidGrant("refresh token already used; the session is revoked")
	case now.After(rg.expires):
		delete(p.refresh, h)
		return "", grant{}, errInvalidGrant("refresh token expired")
	case rg.clientID != cl.ID:
		return "", grant{}, errInvalidGrant("refresh token was issued to another client")
	}
	u, ok := p.users[rg.username]
	if !ok {
		return "", grant{}, errInvalidGrant("unknown user")
	}
	scopes := rg.scopes
	if s := parseScope(r.PostForm.Get("scope")); len(s) > 0 {
		for _, x := range s {
			if !slices.Contains(rg.scopes, x) {
				return "", grant{}, &oauthError{http.StatusBadRequest, "invalid_scope", "scope exceeds the original grant"}
			}
		}
		scopes = s
	}
	rg.used = true
	g := grant{user: u, client: cl, scopes: scopes, authTime: rg.authTime, mfa: rg.mfa, audience: p.accessAudience(cl)}
	next := ""
	if slices.Contains(scopes, "offline_access") {
		next = p.addRefreshLocked(g, rg.family, now)
	}
	return next, g, nil
}

func (p *Provider) revokeFamilyLocked(family string) {
	for _, h := range p.families[family] {
		delete(p.refresh, h)
	}
	delete(p.families, family)
}

// sign signs claims with the active key.
func (p *Provider) sign(claims map[string]any) (string, error) {
	p.mu.Lock()
	k := p.keys[0]
	p.mu.Unlock()
	return signJWT(k.priv, k.kid, nil, claims)
}

// issue signs the tokens of a grant and records a refresh token, of a new
// family, when the user asked for offline_access.
func (p *Provider) issue(g grant) (*tokenResponse, *oauthError) {
	refresh := ""
	if g.user != nil && slices.Contains(g.scopes, "offline_access") {
		p.mu.Lock()
		refresh = p.addRefreshLocked(g, "", p.cfg.now())
		p.mu.Unlock()
	}
	return p.signGrant(g, refresh)
}

// signGrant signs the tokens of a grant; refresh is the refresh token
// already recorded for it ("" for none).
func (p *Provider) signGrant(g grant, refresh string) (*tokenResponse, *oauthError) {
	now := p.cfg.now()
	at, err := p.sign(p.accessClaims(g, now))
	if err != nil {
		return nil, &oauthError{http.StatusInternalServerError, "server_error", "could not sign the token"}
	}
	resp := &tokenResponse{
		AccessToken: at,
		TokenType:   "Bearer",
		ExpiresIn:   int64(p.cfg.tokenTTL / time.Second),
		Scope:       strings.Join(g.scopes, " "),
	}
	if g.user == nil {
		return resp, nil
	}
	if slices.Contains(g.scopes, "openid") {
		id, err := p.sign(p.idClaims(g, now))
		if err != nil {
			return nil, &oauthError{http.StatusInternalServerError, "server_error", "could not sign the token"}
		}
		resp.IDToken = id
	}
	resp.RefreshToken = refresh
	return resp, nil
}

// addRefreshLocked records a new refresh token for g in family (a new
// family when empty) and returns it.
func (p *Provider) addRefreshLocked(g grant, family string, now time.Time) string {
	rt := randomID(32)
	h := hashToken(rt)
	if family == "" {
		family = randomID(12)
	}
	p.gcLocked(now)
	p.refresh[h] = &refreshGrant{
		clientID: g.client.ID, username: g.user.Username, scopes: slices.Clone(g.scopes),
		authTime: g.authTime, mfa: g.mfa, family: family, expires: now.Add(p.cfg.refreshTTL),
	}
	p.families[family] = append(p.families[family], h)
	return rt
}

// gcLocked drops expired codes, refresh tokens and device grants.
func (p *Provider) gcLocked(now time.Time) {
	for k, c := range p.codes {
		if now.After(c.expires) {
			delete(p.codes, k)
		}
	}
	for k, rg := range p.refresh {
		if now.After(rg.expires) {
			delete(p.refresh, k)
			fam := p.families[rg.family]
			if i := slices.Index(fam, k); i >= 0 {
				fam = slices.Delete(fam, i, i+1)
			}
			if len(fam) == 0 {
				delete(p.families, rg.family)
			} else {
				p.families[rg.family] = fam
			}
		}
	}
	for k, d := range p.devices {
		if now.After(d.expires.Add(time.Minute)) {
			delete(p.devices, k)
			delete(p.userCodes, d.userCode)
		}
	}
}
