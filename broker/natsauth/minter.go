package natsauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
)

// ErrInvalidSpec is returned by [Minter.MintUser] for a spec it refuses to
// sign (no expiry, an expiry in the past, a malformed key or subject, a
// reserved tag).
var ErrInvalidSpec = errors.New("invalid user spec")

// MaxUserSubs is the most subscriptions one connection of a minted user may
// hold. A sqlgate client needs a handful (nats.go's request mux, async
// replies, emit subjects); the limit keeps one credential from filling the
// server's memory with subscriptions. Beyond it the server answers
// "maximum subscriptions exceeded" and keeps the connection.
const MaxUserSubs = 1000

// Minter signs users-account user JWTs with the first users signing key. It
// implements [broker.NATSMinter] and is safe for concurrent use.
type Minter struct {
	keys *Keys
	now  func() time.Time
}

var _ broker.NATSMinter = (*Minter)(nil)

// NewMinter returns a Minter over keys.
func NewMinter(keys *Keys) *Minter { return &Minter{keys: keys, now: time.Now} }

// MintUser signs a user JWT for spec: subject spec.UserKey, name spec.Name
// (exactly), publish and subscribe allow-lists spec.Pub and spec.Sub (an
// empty list becomes deny-all, never allow-all), expiry spec.Expires
// (required), spec.Tags plus the tag [UserKeyTagPrefix]<user key>, and
// IssuerAccount set to the users account. It adds no permission of its own,
// and two limits: at most [MaxUserSubs] subscriptions per connection, and
// plain NATS client connections only (`STANDARD`: no websocket, MQTT or
// leaf node connection may use the credential). The message size is the
// server's `max_payload`.
// Errors wrap [ErrInvalidSpec] for a spec it refuses.
func (m *Minter) MintUser(_ context.Context, spec broker.UserSpec) (broker.MintedUser, error) {
	if err := m.check(spec); err != nil {
		return broker.MintedUser{}, err
	}
	uc := jwt.NewUserClaims(spec.UserKey)
	uc.Name = spec.Name
	uc.Expires = spec.Expires.Unix()
	uc.IssuerAccount = m.keys.pub.Users
	uc.Subs = MaxUserSubs
	uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeStandard)
	setAllow(&uc.Pub, spec.Pub)
	setAllow(&uc.Sub, spec.Sub)
	uc.Tags.Add(spec.Tags...)
	uc.Tags.Add(UserKeyTagPrefix + spec.UserKey)
	signer := m.keys.usersSigning[0]
	s, err := uc.Encode(signer)
	if err != nil {
		return broker.MintedUser{}, fmt.Errorf("sign user jwt: %w", err)
	}
	return broker.MintedUser{
		JWT:        s,
		ID:         uc.ID,
		SigningKey: m.keys.pub.UsersSigning[0],
		Account:    m.keys.pub.Users,
	}, nil
}

// ValidUserKey reports whether k is a user public key MintUser accepts
// (prefix, checksum, not a small-order Ed25519 point).
func (m *Minter) ValidUserKey(k string) bool { return nkeys.IsValidPublicUserKey(k) }

// setAllow sets the allow-list; an empty one denies everything (in NATS an
// empty allow-list means "no restriction").
func setAllow(p *jwt.Permission, allow []string) {
	if len(allow) == 0 {
		p.Deny.Add(">")
		return
	}
	p.Allow.Add(allow...)
}

func (m *Minter) check(spec broker.UserSpec) error {
	var errs []error
	if !nkeys.IsValidPublicUserKey(spec.UserKey) {
		errs = append(errs, errors.New("user key is not a user public key"))
	}
	if spec.Name == "" {
		errs = append(errs, errors.New("name is required"))
	}
	if spec.Expires.IsZero() {
		errs = append(errs, errors.New("expiry is required"))
	} else if !spec.Expires.After(m.now()) {
		errs = append(errs, errors.New("expiry is in the past"))
	}
	for _, s := range spec.Pub {
		if !validSubject(s, true) {
			errs = append(errs, fmt.Errorf("invalid publish subject %q", s))
		}
	}
	for _, s := range spec.Sub {
		if !validSubject(s, true) {
			errs = append(errs, fmt.Errorf("invalid subscribe subject %q", s))
		}
	}
	for _, t := range spec.Tags {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(t)), UserKeyTagPrefix) {
			errs = append(errs, fmt.Errorf("tag prefix %q is reserved", UserKeyTagPrefix))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, errors.Join(errs...))
	}
	return nil
}
