package oidc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/sqlgate/sqlgate/internal/ctxsleep"
)

// ClientConfig configures the sign-in flows of a command-line client (the
// sqlgate CLI): which provider, which client registration, which scopes.
// It has no secrets except ClientSecret, which is never serialized.
type ClientConfig struct {
	// Issuer is the provider's issuer or discovery base URL. For Entra
	// multi-tenant apps use https://login.microsoftonline.com/organizations/v2.0.
	Issuer string `json:"issuer" yaml:"issuer"`
	// ClientID is the public (or confidential) client's id.
	ClientID string `json:"clientID" yaml:"clientID"`
	// ClientSecret is needed only for confidential clients and the client
	// credentials grant; read it from a file or the environment.
	ClientSecret string `json:"-" yaml:"-"`
	// Scopes requested for user sign-ins (default: openid profile email
	// offline_access). Add the API's scope (Entra: api://<app>/access) to
	// get an access token addressed to sqlgate.
	Scopes []string `json:"scopes,omitempty" yaml:"scopes,omitempty"`
	// ServiceScopes are requested with client credentials (default:
	// [DefaultServiceScopes] of Scopes). They may not hold OpenID Connect
	// scopes: a client credentials request signs in no user.
	ServiceScopes []string `json:"serviceScopes,omitempty" yaml:"serviceScopes,omitempty"`
	// UseIDToken makes [Tokens.Bearer] the ID token rather than the access
	// token (for providers whose access tokens are not meant for sqlgate).
	UseIDToken bool `json:"useIDToken,omitempty" yaml:"useIDToken,omitempty"`
	// AuthContext is a Microsoft Entra authentication context (such as c1,
	// [SignInAuthContext]) that the browser and device sign-ins and the
	// refreshes of their tokens ask for, with the claims parameter
	// ([AuthContextClaims]), as an essential acrs claim of the access and
	// ID tokens. Entra puts acrs in a token only when asked (or, with the
	// API's acrs optional claim, when its policy was already satisfied).
	// The password grant does not ask, nor do the refreshes of its tokens
	// (a password sign-in cannot satisfy a policy that requires MFA).
	AuthContext string `json:"authContext,omitempty" yaml:"authContext,omitempty"`
	// HTTPClient is used for every request (default: 30s timeout).
	HTTPClient *http.Client `json:"-" yaml:"-"`
}

// LogValue implements slog.LogValuer without the secret.
func (c ClientConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer", c.Issuer), slog.String("client_id", c.ClientID),
		slog.Bool("confidential", c.ClientSecret != ""))
}

// DefaultScopes are requested when ClientConfig.Scopes is empty.
var DefaultScopes = []string{"openid", "profile", "email", "offline_access"}

// oidcScopes ask for a signed-in user's identity, not for API access.
var oidcScopes = []string{"openid", "profile", "email", "offline_access", "address", "phone", "groups"}

// resourceSchemes are the scope forms <resource>/<name> whose resource
// takes a <resource>/.default scope with client credentials (Entra:
// api://<app id>/access, https://<verified domain>/<path>/access).
var resourceSchemes = []string{"api://", "https://"}

// resourceOf returns the resource of a scope of the form
// api://<resource>/<name> or https://<host>[/<path>]/<name>.
func resourceOf(scope string) (string, bool) {
	for _, scheme := range resourceSchemes {
		rest, ok := strings.CutPrefix(scope, scheme)
		if !ok {
			continue
		}
		i := strings.LastIndex(rest, "/")
		if i <= 0 || i == len(rest)-1 {
			return "", false
		}
		return scheme + rest[:i], true
	}
	return "", false
}

// DefaultServiceScopes derives the scopes a client credentials sign-in
// requests from the scopes of user sign-ins. Entra grants a service only
// <resource>/.default (AADSTS1002012 for anything else), so when scopes
// name a resource's scope (api://<app>/access, https://<host>/<path>/access)
// the result is each such resource's /.default scope, and nothing else.
// Otherwise it is scopes without the OpenID Connect ones (openid, profile,
// email, offline_access, …), which need a user: the custom scopes of an
// Okta custom authorization server, say.
func DefaultServiceScopes(scopes []string) []string {
	var defaults, custom []string
	for _, s := range scopes {
		if res, ok := resourceOf(s); ok {
			if d := res + "/.default"; !slices.Contains(defaults, d) {
				defaults = append(defaults, d)
			}
			continue
		}
		if !slices.Contains(oidcScopes, s) && !slices.Contains(custom, s) {
			custom = append(custom, s)
		}
	}
	if len(defaults) > 0 {
		return defaults
	}
	return custom
}

// CheckServiceScopes reports the first scope a client credentials request
// cannot carry: an empty one, one with whitespace or another character
// RFC 6749 does not allow in a scope, or an OpenID Connect scope (openid,
// offline_access, …), which asks for a user's identity while client
// credentials sign in no user (Okta refuses the request).
func CheckServiceScopes(scopes []string) error {
	for _, s := range scopes {
		switch {
		case s == "":
			return errors.New("empty scope")
		case strings.IndexFunc(s, unicode.IsSpace) >= 0:
			return fmt.Errorf("scope %q contains whitespace (give each scope separately)", s)
		case strings.IndexFunc(s, notScopeChar) >= 0:
			return fmt.Errorf("scope %q has a character a scope cannot have (RFC 6749: printable ASCII except \" and \\)", s)
		case slices.Contains(oidcScopes, s):
			return fmt.Errorf("scope %s is an OpenID Connect scope for user sign-ins: client credentials sign in no user", s)
		}
	}
	return nil
}

// notScopeChar reports a character outside RFC 6749's scope-token
// (%x21 / %x23-5B / %x5D-7E).
func notScopeChar(r rune) bool {
	return r < 0x21 || r > 0x7e || r == '"' || r == '\\'
}

// Tokens is the result of a sign-in: what the CLI stores and sends. The
// token fields are secrets; Tokens prints and logs without them.
type Tokens struct {
	Issuer        string    `json:"issuer"`
	ClientID      string    `json:"client_id"`
	Grant         string    `json:"grant"`
	TokenType     string    `json:"token_type,omitempty"`
	AccessToken   string    `json:"access_token"`
	IDToken       string    `json:"id_token,omitempty"`
	RefreshToken  string    `json:"refresh_token,omitempty"`
	Expiry        time.Time `json:"expiry,omitzero"`
	IDTokenExpiry time.Time `json:"id_token_expiry,omitzero"`
	UseIDToken    bool      `json:"use_id_token,omitempty"`
}

// Grant names recorded in [Tokens.Grant].
const (
	GrantAuthorizationCode = "authorization_code"
	GrantDeviceCode        = "device_code"
	GrantPassword          = "password"
	GrantClientCredentials = "client_credentials"
)

// Bearer returns the token to send to sqlgate.
func (t Tokens) Bearer() string {
	if t.UseIDToken {
		return t.IDToken
	}
	return t.AccessToken
}

// BearerExpiry returns when [Tokens.Bearer] expires (zero when unknown).
func (t Tokens) BearerExpiry() time.Time {
	if t.UseIDToken {
		return t.IDTokenExpiry
	}
	return t.Expiry
}

// LogValue implements slog.LogValuer without the tokens.
func (t Tokens) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer", t.Issuer), slog.String("grant", t.Grant),
		slog.Time("expiry", t.BearerExpiry()), slog.Bool("refreshable", t.RefreshToken != ""))
}

// String implements fmt.Stringer without the tokens.
func (t Tokens) String() string {
	return fmt.Sprintf("oidc.Tokens{issuer=%s grant=%s expiry=%s refreshable=%t}",
		t.Issuer, t.Grant, t.BearerExpiry().Format(time.RFC3339), t.RefreshToken != "")
}

// Client runs sign-in flows against one provider.
type Client struct {
	cfg      ClientConfig
	provider *gooidc.Provider
	issuer   string // announced issuer; may be an Entra template
	template bool
	prefix   string
	suffix   string
	idv      *gooidc.IDTokenVerifier
	http     *http.Client
	now      func() time.Time
	// sleep waits between device-flow polls (tests replace it).
	sleep func(ctx context.Context, d time.Duration) error
}

// OpenClient discovers the provider and returns a client. A provider that
// cannot be reached yields an error matching [ErrIDPUnreachable].
func OpenClient(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("oidc: client needs an issuer and a client id")
	}
	if err := checkURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("oidc: issuer: %w", err)
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = slices.Clone(DefaultScopes)
	}
	if len(cfg.ServiceScopes) == 0 {
		cfg.ServiceScopes = DefaultServiceScopes(cfg.Scopes)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	hc = secureRedirects(hc)
	c := &Client{cfg: cfg, http: hc, now: time.Now, sleep: ctxsleep.Sleep}
	dctx := gooidc.ClientContext(ctx, hc)
	p, err := gooidc.NewProvider(dctx, cfg.Issuer)
	var mismatch *gooidc.IssuerMismatchError
	if errors.As(err, &mismatch) && strings.Contains(mismatch.Discovered, TenantPlaceholder) {
		// Entra's organizations/common endpoints announce the template.
		p, err = gooidc.NewProvider(gooidc.InsecureIssuerURLContext(dctx, mismatch.Discovered), cfg.Issuer)
	}
	if err != nil {
		if errors.As(err, &mismatch) {
			return nil, fmt.Errorf("oidc: discovery: %w", err)
		}
		return nil, &UnreachableError{URL: strings.TrimSuffix(cfg.Issuer, "/") + "/.well-known/openid-configuration", Err: err}
	}
	if err := checkEndpoints(p); err != nil {
		return nil, fmt.Errorf("oidc: discovery of %s: %w", cfg.Issuer, err)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	_ = p.Claims(&doc)
	c.provider, c.issuer = p, doc.Issuer
	if strings.Contains(c.issuer, TenantPlaceholder) {
		c.template = true
		c.prefix, c.suffix, _ = strings.Cut(c.issuer, TenantPlaceholder)
	}
	c.idv = p.VerifierContext(dctx, &gooidc.Config{ClientID: cfg.ClientID, SkipIssuerCheck: c.template})
	return c, nil
}

// discoveredEndpoints are the endpoints of a discovery document that
// sqlgate (or go-oidc for it) may send a request or the browser to.
var discoveredEndpoints = []string{
	"authorization_endpoint", "token_endpoint", "device_authorization_endpoint", "jwks_uri",
	"userinfo_endpoint", "revocation_endpoint", "end_session_endpoint",
}

// checkEndpoints applies the issuer's rule to every endpoint the discovery
// document names: https, or plain http only on a loopback host. The token
// endpoint receives passwords, client secrets, refresh tokens and codes; a
// discovery document served over https could otherwise send them across
// the network in clear.
func checkEndpoints(p *gooidc.Provider) error {
	var doc map[string]any
	if err := p.Claims(&doc); err != nil {
		return fmt.Errorf("read the discovery document: %w", err)
	}
	for _, name := range discoveredEndpoints {
		raw, ok := doc[name]
		if !ok || raw == nil || raw == "" {
			continue
		}
		s, ok := raw.(string)
		if !ok {
			return fmt.Errorf("%s is not a URL", name)
		}
		if err := checkEndpoint(s); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// checkEndpoint accepts an absolute https URL, and http only on a loopback
// host. Unlike [checkURL] it allows a query (Azure AD B2C's endpoints carry
// ?p=<policy>).
func checkEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q is not an absolute http(s) URL", truncate(redactEndpoint(raw), 200))
	}
	if u.User != nil {
		return fmt.Errorf("%q holds a user name or password", u.Redacted())
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q is plain http to another host: credentials sent there would cross the network in clear (only loopback may be plain http)", redactEndpoint(raw))
	}
	return nil
}

// redactEndpoint returns raw with what may be a user name and password
// replaced by REDACTED: that of a URL with a user, else everything from
// after "//" (or the start) to the last '@' (a password holding an
// unescaped '/', '?' or '#' parses as a host and a path, or not at all).
func redactEndpoint(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return u.Redacted()
	}
	at := strings.LastIndex(raw, "@")
	if at < 0 {
		return raw
	}
	start := 0
	if i := strings.Index(raw, "//"); i >= 0 && i < at {
		start = i + 2
	}
	return raw[:start] + "REDACTED" + raw[at:]
}

// secureRedirects returns a copy of hc that follows only redirects a
// provider's request may safely take: a GET or HEAD (a POST to the token
// endpoint would be resent with its body, a password or client secret, on
// a 307 or 308), to an https URL or plain http on loopback, never from
// https down to http. hc's own redirect policy, if any, applies next.
func secureRedirects(hc *http.Client) *http.Client {
	c := *hc
	next := hc.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		prev := via[len(via)-1]
		switch {
		case prev.Method != http.MethodGet && prev.Method != http.MethodHead:
			return fmt.Errorf("the identity provider answered a %s to %s with a redirect to %s, which is not followed: "+
				"it would resend the request's credentials", prev.Method, prev.URL.Redacted(), req.URL.Redacted())
		case checkEndpoint(req.URL.String()) != nil:
			return fmt.Errorf("redirect to %s refused: %w", req.URL.Redacted(), checkEndpoint(req.URL.String()))
		case prev.URL.Scheme == "https" && req.URL.Scheme != "https":
			return fmt.Errorf("redirect from %s to plain http %s refused", prev.URL.Redacted(), req.URL.Redacted())
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

func (c *Client) oauthConfig(redirect string, scopes []string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: c.cfg.ClientID, ClientSecret: c.cfg.ClientSecret, Endpoint: c.provider.Endpoint(),
		RedirectURL: redirect, Scopes: scopes,
	}
}

func (c *Client) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.http)
}

// wrapErr turns an OAuth or transport failure into this package's errors.
func (c *Client) wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode == "" && re.Response != nil && re.Response.StatusCode >= 500 {
			return &UnreachableError{URL: c.provider.Endpoint().TokenURL, Err: fmt.Errorf("%s: status %s", op, re.Response.Status)}
		}
		return oauthErr(op, &OAuthError{Code: re.ErrorCode, Description: re.ErrorDescription})
	}
	var oe *OAuthError
	if errors.As(err, &oe) {
		return oauthErr(op, oe)
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) {
		u := c.provider.Endpoint().TokenURL
		if ue != nil {
			u = ue.URL
		}
		return &UnreachableError{URL: u, Err: err}
	}
	return fmt.Errorf("%s: %w", op, err)
}

func oauthErr(op string, oe *OAuthError) error {
	switch oe.Code {
	case "access_denied":
		return fmt.Errorf("%s: %w: %w", op, ErrAccessDenied, oe)
	case "expired_token":
		return fmt.Errorf("%s: %w: %w", op, ErrDeviceCodeExpired, oe)
	}
	return fmt.Errorf("%s: %w", op, oe)
}

// tokens turns a token response into Tokens, verifying the ID token (and
// its nonce when one was sent).
func (c *Client) tokens(ctx context.Context, grant string, tok *oauth2.Token, nonce string) (Tokens, error) {
	t := Tokens{
		Issuer: c.cfg.Issuer, ClientID: c.cfg.ClientID, Grant: grant, TokenType: tok.TokenType,
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry,
		UseIDToken: c.cfg.UseIDToken && grant != GrantClientCredentials,
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		idt, err := c.verifyIDToken(ctx, raw, nonce)
		if err != nil {
			return Tokens{}, err
		}
		t.IDToken, t.IDTokenExpiry = raw, idt.Expiry
	} else if nonce != "" && slices.Contains(c.cfg.Scopes, "openid") {
		return Tokens{}, errors.New("sign-in: the provider returned no ID token")
	}
	if t.Bearer() == "" {
		return Tokens{}, errors.New("sign-in: the provider returned no usable token")
	}
	return t, nil
}

// verifyIDToken checks an ID token received from the token endpoint:
// signature, issuer, audience (the client id), expiry and nonce.
func (c *Client) verifyIDToken(ctx context.Context, raw, nonce string) (*gooidc.IDToken, error) {
	idt, err := c.idv.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("sign-in: ID token: %s", sanitizeLibError(err))
	}
	if c.template {
		rest, ok := strings.CutPrefix(idt.Issuer, c.prefix)
		tenant, ok2 := strings.CutSuffix(rest, c.suffix)
		if !ok || !ok2 || tenant == "" || strings.Contains(tenant, "/") {
			return nil, fmt.Errorf("sign-in: ID token from unexpected issuer %q", truncate(idt.Issuer, 200))
		}
	}
	if nonce != "" && !constantTimeEqual(idt.Nonce, nonce) {
		return nil, errors.New("sign-in: ID token nonce does not match the request")
	}
	return idt, nil
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// LoginPassword signs in with the resource owner password grant (where the
// provider allows it; Entra only for accounts without MFA).
func (c *Client) LoginPassword(ctx context.Context, username, password string) (Tokens, error) {
	tok, err := c.oauthConfig("", c.cfg.Scopes).PasswordCredentialsToken(c.ctx(ctx), username, password)
	if err != nil {
		return Tokens{}, c.wrapErr("password sign-in", err)
	}
	return c.tokens(ctx, GrantPassword, tok, "")
}

// LoginClientCredentials gets a token for the client itself (services),
// requesting ServiceScopes. It needs ClientSecret, and refuses scopes that
// [CheckServiceScopes] refuses before asking the provider.
func (c *Client) LoginClientCredentials(ctx context.Context) (Tokens, error) {
	if c.cfg.ClientSecret == "" {
		return Tokens{}, errors.New("client credentials sign-in needs a client secret")
	}
	if err := CheckServiceScopes(c.cfg.ServiceScopes); err != nil {
		return Tokens{}, fmt.Errorf("client credentials sign-in: %w", err)
	}
	cc := clientcredentials.Config{
		ClientID: c.cfg.ClientID, ClientSecret: c.cfg.ClientSecret,
		TokenURL: c.provider.Endpoint().TokenURL, Scopes: c.cfg.ServiceScopes,
	}
	tok, err := cc.Token(c.ctx(ctx))
	if err != nil {
		return Tokens{}, c.wrapErr("client credentials sign-in", err)
	}
	return c.tokens(ctx, GrantClientCredentials, tok, "")
}

// Refresh renews t with its refresh token. A refused refresh token yields
// an error matching [ErrLoginExpired].
func (c *Client) Refresh(ctx context.Context, t Tokens) (Tokens, error) {
	if t.RefreshToken == "" {
		return Tokens{}, fmt.Errorf("refresh: %w (no refresh token)", ErrLoginExpired)
	}
	var tok *oauth2.Token
	var err error
	if claims := AuthContextClaims(c.cfg.AuthContext); claims != "" && t.Grant != GrantPassword {
		tok, err = c.refreshWithClaims(ctx, t.RefreshToken, claims)
	} else {
		tok, err = c.oauthConfig("", c.cfg.Scopes).TokenSource(c.ctx(ctx), &oauth2.Token{RefreshToken: t.RefreshToken}).Token()
	}
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			return Tokens{}, fmt.Errorf("refresh: %w: %w", ErrLoginExpired, &OAuthError{Code: re.ErrorCode, Description: re.ErrorDescription})
		}
		return Tokens{}, c.wrapErr("refresh", err)
	}
	nt, err := c.tokens(ctx, t.Grant, tok, "")
	if err != nil {
		return Tokens{}, err
	}
	if nt.UseIDToken && nt.IDToken == "" {
		return Tokens{}, fmt.Errorf("refresh: %w (the provider returned no new ID token)", ErrLoginExpired)
	}
	return nt, nil
}

// Fresh returns t if its bearer token stays valid for at least minValid,
// else renews it: by refresh token, or by client credentials again for a
// service. It reports whether t changed (the caller saves it). When nothing
// can renew it the error matches [ErrLoginExpired]; an unreachable provider
// matches [ErrIDPUnreachable].
func (c *Client) Fresh(ctx context.Context, t Tokens, minValid time.Duration) (Tokens, bool, error) {
	exp := t.BearerExpiry()
	if t.Bearer() != "" && (exp.IsZero() || exp.After(c.now().Add(minValid))) {
		return t, false, nil
	}
	if t.Grant == GrantClientCredentials && c.cfg.ClientSecret != "" {
		nt, err := c.LoginClientCredentials(ctx)
		return nt, err == nil, err
	}
	if t.RefreshToken == "" {
		return t, false, fmt.Errorf("token expired at %s: %w", exp.Format(time.RFC3339), ErrLoginExpired)
	}
	nt, err := c.Refresh(ctx, t)
	if err != nil {
		return t, false, err
	}
	return nt, true, nil
}

// deviceTokenResponse is a token endpoint answer (success or error).
type deviceTokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	RefreshToken     string `json:"refresh_token"`
	IDToken          string `json:"id_token"`
	ExpiresIn        int64  `json:"expires_in"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// LoginDevice signs in with the device authorization grant (RFC 8628): it
// prints the verification URL and the user code to out and polls the token
// endpoint at the interval the provider asks for (slower after slow_down)
// until the user finishes, denies ([ErrAccessDenied]) or the code expires
// ([ErrDeviceCodeExpired]).
func (c *Client) LoginDevice(ctx context.Context, out io.Writer) (Tokens, error) {
	conf := c.oauthConfig("", c.cfg.Scopes)
	if conf.Endpoint.DeviceAuthURL == "" {
		return Tokens{}, errors.New("device sign-in: the provider has no device authorization endpoint")
	}
	var opts []oauth2.AuthCodeOption
	if claims := AuthContextClaims(c.cfg.AuthContext); claims != "" {
		opts = append(opts, oauth2.SetAuthURLParam("claims", claims))
	}
	da, err := conf.DeviceAuth(c.ctx(ctx), opts...)
	if err != nil {
		return Tokens{}, c.wrapErr("device sign-in", err)
	}
	_, _ = fmt.Fprintf(out, "To sign in, open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		_, _ = fmt.Fprintf(out, "(or open %s)\n", da.VerificationURIComplete)
	}
	interval := time.Duration(da.Interval) * time.Second
	if interval <= 0 {
		interval = 5 * time.Second
	}
	for {
		if !da.Expiry.IsZero() && time.Now().After(da.Expiry) {
			return Tokens{}, fmt.Errorf("device sign-in: %w", ErrDeviceCodeExpired)
		}
		if err := c.sleep(ctx, interval); err != nil {
			return Tokens{}, fmt.Errorf("device sign-in: %w", err)
		}
		resp, err := c.pollDevice(ctx, da.DeviceCode)
		if err != nil {
			return Tokens{}, c.wrapErr("device sign-in", err)
		}
		switch resp.Error {
		case "":
			tok := (&oauth2.Token{
				AccessToken: resp.AccessToken, TokenType: resp.TokenType, RefreshToken: resp.RefreshToken,
			}).WithExtra(map[string]any{"id_token": resp.IDToken})
			if resp.ExpiresIn > 0 {
				tok.Expiry = time.Now().Add(time.Duration(resp.ExpiresIn) * time.Second)
			}
			return c.tokens(ctx, GrantDeviceCode, tok, "")
		case "authorization_pending":
		case "slow_down":
			interval += 5 * time.Second
		default:
			return Tokens{}, c.wrapErr("device sign-in", &OAuthError{Code: resp.Error, Description: resp.ErrorDescription})
		}
	}
}

// refreshWithClaims renews a sign-in with its refresh token, sending the
// claims request parameter too (oauth2's token source sends none): Entra
// adds acrs to a refreshed token only when the refresh request asks for it
// (unless the API opted in to the acrs optional claim). Its errors are
// those of the token source, so that [Client.Refresh] treats both alike.
func (c *Client) refreshWithClaims(ctx context.Context, refreshToken, claims string) (*oauth2.Token, error) {
	resp, err := c.postToken(ctx, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
		"client_id":     {c.cfg.ClientID},
		"claims":        {claims},
	})
	if err != nil {
		return nil, err
	}
	if resp.Error != "" {
		return nil, &oauth2.RetrieveError{ErrorCode: resp.Error, ErrorDescription: resp.ErrorDescription}
	}
	if resp.AccessToken == "" {
		return nil, errors.New("refresh: the token response has no access_token")
	}
	tok := &oauth2.Token{AccessToken: resp.AccessToken, TokenType: resp.TokenType, RefreshToken: resp.RefreshToken}
	if tok.RefreshToken == "" {
		tok.RefreshToken = refreshToken // the provider keeps the one it has
	}
	if resp.ExpiresIn > 0 {
		tok.Expiry = time.Now().Add(time.Duration(resp.ExpiresIn) * time.Second)
	}
	if resp.IDToken != "" {
		tok = tok.WithExtra(map[string]any{"id_token": resp.IDToken})
	}
	return tok, nil
}

func (c *Client) pollDevice(ctx context.Context, deviceCode string) (*deviceTokenResponse, error) {
	return c.postToken(ctx, url.Values{
		"grant_type":  {"urn:ietf:params:oauth:grant-type:device_code"},
		"device_code": {deviceCode},
		"client_id":   {c.cfg.ClientID},
	})
}

// postToken posts form to the token endpoint (the client authenticated
// with HTTP Basic when it has a secret) and reads the answer, a success or
// an OAuth error.
func (c *Client) postToken(ctx context.Context, form url.Values) (*deviceTokenResponse, error) {
	tokenURL := c.provider.Endpoint().TokenURL
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.cfg.ClientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(c.cfg.ClientID), url.QueryEscape(c.cfg.ClientSecret))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var out deviceTokenResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || (resp.StatusCode != http.StatusOK && out.Error == "") {
		if resp.StatusCode >= 500 {
			return nil, &UnreachableError{URL: tokenURL, Err: fmt.Errorf("status %s", resp.Status)}
		}
		return nil, fmt.Errorf("device token response: status %s", resp.Status)
	}
	return &out, nil
}
