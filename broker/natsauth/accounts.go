package natsauth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/broker"
)

// Account names as they appear in account JWTs (informational; NATS
// identifies accounts by public key in operator mode).
const (
	SystemAccountName = "SYS"
	BrokerAccountName = "SQLGATE_BROKER"
	UsersAccountName  = "SQLGATE_USERS"
	AuthAccountName   = "SQLGATE_AUTH"
)

// AsyncSubjects is the service the broker account exports for durable async
// requests (`sqlgate.async.<user key>.<route subject>`, see
// [broker.AsyncPrefix]); user JWTs only allow their own key's prefix.
const AsyncSubjects = broker.AsyncSubjects

// UserKeyTagPrefix prefixes the tag every minted user JWT carries with its
// own user public key (lower-cased, as NATS lower-cases tags). The server
// copies the tags of a callout user into Nats-Request-Info, where the user
// key is otherwise absent (see broker/natsvc). The Minter refuses caller
// tags with this prefix.
const UserKeyTagPrefix = "nkey:"

// AccountJWTs are the operator and account JWTs of a deployment, signed by
// the operator key.
type AccountJWTs struct {
	Operator string
	System   string
	Broker   string
	Users    string
	Auth     string
	pub      PublicKeys
}

// Preload returns the account JWTs by account public key, as a nats-server
// `resolver_preload` block wants them.
func (a *AccountJWTs) Preload() map[string]string {
	return map[string]string{
		a.pub.System: a.System,
		a.pub.Broker: a.Broker,
		a.pub.Users:  a.Users,
		a.pub.Auth:   a.Auth,
	}
}

// AccountJWTs signs the operator and account JWTs: the broker account exports
// each route subject (and [AsyncSubjects]) as a service with
// ResponseTypeSingleton and each emit subject as a stream, and has JetStream
// enabled; the users account imports all of them with Share (so requests
// carry the full Nats-Request-Info), trusts the users signing keys and
// disallows bearer user JWTs; the auth account delegates authentication of
// the users account to the callout user, encrypted with the xkey.
func (k *Keys) AccountJWTs(subjects, emits []string) (*AccountJWTs, error) {
	return k.accountJWTs(subjects, emits, nil)
}

func (k *Keys) accountJWTs(subjects, emits []string, revocations jwt.RevocationList) (*AccountJWTs, error) {
	out := &AccountJWTs{pub: k.pub}
	var err error
	if out.Operator, err = k.operatorJWT(); err != nil {
		return nil, err
	}
	if out.System, err = k.systemAccountJWT(); err != nil {
		return nil, err
	}
	if out.Broker, err = k.brokerAccountJWT(subjects, emits); err != nil {
		return nil, err
	}
	if out.Users, err = k.usersAccountJWT(subjects, emits, revocations); err != nil {
		return nil, err
	}
	if out.Auth, err = k.authAccountJWT(); err != nil {
		return nil, err
	}
	return out, nil
}

// OperatorClaims returns the operator's claims (trusted operator of an
// embedded server).
func (k *Keys) OperatorClaims() (*jwt.OperatorClaims, error) {
	s, err := k.operatorJWT()
	if err != nil {
		return nil, err
	}
	return jwt.DecodeOperatorClaims(s)
}

func (k *Keys) operatorJWT() (string, error) {
	oc := jwt.NewOperatorClaims(k.pub.Operator)
	oc.Name = "sqlgate"
	oc.SystemAccount = k.pub.System
	return encode(oc, k.operator, "operator")
}

func (k *Keys) systemAccountJWT() (string, error) {
	ac := jwt.NewAccountClaims(k.pub.System)
	ac.Name = SystemAccountName
	return encode(ac, k.operator, "system account")
}

func uniqueSorted(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

func (k *Keys) brokerAccountJWT(subjects, emits []string) (string, error) {
	ac := jwt.NewAccountClaims(k.pub.Broker)
	ac.Name = BrokerAccountName
	for _, s := range append(uniqueSorted(subjects), AsyncSubjects) {
		ac.Exports.Add(&jwt.Export{Name: s, Subject: jwt.Subject(s), Type: jwt.Service, ResponseType: jwt.ResponseTypeSingleton})
	}
	for _, s := range append(uniqueSorted(emits), broker.ReplySubjects) {
		ac.Exports.Add(&jwt.Export{Name: s, Subject: jwt.Subject(s), Type: jwt.Stream})
	}
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{
		MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit,
		Streams: jwt.NoLimit, Consumer: jwt.NoLimit, MaxAckPending: jwt.NoLimit,
	}
	return encode(ac, k.operator, "broker account")
}

func (k *Keys) usersAccountClaims(subjects, emits []string, revocations jwt.RevocationList) *jwt.AccountClaims {
	ac := jwt.NewAccountClaims(k.pub.Users)
	ac.Name = UsersAccountName
	for _, s := range append(uniqueSorted(subjects), AsyncSubjects) {
		ac.Imports.Add(&jwt.Import{Name: s, Subject: jwt.Subject(s), Account: k.pub.Broker, Type: jwt.Service, Share: true})
	}
	for _, s := range append(uniqueSorted(emits), broker.ReplySubjects) {
		ac.Imports.Add(&jwt.Import{Name: s, Subject: jwt.Subject(s), Account: k.pub.Broker, Type: jwt.Stream})
	}
	ac.SigningKeys.Add(k.pub.UsersSigning...)
	ac.Limits.DisallowBearer = true
	if len(revocations) > 0 {
		ac.Revocations = revocations
	}
	return ac
}

func (k *Keys) usersAccountJWT(subjects, emits []string, revocations jwt.RevocationList) (string, error) {
	return encode(k.usersAccountClaims(subjects, emits, revocations), k.operator, "users account")
}

func (k *Keys) authAccountJWT() (string, error) {
	ac := jwt.NewAccountClaims(k.pub.Auth)
	ac.Name = AuthAccountName
	ac.Authorization = jwt.ExternalAuthorization{
		AuthUsers:       jwt.StringList{k.pub.CalloutUser},
		AllowedAccounts: jwt.StringList{k.pub.Users},
		XKey:            k.pub.XKey,
	}
	return encode(ac, k.operator, "auth account")
}

type encoder interface {
	Encode(nkeys.KeyPair) (string, error)
	Validate(*jwt.ValidationResults)
}

func encode(c encoder, kp nkeys.KeyPair, what string) (string, error) {
	vr := jwt.CreateValidationResults()
	c.Validate(vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return "", fmt.Errorf("%s claims: %w", what, errors.Join(errs...))
	}
	s, err := c.Encode(kp)
	if err != nil {
		return "", fmt.Errorf("sign %s: %w", what, err)
	}
	return s, nil
}

// Service users sqlgated connects as. Their JWTs are signed by their
// account's key at connect time and carry no expiry: an expiry would
// disconnect the service periodically. They cannot be revoked (only the
// users account carries revocations, and the others are regenerated without
// any): a leaked service-user seed is rotated together with its account key
// (see docs/nats.md, Keys).

// SystemUserJWT returns the JWT of the system-account user that pushes and
// looks up account JWTs. It may only publish `$SYS.REQ.CLAIMS.UPDATE` and
// `$SYS.REQ.ACCOUNT.*.CLAIMS.{LOOKUP,UPDATE}` and subscribe to `_INBOX.>`.
func (k *Keys) SystemUserJWT() (string, error) {
	uc := jwt.NewUserClaims(k.pub.SystemUser)
	uc.Name = "sqlgated-system"
	uc.Pub.Allow.Add("$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP", "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE")
	uc.Sub.Allow.Add("_INBOX.>")
	return encode(uc, k.system, "system user")
}

// BrokerUserJWT returns the JWT of sqlgated's service user in the broker
// account (micro endpoints, replies, emits, JetStream). It is unrestricted
// inside the broker account, which only sqlgated joins.
func (k *Keys) BrokerUserJWT() (string, error) {
	uc := jwt.NewUserClaims(k.pub.BrokerUser)
	uc.Name = "sqlgated"
	return encode(uc, k.broker, "broker user")
}

// CalloutUserJWT returns the JWT of the auth callout service user: it may
// subscribe to `$SYS.REQ.USER.AUTH` and publish only replies to requests it
// received.
func (k *Keys) CalloutUserJWT() (string, error) {
	uc := jwt.NewUserClaims(k.pub.CalloutUser)
	uc.Name = "sqlgated-callout"
	uc.Sub.Allow.Add(calloutSubject)
	uc.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: 10 * time.Second}
	return encode(uc, k.auth, "callout user")
}

// SentinelJWT returns the JWT of the sentinel user: a bearer credential of the
// auth account that may neither publish nor subscribe. Clients present it
// together with their OIDC token; the callout replaces it with a real user.
func (k *Keys) SentinelJWT() (string, error) {
	uc := jwt.NewUserClaims(k.pub.Sentinel)
	uc.Name = "sentinel"
	uc.BearerToken = true
	uc.Pub.Deny.Add(">")
	uc.Sub.Deny.Add(">")
	return encode(uc, k.auth, "sentinel user")
}

// SentinelCreds returns a `.creds` file for the sentinel user. It grants
// nothing by itself and may be distributed to every client.
func (k *Keys) SentinelCreds() ([]byte, error) {
	j, err := k.SentinelJWT()
	if err != nil {
		return nil, err
	}
	seed, err := k.sentinel.Seed()
	if err != nil {
		return nil, fmt.Errorf("sentinel seed: %w", err)
	}
	b, err := jwt.FormatUserConfig(j, seed)
	if err != nil {
		return nil, fmt.Errorf("format sentinel creds: %w", err)
	}
	return b, nil
}

// SystemUserCreds returns a `.creds` file for the system-account user, for
// looking up the account JWTs the servers hold
// (`nats req '$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP'`). Pushing the users
// account by hand would replace its revocations: restart sqlgated instead.
// It holds a seed: keep it 0600.
func (k *Keys) SystemUserCreds() ([]byte, error) {
	j, err := k.SystemUserJWT()
	if err != nil {
		return nil, err
	}
	seed, err := k.systemUser.Seed()
	if err != nil {
		return nil, fmt.Errorf("system user seed: %w", err)
	}
	b, err := jwt.FormatUserConfig(j, seed)
	if err != nil {
		return nil, fmt.Errorf("format system user creds: %w", err)
	}
	return b, nil
}

// SystemUser returns the connect option for the system-account user.
func (k *Keys) SystemUser() nats.Option { return userOption(k.SystemUserJWT, k.systemUser) }

// BrokerUser returns the connect option for the broker-account service user.
func (k *Keys) BrokerUser() nats.Option { return userOption(k.BrokerUserJWT, k.brokerUser) }

// CalloutUser returns the connect option for the auth callout service user.
func (k *Keys) CalloutUser() nats.Option { return userOption(k.CalloutUserJWT, k.calloutUser) }

func userOption(mint func() (string, error), kp nkeys.KeyPair) nats.Option {
	return nats.UserJWT(mint, func(nonce []byte) ([]byte, error) { return kp.Sign(nonce) })
}
