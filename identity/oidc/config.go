package oidc

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Preset selects how a provider's claims map to an [identity.Principal].
type Preset string

// The provider presets.
const (
	// PresetGeneric reads sub, email, name, groups, roles and scope (or
	// scp); every claim name may be changed in [ClaimMapping].
	PresetGeneric Preset = "generic"
	// PresetEntra reads Microsoft Entra ID v2.0 tokens: oid, tid,
	// preferred_username/upn, groups, roles, scp, uti, idtyp; it detects
	// the group overage and validates tid against AllowedTenants.
	PresetEntra Preset = "entra"
	// PresetOkta reads Okta tokens from the org or a custom authorization
	// server: uid, cid, groups, scp, jti.
	PresetOkta Preset = "okta"
)

// OverageMode says what to do with an Entra token whose groups did not fit
// (the _claim_names / hasgroups overage claims).
type OverageMode string

// The overage modes.
const (
	// OverageRefuse rejects the token with reason groups_overage.
	OverageRefuse OverageMode = "refuse"
	// OverageGraph fetches the user's groups from Microsoft Graph with the
	// broker's application credentials.
	OverageGraph OverageMode = "graph"
)

// TenantPlaceholder is the part of an Entra multi-tenant issuer that stands
// for the tenant id, as in https://login.microsoftonline.com/{tenantid}/v2.0.
const TenantPlaceholder = "{tenantid}"

// Config configures a [Verifier]: the issuers it trusts and its limits. The
// zero values of the limits select the defaults.
type Config struct {
	// Issuers are the identity providers whose tokens are accepted.
	Issuers []IssuerConfig `json:"issuers" yaml:"issuers"`
	// MaxTokenBytes rejects longer tokens before parsing (default 16384).
	MaxTokenBytes int `json:"maxTokenBytes,omitempty" yaml:"maxTokenBytes,omitempty"`
	// CacheEntries bounds the cache of verified tokens (default 10000;
	// -1 disables it).
	CacheEntries int `json:"cacheEntries,omitempty" yaml:"cacheEntries,omitempty"`
	// JWKSRefreshInterval is the least time between two key-set fetches
	// caused by tokens with an unknown kid (default 30s), so a flood of
	// made-up kids cannot hammer the provider.
	JWKSRefreshInterval Duration `json:"jwksRefreshInterval,omitempty" yaml:"jwksRefreshInterval,omitempty"`
	// JWKSMaxAge is how long a fetched key set is used before it is fetched
	// again, so keys the provider withdrew stop verifying (default 1h).
	JWKSMaxAge Duration `json:"jwksMaxAge,omitempty" yaml:"jwksMaxAge,omitempty"`
}

// IssuerConfig describes one trusted identity provider.
type IssuerConfig struct {
	// Name identifies the issuer in logs and in [WebLoginConfig].
	Name string `json:"name" yaml:"name"`
	// Issuer is the exact iss value (and discovery base). For Entra
	// multi-tenant apps it is the template
	// https://login.microsoftonline.com/{tenantid}/v2.0.
	Issuer string `json:"issuer" yaml:"issuer"`
	// DiscoveryURL is where the OpenID configuration is fetched when it is
	// not Issuer + "/.well-known/openid-configuration". For an Entra
	// template the default is the "organizations" endpoint.
	DiscoveryURL string `json:"discoveryURL,omitempty" yaml:"discoveryURL,omitempty"`
	// Preset selects the claim mapping (default generic).
	Preset Preset `json:"preset,omitempty" yaml:"preset,omitempty"`
	// Audiences are the accepted aud values: the API's audience for access
	// tokens and the client ids whose ID tokens are accepted.
	Audiences []string `json:"audiences" yaml:"audiences"`
	// AllowedClients are the OAuth client ids whose tokens are accepted: a
	// token's client is its azp claim, else client_id (RFC 9068), else cid
	// (Okta), else appid (Entra v1.0), else, for an ID token with a single
	// audience, that audience. When the list is set, ClientID is allowed
	// too, and a [WebLogin] accepts its own client id (WebLoginConfig.ClientID)
	// for the ID tokens of its sign-ins; sqlgated also adds its CLI's client
	// id (identity.cli.clientID) to the issuers the CLI signs in with. Empty
	// accepts the token of any client the provider lets obtain one of
	// Audiences: set it for every production issuer (Open warns when it is
	// not set). Validate requires it with Okta's default authorization
	// server, whose audience every app of the org can get.
	AllowedClients []string `json:"allowedClients,omitempty" yaml:"allowedClients,omitempty"`
	// ClientID is sqlgate's client id at this provider (web login, Graph).
	ClientID string `json:"clientID,omitempty" yaml:"clientID,omitempty"`
	// ClientSecretFile or ClientSecretEnv names where the client secret is
	// (never inline).
	ClientSecretFile string `json:"clientSecretFile,omitempty" yaml:"clientSecretFile,omitempty"`
	ClientSecretEnv  string `json:"clientSecretEnv,omitempty" yaml:"clientSecretEnv,omitempty"`
	// AllowedTenants restricts the Entra tid (required with a template).
	AllowedTenants []string `json:"allowedTenants,omitempty" yaml:"allowedTenants,omitempty"`
	// Claims overrides the preset's claim names.
	Claims ClaimMapping `json:"claims,omitzero" yaml:"claims,omitempty"`
	// GroupMap maps the provider's group names or ids to the group names
	// policies use. Unmapped groups pass through unless DropUnmappedGroups,
	// which Validate requires of every issuer when several are configured
	// (policies compare group names, whichever directory sent them).
	GroupMap           map[string]string `json:"groupMap,omitempty" yaml:"groupMap,omitempty"`
	DropUnmappedGroups bool              `json:"dropUnmappedGroups,omitempty" yaml:"dropUnmappedGroups,omitempty"`
	// RoleMap maps the provider's role names (the roles claim: Entra app
	// roles, Keycloak realm roles) to the role names policies use.
	// Unmapped roles pass through unless DropUnmappedRoles, which Validate
	// requires of every issuer when several are configured (policies
	// compare role names, whichever provider sent them).
	RoleMap           map[string]string `json:"roleMap,omitempty" yaml:"roleMap,omitempty"`
	DropUnmappedRoles bool              `json:"dropUnmappedRoles,omitempty" yaml:"dropUnmappedRoles,omitempty"`
	// Overage handles Entra's group overage (default refuse).
	Overage OverageConfig `json:"overage,omitzero" yaml:"overage,omitempty"`
	// ClockSkew is the tolerance on exp, nbf and iat (default 1m, at most 5m).
	ClockSkew Duration `json:"clockSkew,omitempty" yaml:"clockSkew,omitempty"`
	// Algorithms is the allow-list of signature algorithms (default: the
	// asymmetric ones, RS*, PS*, ES*, EdDSA). none and HS* are never allowed.
	Algorithms []string `json:"algorithms,omitempty" yaml:"algorithms,omitempty"`
	// MFAACRValues are acr (or Entra acrs auth-context) values that count as
	// multi-factor evidence, besides the amr values mfa, mca and
	// MFAAMRValues.
	MFAACRValues []string `json:"mfaACRValues,omitempty" yaml:"mfaACRValues,omitempty"`
	// MFAAMRValues are further amr values that count as multi-factor
	// evidence, besides mfa and mca (RFC 8176), which always do. Values
	// naming one method (otp, hwk, swk, sc, fido, pwd) prove one factor:
	// list one only when this provider sends it for multi-factor sign-ins
	// alone.
	MFAAMRValues []string `json:"mfaAMRValues,omitempty" yaml:"mfaAMRValues,omitempty"`
	// RequireAuthTime refuses user tokens without an auth_time claim
	// (missing_claim). The sign-in cutoff of an offboarding dates a sign-in
	// by auth_time, else by iat, and a refreshed token has a new iat: only
	// with auth_time is a token refreshed after a revoke-all from an older
	// sign-in refused. Entra v2.0 tokens carry auth_time only as an optional
	// claim (docs/identity.md). Service (client-credentials) tokens are
	// exempt: each is a new authentication, dated by its iat.
	RequireAuthTime bool `json:"requireAuthTime,omitempty" yaml:"requireAuthTime,omitempty"`
}

// ClaimMapping names the claims a principal is read from; empty fields keep
// the preset's choice. Names may be dotted paths into nested objects
// (realm_access.roles).
type ClaimMapping struct {
	Subject  string `json:"subject,omitempty" yaml:"subject,omitempty"`
	ObjectID string `json:"objectID,omitempty" yaml:"objectID,omitempty"`
	Email    string `json:"email,omitempty" yaml:"email,omitempty"`
	Name     string `json:"name,omitempty" yaml:"name,omitempty"`
	Groups   string `json:"groups,omitempty" yaml:"groups,omitempty"`
	Roles    string `json:"roles,omitempty" yaml:"roles,omitempty"`
	Scopes   string `json:"scopes,omitempty" yaml:"scopes,omitempty"`
	Tenant   string `json:"tenant,omitempty" yaml:"tenant,omitempty"`
}

// OverageConfig configures the Microsoft Graph lookup of a user's groups
// when an Entra token carries the overage claims instead.
type OverageConfig struct {
	// Mode is refuse (default) or graph.
	Mode OverageMode `json:"mode,omitempty" yaml:"mode,omitempty"`
	// GraphURL is the Graph API base (default https://graph.microsoft.com).
	GraphURL string `json:"graphURL,omitempty" yaml:"graphURL,omitempty"`
	// TokenURL is where the app token for Graph is requested; {tenantid}
	// becomes the user's tid (default
	// https://login.microsoftonline.com/{tenantid}/oauth2/v2.0/token).
	TokenURL string `json:"tokenURL,omitempty" yaml:"tokenURL,omitempty"`
	// Scope of the app token (default https://graph.microsoft.com/.default).
	Scope string `json:"scope,omitempty" yaml:"scope,omitempty"`
	// ClientID and the secret reference of the app that reads Graph
	// (default: the issuer's).
	ClientID         string `json:"clientID,omitempty" yaml:"clientID,omitempty"`
	ClientSecretFile string `json:"clientSecretFile,omitempty" yaml:"clientSecretFile,omitempty"`
	ClientSecretEnv  string `json:"clientSecretEnv,omitempty" yaml:"clientSecretEnv,omitempty"`
	// SecurityEnabledOnly limits the lookup to security groups.
	SecurityEnabledOnly bool `json:"securityEnabledOnly,omitempty" yaml:"securityEnabledOnly,omitempty"`
	// Timeout bounds one lookup (default 5s).
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("30s",
// "5m") in YAML and JSON.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// errNotDuration is UnmarshalText's error. It does not quote the value:
// a secret pasted into the wrong key must not reach a log.
var errNotDuration = errors.New(`not a duration (a number with a unit, as in "30s" or "5m")`)

// UnmarshalText implements encoding.TextUnmarshaler. Its error does not
// carry the text.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return errNotDuration
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML decodes a YAML scalar as UnmarshalText does, but reports a
// value that is not a duration as yaml reports a time.Duration's, by line
// and type (go.yaml.in/yaml/v3 gives a TextUnmarshaler's error without the
// line). It is the func-style Unmarshaler that yaml v3 still honours, so
// this package needs no yaml import.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return err // a *yaml.TypeError: the line, never the value
	}
	if v, err := time.ParseDuration(s); err == nil {
		*d = Duration(v)
		return nil
	}
	// yaml's own time.Duration decoding fails the same way and says where.
	var v time.Duration
	if err := unmarshal(&v); err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Defaults and bounds.
const (
	DefaultMaxTokenBytes       = 16 << 10
	DefaultCacheEntries        = 10000
	DefaultJWKSRefreshInterval = 30 * time.Second
	DefaultJWKSMaxAge          = time.Hour
	DefaultClockSkew           = time.Minute
	MaxClockSkew               = 5 * time.Minute
	DefaultGraphURL            = "https://graph.microsoft.com"
	DefaultGraphTokenURL       = "https://login.microsoftonline.com/" + TenantPlaceholder + "/oauth2/v2.0/token"
	DefaultGraphScope          = "https://graph.microsoft.com/.default"
	DefaultGraphTimeout        = 5 * time.Second
	maxTokenBytesCeiling       = 1 << 20
)

// asymmetricAlgs are the algorithms a verifier may accept.
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// withDefaults returns c with every unset knob at its default.
func (c Config) withDefaults() Config {
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.CacheEntries == 0 {
		c.CacheEntries = DefaultCacheEntries
	}
	if c.JWKSRefreshInterval == 0 {
		c.JWKSRefreshInterval = Duration(DefaultJWKSRefreshInterval)
	}
	if c.JWKSMaxAge == 0 {
		c.JWKSMaxAge = Duration(DefaultJWKSMaxAge)
	}
	iss := make([]IssuerConfig, len(c.Issuers))
	for i, ic := range c.Issuers {
		iss[i] = ic.withDefaults()
	}
	c.Issuers = iss
	return c
}

func (ic IssuerConfig) withDefaults() IssuerConfig {
	if ic.Preset == "" {
		ic.Preset = PresetGeneric
	}
	if ic.ClockSkew == 0 {
		ic.ClockSkew = Duration(DefaultClockSkew)
	}
	if len(ic.Algorithms) == 0 {
		ic.Algorithms = slices.Clone(asymmetricAlgs)
	}
	if ic.DiscoveryURL == "" && strings.Contains(ic.Issuer, TenantPlaceholder) {
		ic.DiscoveryURL = strings.Replace(ic.Issuer, TenantPlaceholder, "organizations", 1)
	}
	o := &ic.Overage
	if o.Mode == "" {
		o.Mode = OverageRefuse
	}
	if o.Mode == OverageGraph {
		if o.GraphURL == "" {
			o.GraphURL = DefaultGraphURL
		}
		if o.TokenURL == "" {
			o.TokenURL = DefaultGraphTokenURL
		}
		if o.Scope == "" {
			o.Scope = DefaultGraphScope
		}
		if o.Timeout == 0 {
			o.Timeout = Duration(DefaultGraphTimeout)
		}
		if o.ClientID == "" {
			o.ClientID = ic.ClientID
		}
		if o.ClientSecretFile == "" && o.ClientSecretEnv == "" {
			o.ClientSecretFile, o.ClientSecretEnv = ic.ClientSecretFile, ic.ClientSecretEnv
		}
	}
	return ic
}

// Validate reports every problem in the configuration at once.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Issuers) == 0 {
		add("oidc: at least one issuer is required")
	}
	if c.MaxTokenBytes < 0 || (c.MaxTokenBytes > 0 && c.MaxTokenBytes < 1024) || c.MaxTokenBytes > maxTokenBytesCeiling {
		add("oidc: maxTokenBytes %d out of range [1024, %d]", c.MaxTokenBytes, maxTokenBytesCeiling)
	}
	if c.CacheEntries < -1 {
		add("oidc: cacheEntries %d: use -1 to disable the cache", c.CacheEntries)
	}
	if c.JWKSRefreshInterval < 0 {
		add("oidc: negative jwksRefreshInterval")
	}
	if c.JWKSMaxAge < 0 {
		add("oidc: negative jwksMaxAge")
	}
	names, issuers := map[string]bool{}, map[string]bool{}
	for i, ic := range c.Issuers {
		label := fmt.Sprintf("oidc: issuers[%d]", i)
		if ic.Name != "" {
			label = fmt.Sprintf("oidc: issuer %q", ic.Name)
		}
		if ic.Name == "" {
			add("%s: name is required", label)
		} else if names[ic.Name] {
			add("%s: duplicate name", label)
		}
		names[ic.Name] = true
		if ic.Issuer != "" && issuers[ic.Issuer] {
			add("%s: issuer %s configured twice", label, ic.Issuer)
		}
		issuers[ic.Issuer] = true
		for _, err := range ic.validate() {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
		}
		if len(c.Issuers) > 1 && !ic.DropUnmappedGroups {
			add("%s: with several issuers every issuer needs dropUnmappedGroups: true (map the groups it may grant in groupMap): "+
				"policies and http.adminGroups compare group names, so an unmapped group of one issuer passing through by name "+
				"would let that directory's administrators grant another issuer's groups (a group named sales or sqlgate-admins)", label)
		}
		if len(c.Issuers) > 1 && !ic.DropUnmappedRoles {
			add("%s: with several issuers every issuer needs dropUnmappedRoles: true (map the roles it may grant in roleMap): "+
				"policies compare role names, so an unmapped role of one issuer passing through by name would let that "+
				"provider's administrators grant another issuer's roles (an app role named orders.writer)", label)
		}
	}
	return errors.Join(errs...)
}

// AcceptsWebClient reports whether the dashboard may sign in with clientID
// at this issuer: its ID tokens are addressed to the client, so the issuer
// must accept it as an audience. [NewWebLogin] refuses any other client, and
// sqlgated serve --check applies the same rule before any provider is
// reached.
func (ic IssuerConfig) AcceptsWebClient(clientID string) bool {
	return slices.Contains(ic.Audiences, clientID)
}

// oktaDefaultServer reports whether ic looks like Okta's default custom
// authorization server: audience api://default, or an issuer ending in
// /oauth2/default. Every application of the Okta org can get its tokens.
func (ic IssuerConfig) oktaDefaultServer() bool {
	if slices.Contains(ic.Audiences, "api://default") {
		return true
	}
	u, err := url.Parse(ic.Issuer)
	return err == nil && strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/oauth2/default")
}

func (ic IssuerConfig) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	preset := ic.Preset
	switch preset {
	case "", PresetGeneric, PresetEntra, PresetOkta:
	default:
		add("unknown preset %q (want entra, okta or generic)", preset)
	}
	template := strings.Contains(ic.Issuer, TenantPlaceholder)
	switch {
	case ic.Issuer == "":
		add("issuer URL is required")
	case template && preset != PresetEntra:
		add("the %s issuer template is only for the entra preset", TenantPlaceholder)
	case template && strings.Count(ic.Issuer, TenantPlaceholder) != 1:
		add("issuer template must contain %s once", TenantPlaceholder)
	case template && len(ic.AllowedTenants) == 0:
		add("a multi-tenant issuer needs allowedTenants")
	}
	if ic.Issuer != "" {
		if err := checkURL(strings.Replace(ic.Issuer, TenantPlaceholder, "tenant", 1)); err != nil {
			add("issuer: %v", err)
		}
	}
	if ic.DiscoveryURL != "" {
		if err := checkURL(ic.DiscoveryURL); err != nil {
			add("discoveryURL: %v", err)
		}
	}
	if len(ic.Audiences) == 0 {
		add("audiences: at least one accepted audience is required")
	}
	for _, a := range ic.Audiences {
		if strings.TrimSpace(a) == "" {
			add("audiences: empty audience")
		}
	}
	for _, cl := range ic.AllowedClients {
		if strings.TrimSpace(cl) == "" {
			add("allowedClients: empty client id")
		}
	}
	if len(ic.AllowedClients) == 0 && ic.oktaDefaultServer() {
		add("Okta's default authorization server (audience api://default, issuer .../oauth2/default) issues tokens to every application of the Okta org, " +
			"under each one's sign-on policy: set allowedClients to sqlgate's client ids, or better create an authorization server for sqlgate")
	}
	if ic.ClientSecretFile != "" && ic.ClientSecretEnv != "" {
		add("set clientSecretFile or clientSecretEnv, not both")
	}
	for _, t := range ic.AllowedTenants {
		if t == "" || strings.ContainsAny(t, "/{} ") {
			add("allowedTenants: invalid tenant id %q", t)
		}
	}
	if len(ic.AllowedTenants) > 0 && preset != PresetEntra {
		add("allowedTenants is only for the entra preset")
	}
	for field, path := range map[string]string{
		"subject": ic.Claims.Subject, "objectID": ic.Claims.ObjectID, "email": ic.Claims.Email,
		"name": ic.Claims.Name, "groups": ic.Claims.Groups, "roles": ic.Claims.Roles,
		"scopes": ic.Claims.Scopes, "tenant": ic.Claims.Tenant,
	} {
		if path != "" && slices.Contains(strings.Split(path, "."), "") {
			add("claims.%s: invalid claim path %q", field, path)
		}
	}
	for k, v := range ic.GroupMap {
		if k == "" || v == "" {
			add("groupMap: empty group name in %q: %q", k, v)
		}
	}
	for k, v := range ic.RoleMap {
		if k == "" || v == "" {
			add("roleMap: empty role name in %q: %q", k, v)
		}
	}
	for _, a := range ic.MFAAMRValues {
		if strings.TrimSpace(a) == "" {
			add("mfaAMRValues: empty amr value")
		}
	}
	skew := time.Duration(ic.ClockSkew)
	if skew < 0 || skew > MaxClockSkew {
		add("clockSkew %s out of range [0, %s]", skew, MaxClockSkew)
	}
	for _, a := range ic.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			add("algorithms: %q is never allowed", a)
		case strings.HasPrefix(strings.ToUpper(a), "HS"):
			add("algorithms: %s is symmetric (HMAC) and never allowed", a)
		case !slices.Contains(asymmetricAlgs, a):
			add("algorithms: unknown algorithm %q", a)
		}
	}
	o := ic.Overage
	switch o.Mode {
	case "", OverageRefuse:
	case OverageGraph:
		if preset != PresetEntra {
			add("overage.mode graph is only for the entra preset")
		}
		if o.ClientID == "" && ic.ClientID == "" {
			add("overage.mode graph needs a client id (overage.clientID or clientID)")
		}
		if o.ClientSecretFile != "" && o.ClientSecretEnv != "" {
			add("overage: set clientSecretFile or clientSecretEnv, not both")
		}
		if o.ClientSecretFile == "" && o.ClientSecretEnv == "" && ic.ClientSecretFile == "" && ic.ClientSecretEnv == "" {
			add("overage.mode graph needs a client secret reference (file or environment variable)")
		}
		for name, u := range map[string]string{"graphURL": o.GraphURL, "tokenURL": strings.Replace(o.TokenURL, TenantPlaceholder, "tenant", 1)} {
			if u != "" {
				if err := checkURL(u); err != nil {
					add("overage.%s: %v", name, err)
				}
			}
		}
		if o.Timeout < 0 {
			add("overage.timeout must not be negative")
		}
	default:
		add("overage.mode %q: want refuse or graph", o.Mode)
	}
	return errs
}

// checkURL accepts absolute https URLs, and http only on a loopback host
// (development).
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL", raw)
	}
	if u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q: plain http is allowed only on a loopback address", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must have no query or fragment", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readSecret resolves a secret reference; both empty yields "".
func readSecret(file, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file) //nolint:gosec // G304: the operator names the secret file in the configuration
		if err != nil {
			return "", fmt.Errorf("read client secret file: %w", err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return "", fmt.Errorf("client secret file %s is empty", file)
		}
		return s, nil
	case env != "":
		s, ok := os.LookupEnv(env)
		if !ok || s == "" {
			return "", fmt.Errorf("client secret environment variable %s is not set", env)
		}
		return s, nil
	}
	return "", nil
}

// ClientSecret resolves the issuer's client secret reference ("" when none
// is configured). The value is a secret: never log it.
func (ic IssuerConfig) ClientSecret() (string, error) {
	return readSecret(ic.ClientSecretFile, ic.ClientSecretEnv)
}
