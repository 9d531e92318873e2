package devidp

import (
	"crypto/rand"
	"net/http"
	"strings"
	"time"
)

// deviceState is where a device authorization stands.
type deviceState int

const (
	devicePending deviceState = iota
	deviceApproved
	deviceDenied
)

// deviceGrant is an RFC 8628 device authorization in progress.
type deviceGrant struct {
	clientID string
	scopes   []string
	userCode string // normalized: 8 letters, no dash
	expires  time.Time
	interval time.Duration
	lastPoll time.Time
	state    deviceState
	username string
	authTime time.Time
	mfa      bool
	acrs     requestedACRS
}

// userCodeAlphabet has no vowels and no look-alike characters (RFC 8628
// section 6.1).
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

func newUserCode() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = userCodeAlphabet[int(b[i])%len(userCodeAlphabet)]
	}
	return string(b)
}

func formatUserCode(c string) string { return c[:4] + "-" + c[4:] }

// normalizeUserCode upper-cases and drops dashes and spaces, so users may
// type the code as they like.
func normalizeUserCode(c string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, c)
}

func (p *Provider) serveDeviceAuthorization(w http.ResponseWriter, r *http.Request) {
	if e := parseForm(w, r); e != nil {
		p.writeOAuthError(w, r, e)
		return
	}
	cl, e := p.authenticateClient(r)
	if e != nil {
		p.writeOAuthError(w, r, e)
		return
	}
	if !cl.allows(grantDeviceCode) {
		p.writeOAuthError(w, r, &oauthError{http.StatusBadRequest, "unauthorized_client", "the client may not use the device authorization grant"})
		return
	}
	scopes := parseScope(r.PostForm.Get("scope"))
	if len(scopes) == 0 {
		scopes = []string{"openid"}
	}
	acrs, e := p.entraClaimsRequest(r.PostForm)
	if e != nil {
		p.writeOAuthError(w, r, e)
		return
	}
	now := p.cfg.now()
	dc := randomID(32)
	d := &deviceGrant{
		clientID: cl.ID, scopes: scopes, acrs: acrs, expires: now.Add(p.cfg.deviceTTL), interval: p.cfg.deviceInterval,
	}
	p.mu.Lock()
	p.gcLocked(now)
	for {
		d.userCode = newUserCode()
		if _, taken := p.userCodes[d.userCode]; !taken {
			break
		}
	}
	p.devices[hashToken(dc)] = d
	p.userCodes[d.userCode] = d
	p.mu.Unlock()
	verify := p.cfg.issuer + pathDevice
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code":               dc,
		"user_code":                 formatUserCode(d.userCode),
		"verification_uri":          verify,
		"verification_uri_complete": verify + "?user_code=" + formatUserCode(d.userCode),
		"expires_in":                int64(p.cfg.deviceTTL / time.Second),
		"interval":                  int64(p.cfg.deviceInterval / time.Second),
	})
}

func (p *Provider) grantDevice(r *http.Request, cl *Client) (*tokenResponse, *oauthError) {
	dc := r.PostForm.Get("device_code")
	if dc == "" {
		return nil, errInvalidRequest("missing device_code")
	}
	h := hashToken(dc)
	now := p.cfg.now()
	p.mu.Lock()
	d := p.devices[h]
	if d == nil || d.clientID != cl.ID {
		p.mu.Unlock()
		return nil, errInvalidGrant("unknown device code")
	}
	if now.After(d.expires) {
		delete(p.devices, h)
		delete(p.userCodes, d.userCode)
		p.mu.Unlock()
		return nil, &oauthError{http.StatusBadRequest, "expired_token", "the device code expired"}
	}
	switch d.state {
	case deviceDenied:
		delete(p.devices, h)
		delete(p.userCodes, d.userCode)
		p.mu.Unlock()
		return nil, &oauthError{http.StatusBadRequest, "access_denied", "the user denied the request"}
	case devicePending:
		var e *oauthError
		if !d.lastPoll.IsZero() && now.Sub(d.lastPoll) < d.interval {
			d.interval += 5 * time.Second // RFC 8628 section 3.5
			e = &oauthError{http.StatusBadRequest, "slow_down", "polling too fast"}
		} else {
			e = &oauthError{http.StatusBadRequest, "authorization_pending", "the user has not completed the sign-in yet"}
		}
		d.lastPoll = now
		p.mu.Unlock()
		return nil, e
	}
	delete(p.devices, h)
	delete(p.userCodes, d.userCode)
	p.mu.Unlock()
	u, ok := p.users[d.username]
	if !ok {
		return nil, errInvalidGrant("unknown user")
	}
	return p.issue(grant{
		user: u, client: cl, scopes: d.scopes, authTime: d.authTime, mfa: d.mfa, acrs: d.acrs, audience: p.accessAudience(cl),
	})
}

func (p *Provider) renderDevice(w http.ResponseWriter, status int, userCode, username, errMsg string) {
	setPageHeaders(w, status)
	_ = pageTemplates.ExecuteTemplate(w, "device", map[string]any{
		"Title": "Device sign-in", "Action": p.cfg.issuer + pathDevice,
		"UserCode": userCode, "Username": username, "Error": errMsg,
	})
}

func (p *Provider) serveDevicePage(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		p.renderDevice(w, http.StatusOK, r.URL.Query().Get("user_code"), "", "")
		return
	}
	if e := parseForm(w, r); e != nil {
		p.renderError(w, http.StatusBadRequest, e.desc)
		return
	}
	f := r.PostForm
	code := normalizeUserCode(f.Get("user_code"))
	username := f.Get("username")
	now := p.cfg.now()
	p.mu.Lock()
	d := p.userCodes[code]
	if d == nil || d.state != devicePending || now.After(d.expires) {
		p.mu.Unlock()
		p.renderDevice(w, http.StatusBadRequest, f.Get("user_code"), username, "That code is not valid or has expired.")
		return
	}
	p.mu.Unlock()
	if f.Get("action") == "deny" {
		p.mu.Lock()
		d.state = deviceDenied
		p.mu.Unlock()
		p.renderMessage(w, http.StatusOK, "Request denied", "The device was not signed in. You may close this window.", "err")
		return
	}
	u, ok := p.checkPassword(username, f.Get("password"))
	if !ok {
		p.renderDevice(w, http.StatusUnauthorized, f.Get("user_code"), username, "Invalid username or password.")
		return
	}
	p.mu.Lock()
	if d.state != devicePending {
		p.mu.Unlock()
		p.renderDevice(w, http.StatusBadRequest, f.Get("user_code"), username, "That code is not valid or has expired.")
		return
	}
	d.state = deviceApproved
	d.username = u.Username
	d.authTime = now
	d.mfa = u.MFA
	p.mu.Unlock()
	p.log.InfoContext(r.Context(), "devidp device sign-in", "client_id", d.clientID, "username", u.Username)
	p.renderMessage(w, http.StatusOK, "Device signed in", "You are signed in on your device. You may close this window.", "ok")
}
