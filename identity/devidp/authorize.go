package devidp

import (
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// authRequest is a validated authorization request.
type authRequest struct {
	client      *Client
	redirectURI string
	scopes      []string
	state       string
	nonce       string
	challenge   string
	acrs        requestedACRS
	values      url.Values // the request parameters, echoed in the form
}

// authParams are the request parameters carried through the login form.
var authParams = []string{
	"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "claims",
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// redirectAllowed reports whether raw is a registered redirect URI of c. For
// a public client (a native app) a registered http loopback URI matches any
// port (RFC 8252 section 7.3); a confidential client's must match exactly,
// since another program on the machine could listen on another port.
func (c *Client) redirectAllowed(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Fragment != "" || u.Scheme == "" || u.Host == "" {
		return false
	}
	for _, reg := range c.RedirectURIs {
		if raw == reg {
			return true
		}
		if c.Secret != "" {
			continue
		}
		ru, err := url.Parse(reg)
		if err != nil || ru.Scheme != "http" || u.Scheme != "http" || !isLoopbackHost(ru.Hostname()) {
			continue
		}
		if u.Hostname() == ru.Hostname() && cleanPath(u.Path) == cleanPath(ru.Path) && u.RawQuery == ru.RawQuery {
			return true
		}
	}
	return false
}

func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// parseAuthRequest validates an authorization request. A bad client or
// redirect URI is reported to the user (page); later problems are
// redirected back to the client, as RFC 6749 section 4.1.2.1 asks.
func (p *Provider) parseAuthRequest(v url.Values) (ar *authRequest, pageErr string, e *oauthError) {
	cl, ok := p.clients[v.Get("client_id")]
	if !ok {
		return nil, "unknown client_id", nil
	}
	ru := v.Get("redirect_uri")
	if ru == "" || !cl.redirectAllowed(ru) {
		return nil, "redirect_uri is not registered for this client", nil
	}
	ar = &authRequest{
		client: cl, redirectURI: ru, scopes: parseScope(v.Get("scope")),
		state: v.Get("state"), nonce: v.Get("nonce"), challenge: v.Get("code_challenge"),
		values: url.Values{},
	}
	for _, k := range authParams {
		if x := v.Get(k); x != "" {
			ar.values.Set(k, x)
		}
	}
	switch {
	case v.Get("response_type") != "code":
		return ar, "", &oauthError{http.StatusBadRequest, "unsupported_response_type", "only response_type=code is supported"}
	case v.Get("code_challenge_method") != "S256" || len(ar.challenge) != 43:
		return ar, "", errInvalidRequest("PKCE with code_challenge_method=S256 is required")
	case !cl.allows(grantAuthorizationCode):
		return ar, "", &oauthError{http.StatusBadRequest, "unauthorized_client", "the client may not use the authorization code grant"}
	case v.Get("prompt") == "none":
		return ar, "", &oauthError{http.StatusBadRequest, "login_required", "devidp keeps no sign-in session"}
	}
	if ar.acrs, e = p.entraClaimsRequest(v); e != nil {
		return ar, "", e
	}
	if len(ar.scopes) == 0 {
		ar.scopes = []string{"openid"}
	}
	return ar, "", nil
}

func (p *Provider) redirectBack(w http.ResponseWriter, r *http.Request, ar *authRequest, params url.Values) {
	u, _ := url.Parse(ar.redirectURI) // validated
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	if ar.state != "" {
		q.Set("state", ar.state)
	}
	q.Set("iss", p.cfg.issuer)
	u.RawQuery = q.Encode()
	// ar.redirectURI was checked against the client's registered URIs.
	http.Redirect(w, r, u.String(), http.StatusFound) //nolint:gosec // G710: only registered redirect URIs reach here
}

func (p *Provider) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	var v url.Values
	if r.Method == http.MethodPost {
		if e := parseForm(w, r); e != nil {
			p.renderError(w, http.StatusBadRequest, e.desc)
			return
		}
		v = r.PostForm
	} else {
		v = r.URL.Query()
	}
	ar, pageErr, e := p.parseAuthRequest(v)
	if pageErr != "" {
		p.renderError(w, http.StatusBadRequest, pageErr)
		return
	}
	if e != nil {
		p.log.InfoContext(r.Context(), "devidp authorization refused", "client_id", ar.client.ID, "error", e.code)
		p.redirectBack(w, r, ar, url.Values{"error": {e.code}, "error_description": {e.desc}})
		return
	}
	if r.Method == http.MethodGet {
		p.renderLogin(w, http.StatusOK, ar, "", "")
		return
	}
	if v.Get("action") == "deny" {
		p.redirectBack(w, r, ar, url.Values{"error": {"access_denied"}, "error_description": {"the user declined the sign-in"}})
		return
	}
	username := v.Get("username")
	u, ok := p.checkPassword(username, v.Get("password"))
	if !ok {
		p.renderLogin(w, http.StatusUnauthorized, ar, username, "Invalid username or password.")
		return
	}
	now := p.cfg.now()
	code := randomID(32)
	p.mu.Lock()
	p.gcLocked(now)
	p.codes[code] = &authCode{
		clientID: ar.client.ID, redirectURI: ar.redirectURI, challenge: ar.challenge,
		username: u.Username, scopes: ar.scopes, nonce: ar.nonce, acrs: ar.acrs, authTime: now,
		expires: now.Add(p.cfg.codeTTL),
	}
	p.mu.Unlock()
	p.log.InfoContext(r.Context(), "devidp sign-in", "client_id", ar.client.ID, "username", u.Username)
	p.redirectBack(w, r, ar, url.Values{"code": {code}})
}

var pageTemplates = template.Must(template.New("page").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · sqlgate development sign-in</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;display:flex;justify-content:center}
main{background:#fff;margin-top:4rem;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px #0002;width:22rem}
h1{font-size:1.3rem;margin:0 0 .3rem}p.sub{color:#555;margin:0 0 1.2rem;font-size:.9rem}
label{display:block;font-size:.85rem;margin:.8rem 0 .2rem}input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
.err{background:#fde8e8;color:#8a1c1c;padding:.5rem;border-radius:4px;font-size:.9rem}
.ok{background:#e6f4ea;color:#1e4620;padding:.5rem;border-radius:4px}
.buttons{margin-top:1.2rem;display:flex;gap:.5rem}button{padding:.5rem 1rem;font-size:1rem}
code{background:#eee;padding:0 .2rem}
</style></head><body><main>{{end}}
{{define "foot"}}<p class="sub" style="margin-top:1.5rem">Development identity provider. Not for production use.</p></main></body></html>{{end}}

{{define "login"}}{{template "head" .}}
<h1>Sign in</h1>
<p class="sub">to <strong>{{.Client}}</strong>{{if .Scopes}} · scopes <code>{{.Scopes}}</code>{{end}}</p>
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">{{end}}
<label for="username">Username</label><input type="text" id="username" name="username" value="{{.Username}}" autocomplete="username" autofocus required>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>
<div class="buttons"><button type="submit" name="action" value="login">Sign in</button>
<button type="submit" name="action" value="deny" formnovalidate>Cancel</button></div>
</form>
{{template "foot" .}}{{end}}

{{define "device"}}{{template "head" .}}
<h1>Sign in on another device</h1>
<p class="sub">Enter the code shown on your device, then sign in.</p>
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<label for="user_code">Code</label><input type="text" id="user_code" name="user_code" value="{{.UserCode}}" autocomplete="off" required>
<label for="username">Username</label><input type="text" id="username" name="username" value="{{.Username}}" autocomplete="username" required>
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password">
<div class="buttons"><button type="submit" name="action" value="approve">Sign in and allow</button>
<button type="submit" name="action" value="deny" formnovalidate>Deny</button></div>
</form>
{{template "foot" .}}{{end}}

{{define "message"}}{{template "head" .}}
<h1>{{.Title}}</h1>
<p class="{{.Class}}" role="status">{{.Message}}</p>
{{template "foot" .}}{{end}}
`))

type hiddenField struct{ Name, Value string }

func setPageHeaders(w http.ResponseWriter, status int) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
}

func (p *Provider) renderLogin(w http.ResponseWriter, status int, ar *authRequest, username, errMsg string) {
	name := ar.client.Name
	if name == "" {
		name = ar.client.ID
	}
	var hidden []hiddenField
	for _, k := range authParams {
		if x := ar.values.Get(k); x != "" {
			hidden = append(hidden, hiddenField{k, x})
		}
	}
	setPageHeaders(w, status)
	_ = pageTemplates.ExecuteTemplate(w, "login", map[string]any{
		"Title": "Sign in", "Client": name, "Scopes": strings.Join(ar.scopes, " "),
		"Error": errMsg, "Action": p.cfg.issuer + pathAuthorize, "Hidden": hidden, "Username": username,
	})
}

func (p *Provider) renderError(w http.ResponseWriter, status int, msg string) {
	p.renderMessage(w, status, "Sign-in error", msg, "err")
}

func (p *Provider) renderMessage(w http.ResponseWriter, status int, title, msg, class string) {
	setPageHeaders(w, status)
	_ = pageTemplates.ExecuteTemplate(w, "message", map[string]any{"Title": title, "Message": msg, "Class": class})
}
