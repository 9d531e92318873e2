package broker

import (
	"context"
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

// IssueNATS decides, mints and records a NATS user credential for a
// principal. The publish allow-list is the policy's `pub` set intersected
// with the route catalog (plus the principal's own async subjects for async
// routes), the subscribe allow-list is the user's inbox prefix only, and the
// expiry is the shortest of the policy TTL, the requested TTL, the configured
// maximum and the OIDC token's own expiry. The JWT is released only after the
// issuance is in the registry, the principal's sign-in is checked against
// its cutoff once more (a revoke-all may have come in between), and its
// audit record is durable.
func (s *Service) IssueNATS(ctx context.Context, req NATSRequest) (*NATSCredential, error) {
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
	if prev, err := s.cfg.Registry.Lookup(ctx, req.UserKey); err == nil {
		if prev.Principal.ID() != p.ID() {
			return nil, fmt.Errorf("%w: public key already issued to another principal", ErrInvalid)
		}
		if !prev.RevokedAt.IsZero() {
			return nil, fmt.Errorf("%w: public key was revoked; generate a new key pair", ErrInvalid)
		}
	} else if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("issuance registry: %w", errors.Join(ErrUnavailable, err))
	}

	in := &policy.Input{
		Principal:  policy.PrincipalOf(p),
		Request:    &policy.Request{CorrelationID: newID(), Time: now.UTC().Format(time.RFC3339Nano), TimeNS: now.UnixNano(), Transport: transport, Client: req.Client},
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
		return nil, &DeniedError{Reasons: reasons, DecisionID: dec.ID}
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
	// reply subject or a wildcard is never an emit subject.
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
	if err := s.cfg.Registry.Put(ctx, iss); errors.Is(err, ErrInvalid) {
		// Revoked or taken since the check above: the JWT is dropped.
		return nil, err
	} else if err != nil {
		return nil, fmt.Errorf("issuance registry: %w", errors.Join(ErrUnavailable, err))
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
// client sent, then issues a credential for the server-generated user key.
// A refusal is audited.
func (s *Service) Callout(ctx context.Context, req CalloutRequest) (*NATSCredential, error) {
	if s.cfg.Verifier == nil {
		return nil, identity.Unauthenticated("no token verifier configured", nil)
	}
	p, err := s.cfg.Verifier.Verify(ctx, req.Token)
	if err != nil {
		reason := reasonOf(err)
		s.log.WarnContext(ctx, "auth callout refused", "reason", reason, "client_host", req.Client.Host)
		rec := &audit.Record{
			Kind: audit.KindDecision, Entry: string(policy.NATS), Allow: ptr(false), Reasons: []string{reason},
			Actor:      &audit.Actor{NATSUserKey: req.UserKey, Transport: "nats", ClientHost: req.Client.Host},
			Credential: &audit.Credential{Type: "nats", Action: "issue", UserKey: req.UserKey, Via: "callout"},
			Result:     &audit.Result{Status: CodeUnauthenticated},
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, aerr := s.cfg.Recorder.Append(actx, rec); aerr != nil {
			s.log.ErrorContext(ctx, "audit callout refusal failed", "err", aerr)
		}
		return nil, err
	}
	return s.IssueNATS(ctx, NATSRequest{Principal: p, UserKey: req.UserKey, Via: "callout", Client: req.Client})
}

// RevokeNATS revokes NATS credentials by user key at once: registry first
// (the request path refuses the key from then on), then the NATS servers
// (live connections closed), then an audit record per key. When the push to
// the servers fails, the keys stay revoked in the registry, are audited, and
// [Service.RunRevocationSync] pushes them again at once and then every
// interval until the servers hold them; the error (wrapping
// [ErrUnavailable]) says so, and revoking again is safe.
func (s *Service) RevokeNATS(ctx context.Context, actor identity.Principal, userKeys []string, reason string) error {
	if s.cfg.Registry == nil {
		return errors.New("nats credentials are not configured")
	}
	now := s.now()
	for _, k := range userKeys {
		if err := s.cfg.Registry.Revoke(ctx, k, now); err != nil {
			return fmt.Errorf("revoke %s in registry: %w", k, err)
		}
	}
	var errs []error
	detail := reason
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
