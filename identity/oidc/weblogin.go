package oidc

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/sqlgate/sqlgate/identity"
)

// WebLoginConfig configures the dashboard's sign-in ([NewWebLogin]).
type WebLoginConfig struct {
	// Verifier verifies the ID tokens; Issuer names the entry of its
	// configuration to sign in with. That entry's audiences must include
	// the client id.
	Verifier *Verifier
	Issuer   string
	// RedirectURL is the dashboard's callback, registered at the provider
	// (e.g. https://sqlgate.example.com/auth/callback). It must be https,
	// or http on a loopback host, unless AllowPlainHTTP is set.
	RedirectURL string
	// AllowPlainHTTP accepts an http:// RedirectURL on a host other than
	// loopback (sqlgated's http.allowPlaintext): the browser then reaches
	// the dashboard in the clear, and its login cookie (not Secure) and the
	// authorization code cross the network readable, so only on a network
	// the operator trusts. [NewWebLogin] logs a warning when it applies.
	AllowPlainHTTP bool
	// ClientID and ClientSecret default to the issuer entry's clientID and
	// its secret reference. A public client (no secret) relies on PKCE.
	// ClientID is accepted as the client of the sign-ins' ID tokens also
	// when the issuer's AllowedClients does not list it.
	ClientID     string
	ClientSecret string
	// Scopes (default: openid profile email).
	Scopes []string
	// CookieKey (at least 32 random bytes) protects the login cookie; keep
	// it stable across instances behind one load balancer.
	CookieKey []byte
	// CookieName prefixes the login cookies (default sqlgate_login; after
	// __Host- with an https RedirectURL).
	CookieName string
	// MaxAge bounds how long a started sign-in may take (default 10m). The
	// login cookie lives [loginCookieGrace] longer, so that a callback after
	// the limit is told the sign-in took too long rather than finding none.
	MaxAge time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// LogValue implements slog.LogValuer without the secret and the key.
func (c WebLoginConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer", c.Issuer), slog.String("redirect_url", c.RedirectURL), slog.String("client_id", c.ClientID))
}

// WebLogin runs the authorization code flow with PKCE for a browser. The
// state, nonce and PKCE verifier of a sign-in in progress travel in a
// short-lived cookie (HttpOnly, SameSite=Lax, Secure over TLS; with an
// https redirect URL, __Host- and Path=/, see [WebLogin.cookieName]),
// encrypted and authenticated with AES-GCM; a state is accepted once, so
// WebLogin remembers the states presented at the callback until their
// sign-ins expire (MaxAge after the start). It remembers at most 100,000:
// beyond that, [WebLogin.Start] and [WebLogin.Callback] refuse with
// [ErrTooManyLogins] until some expire.
// Sessions are the caller's business.
type WebLogin struct {
	cfg    WebLoginConfig
	v      *Verifier
	is     *issuer
	oauth  *oauth2.Config
	aead   cipher.AEAD
	path   string
	secure bool
	// scheme and host are the redirect URL's: the public address browsers
	// must sign in at (see [WebLogin.Start]).
	scheme, host string
	hostWarn     sync.Once
	now          func() time.Time
	log          *slog.Logger
	used         *usedStates
}

// NewWebLogin checks cfg and returns the dashboard's login helper. It does
// no I/O: the verifier already discovered the provider.
func NewWebLogin(cfg WebLoginConfig) (*WebLogin, error) {
	if cfg.Verifier == nil {
		return nil, errors.New("oidc: web login needs a verifier")
	}
	is, ok := cfg.Verifier.byName[cfg.Issuer]
	if !ok {
		return nil, fmt.Errorf("oidc: web login: no issuer named %q", cfg.Issuer)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = is.cfg.ClientID
	}
	if cfg.ClientSecret == "" && cfg.ClientID == is.cfg.ClientID {
		cfg.ClientSecret = is.secret
	}
	var errs []error
	if cfg.ClientID == "" {
		errs = append(errs, errors.New("no client id (set clientID on the issuer)"))
	} else if !is.cfg.AcceptsWebClient(cfg.ClientID) {
		errs = append(errs, fmt.Errorf("issuer %q must accept the web client id %q in its audiences", cfg.Issuer, cfg.ClientID))
	}
	ru, err := url.Parse(cfg.RedirectURL)
	plain := err == nil && ru.Scheme == "http" && !isLoopback(ru.Hostname())
	switch {
	case err != nil || ru.Path == "" || checkURL(cfg.RedirectURL) != nil && (!plain || !cfg.AllowPlainHTTP):
		errs = append(errs, fmt.Errorf("redirect URL %q must be an absolute https URL with a path (http only on loopback, or with plain HTTP allowed)", cfg.RedirectURL))
	case plain:
		// Allowed: every other rule of checkURL still holds.
		secured := *ru
		secured.Scheme = "https"
		if checkURL(secured.String()) != nil {
			errs = append(errs, fmt.Errorf("redirect URL %q must be an absolute URL with a path and no query or fragment", cfg.RedirectURL))
		}
	}
	if len(cfg.CookieKey) < 32 {
		errs = append(errs, errors.New("cookie key must have at least 32 bytes"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("oidc: web login: %w", err)
	}
	if cfg.CookieName == "" {
		cfg.CookieName = "sqlgate_login"
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 10 * time.Minute
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"openid", "profile", "email"}
	}
	if cfg.Now == nil {
		cfg.Now = cfg.Verifier.now
	}
	key, err := hkdf.Key(sha256.New, cfg.CookieKey, nil, "sqlgate oidc web login state v1", 32)
	if err != nil {
		return nil, fmt.Errorf("oidc: web login: derive key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("oidc: web login: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("oidc: web login: %w", err)
	}
	if plain {
		cfg.Verifier.log.Warn("dashboard sign-in over plain HTTP (allowed by configuration): login cookies and authorization codes cross the network "+
			"in the clear and the cookies are not Secure; use https unless this network is trusted", "redirect_url", cfg.RedirectURL)
	}
	return &WebLogin{
		cfg: cfg, v: cfg.Verifier, is: is, aead: aead, path: ru.Path, now: cfg.Now, log: cfg.Verifier.log,
		secure: ru.Scheme == "https", scheme: ru.Scheme, host: ru.Host,
		oauth: &oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, Endpoint: is.provider.Endpoint(),
			RedirectURL: cfg.RedirectURL, Scopes: cfg.Scopes,
		},
		used: newUsedStates(maxUsedStates),
	}, nil
}

// loginState is the content of the login cookie.
type loginState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	ReturnTo string `json:"r"`
	Expires  int64  `json:"e"`
}

// loginCookieGrace is how much longer than MaxAge the login cookie lives in
// the browser. Were its Max-Age MaxAge, the browser would drop it just when
// the sign-in expires, and a late callback would find no sign-in in
// progress (login_state_missing, which blames the host name) instead of one
// that took too long.
const loginCookieGrace = time.Hour

// stateIDLen is how much of the state names its cookie, so that parallel
// sign-ins in several tabs do not overwrite each other.
const stateIDLen = 16

// hostPrefix is the cookie name prefix that makes a browser keep a cookie
// only when it is Secure, has Path=/ and no Domain, and was set by this
// host over https: another host, a sibling subdomain included, can
// neither set nor overwrite it.
const hostPrefix = "__Host-"

// cookiePrefix is what the name of every login cookie starts with: with an
// https redirect URL, __Host- and the configured name. Without the prefix
// a sibling subdomain could plant the login cookie of a sign-in it started
// itself (a Domain cookie for the parent domain) and send the victim to
// the callback with its own code and state: the victim would be signed in
// as the attacker (login CSRF). On plain http (loopback, or plain HTTP
// allowed) browsers refuse __Host- cookies, so the name is plain there.
func (l *WebLogin) cookiePrefix() string {
	if l.secure {
		return hostPrefix + l.cfg.CookieName + "_"
	}
	return l.cfg.CookieName + "_"
}

func (l *WebLogin) cookieName(state string) string {
	return l.cookiePrefix() + state[:stateIDLen]
}

// cookiePath is the login cookie's path: "/" for a __Host- cookie (which
// requires it), else the callback path only.
func (l *WebLogin) cookiePath() string {
	if l.secure {
		return "/"
	}
	return l.path
}

// safeReturnTo keeps only same-site paths, so the login cannot be turned
// into an open redirect.
func safeReturnTo(s string) string {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, `/\`) {
		return "/"
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" {
		return "/"
	}
	return s
}

// Start begins a sign-in: it sets the login cookie and redirects the
// browser to the provider. returnTo is where [WebLogin.Callback] sends the
// user afterwards (a local path; anything else becomes "/").
//
// A request with `fresh=1` in its query asks the provider to authenticate
// the user again (prompt=login, max_age=0) instead of reusing its own
// session: after a revoke-all, a sign-in dated before the cutoff is refused,
// and only a new authentication gets the user back in.
//
// The login cookie belongs to the host the browser asked for, and the
// provider sends the browser back to the redirect URL's host: a request for
// another host (the dashboard opened at http://localhost:8470 when the
// redirect URL is on http://127.0.0.1:8470) is first redirected to the same
// path and query on the redirect URL's scheme and host, with public_host=1
// added, and sets nothing. Only that one address is ever the target, so
// this is no open redirect. A request that carries public_host already is
// not redirected again (a proxy in front that rewrites Host would otherwise
// loop): its sign-in starts there.
//
// When too many sign-ins are in progress it sets nothing and returns
// [ErrTooManyLogins].
func (l *WebLogin) Start(w http.ResponseWriter, r *http.Request, returnTo string) error {
	if target := l.publicAddress(r); target != "" {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target, http.StatusFound) //nolint:gosec // scheme and host are the configured redirect URL's, never the request's
		return nil
	}
	if l.used.full(l.now()) {
		return fmt.Errorf("web login: %w", ErrTooManyLogins)
	}
	st := loginState{
		State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(),
		ReturnTo: safeReturnTo(returnTo), Expires: l.now().Add(l.cfg.MaxAge).Unix(),
	}
	name := l.cookieName(st.State)
	plain, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("web login: %w", err)
	}
	nonce := make([]byte, l.aead.NonceSize())
	_, _ = rand.Read(nonce)
	sealed := l.aead.Seal(nonce, nonce, plain, []byte(name))
	// Secure whenever the browser reaches us over TLS (directly or through
	// a proxy, known from the https redirect URL); plain http is allowed
	// only on loopback (development), where browsers drop Secure cookies.
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure is set for TLS, see above
		Name: name, Value: base64.RawURLEncoding.EncodeToString(sealed), Path: l.cookiePath(),
		MaxAge: int((l.cfg.MaxAge + loginCookieGrace) / time.Second), HttpOnly: true, Secure: l.secure || r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	})
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(st.Verifier), gooidc.Nonce(st.Nonce)}
	if r.URL.Query().Get("fresh") == "1" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0"))
	}
	// Entra puts the MFA auth context in acrs only when it is asked for.
	if claims := AuthContextClaims(SignInAuthContext(l.is.cfg)); claims != "" {
		opts = append(opts, oauth2.SetAuthURLParam("claims", claims))
	}
	authURL := l.oauth.AuthCodeURL(st.State, opts...)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, authURL, http.StatusFound)
	return nil
}

// publicHostParam marks a sign-in that [WebLogin.Start] redirected to the
// redirect URL's host, so that it is not redirected twice.
const publicHostParam = "public_host"

// publicAddress returns where Start sends a request for a host other than
// the redirect URL's ("" to sign in here): the same path and query on the
// redirect URL's scheme and host.
func (l *WebLogin) publicAddress(r *http.Request) string {
	if r.Host == "" || sameHost(r.Host, l.host, l.scheme) {
		return ""
	}
	q := r.URL.Query()
	if q.Has(publicHostParam) {
		l.hostWarn.Do(func() {
			l.log.LogAttrs(r.Context(), slog.LevelWarn,
				"dashboard sign-in: a request redirected to the public address arrived for another host; "+
					"a proxy in front rewrites the Host header (sign-ins work, with one redirect more): have it pass Host on",
				slog.String("redirect_url", l.cfg.RedirectURL))
		})
		return ""
	}
	q.Set(publicHostParam, "1")
	u := url.URL{Scheme: l.scheme, Host: l.host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: q.Encode()}
	return u.String()
}

// sameHost reports whether the Host header h names host (both host[:port]),
// ignoring case and the scheme's default port.
func sameHost(h, host, scheme string) bool {
	trim := func(s string) string {
		s = strings.ToLower(s)
		if scheme == "https" {
			return strings.TrimSuffix(s, ":443")
		}
		return strings.TrimSuffix(s, ":80")
	}
	return trim(h) == trim(host)
}

// open decrypts and checks a login cookie.
func (l *WebLogin) open(name, value string) (loginState, error) {
	var st loginState
	raw, err := base64.RawURLEncoding.DecodeString(value)
	ns := l.aead.NonceSize()
	if err != nil || len(raw) < ns {
		return st, errors.New("login cookie is malformed")
	}
	plain, err := l.aead.Open(nil, raw[:ns], raw[ns:], []byte(name))
	if err != nil {
		return st, errors.New("login cookie does not authenticate")
	}
	if err := json.Unmarshal(plain, &st); err != nil {
		return st, errors.New("login cookie is malformed")
	}
	if l.now().Unix() > st.Expires {
		return st, fmt.Errorf("the sign-in took longer than %s", minutes(l.cfg.MaxAge))
	}
	return st, nil
}

// minutes spells a time limit for the user: "10 minutes".
func minutes(d time.Duration) string {
	switch {
	case d == time.Minute:
		return "1 minute"
	case d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.String()
}

// errCallbackUsed is the refusal of a callback whose state an earlier
// callback presented, whether that sign-in completed or was refused. The
// dashboard shows it: "sign-in not completed: …; sign in again".
var errCallbackUsed = errors.New("this sign-in was already completed or refused")

func (l *WebLogin) fail(r *http.Request, reason string, err error) error {
	ae := identity.Unauthenticated(reason, err)
	attrs := []slog.Attr{slog.String("reason", reason), slog.String("issuer", l.is.cfg.Name)}
	if err != nil {
		attrs = append(attrs, slog.String("detail", err.Error()))
	}
	l.log.LogAttrs(r.Context(), slog.LevelWarn, "web login refused", attrs...)
	return ae
}

// Callback completes a sign-in at the redirect URL: it checks the state
// against the login cookie (and clears it), exchanges the code with the
// PKCE verifier, and verifies the ID token, its issuer and its nonce. The
// first callback that presents a state consumes it, before any request to
// the provider and whether or not the sign-in then completes: a callback
// presenting it again is refused. It returns the principal (whose Expiry
// should bound the session), the provider's tokens and the path to return
// to. With an https redirect URL only the __Host- login cookie counts: the
// same name without the prefix, which another host of the site could have
// set, is ignored. Every failure is an [*identity.AuthError] matching
// [identity.ErrUnauthenticated]; when too many sign-ins are in progress it
// also matches [ErrTooManyLogins].
func (l *WebLogin) Callback(w http.ResponseWriter, r *http.Request) (identity.Principal, *oauth2.Token, string, error) {
	var none identity.Principal
	q := r.URL.Query()
	state := q.Get("state")
	if len(state) < stateIDLen || !isCompactJWSCharset(state) || strings.Contains(state, ".") {
		return none, nil, "", l.fail(r, ReasonStateMismatch, errors.New("callback without a valid state"))
	}
	name := l.cookieName(state)
	c, err := r.Cookie(name)
	if err != nil {
		for _, other := range r.Cookies() {
			if strings.HasPrefix(other.Name, l.cookiePrefix()) {
				return none, nil, "", l.fail(r, ReasonStateMismatch, errors.New("callback state matches no sign-in in progress"))
			}
		}
		return none, nil, "", l.fail(r, ReasonLoginStateMissing, errors.New("no sign-in in progress in this browser"))
	}
	// The cookie is single-use whatever happens next: the browser forgets
	// it here, and the server its state below.
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: a deletion, with the attributes Start set
		Name: name, Value: "", Path: l.cookiePath(), MaxAge: -1, HttpOnly: true,
		Secure: l.secure || r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
	st, err := l.open(name, c.Value)
	if err != nil {
		return none, nil, "", l.fail(r, ReasonLoginStateInvalid, err)
	}
	if !constantTimeEqual(st.State, state) {
		return none, nil, "", l.fail(r, ReasonStateMismatch, errors.New("state does not match the login cookie"))
	}
	// The state is consumed here, by the first callback that presents it,
	// whatever happens next: a callback that fails (an error, no code, a
	// code the provider refuses) cannot be sent again with the same cookie
	// to have sqlgate redeem codes at the provider, with the dashboard's
	// client credentials, again and again (which gets that client throttled
	// and stops everyone's sign-ins). It is remembered until the first
	// instant open refuses its cookie (now.Unix() > Expires). When the set
	// is full, the callback is refused before any request to the provider:
	// a state that is not remembered could be replayed.
	if err := l.used.use(st.State, time.Unix(st.Expires+1, 0), l.now()); errors.Is(err, ErrTooManyLogins) {
		return none, nil, "", l.fail(r, ReasonTooManyLogins, err)
	} else if errors.Is(err, errStateUsed) {
		return none, nil, "", l.fail(r, ReasonLoginStateInvalid, errCallbackUsed)
	} else if err != nil {
		return none, nil, "", l.fail(r, ReasonLoginStateInvalid, err)
	}
	if e := q.Get("error"); e != "" {
		return none, nil, "", l.fail(r, ReasonIDPError, &OAuthError{Code: e, Description: truncate(q.Get("error_description"), 200)})
	}
	code := q.Get("code")
	if code == "" {
		return none, nil, "", l.fail(r, ReasonCodeExchangeFailed, errors.New("callback without a code"))
	}
	tok, err := l.oauth.Exchange(context.WithValue(r.Context(), oauth2.HTTPClient, l.v.client), code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode != "" {
			err = &OAuthError{Code: re.ErrorCode, Description: truncate(re.ErrorDescription, 200)}
		} else {
			err = fmt.Errorf("token endpoint: %s", sanitizeLibError(err))
		}
		return none, nil, "", l.fail(r, ReasonCodeExchangeFailed, err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return none, nil, "", l.fail(r, ReasonMissingIDToken, errors.New("the token response has no ID token"))
	}
	if len(rawID) > l.v.cfg.MaxTokenBytes {
		return none, nil, "", l.fail(r, ReasonTokenTooLarge, nil)
	}
	// The dashboard's own client is accepted for its sign-ins whether or
	// not the issuer's allowedClients lists it: the code was redeemed with
	// its credentials, and the audience is checked to be it below.
	p, claims, is, err := l.v.verify(r.Context(), rawID, l.now(), ownClient{is: l.is, id: l.cfg.ClientID})
	if err != nil {
		var ae *identity.AuthError
		if errors.As(err, &ae) {
			return none, nil, "", l.fail(r, ae.Reason, ae.Err)
		}
		return none, nil, "", l.fail(r, ReasonMalformedToken, err)
	}
	if is != l.is {
		return none, nil, "", l.fail(r, ReasonWrongIssuer, fmt.Errorf("ID token from issuer %q", is.cfg.Name))
	}
	if aud, ok := claims["aud"].(string); ok && aud != l.cfg.ClientID {
		return none, nil, "", l.fail(r, ReasonAudienceMismatch, errors.New("ID token is not addressed to the web client"))
	} else if auds, ok := claims["aud"].([]any); ok && !slices.Contains(auds, any(l.cfg.ClientID)) {
		return none, nil, "", l.fail(r, ReasonAudienceMismatch, errors.New("ID token is not addressed to the web client"))
	}
	if n, _ := claims["nonce"].(string); !constantTimeEqual(n, st.Nonce) {
		return none, nil, "", l.fail(r, ReasonNonceMismatch, errors.New("ID token nonce does not match the sign-in"))
	}
	l.log.LogAttrs(r.Context(), slog.LevelInfo, "web login", slog.String("issuer", l.is.cfg.Name), slog.String("subject", p.Subject))
	return p, tok, st.ReturnTo, nil
}
