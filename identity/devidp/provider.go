package devidp

import (
	"crypto/rsa"
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

	"github.com/google/uuid"
)

// Shape selects which real provider the tokens imitate.
type Shape string

// The claim shapes a [Provider] can issue.
const (
	// ShapeGeneric issues plain OpenID Connect claims: sub, email, name,
	// preferred_username, groups, roles, scope, client_id, amr.
	ShapeGeneric Shape = "generic"
	// ShapeEntra issues Microsoft Entra ID v2.0 claims: oid, tid,
	// preferred_username, pairwise sub, groups (object ids by default),
	// roles, scp, azp/azpacr, idtyp for app tokens, uti, ver "2.0", and the
	// _claim_names/_claim_sources group overage above a threshold. Like
	// Entra, it puts an authentication context (acrs) in a token only when
	// the request asked for it with the OpenID Connect claims parameter
	// (the authorization request, the device authorization request or the
	// refresh token request), and only for a user with MFA: devidp treats
	// every authentication context as a policy that requires MFA.
	ShapeEntra Shape = "entra"
	// ShapeOkta issues Okta claims: uid, cid, scp (array), groups, jti
	// ("AT."/"ID." prefixed), ver 1, and the user's login as access-token sub.
	ShapeOkta Shape = "okta"
)

// User is an account that can sign in. Password is a secret: it is never
// logged and only compared in constant time.
type User struct {
	Username string
	Password string
	Email    string
	Name     string
	// Groups are group names; entra-shaped tokens carry their object ids
	// ([GroupID]) unless [WithGroupNames] is set.
	Groups []string
	// Roles are application roles assigned to the user.
	Roles []string
	// MFA makes interactive sign-ins (login form, device page) report
	// multi-factor authentication: amr mfa (generic and okta shapes), or
	// the acrs the sign-in asked for (entra shape). The password grant
	// never does, whatever it asks for.
	MFA bool
	// ObjectID is the directory object id (Entra oid, Okta uid). Empty: a
	// stable id derived from the issuer and the username.
	ObjectID string
}

// LogValue implements slog.LogValuer without the password.
func (u User) LogValue() slog.Value {
	return slog.GroupValue(slog.String("username", u.Username), slog.Any("groups", u.Groups))
}

// Client is a registered OAuth client. A client with an empty Secret is
// public (CLI, device flow); one with a Secret is confidential and must
// authenticate at the token endpoint (client_secret_basic or
// client_secret_post).
type Client struct {
	ID     string
	Secret string
	// Name is shown on the login page.
	Name string
	// RedirectURIs are the allowed redirect URIs. For a public client a
	// registered loopback URI (http://127.0.0.1/..., http://[::1]/...,
	// http://localhost/...) matches any port, as RFC 8252 section 7.3 asks
	// for native clients; a confidential client's URIs match exactly.
	RedirectURIs []string
	// Audience overrides the provider's access-token audience for this
	// client's tokens.
	Audience string
	// Roles are the application roles granted to the client itself: they
	// appear in its client-credentials tokens.
	Roles []string
	// Grants limits the grant types the client may use (token endpoint
	// grant_type values); empty allows every grant its type supports.
	Grants []string
}

// LogValue implements slog.LogValuer without the secret.
func (c Client) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", c.ID), slog.Bool("confidential", c.Secret != ""))
}

// Option configures a [Provider].
type Option func(*config) error

type config struct {
	issuer           string
	users            []User
	clients          []Client
	audience         string
	tokenTTL         time.Duration
	refreshTTL       time.Duration
	codeTTL          time.Duration
	deviceTTL        time.Duration
	deviceInterval   time.Duration
	shape            Shape
	tenantID         string
	groupNames       bool
	groupNamesSet    bool
	overageThreshold int
	now              func() time.Time
	key              *rsa.PrivateKey
	logger           *slog.Logger
	keyFile          string
}

// WithIssuer sets the issuer URL (required). Its path is the prefix under
// which the handler answers, e.g. http://127.0.0.1:8080/idp.
func WithIssuer(issuer string) Option {
	return func(c *config) error { c.issuer = issuer; return nil }
}

// WithUsers adds accounts that can sign in.
func WithUsers(users ...User) Option {
	return func(c *config) error { c.users = append(c.users, users...); return nil }
}

// WithClients adds registered OAuth clients.
func WithClients(clients ...Client) Option {
	return func(c *config) error { c.clients = append(c.clients, clients...); return nil }
}

// WithAudience sets the access-token audience (the API, sqlgate). Default
// "sqlgate".
func WithAudience(aud string) Option {
	return func(c *config) error { c.audience = aud; return nil }
}

// WithTokenTTL sets the lifetime of access and ID tokens (default 1h).
func WithTokenTTL(d time.Duration) Option {
	return func(c *config) error { c.tokenTTL = d; return nil }
}

// WithRefreshTTL sets the lifetime of refresh tokens (default 24h).
func WithRefreshTTL(d time.Duration) Option {
	return func(c *config) error { c.refreshTTL = d; return nil }
}

// WithCodeTTL sets the lifetime of authorization codes (default 1m).
func WithCodeTTL(d time.Duration) Option {
	return func(c *config) error { c.codeTTL = d; return nil }
}

// WithDeviceCodeTTL sets the lifetime of device codes (default 10m).
func WithDeviceCodeTTL(d time.Duration) Option {
	return func(c *config) error { c.deviceTTL = d; return nil }
}

// WithDeviceInterval sets the device-flow polling interval announced to
// clients, in whole seconds (default 5s, minimum 1s).
func WithDeviceInterval(d time.Duration) Option {
	return func(c *config) error { c.deviceInterval = d; return nil }
}

// WithShape selects the claim shape (default [ShapeGeneric]).
func WithShape(s Shape) Option {
	return func(c *config) error { c.shape = s; return nil }
}

// WithTenantID sets the Entra tenant id carried in tid (default: a stable
// id derived from the issuer).
func WithTenantID(tid string) Option {
	return func(c *config) error { c.tenantID = tid; return nil }
}

// WithGroupNames makes entra-shaped tokens carry group names instead of
// object ids (what Entra emits with the cloud_displayname option). Other
// shapes always carry names.
func WithGroupNames(names bool) Option {
	return func(c *config) error { c.groupNames = names; c.groupNamesSet = true; return nil }
}

// WithGroupOverageThreshold sets how many groups an entra-shaped token may
// carry before it is replaced by the overage claims (default 200, as Entra
// does for JWTs).
func WithGroupOverageThreshold(n int) Option {
	return func(c *config) error { c.overageThreshold = n; return nil }
}

// WithClock sets the provider's clock (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *config) error { c.now = now; return nil }
}

// WithKey sets the initial signing key instead of generating one (tests
// share one key to save time). [Open] ignores it when the key file exists.
func WithKey(key *rsa.PrivateKey) Option {
	return func(c *config) error { c.key = key; return nil }
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error { c.logger = l; return nil }
}

// Provider is a running OpenID provider. It is safe for concurrent use.
type Provider struct {
	cfg     config
	prefix  string
	users   map[string]*User
	clients map[string]*Client
	log     *slog.Logger

	mu        sync.Mutex
	keys      []*signingKey // active first
	codes     map[string]*authCode
	refresh   map[string]*refreshGrant // by token hash
	families  map[string][]string      // family -> token hashes
	devices   map[string]*deviceGrant  // by device code hash
	userCodes map[string]*deviceGrant
}

// New returns a provider with an in-memory signing key (generated unless
// [WithKey] is given).
func New(opts ...Option) (*Provider, error) {
	return newProvider("", opts)
}

// Open returns a provider whose signing keys persist in keyFile (PEM,
// mode 0600): the file is created with a fresh key when missing, so a
// restart keeps signing with the same key.
func Open(keyFile string, opts ...Option) (*Provider, error) {
	if keyFile == "" {
		return nil, errors.New("devidp: empty key file path")
	}
	return newProvider(keyFile, opts)
}

func newProvider(keyFile string, opts []Option) (*Provider, error) {
	c := config{
		audience:         "sqlgate",
		tokenTTL:         time.Hour,
		refreshTTL:       24 * time.Hour,
		codeTTL:          time.Minute,
		deviceTTL:        10 * time.Minute,
		deviceInterval:   5 * time.Second,
		shape:            ShapeGeneric,
		overageThreshold: 200,
		now:              time.Now,
		keyFile:          keyFile,
	}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.tenantID == "" {
		c.tenantID = uuid.NewSHA1(uuid.NameSpaceURL, []byte("devidp-tenant:"+c.issuer)).String()
	}
	if !c.groupNamesSet {
		c.groupNames = c.shape != ShapeEntra
	}
	u, _ := url.Parse(c.issuer)
	p := &Provider{
		cfg:       c,
		prefix:    strings.TrimSuffix(u.EscapedPath(), "/"),
		users:     map[string]*User{},
		clients:   map[string]*Client{},
		log:       c.logger,
		codes:     map[string]*authCode{},
		refresh:   map[string]*refreshGrant{},
		families:  map[string][]string{},
		devices:   map[string]*deviceGrant{},
		userCodes: map[string]*deviceGrant{},
	}
	for i := range c.users {
		usr := c.users[i]
		if usr.ObjectID == "" {
			usr.ObjectID = p.derivedObjectID(usr.Username)
		}
		usr.Groups = slices.Clone(usr.Groups)
		usr.Roles = slices.Clone(usr.Roles)
		p.users[usr.Username] = &usr
	}
	for i := range c.clients {
		cl := c.clients[i]
		cl.RedirectURIs = slices.Clone(cl.RedirectURIs)
		p.clients[cl.ID] = &cl
	}
	if err := p.initKeys(); err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	return p, nil
}

func (c *config) validate() error {
	var errs []error
	u, err := url.Parse(c.issuer)
	switch {
	case c.issuer == "":
		errs = append(errs, errors.New("issuer is required (WithIssuer)"))
	case err != nil:
		errs = append(errs, fmt.Errorf("issuer: %w", err))
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		errs = append(errs, fmt.Errorf("issuer %q is not an absolute http(s) URL", c.issuer))
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(c.issuer, "/"):
		errs = append(errs, fmt.Errorf("issuer %q must have no query, fragment or trailing slash", c.issuer))
	}
	switch c.shape {
	case ShapeGeneric, ShapeEntra, ShapeOkta:
	default:
		errs = append(errs, fmt.Errorf("unknown claim shape %q", c.shape))
	}
	if c.audience == "" {
		errs = append(errs, errors.New("empty access-token audience"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"token TTL", c.tokenTTL}, {"refresh TTL", c.refreshTTL}, {"code TTL", c.codeTTL}, {"device code TTL", c.deviceTTL}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", d.name))
		}
	}
	if c.deviceInterval < time.Second {
		errs = append(errs, errors.New("device interval must be at least 1s"))
	}
	if c.overageThreshold < 1 {
		errs = append(errs, errors.New("group overage threshold must be at least 1"))
	}
	if c.now == nil {
		errs = append(errs, errors.New("nil clock"))
	}
	seen := map[string]bool{}
	for _, usr := range c.users {
		if usr.Username == "" || usr.Password == "" {
			errs = append(errs, fmt.Errorf("user %q needs a username and a password", usr.Username))
		}
		if seen[usr.Username] {
			errs = append(errs, fmt.Errorf("duplicate user %q", usr.Username))
		}
		seen[usr.Username] = true
	}
	seen = map[string]bool{}
	for _, cl := range c.clients {
		if cl.ID == "" {
			errs = append(errs, errors.New("client with empty id"))
		}
		if seen[cl.ID] {
			errs = append(errs, fmt.Errorf("duplicate client %q", cl.ID))
		}
		seen[cl.ID] = true
		for _, ru := range cl.RedirectURIs {
			u, err := url.Parse(ru)
			if err != nil || u.Scheme == "" || u.Host == "" || u.Fragment != "" {
				errs = append(errs, fmt.Errorf("client %q: invalid redirect URI %q", cl.ID, ru))
			}
		}
		for _, g := range cl.Grants {
			if !slices.Contains(allGrants, g) {
				errs = append(errs, fmt.Errorf("client %q: unknown grant type %q", cl.ID, g))
			}
		}
	}
	return errors.Join(errs...)
}

func (p *Provider) derivedObjectID(username string) string {
	if p.cfg.shape == ShapeOkta {
		return oktaID("00u", p.cfg.issuer+":"+username)
	}
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("devidp-user:"+p.cfg.issuer+":"+username)).String()
}

func (p *Provider) initKeys() error {
	if p.cfg.keyFile != "" {
		keys, err := loadKeys(p.cfg.keyFile)
		if err != nil {
			return err
		}
		if keys != nil {
			p.keys = keys
			return nil
		}
	}
	var k *signingKey
	var err error
	if p.cfg.key != nil {
		k, err = newSigningKey(p.cfg.key)
	} else {
		k, err = generateKey()
	}
	if err != nil {
		return err
	}
	p.keys = []*signingKey{k}
	if p.cfg.keyFile != "" {
		return saveKeys(p.cfg.keyFile, p.keys)
	}
	return nil
}

// GroupID returns the stable object id that entra-shaped tokens carry for
// the group name (map it back with the verifier's group map).
func GroupID(name string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("devidp-group:"+name)).String()
}

// Issuer returns the issuer URL.
func (p *Provider) Issuer() string { return p.cfg.issuer }

// Audience returns the default access-token audience.
func (p *Provider) Audience() string { return p.cfg.audience }

// TenantID returns the tenant id carried by entra-shaped tokens.
func (p *Provider) TenantID() string { return p.cfg.tenantID }

// ObjectID returns the object id of the named user ("" when unknown).
func (p *Provider) ObjectID(username string) string {
	if u, ok := p.users[username]; ok {
		return u.ObjectID
	}
	return ""
}

// Endpoint URLs, relative to the issuer.
const (
	pathDiscovery  = "/.well-known/openid-configuration"
	pathKeys       = "/keys"
	pathAuthorize  = "/authorize"
	pathToken      = "/token"
	pathDevice     = "/device"
	pathDeviceCode = "/device/code"
	pathUserinfo   = "/userinfo"
)

// TokenURL returns the token endpoint.
func (p *Provider) TokenURL() string { return p.cfg.issuer + pathToken }

// AuthorizeURL returns the authorization endpoint.
func (p *Provider) AuthorizeURL() string { return p.cfg.issuer + pathAuthorize }

// DeviceAuthorizationURL returns the device authorization endpoint.
func (p *Provider) DeviceAuthorizationURL() string { return p.cfg.issuer + pathDeviceCode }

// DeviceVerificationURL returns the page where a user enters a device code.
func (p *Provider) DeviceVerificationURL() string { return p.cfg.issuer + pathDevice }

// JWKSURL returns the JSON Web Key Set URL.
func (p *Provider) JWKSURL() string { return p.cfg.issuer + pathKeys }

// KeyID returns the id of the active signing key.
func (p *Provider) KeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[0].kid
}

// PublicKey returns the active signing key's public half.
func (p *Provider) PublicKey() *rsa.PublicKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &p.keys[0].priv.PublicKey
}

// RotateKey generates a new active signing key. Earlier keys stay in the
// JWKS (tokens they signed still verify) until [Provider.RetireOldKeys].
// With a key file, the file is rewritten. It returns the new key id.
func (p *Provider) RotateKey() (string, error) {
	k, err := generateKey()
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := append([]*signingKey{k}, p.keys...)
	if p.cfg.keyFile != "" {
		if err := saveKeys(p.cfg.keyFile, keys); err != nil {
			return "", err
		}
	}
	p.keys = keys
	return k.kid, nil
}

// RetireOldKeys removes every key but the active one from the JWKS (and
// the key file): tokens signed with them no longer verify anywhere.
func (p *Provider) RetireOldKeys() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := p.keys[:1:1]
	if p.cfg.keyFile != "" {
		if err := saveKeys(p.cfg.keyFile, keys); err != nil {
			return err
		}
	}
	p.keys = keys
	return nil
}

// ServeHTTP serves the provider's endpoints under the issuer's path.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, p.prefix)
	if !ok || (path != "" && path[0] != '/') {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	switch path {
	case pathDiscovery:
		p.allow(w, r, p.serveDiscovery, http.MethodGet, http.MethodHead)
	case pathKeys:
		p.allow(w, r, p.serveKeys, http.MethodGet, http.MethodHead)
	case pathAuthorize:
		p.allow(w, r, p.serveAuthorize, http.MethodGet, http.MethodPost)
	case pathToken:
		p.allow(w, r, p.serveToken, http.MethodPost)
	case pathDeviceCode:
		p.allow(w, r, p.serveDeviceAuthorization, http.MethodPost)
	case pathDevice:
		p.allow(w, r, p.serveDevicePage, http.MethodGet, http.MethodPost)
	case pathUserinfo:
		p.allow(w, r, p.serveUserinfo, http.MethodGet, http.MethodPost)
	default:
		http.NotFound(w, r)
	}
}

func (p *Provider) allow(w http.ResponseWriter, r *http.Request, h http.HandlerFunc, methods ...string) {
	if !slices.Contains(methods, r.Method) {
		w.Header().Set("Allow", strings.Join(methods, ", "))
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h(w, r)
}

var allGrants = []string{
	grantAuthorizationCode, grantRefreshToken, grantPassword, grantClientCredentials, grantDeviceCode,
}

// Grant types.
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantPassword          = "password"
	grantClientCredentials = "client_credentials"
	grantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

func (p *Provider) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	iss := p.cfg.issuer
	subjectTypes := []string{"public"}
	if p.cfg.shape == ShapeEntra {
		subjectTypes = []string{"pairwise"}
	}
	doc := map[string]any{
		"issuer":                                         iss,
		"authorization_endpoint":                         iss + pathAuthorize,
		"token_endpoint":                                 iss + pathToken,
		"device_authorization_endpoint":                  iss + pathDeviceCode,
		"userinfo_endpoint":                              iss + pathUserinfo,
		"jwks_uri":                                       iss + pathKeys,
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          allGrants,
		"subject_types_supported":                        subjectTypes,
		"id_token_signing_alg_values_supported":          []string{"RS256"},
		"token_endpoint_auth_methods_supported":          []string{"client_secret_basic", "client_secret_post", "none"},
		"code_challenge_methods_supported":               []string{"S256"},
		"scopes_supported":                               []string{"openid", "profile", "email", "offline_access", "groups"},
		"claims_supported":                               p.claimsSupported(),
		"authorization_response_iss_parameter_supported": true,
	}
	if p.cfg.shape == ShapeEntra {
		doc["tenant_region_scope"] = "EU"
		doc["claims_parameter_supported"] = true
	}
	writeJSON(w, http.StatusOK, doc)
}

func (p *Provider) claimsSupported() []string {
	switch p.cfg.shape {
	case ShapeEntra:
		return []string{"sub", "iss", "aud", "exp", "iat", "nbf", "name", "preferred_username", "email", "oid", "tid", "groups", "roles", "scp", "azp", "azpacr", "idtyp", "uti", "ver", "nonce", "acrs"}
	case ShapeOkta:
		return []string{"sub", "iss", "aud", "exp", "iat", "name", "preferred_username", "email", "uid", "cid", "scp", "groups", "amr", "auth_time", "jti", "ver", "nonce"}
	default:
		return []string{"sub", "iss", "aud", "exp", "iat", "nbf", "name", "preferred_username", "email", "email_verified", "groups", "roles", "scope", "client_id", "amr", "acr", "auth_time", "jti", "nonce"}
	}
}

func (p *Provider) serveKeys(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	body, err := jwks(p.keys)
	p.mu.Unlock()
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var _ http.Handler = (*Provider)(nil)
