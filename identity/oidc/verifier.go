package oidc

import (
	"bytes"
	"context"
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
	jose "github.com/go-jose/go-jose/v4"

	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/internal/logsample"
)

// Option adjusts a [Verifier] (and the clients built from it).
type Option func(*options)

type options struct {
	now    func() time.Time
	client *http.Client
}

// WithClock sets the clock used for exp, nbf and iat (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithHTTPClient sets the HTTP client for discovery, JWKS and Graph
// (default: a client with a 30s timeout).
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// Verifier verifies tokens from the configured issuers and maps them to
// principals. It is safe for concurrent use and holds no goroutines.
type Verifier struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	client    *http.Client
	exact     map[string]*issuer
	templates []*issuer
	byName    map[string]*issuer
	cache     *tokenCache
	// anonymous samples the log lines of tokens that name no one
	// ([namesNoOne]).
	anonymous logsample.Sampler
}

// anonymousLogEvery is how often a refusal of a token that names no one is
// logged at most; the others are counted in the next line's `suppressed`.
const anonymousLogEvery = 10 * time.Second

// namesNoOne reports whether a refusal's reason leaves the token tied to
// no trusted issuer: none, too large, not a JWT, an algorithm not allowed,
// an issuer not trusted, a key or signature not the issuer's. Anyone on the
// network can send those as fast as they like, so their log lines are
// sampled; a refusal of a token a trusted issuer signed is logged every
// time.
func namesNoOne(reason string) bool {
	switch reason {
	case ReasonMissingToken, ReasonTokenTooLarge, ReasonMalformedToken, ReasonAlgorithmNotAllowed,
		ReasonUnknownIssuer, ReasonUnknownKeyID, ReasonInvalidSignature:
		return true
	}
	return false
}

// issuer is one trusted provider, ready to verify.
type issuer struct {
	cfg      IssuerConfig
	provider *gooidc.Provider
	verifier *gooidc.IDTokenVerifier
	keys     *keySet
	mapper   *mapper
	algs     []string
	tenants  []string // lower-cased
	clients  []string // AllowedClients and ClientID; empty: any client
	prefix   string   // template issuers: the parts around {tenantid}
	suffix   string
	template bool
	graph    *graphClient
	secret   string // the client secret, when configured

	noAuthTime sync.Once // the warning about user tokens without auth_time
}

// Open validates cfg, discovers every issuer (OpenID configuration and key
// set) and returns a verifier. It fails if any issuer cannot be reached, so
// a misconfiguration shows at start-up; in development start serving the
// provider before calling Open.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, opts ...Option) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	o := options{now: time.Now, client: &http.Client{Timeout: 30 * time.Second}}
	for _, opt := range opts {
		opt(&o)
	}
	o.client = secureRedirects(o.client)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{
		cfg: cfg, log: logger, now: o.now, client: o.client,
		exact: map[string]*issuer{}, byName: map[string]*issuer{},
	}
	if cfg.CacheEntries > 0 {
		v.cache = newTokenCache(cfg.CacheEntries)
	}
	var errs []error
	for _, ic := range cfg.Issuers {
		is, err := v.openIssuer(ctx, ic)
		if err != nil {
			errs = append(errs, fmt.Errorf("oidc: issuer %q: %w", ic.Name, err))
			continue
		}
		if u, err := url.Parse(ic.Issuer); len(is.clients) == 0 && err == nil && !isLoopback(u.Hostname()) {
			// A development provider on this machine is spared the warning.
			logger.WarnContext(ctx, "issuer has no allowedClients: tokens that any application of the provider "+
				"obtains for its audiences sign in to sqlgate, under that application's sign-on policy; list "+
				"sqlgate's client ids in allowedClients (the CLI's and the services'; the dashboard's is accepted "+
				"for its sign-ins)", "issuer", ic.Name)
		}
		v.byName[ic.Name] = is
		if is.template {
			v.templates = append(v.templates, is)
		} else {
			v.exact[ic.Issuer] = is
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

// discover fetches the OpenID configuration of ic with go-oidc. The
// document's issuer must equal ic.Issuer (for an Entra template, the
// template itself, which is what Entra's multi-tenant endpoints announce).
func discover(ctx context.Context, ic IssuerConfig, client *http.Client) (*gooidc.Provider, error) {
	ctx = gooidc.ClientContext(ctx, client)
	base := ic.Issuer
	if ic.DiscoveryURL != "" {
		base = strings.TrimSuffix(strings.TrimSuffix(ic.DiscoveryURL, "/"), "/.well-known/openid-configuration")
		ctx = gooidc.InsecureIssuerURLContext(ctx, ic.Issuer)
	}
	p, err := gooidc.NewProvider(ctx, base)
	if err != nil {
		var mismatch *gooidc.IssuerMismatchError
		if errors.As(err, &mismatch) {
			return nil, fmt.Errorf("discovery: %w", err)
		}
		return nil, &UnreachableError{URL: base + "/.well-known/openid-configuration", Err: err}
	}
	// With an explicit discovery URL go-oidc skips its issuer check: do it.
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := p.Claims(&doc); err != nil || doc.Issuer != ic.Issuer {
		return nil, fmt.Errorf("discovery: %s announces issuer %q, want %q", base, truncate(doc.Issuer, 200), ic.Issuer)
	}
	if err := checkEndpoints(p); err != nil {
		return nil, fmt.Errorf("discovery: %s: %w", base, err)
	}
	return p, nil
}

func (v *Verifier) openIssuer(ctx context.Context, ic IssuerConfig) (*issuer, error) {
	provider, err := discover(ctx, ic, v.client)
	if err != nil {
		return nil, err
	}
	var doc struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := provider.Claims(&doc); err != nil || doc.JWKSURL == "" {
		return nil, errors.New("discovery document has no jwks_uri")
	}
	is := &issuer{
		cfg: ic, provider: provider, mapper: newMapper(ic), algs: ic.Algorithms,
		template: strings.Contains(ic.Issuer, TenantPlaceholder),
	}
	for _, t := range ic.AllowedTenants {
		is.tenants = append(is.tenants, strings.ToLower(t))
	}
	if len(ic.AllowedClients) > 0 {
		is.clients = slices.Clone(ic.AllowedClients)
		if ic.ClientID != "" {
			is.clients = append(is.clients, ic.ClientID)
		}
	}
	if is.template {
		is.prefix, is.suffix, _ = strings.Cut(ic.Issuer, TenantPlaceholder)
	}
	jalgs := make([]jose.SignatureAlgorithm, len(ic.Algorithms))
	for i, a := range ic.Algorithms {
		jalgs[i] = jose.SignatureAlgorithm(a)
	}
	is.keys = &keySet{
		url: doc.JWKSURL, issuer: ic.Name, client: v.client, algs: jalgs,
		minInterval: time.Duration(v.cfg.JWKSRefreshInterval), maxAge: time.Duration(v.cfg.JWKSMaxAge),
		now: v.now, log: v.log,
	}
	if err := is.keys.load(ctx); err != nil {
		return nil, err
	}
	// go-oidc checks the signature (through our key set), the algorithm
	// allow-list and, for exact issuers, iss. Audience and times are ours:
	// several audiences, a configured skew.
	is.verifier = gooidc.NewVerifier(ic.Issuer, is.keys, &gooidc.Config{
		SkipClientIDCheck:    true,
		SkipExpiryCheck:      true,
		SkipIssuerCheck:      is.template,
		SupportedSigningAlgs: ic.Algorithms,
		Now:                  v.now,
	})
	if is.secret, err = ic.ClientSecret(); err != nil {
		return nil, err
	}
	if ic.Overage.Mode == OverageGraph {
		secret, err := readSecret(ic.Overage.ClientSecretFile, ic.Overage.ClientSecretEnv)
		if err != nil {
			return nil, fmt.Errorf("overage: %w", err)
		}
		is.graph = newGraphClient(ic.Overage, secret, v.client)
	}
	return is, nil
}

// lookup finds the issuer configuration for a token's iss claim.
func (v *Verifier) lookup(iss string) (*issuer, string) {
	if is, ok := v.exact[iss]; ok {
		return is, ""
	}
	for _, is := range v.templates {
		if rest, ok := strings.CutPrefix(iss, is.prefix); ok {
			if tenant, ok := strings.CutSuffix(rest, is.suffix); ok && tenant != "" && !strings.ContainsAny(tenant, "/?#") {
				return is, tenant
			}
		}
	}
	return nil, ""
}

// Verify checks rawToken (an ID token, or an access token addressed to
// sqlgate) and returns the principal it proves. Every failure is an
// [*identity.AuthError] matching [identity.ErrUnauthenticated]; its Reason
// is one of the Reason* constants and the error never contains the token.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (identity.Principal, error) {
	if rawToken == "" {
		return identity.Principal{}, v.fail(ctx, nil, identity.Unauthenticated(ReasonMissingToken, nil))
	}
	if len(rawToken) > v.cfg.MaxTokenBytes {
		return identity.Principal{}, v.fail(ctx, nil, identity.Unauthenticated(ReasonTokenTooLarge,
			fmt.Errorf("token of %d bytes exceeds %d", len(rawToken), v.cfg.MaxTokenBytes)))
	}
	now := v.now()
	var key [sha256.Size]byte
	if v.cache != nil {
		// Keyed by the whole token, signature included: only a token
		// that verified is cached, and verify refuses every spelling but
		// the canonical one, so another spelling of a cached token misses
		// and is refused. (Keyed by the signed part alone, a cached
		// token's header and payload would pass with any signature.)
		key = sha256.Sum256([]byte(rawToken))
		if p, ok := v.cache.get(key, now); ok {
			return p, nil
		}
	}
	p, _, is, err := v.verify(ctx, rawToken, now, ownClient{})
	if err != nil {
		return identity.Principal{}, v.fail(ctx, is, err)
	}
	if v.cache != nil {
		v.cache.put(key, p, now)
	}
	return p, nil
}

// fail logs one line naming the reason and returns err.
func (v *Verifier) fail(ctx context.Context, is *issuer, err error) error {
	var ae *identity.AuthError
	reason := ReasonMalformedToken
	if errors.As(err, &ae) {
		reason = ae.Reason
	} else {
		err = identity.Unauthenticated(reason, err)
	}
	attrs := []slog.Attr{slog.String("reason", reason)}
	if is != nil {
		attrs = append(attrs, slog.String("issuer", is.cfg.Name))
	}
	if ae != nil && ae.Err != nil {
		attrs = append(attrs, slog.String("detail", ae.Err.Error()))
	}
	if namesNoOne(reason) {
		ok, suppressed := v.anonymous.Allow(v.now(), anonymousLogEvery)
		if !ok {
			return err
		}
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	v.log.LogAttrs(ctx, slog.LevelWarn, "token rejected", attrs...)
	return err
}

// jwtHeader is the part of the JOSE header checked before anything else.
type jwtHeader struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Crit []string `json:"crit"`
}

// isCompactJWSCharset reports whether s holds only base64url characters
// and dots (base64 decoders skip newlines, and go-jose strips whitespace:
// neither may smuggle a second reading of the token past our checks).
func isCompactJWSCharset(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// errNonCanonical refuses a segment that is not the canonical encoding of
// its bytes.
var errNonCanonical = errors.New("segment is not canonical base64url")

// decodeCanonical decodes one segment of a compact JWS and refuses any
// spelling but the canonical one (RFC 7515 section 2: base64url without
// padding, whose last character leaves the unused low bits zero, RFC 4648
// section 3.5). A lenient decoder, base64.RawURLEncoding as go-jose uses
// it, reads up to 16 spellings of a segment's last character as the same
// bytes: each spelling of the signature is another token string that
// verifies as the same token, which anything keyed by the token's text
// (the verified-token cache, the broker's refusals of revoked callout
// tokens) would take for a different token.
func decodeCanonical(seg string) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	// Strict refuses non-zero unused bits but skips CR and LF: the
	// re-encoding refuses those (and anything else it would not write).
	if err != nil || base64.RawURLEncoding.EncodeToString(b) != seg {
		return nil, errNonCanonical
	}
	return b, nil
}

// checkCanonicalJWS refuses a token that is not three canonical base64url
// segments (see [decodeCanonical]); it decodes nothing else.
func checkCanonicalJWS(raw string) error {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return errors.New("not a compact JWS")
	}
	for _, seg := range parts {
		if _, err := decodeCanonical(seg); err != nil {
			return err
		}
	}
	return nil
}

func decodeSegment(seg string, v any, useNumber bool) error {
	b, err := decodeCanonical(seg)
	if err != nil {
		return err
	}
	return decodeJSON(b, v, useNumber)
}

func decodeJSON(b []byte, v any, useNumber bool) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if useNumber {
		dec.UseNumber()
	}
	if err := dec.Decode(v); err != nil {
		return errors.New("segment is not a JSON object")
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ownClient is a client of sqlgate's own that verify accepts for one
// issuer besides its AllowedClients: a [WebLogin]'s client, for the ID
// tokens of its sign-ins.
type ownClient struct {
	is *issuer
	id string
}

// verify runs every check and returns the principal and the raw claims.
func (v *Verifier) verify(ctx context.Context, raw string, now time.Time, own ownClient) (identity.Principal, map[string]any, *issuer, error) {
	var p identity.Principal
	hseg, rest, ok1 := strings.Cut(raw, ".")
	pseg, sseg, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sseg, ".") || hseg == "" || pseg == "" {
		return p, nil, nil, claimErr(ReasonMalformedToken, "not a compact JWS")
	}
	if !isCompactJWSCharset(raw) {
		return p, nil, nil, claimErr(ReasonMalformedToken, "characters outside base64url")
	}
	var hdr jwtHeader
	if err := decodeSegment(hseg, &hdr, false); err != nil {
		return p, nil, nil, claimErr(ReasonMalformedToken, "header: %v", err)
	}
	if hdr.Alg == "" || strings.EqualFold(hdr.Alg, "none") || strings.HasPrefix(strings.ToUpper(hdr.Alg), "HS") {
		return p, nil, nil, claimErr(ReasonAlgorithmNotAllowed, "algorithm %q is never accepted", truncate(hdr.Alg, 16))
	}
	if sseg == "" {
		return p, nil, nil, claimErr(ReasonMalformedToken, "no signature")
	}
	if len(hdr.Crit) > 0 {
		return p, nil, nil, claimErr(ReasonMalformedToken, "unsupported critical header parameters")
	}
	payload, err := decodeCanonical(pseg)
	if err != nil {
		return p, nil, nil, claimErr(ReasonMalformedToken, "payload: %v", err)
	}
	// The signature too, before any work: every token string that
	// verifies is the one canonical spelling of its bytes.
	if _, err := decodeCanonical(sseg); err != nil {
		return p, nil, nil, claimErr(ReasonMalformedToken, "signature: %v", err)
	}
	var claims map[string]any
	if err := decodeJSON(payload, &claims, true); err != nil {
		return p, nil, nil, claimErr(ReasonMalformedToken, "payload: %v", err)
	}
	iss, _ := claims["iss"].(string)
	if iss == "" {
		return p, nil, nil, claimErr(ReasonMissingClaim, "no iss claim")
	}
	is, tenant := v.lookup(iss)
	if is == nil {
		return p, nil, nil, claimErr(ReasonUnknownIssuer, "issuer %q is not trusted", truncate(iss, 200))
	}
	if !slices.Contains(is.algs, hdr.Alg) {
		return p, nil, is, claimErr(ReasonAlgorithmNotAllowed, "algorithm %q is not allowed for this issuer", truncate(hdr.Alg, 16))
	}

	// Signature (and iss for exact issuers) through go-oidc.
	res := &sigResult{alg: hdr.Alg, kid: hdr.Kid, payload: payload}
	if _, err := is.verifier.Verify(context.WithValue(ctx, sigResultKey{}, res), raw); err != nil {
		reason := res.reason
		switch {
		case reason != "":
		case res.verified:
			// The issuer signed it, and go-oidc refused a claim (an `exp`
			// that is not a number, another `iss`): it names someone.
			reason = ReasonInvalidClaim
		default:
			reason = ReasonMalformedToken
		}
		return p, nil, is, claimErr(reason, "%s", sanitizeLibError(err))
	}

	// From here on the claims are the signed ones (go-jose verified the
	// very payload segment decoded above).
	skew := time.Duration(is.cfg.ClockSkew)
	if err := checkAudience(claims, is.cfg.Audiences); err != nil {
		return p, nil, is, err
	}
	also := ""
	if own.is == is {
		also = own.id
	}
	if err := is.checkClient(claims, also); err != nil {
		return p, nil, is, err
	}
	exp, ok := numericDate(claims["exp"])
	if !ok {
		return p, nil, is, claimErr(ReasonMissingClaim, "no valid exp claim")
	}
	if now.After(exp.Add(skew)) {
		return p, nil, is, claimErr(ReasonExpired, "expired at %s", exp.Format(time.RFC3339))
	}
	if raw, ok := claims["nbf"]; ok {
		nbf, ok := numericDate(raw)
		if !ok {
			return p, nil, is, claimErr(ReasonInvalidClaim, "nbf is not a NumericDate")
		}
		if now.Add(skew).Before(nbf) {
			return p, nil, is, claimErr(ReasonNotYetValid, "not valid before %s", nbf.Format(time.RFC3339))
		}
	}
	if raw, ok := claims["iat"]; ok {
		iat, ok := numericDate(raw)
		if !ok {
			return p, nil, is, claimErr(ReasonInvalidClaim, "iat is not a NumericDate")
		}
		if now.Add(skew).Before(iat) {
			return p, nil, is, claimErr(ReasonIssuedInFuture, "issued in the future (%s)", iat.Format(time.RFC3339))
		}
	}
	p, overage, err := is.mapper.principal(claims)
	if err != nil {
		return p, nil, is, err
	}
	if err := is.checkTenant(p.Tenant, tenant); err != nil {
		return p, nil, is, err
	}
	if p.AuthTime.IsZero() && !p.Service {
		if is.cfg.RequireAuthTime {
			return p, nil, is, claimErr(ReasonMissingClaim, "no auth_time claim, which this issuer requires (requireAuthTime)")
		}
		is.noAuthTime.Do(func() {
			v.log.WarnContext(ctx, "user tokens of this issuer carry no auth_time: a token refreshed after a revoke-all "+
				"passes the sign-in cutoff as a new sign-in; add the auth_time claim to ID and access tokens "+
				"(Entra: optional claim) and set requireAuthTime",
				"issuer", is.cfg.Name)
		})
	}
	if overage {
		if is.graph == nil {
			return p, nil, is, claimErr(ReasonGroupsOverage,
				"the token's groups did not fit (overage); configure overage.mode graph or reduce the user's groups")
		}
		ids, err := is.graph.memberObjects(ctx, p.Tenant, p.ObjectID, p.Service)
		if err != nil {
			return p, nil, is, claimErr(ReasonGroupsLookupFailed, "%v", err)
		}
		p.Groups = is.mapper.mapGroups(ids)
	}
	p.Issuer = iss
	p.Expiry = exp
	return p, claims, is, nil
}

// checkTenant enforces AllowedTenants; for a template issuer the token's tid
// must also be the tenant its iss names.
func (is *issuer) checkTenant(tid, issTenant string) error {
	if is.template && !strings.EqualFold(tid, issTenant) {
		return claimErr(ReasonTenantNotAllowed, "tid does not match the issuer's tenant")
	}
	if len(is.tenants) == 0 {
		return nil
	}
	if tid == "" {
		return claimErr(ReasonMissingClaim, "no tenant claim")
	}
	if !slices.Contains(is.tenants, strings.ToLower(tid)) {
		return claimErr(ReasonTenantNotAllowed, "tenant %q is not allowed", truncate(tid, 64))
	}
	return nil
}

// clientClaims name the application a token was issued to, in the order
// they are read: azp (OpenID Connect, Entra v2.0, Keycloak, Auth0),
// client_id (RFC 9068), cid (Okta), appid (Entra v1.0).
var clientClaims = []string{"azp", "client_id", "cid", "appid"}

// checkClient enforces AllowedClients: the application that obtained the
// token must be one of sqlgate's (AllowedClients, ClientID, or also when it
// is not empty). A token naming no client is read as an ID token, whose
// single audience is its client (OpenID Connect Core 2).
func (is *issuer) checkClient(claims map[string]any, also string) error {
	if len(is.clients) == 0 {
		return nil
	}
	client := ""
	for _, name := range clientClaims {
		v, ok := claims[name]
		if !ok || v == nil {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return claimErr(ReasonInvalidClaim, "claim %q is not a string", name)
		}
		if s != "" {
			client = s
			break
		}
	}
	if client == "" {
		switch a := claims["aud"].(type) {
		case string:
			client = a
		case []any:
			if len(a) == 1 {
				client, _ = a[0].(string)
			}
		}
	}
	if client == "" {
		return claimErr(ReasonClientNotAllowed, "the token names no client (azp, client_id, cid, appid, or a single audience)")
	}
	if !slices.Contains(is.clients, client) && (also == "" || client != also) {
		return claimErr(ReasonClientNotAllowed, "client %q is not in the issuer's allowedClients", truncate(client, 100))
	}
	return nil
}

func checkAudience(claims map[string]any, accepted []string) error {
	var auds []string
	switch a := claims["aud"].(type) {
	case string:
		auds = []string{a}
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok {
				auds = append(auds, s)
			}
		}
	case nil:
		return claimErr(ReasonMissingClaim, "no aud claim")
	default:
		return claimErr(ReasonInvalidClaim, "aud is neither a string nor a list")
	}
	for _, a := range auds {
		if slices.Contains(accepted, a) {
			return nil
		}
	}
	shown := make([]string, 0, min(len(auds), 3))
	for _, a := range auds[:min(len(auds), 3)] {
		shown = append(shown, truncate(a, 100))
	}
	return claimErr(ReasonAudienceMismatch, "audience %q is not accepted", shown)
}

// sanitizeLibError keeps a library error's message short; go-oidc and
// go-jose messages name claims and issuers, never token content, but are
// bounded anyway.
func sanitizeLibError(err error) string {
	return truncate(err.Error(), 300)
}

// Issuer returns the issuer URL announced by the configured issuer name
// (for an Entra template, the template), and whether it exists.
func (v *Verifier) Issuer(name string) (string, bool) {
	is, ok := v.byName[name]
	if !ok {
		return "", false
	}
	return is.cfg.Issuer, true
}
