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

// serviceSubjects are the subjects the broker account exports as services
// and the users account imports: the route subjects and [AsyncSubjects].
// Requests on them carry the caller's identity, so the broker user may not
// publish to any of them ([Keys.BrokerUserJWT]): one list, so the three
// cannot drift apart.
func serviceSubjects(subjects []string) []string {
	return append(uniqueSorted(subjects), AsyncSubjects)
}

func (k *Keys) brokerAccountJWT(subjects, emits []string) (string, error) {
	// sqlgated publishes its emits with the broker user, which may not
	// publish to a service subject; and an event there would be a request.
	for _, e := range emits {
		if slices.Contains(serviceSubjects(subjects), e) {
			return "", fmt.Errorf("broker account: emit subject %q is also a route subject", e)
		}
	}
	ac := jwt.NewAccountClaims(k.pub.Broker)
	ac.Name = BrokerAccountName
	for _, s := range serviceSubjects(subjects) {
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
	for _, s := range serviceSubjects(subjects) {
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
// account (micro endpoints, replies, emits, JetStream), for an instance
// serving the route subjects subjects (the list the accounts are built
// from). It may publish anywhere in the broker account except to those
// subjects and to [AsyncSubjects]: a request published there inside the
// broker account does not cross the users account's import, so the server
// would pass a client-written Nats-Request-Info through, and the async
// consumer takes the caller from the subject. sqlgated itself never
// publishes there (it answers on reply subjects and emits on emit subjects,
// which the catalog keeps apart from route subjects). It keeps JetStream
// administration of the broker account, which is not confined this way
// (see docs/nats.md, Request identity): the broker user's seed must be kept
// like the users signing keys.
func (k *Keys) BrokerUserJWT(subjects ...string) (string, error) {
	uc := jwt.NewUserClaims(k.pub.BrokerUser)
	uc.Name = "sqlgated"
	uc.Pub.Deny.Add(serviceSubjects(subjects)...)
	return encode(uc, k.broker, "broker user")
}

// MonitorInboxPrefix is the inbox prefix of the monitor user
// ([Keys.MonitorCreds]); the only subjects it may subscribe to are below it.
// It is not `_INBOX`: sqlgated's own connection receives JetStream
// deliveries (async requests, with their payloads) on `_INBOX.…`.
const MonitorInboxPrefix = "_INBOX_sqlgate_monitor"

// MonitorUserJWT returns the JWT of a broker-account user for observing the
// micro service (`nats micro ls|info|stats`) with the user key userKey: it
// may only publish `$SRV.>` and subscribe below [MonitorInboxPrefix]. It
// carries no expiry and, like every broker-account user, cannot be revoked
// short of rotating the broker account.
func (k *Keys) MonitorUserJWT(userKey string) (string, error) {
	uc := jwt.NewUserClaims(userKey)
	uc.Name = "sqlgate-monitor"
	uc.Pub.Allow.Add("$SRV.>")
	uc.Sub.Allow.Add(MonitorInboxPrefix + ".>")
	return encode(uc, k.broker, "monitor user")
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

// BrokerUser returns the connect option for the broker-account service user
// of an instance serving the route subjects subjects (see
// [Keys.BrokerUserJWT]).
func (k *Keys) BrokerUser(subjects ...string) nats.Option {
	subjects = slices.Clone(subjects)
	return userOption(func() (string, error) { return k.BrokerUserJWT(subjects...) }, k.brokerUser)
}

// MonitorCreds returns a `.creds` file for a new monitor user of the broker
// account (a fresh user key; see [Keys.MonitorUserJWT]), for
// `nats --creds monitor.creds --inbox-prefix _INBOX_sqlgate_monitor micro ls`.
// It holds a seed: keep it 0600.
func (k *Keys) MonitorCreds() ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("monitor user key: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("monitor user key: %w", err)
	}
	j, err := k.MonitorUserJWT(pub)
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("monitor user seed: %w", err)
	}
	b, err := jwt.FormatUserConfig(j, seed)
	if err != nil {
		return nil, fmt.Errorf("format monitor user creds: %w", err)
	}
	return b, nil
}

// CalloutUser returns the connect option for the auth callout service user.
func (k *Keys) CalloutUser() nats.Option { return userOption(k.CalloutUserJWT, k.calloutUser) }

func userOption(mint func() (string, error), kp nkeys.KeyPair) nats.Option {
	return nats.UserJWT(mint, func(nonce []byte) ([]byte, error) { return kp.Sign(nonce) })
}
