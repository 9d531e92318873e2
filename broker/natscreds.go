package broker

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
)

// DeniedError is a refusal by policy, with the reasons the caller may see.
type DeniedError struct {
	Reasons    []string
	DecisionID string
}

// Error implements error.
func (e *DeniedError) Error() string {
	return "denied by policy: " + strings.Join(e.Reasons, "; ")
}

// Is makes DeniedError match [ErrDenied].
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// ErrDenied is the sentinel for refusals by policy.
var ErrDenied = errors.New("denied by policy")

// ErrInvalid marks a request the caller must fix (bad key, bad TTL).
var ErrInvalid = errors.New("invalid request")

// DefaultMaxNATSCredentials is the default of
// [Config.MaxNATSCredentialsPerPrincipal]. It is far above what normal use
// holds: every connection through the auth callout gets a user key of its
// own (the server generates one per connect and per reconnect), which stays
// live until its JWT expires even after the connection closed, and every
// natsclient.Connect or `sqlgate creds nats` generates one (refreshes keep
// it). A service principal with tens of replicas, each with a few
// connections that reconnect or restart within a credential's lifetime,
// holds hundreds; a runaway client is stopped at a thousand live keys
// instead of filling the issuance registry (the cap bounds live keys, not
// the rate of requests: each refusal is audited).
const DefaultMaxNATSCredentials = 1000

// ErrTooManyNATSCredentials refuses a credential for a new NATS user key to
// a principal who already holds [Config.MaxNATSCredentialsPerPrincipal]
// live ones (a runaway client cannot fill the issuance registry). The
// error's text says how many, the limit, and how to free some.
var ErrTooManyNATSCredentials = errors.New("too many live NATS credentials")

// LiveIssuanceCounter is implemented by a [Registry] that counts a
// principal's live issuances without listing them all; the broker counts
// with [Registry.ByPrincipal] otherwise. Safe for concurrent use.
type LiveIssuanceCounter interface {
	// CountLive returns how many issuances of the principal (by
	// Principal.ID()) are live at t: not revoked, expiring after t. It
	// reads the shared store, never a cache.
	CountLive(ctx context.Context, principalID string, t time.Time) (int, error)
}

// IssueNATS decides, mints and records a NATS user credential for a
// principal. The publish allow-list is the policy's `pub` set intersected
// with the route catalog (plus the principal's own async subjects for async
// routes), the subscribe allow-list is the user's inbox prefix (and, with
// async routes, its own reply prefix) plus the policy's `sub` set
// intersected with the catalog's emit subjects, and the
// expiry is the shortest of the policy TTL, the requested TTL, the configured
// maximum and the OIDC token's own expiry. The JWT is released only after the
// issuance is in the registry, the principal's sign-in is checked against
// its cutoff once more (a revoke-all may have come in between), and its
// audit record is durable. A credential for a key the principal does not
// hold yet is refused with [ErrTooManyNATSCredentials] (audited) while the
// principal holds [Config.MaxNATSCredentialsPerPrincipal] live keys; a
// refresh of a live key is never refused for that.
func (s *Service) IssueNATS(ctx context.Context, req NATSRequest) (*NATSCredential, error) {
	return s.issueNATS(ctx, req, nil)
}

// calloutToken is the bearer token an auth callout issuance is for: its
// hash (see [calloutTokenHash]; never the token) and its expiry, and the
// registry that remembers it. legacy is the hash older versions recorded
// (of the whole token) when it differs: refusals they made are keyed by it.
type calloutToken struct {
	store  CalloutTokens
	hash   string
	legacy string
	expiry time.Time
}

// issueNATS is IssueNATS; tok, for an issuance of the auth callout, is the
// token that asks for it: the registry records it with the key before the
// issuance (so that revoking the key refuses the token), and a token
// refused meanwhile gets no credential.
func (s *Service) issueNATS(ctx context.Context, req NATSRequest, tok *calloutToken) (*NATSCredential, error) {
	if s.cfg.Minter == nil || s.cfg.Registry == nil {
		return nil, errors.New("nats credentials are not configured")
	}
	p := req.Principal
	now := s.now()
	if !p.Valid() {
		return nil, identity.Unauthenticated("principal without issuer or subject", nil)
	}
	if !p.Expiry.IsZero() && !now.Before(p.Expiry) {
		return nil, identity.Unauthenticated("token expired", nil)
	}
	if !validUserKey(req.UserKey) || !s.cfg.Minter.ValidUserKey(req.UserKey) {
		return nil, fmt.Errorf("%w: public_key must be a NATS user public key (U...)", ErrInvalid)
	}
	if req.TTL < 0 {
		return nil, fmt.Errorf("%w: ttl must not be negative", ErrInvalid)
	}
	transport := "http"
	if req.Via == "callout" {
		transport = "nats"
	}
	refuse := func(err error) error {
		return s.refuseSignIn(ctx, actorOf(&p, &Caller{UserKey: req.UserKey, Transport: transport, Host: req.Client.Host}), string(policy.NATS),
			&audit.Credential{Type: "nats", Action: "issue", UserKey: req.UserKey, Via: req.Via}, err)
	}
	if err := s.checkSignIn(ctx, &p); err != nil {
		return nil, refuse(err)
	}
	// A key belongs to one principal: refuse a key already issued to
	// another, and a revoked key (read past the cache: another instance may
	// have revoked it a moment ago). Registry.Put checks both again.
	refresh := false
	if prev, err := s.cfg.Registry.Lookup(ctx, req.UserKey); err == nil {
		if prev.Principal.ID() != p.ID() {
			return nil, fmt.Errorf("%w: public key already issued to another principal", ErrInvalid)
		}
		if !prev.RevokedAt.IsZero() {
			return nil, fmt.Errorf("%w: public key was revoked; generate a new key pair", ErrInvalid)
		}
		// A key the principal holds: issuing it again (a refresh) adds
		// no credential, so MaxNATSCredentialsPerPrincipal does not apply.
		refresh = prev.Active(now)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("issuance registry: %w", errors.Join(ErrUnavailable, err))
	}

	in := &policy.Input{
		Principal:  policy.PrincipalOf(p),
		Request:    &policy.Request{CorrelationID: newID(), Time: now.UTC().Format(time.RFC3339Nano), TimeNS: now.UnixNano(), Transport: transport, Client: BoundClient(req.Client)},
		Credential: &policy.Credential{Type: "nats", TTL: int64(req.TTL / time.Second), UserKey: req.UserKey, Via: req.Via},
	}
	dec, err := s.cfg.Authorizer.Decide(ctx, policy.NATS, in)
	if err != nil || !dec.Allow {
		reasons := dec.Reasons
		if err != nil {
			s.log.ErrorContext(ctx, "policy evaluation failed", "err", err, "entry", string(policy.NATS))
			reasons = append(reasons, "policy evaluation failed")
		}
		if len(reasons) == 0 {
			reasons = []string{"denied by policy"}
		}
		s.recordCredentialDecision(ctx, &p, req, &dec, in, reasons)
		if errors.Is(err, policy.ErrNoPolicy) {
			// Refused all the same, but no policy said no: the caller
			// should try again once one loads (unavailable, as the
			// routes listing answers), not ask for other access.
			return nil, fmt.Errorf("nats credential: %w", err)
		}
		return nil, &DeniedError{Reasons: reasons, DecisionID: dec.ID}
	}

	if !refresh {
		if err := s.checkNATSLimit(ctx, p.ID(), false); err != nil {
			return nil, s.refuseNATSLimit(ctx, &p, req, transport, &dec, err)
		}
	}

	ttl, capped := s.credentialTTL(dec.Obligations.TTL, s.cfg.NATSTTL, req.TTL, p.Expiry, now)
	if ttl < time.Second {
		return nil, identity.Unauthenticated("token expires too soon to issue a credential", nil)
	}
	expires := now.Add(ttl).Truncate(time.Second)
	pub := intersect(dec.Obligations.Pub, s.cfg.Catalog.Subjects())
	async := false
	for _, subj := range pub {
		if ri := s.routes[subj]; ri != nil && ri.route.Mode == "async" {
			pub = append(pub, AsyncPrefix(req.UserKey)+"."+subj)
			async = true
		}
	}
	inbox := InboxPrefix(req.UserKey)
	if req.Via == "callout" {
		inbox = PrincipalInboxPrefix(p)
	}
	sub := []string{inbox + ".>"}
	if async {
		sub = append(sub, ReplyPrefix(req.UserKey)+".>") // answers to its own async requests
	}
	// Policy may add emit subjects to follow, and nothing else: an inbox, a
	// reply subject or a wildcard is never an emit subject. A subject the
	// catalog does not emit is dropped here; the policy check against the
	// catalog (opa.Config.Routes, `policy check --routes`) reports a
	// constant one, and warns of an events grant.
	sub = append(sub, intersect(dec.Obligations.Sub, s.emits)...)
	minted, err := s.cfg.Minter.MintUser(ctx, UserSpec{
		UserKey: req.UserKey, Name: p.Subject, Pub: pub, Sub: sub, Expires: expires,
		Tags: userTags(&p),
	})
	if err != nil {
		return nil, fmt.Errorf("mint user jwt: %w", err)
	}
	iss := Issuance{
		UserKey: req.UserKey, Principal: p, SigningKey: minted.SigningKey, Account: minted.Account,
		Via: req.Via, IssuedAt: now, ExpiresAt: expires, DecisionID: dec.ID, Pub: pub,
	}
	if tok != nil {
		// Before the issuance: a revocation that finds the key finds its
		// token too.
		if err := tok.store.BindCalloutToken(ctx, req.UserKey, tok.hash, expires, tok.expiry); err != nil {
			return nil, fmt.Errorf("issuance registry: %w", errors.Join(ErrUnavailable, err))
		}
	}
	held, err := s.putIssuance(ctx, iss)
	if errors.Is(err, ErrInvalid) {
		// Revoked or taken since the check above: the JWT is dropped.
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("issuance registry: %w", errors.Join(ErrUnavailable, err))
	}
	// The count above and the Put are not atomic: count again, this key
	// included, so that concurrent requests cannot all pass the limit.
	// (Under such a race all of them may be refused; none is issued beyond
	// the limit.) A key the principal held live when the Put came (another
	// request for the same key was released meanwhile) is a refresh. The
	// issuance of a key refused here, or when the count cannot be read, is
	// removed, not revoked, where the registry can tell it held no live
	// issuance of the key: its JWT was never released, and the client may
	// ask again with the same key once there is room. A registry that
	// cannot tell gets the key revoked (fail closed).
	if !refresh && !held.live {
		if err := s.checkNATSLimit(ctx, p.ID(), true); err != nil {
			if !held.known {
				s.withdrawNATS(ctx, req.UserKey)
			} else if werr := s.cfg.Registry.Withdraw(context.WithoutCancel(ctx), req.UserKey, dec.ID); werr != nil {
				// Left in the registry it counts until it expires, and
				// its JWT is still never released.
				s.log.ErrorContext(ctx, "withdraw an unreleased nats issuance", "err", werr)
			}
			return nil, s.refuseNATSLimit(ctx, &p, req, transport, &dec, err)
		}
	}
	// A revoke-all sets the cutoff, then revokes the keys it finds in the
	// registry. One that set it after the check above and looked before the
	// Put did not find this key, so check again now that a revoke-all
	// would: if the sign-in is cut off (or the cutoff cannot be read), the
	// key is revoked and the JWT dropped.
	if err := s.checkSignIn(ctx, &p); err != nil {
		s.withdrawNATS(ctx, req.UserKey)
		return nil, refuse(err)
	}
	// Likewise a revocation of another credential of the same token that
	// refused it after the check in Callout: the key is withdrawn.
	if tok != nil {
		if err := s.checkCalloutToken(ctx, tok); err != nil {
			s.withdrawNATS(ctx, req.UserKey)
			return nil, s.refuseCalloutToken(ctx, &p, req.UserKey, req.Client.Host, err)
		}
	}
	rec := &audit.Record{
		Kind: audit.KindCredential, Actor: actorOf(&p, &Caller{UserKey: req.UserKey, Transport: in.Request.Transport, Host: req.Client.Host}),
		DecisionID: dec.ID, Entry: string(policy.NATS), PolicyRevision: dec.Revision, Allow: ptr(true), Reasons: dec.Reasons,
		Credential: &audit.Credential{Type: "nats", Action: "issue", UserKey: req.UserKey, Via: req.Via, ExpiresAt: expires, Detail: capped},
	}
	idx, err := s.appendDecision(ctx, rec, in, nil)
	if err != nil {
		// Not durable: the credential must not be released. Revoke the
		// registry entry so the key cannot be used even if leaked.
		if rerr := s.cfg.Registry.Revoke(context.WithoutCancel(ctx), req.UserKey, now); rerr != nil {
			s.log.ErrorContext(ctx, "registry revoke after failed audit", "err", rerr)
		}
		return nil, fmt.Errorf("audit credential record: %w", errors.Join(ErrUnavailable, err))
	}
	return &NATSCredential{
		JWT: minted.JWT, UserKey: req.UserKey, ExpiresAt: expires, Pub: pub, Sub: sub,
		InboxPrefix: inbox, Decision: dec, Capped: capped, AuditIndex: idx,
	}, nil
}

// LiveAwareRegistry is implemented by a [Registry] whose Put can report
// whether the key already had an issuance unexpired at the new one's
// IssuedAt (one the caller's earlier read may not have seen).
type LiveAwareRegistry interface {
	PutIssuance(ctx context.Context, iss Issuance) (heldLive bool, err error)
}

// heldKey is what a Put tells of the key's earlier issuance: known when the
// registry can say, live when the key had one unexpired.
type heldKey struct{ known, live bool }

func (s *Service) putIssuance(ctx context.Context, iss Issuance) (heldKey, error) {
	if r, ok := s.cfg.Registry.(LiveAwareRegistry); ok {
		live, err := r.PutIssuance(ctx, iss)
		return heldKey{known: true, live: live}, err
	}
	return heldKey{}, s.cfg.Registry.Put(ctx, iss)
}

// checkNATSLimit refuses with [ErrTooManyNATSCredentials] when principalID
// holds MaxNATSCredentialsPerPrincipal live NATS user keys (issued: more
// than that, the key just recorded included). A registry that cannot be
// read refuses too (unavailable).
func (s *Service) checkNATSLimit(ctx context.Context, principalID string, issued bool) error {
	limit := s.cfg.MaxNATSCredentialsPerPrincipal
	if limit <= 0 {
		return nil
	}
	n, err := s.liveNATSCredentials(ctx, principalID, s.now())
	if err != nil {
		return fmt.Errorf("issuance registry: %w", errors.Join(ErrUnavailable, err))
	}
	if issued {
		if n <= limit {
			return nil
		}
		n--
	} else if n < limit {
		return nil
	}
	return fmt.Errorf("%w: you hold %d live NATS credentials (the limit is %d); revoke those you no longer use "+
		"(sqlgate leases list, then sqlgate leases revoke KEY) or wait for them to expire", ErrTooManyNATSCredentials, n, limit)
}

// liveNATSCredentials counts the issuances of principalID live at t.
func (s *Service) liveNATSCredentials(ctx context.Context, principalID string, t time.Time) (int, error) {
	if c, ok := s.cfg.Registry.(LiveIssuanceCounter); ok {
		return c.CountLive(ctx, principalID, t)
	}
	list, err := s.cfg.Registry.ByPrincipal(ctx, principalID)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range list {
		if list[i].Active(t) {
			n++
		}
	}
	return n, nil
}

// refuseNATSLimit audits a refusal by checkNATSLimit (a decision record
// with the policy decision that allowed the credential, status
// rate_limited, the limit's message as the reason) and returns err. Other
// errors are returned unaudited (the registry could not be read: nothing
// was decided).
func (s *Service) refuseNATSLimit(ctx context.Context, p *identity.Principal, req NATSRequest, transport string, dec *policy.Decision, err error) error {
	if !errors.Is(err, ErrTooManyNATSCredentials) {
		return err
	}
	rec := &audit.Record{
		Kind: audit.KindDecision, Actor: actorOf(p, &Caller{UserKey: req.UserKey, Transport: transport, Host: req.Client.Host}),
		DecisionID: dec.ID, Entry: string(policy.NATS), PolicyRevision: dec.Revision, Allow: ptr(false),
		Reasons:    []string{err.Error()},
		Credential: &audit.Credential{Type: "nats", Action: "issue", UserKey: req.UserKey, Via: req.Via},
		Result:     &audit.Result{Status: CodeRateLimited},
	}
	s.recordDetached(ctx, rec, "nats credential limit refusal")
	return err
}

// withdrawNATS revokes a key that is in the registry but whose JWT was never
// released, as [Service.RevokeNATS] does (registry, then the NATS servers,
// retried in the background when they cannot be reached), without its
// audit records: the caller audits the refusal.
func (s *Service) withdrawNATS(ctx context.Context, userKey string) {
	ctx = context.WithoutCancel(ctx)
	now := s.now()
	if err := s.cfg.Registry.Revoke(ctx, userKey, now); err != nil {
		s.log.ErrorContext(ctx, "registry revoke of a withdrawn issuance", "err", err)
	}
	if err := s.pushRevocations(ctx, []string{userKey}, now); err != nil {
		s.requestRevocationSync()
		s.log.WarnContext(ctx, "push nats revocation of a withdrawn issuance (retrying in the background)", "err", err)
	}
}

// Callout serves the NATS auth callout: it verifies the OIDC token the
// client sent, refuses a token that obtained a callout credential revoked
// since (see [CalloutTokens]; unauthenticated, "sign in again"), then issues
// a credential for the server-generated user key and records the token's
// hash with it. A refusal is audited, except that of a token no trusted
// issuer is shown to have signed: that error matches [ErrUnverifiedToken]
// (and [identity.ErrUnauthenticated]), and nothing is written or logged for
// it (the responder counts such refusals and logs a sample of them).
func (s *Service) Callout(ctx context.Context, req CalloutRequest) (*NATSCredential, error) {
	if s.cfg.Verifier == nil {
		return nil, identity.Unauthenticated("no token verifier configured", nil)
	}
	p, err := s.cfg.Verifier.Verify(ctx, req.Token)
	if err != nil {
		if unverifiedToken(err, req.Token) {
			// Names no one: anyone holding the sentinel credentials
			// could send these without end. Not audited, not logged
			// here; the responder counts them and logs a sample.
			return nil, fmt.Errorf("%w: %w", ErrUnverifiedToken, err)
		}
		reason := reasonOf(err)
		s.log.WarnContext(ctx, "auth callout refused", "reason", reason, "client_host", req.Client.Host)
		rec := &audit.Record{
			Kind: audit.KindDecision, Entry: string(policy.NATS), Allow: ptr(false), Reasons: []string{reason},
			Actor:      &audit.Actor{NATSUserKey: req.UserKey, Transport: "nats", ClientHost: req.Client.Host},
			Credential: &audit.Credential{Type: "nats", Action: "issue", UserKey: req.UserKey, Via: "callout"},
			Result:     &audit.Result{Status: CodeUnauthenticated},
		}
		s.recordDetached(ctx, rec, "callout refusal")
		return nil, err
	}
	store, ok := s.cfg.Registry.(CalloutTokens)
	if !ok {
		// Without it a revoked callout client would sign in again at once
		// with the same token: refuse every callout (fail closed).
		s.log.ErrorContext(ctx, "auth callout refused: the issuance registry cannot refuse the tokens of revoked credentials")
		return nil, fmt.Errorf("nats credentials through the auth callout are not configured: %w", ErrUnavailable)
	}
	tok := &calloutToken{store: store, hash: calloutTokenHash(req.Token), expiry: p.Expiry}
	if legacy := legacyCalloutTokenHash(req.Token); legacy != tok.hash {
		tok.legacy = legacy
	}
	if err := s.checkCalloutToken(ctx, tok); err != nil {
		return nil, s.refuseCalloutToken(ctx, &p, req.UserKey, req.Client.Host, err)
	}
	return s.issueNATS(ctx, NATSRequest{Principal: p, UserKey: req.UserKey, Via: "callout", Client: req.Client}, tok)
}

// ErrUnverifiedToken marks the refusal by [Service.Callout] of a token that
// names no one: the [TokenVerifier] refused it before it could tell that a
// trusted issuer signed it (see unverifiedToken). Such a refusal is not
// audited: the callout answers anyone who holds the sentinel credentials,
// which grant nothing and are handed out freely, and a decision record for
// each made-up token would let them fill the audit log without ever
// signing in. A token that a trusted issuer signed and that is refused all
// the same (expired, for another audience or client, of an offboarded
// principal, denied by policy...) is audited.
var ErrUnverifiedToken = errors.New("token not shown to be signed by a trusted issuer")

// unverifiedReasons are the [identity.AuthError] reasons (those of
// identity/oidc's Verifier) that refuse a token before its signature was
// found to be a trusted issuer's: it is not a JWT, too large, of an
// algorithm never or not accepted, of an issuer not trusted, signed with a
// key the issuer does not have, or its signature does not verify.
// "jwks_unavailable" is not one: the token may be a real principal's whose
// issuer's keys cannot be fetched, so its refusal is audited (fail closed).
var unverifiedReasons = map[string]bool{
	"missing_token":         true,
	"token_too_large":       true,
	"malformed_token":       true,
	"algorithm_not_allowed": true,
	"unknown_issuer":        true,
	"unknown_kid":           true,
	"invalid_signature":     true,
}

// unverifiedToken reports whether err, a [TokenVerifier]'s refusal of
// token, shows that the token names no one: one of unverifiedReasons, or a
// missing claim in a JWT whose payload has no issuer (identity/oidc looks
// the issuer up before it checks a signature, and refuses a token without
// one as a missing claim). Anything else, an error that is not an
// [identity.AuthError] included, may be a real principal's and is audited.
func unverifiedToken(err error, token string) bool {
	var ae *identity.AuthError
	if !errors.As(err, &ae) {
		return false
	}
	if unverifiedReasons[ae.Reason] {
		return true
	}
	return ae.Reason == "missing_claim" && !namesIssuer(token)
}

// namesIssuer reports whether token may name an issuer: it is not a
// compact JWS whose payload is a JSON object without a non-empty string
// `iss` (what identity/oidc refuses as a missing claim before any signature
// check). A token it cannot read is taken to name one (fail closed).
func namesIssuer(token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return true
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return true
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil || claims == nil {
		return true
	}
	iss, _ := claims["iss"].(string)
	return iss != ""
}

// CalloutTokens is implemented by a [Registry] that remembers which bearer
// token obtained each credential the auth callout issued (by a hex SHA-256
// that identifies it, never the token: see [calloutTokenHash]), so that
// revoking such a credential refuses the token: the client, disconnected
// by the revocation, gets no new credential with it, and must sign in
// again. [Service.Callout] refuses every token when the registry does not
// implement it. Safe for concurrent use.
type CalloutTokens interface {
	// BindCalloutToken records that the token with hash tokenHash, valid
	// until tokenExpiry (zero: no expiry), obtained the callout credential
	// of userKey, valid until keyExpiry.
	BindCalloutToken(ctx context.Context, userKey, tokenHash string, keyExpiry, tokenExpiry time.Time) error
	// RefuseCalloutTokens refuses, from t until they expire, the tokens
	// that obtained the callout credentials of userKeys; other keys are
	// skipped.
	RefuseCalloutTokens(ctx context.Context, userKeys []string, t time.Time) error
	// CalloutTokenRefused reports whether a token with one of the hashes
	// tokenHashes is refused. It reads the shared store, never a cache,
	// once for a token's hash and its legacy hash together.
	CalloutTokenRefused(ctx context.Context, tokenHashes ...string) (bool, error)
}

// errCalloutTokenRefused refuses a token that obtained a callout credential
// revoked since; its text is safe to show the client.
var errCalloutTokenRefused = identity.Unauthenticated("a NATS credential obtained with this token was revoked; sign in again", nil)

// calloutTokenHash is what the registry keeps of a bearer token: the hex
// SHA-256 of what identifies it. For a JWT (a compact JWS,
// header.payload.signature) that is its signed part, header.payload: every
// token string that carries the same signed claims is the same token, so
// another signature over them (an ECDSA signature (r, s) verifies as
// (r, n−s) too) or another spelling of the signature (lenient base64
// decoders read several; identity/oidc refuses all but the canonical one)
// cannot pass for a token that is not refused. Any other token is hashed
// whole.
func calloutTokenHash(token string) string {
	signed := token
	if strings.Count(token, ".") == 2 {
		signed = token[:strings.LastIndexByte(token, '.')]
	}
	h := sha256.Sum256([]byte(signed))
	return hex.EncodeToString(h[:])
}

// legacyCalloutTokenHash is the hex SHA-256 of the whole token, what
// versions before the signed-part hash recorded: refusals they made are
// found by it until the token expires.
func legacyCalloutTokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// checkCalloutToken refuses a token that obtained a callout credential
// revoked since with errCalloutTokenRefused: by its hash, and by its legacy
// hash (a refusal recorded by an older version), in one read. It fails
// closed: a store that cannot be read refuses (unavailable).
func (s *Service) checkCalloutToken(ctx context.Context, tok *calloutToken) error {
	hashes := []string{tok.hash}
	if tok.legacy != "" {
		hashes = append(hashes, tok.legacy)
	}
	refused, err := tok.store.CalloutTokenRefused(ctx, hashes...)
	if err != nil {
		return fmt.Errorf("issuance registry: %w", errors.Join(ErrUnavailable, err))
	}
	if refused {
		return errCalloutTokenRefused
	}
	return nil
}

// refuseCalloutToken audits a refusal by checkCalloutToken (a decision
// record with status unauthenticated, like a refused callout token) and
// returns err. Other errors are returned unaudited (the store could not be
// read: nothing was decided).
func (s *Service) refuseCalloutToken(ctx context.Context, p *identity.Principal, userKey, host string, err error) error {
	if !errors.Is(err, errCalloutTokenRefused) {
		return err
	}
	s.log.WarnContext(ctx, "auth callout refused", "reason", "token of a revoked credential", "client_host", host)
	rec := &audit.Record{
		Kind: audit.KindDecision, Actor: actorOf(p, &Caller{UserKey: userKey, Transport: "nats", Host: host}),
		Entry: string(policy.NATS), Allow: ptr(false),
		Reasons:    []string{"the token obtained a NATS credential that was revoked since; sign in again"},
		Credential: &audit.Credential{Type: "nats", Action: "issue", UserKey: userKey, Via: "callout"},
		Result:     &audit.Result{Status: CodeUnauthenticated},
	}
	s.recordDetached(ctx, rec, "callout token refusal")
	return err
}

// RevokeNATS revokes NATS credentials by user key at once: the bearer
// tokens that obtained those issued by the auth callout are refused first
// (the client the revocation disconnects cannot sign in again with the
// same token, see [CalloutTokens]; when that fails the keys are still
// revoked and the error wraps [ErrUnavailable]), then the registry (the request path
// refuses the key from then on), then the NATS servers (live connections
// closed), then an audit record per key. When the push to
// the servers fails, the keys stay revoked in the registry, are audited, and
// [Service.RunRevocationSync] pushes them again at once and then every
// interval until the servers hold them; the error (wrapping
// [ErrUnavailable]) says so, and revoking again is safe.
func (s *Service) RevokeNATS(ctx context.Context, actor identity.Principal, userKeys []string, reason string) error {
	if s.cfg.Registry == nil {
		return errors.New("nats credentials are not configured")
	}
	now := s.now()
	var errs []error
	detail := reason
	// First, so that a callout client the revocation disconnects cannot
	// sign in again with the same token. When that fails the keys are still
	// revoked (better than leaving them connected), and the error asks for
	// the revocation to be repeated.
	if store, ok := s.cfg.Registry.(CalloutTokens); ok {
		if err := store.RefuseCalloutTokens(ctx, userKeys, now); err != nil {
			errs = append(errs, fmt.Errorf("refuse the tokens of callout credentials (revoke again): %w", errors.Join(ErrUnavailable, err)))
			detail += "; the tokens of callout credentials are not refused yet"
		}
	}
	for _, k := range userKeys {
		if err := s.cfg.Registry.Revoke(ctx, k, now); err != nil {
			return errors.Join(append(errs, fmt.Errorf("revoke %s in registry: %w", k, err))...)
		}
	}
	if err := s.pushRevocations(ctx, userKeys, now); err != nil {
		s.requestRevocationSync()
		errs = append(errs, fmt.Errorf("push nats revocation (retrying in the background): %w", errors.Join(ErrUnavailable, err)))
		detail += "; not yet on the NATS servers, retrying"
	}
	for _, k := range userKeys {
		rec := &audit.Record{
			Kind: audit.KindCredential, Actor: actorOf(&actor, &Caller{Transport: "http"}),
			Credential: &audit.Credential{Type: "nats", Action: "revoke", UserKey: k, Detail: detail},
		}
		if _, err := s.cfg.Recorder.Append(ctx, rec); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// credentialTTL picks the lifetime of a credential: the policy TTL (or def),
// reduced to the requested TTL, the configured maximum and the token's
// expiry. capped explains any reduction below what was asked.
func (s *Service) credentialTTL(policyTTL, def, requested time.Duration, tokenExpiry, now time.Time) (ttl time.Duration, capped string) {
	ttl = def
	if policyTTL > 0 {
		ttl = policyTTL
	}
	var notes []string
	if requested > 0 {
		if requested <= ttl {
			ttl = requested
		} else {
			notes = append(notes, fmt.Sprintf("requested %s exceeds the policy TTL %s", requested, ttl))
		}
	}
	if ttl > s.cfg.MaxTTL {
		ttl = s.cfg.MaxTTL
		notes = append(notes, fmt.Sprintf("capped at the configured maximum %s", s.cfg.MaxTTL))
	}
	if !tokenExpiry.IsZero() {
		if left := tokenExpiry.Sub(now); left < ttl {
			ttl = left
			notes = append(notes, "capped at the sign-in token's expiry")
		}
	}
	return ttl, strings.Join(notes, "; ")
}

func (s *Service) recordCredentialDecision(ctx context.Context, p *identity.Principal, req NATSRequest, dec *policy.Decision, in *policy.Input, reasons []string) {
	rec := &audit.Record{
		Kind: audit.KindDecision, Actor: actorOf(p, &Caller{UserKey: req.UserKey, Transport: in.Request.Transport, Host: req.Client.Host}),
		DecisionID: dec.ID, Entry: string(policy.NATS), PolicyRevision: dec.Revision, Allow: ptr(false), Reasons: reasons,
		Credential: &audit.Credential{Type: "nats", Action: "issue", UserKey: req.UserKey, Via: req.Via},
		Result:     &audit.Result{Status: CodeForbidden},
	}
	if _, err := s.appendDecision(ctx, rec, in, nil); err != nil {
		s.log.ErrorContext(ctx, "audit credential decision failed", "err", err)
	}
}

// userTags are hints for humans reading `nats server report connections`;
// nothing trusts them (NATS lower-cases tags).
func userTags(p *identity.Principal) []string {
	tags := []string{"sqlgate"}
	if p.Email != "" {
		tags = append(tags, "email:"+p.Email)
	}
	if p.ObjectID != "" {
		tags = append(tags, "oid:"+p.ObjectID)
	}
	return tags
}

// validUserKey checks the shape of a NATS user public key: 'U' followed by
// 55 base32 characters. The minter's ValidUserKey checks the rest
// (checksum, Ed25519 point).
func validUserKey(k string) bool {
	if len(k) != 56 || k[0] != 'U' {
		return false
	}
	for i := 1; i < len(k); i++ {
		c := k[i]
		if (c < 'A' || c > 'Z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}
