package broker_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/sqlgate/sqlgate/audit"
	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/broker/brokertest"
	"github.com/sqlgate/sqlgate/broker/control"
	"github.com/sqlgate/sqlgate/broker/natsauth"
	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
)

// newIssuer returns the test broker with a real minter.
func newIssuer(t *testing.T, maxTTL time.Duration) (*env, *broker.Service) {
	t.Helper()
	e := newEnv(t)
	return e, e.issuer(t, e.svc.Catalog(), maxTTL)
}

// issuer is a broker over catalog with the env's policy, audit and registry
// and a real minter.
func (e *env) issuer(t *testing.T, catalog *route.Catalog, maxTTL time.Duration) *broker.Service {
	t.Helper()
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub := keys.Public()
	svc, err := broker.New(broker.Config{
		Catalog: catalog, Databases: map[string]broker.Executor{"orders": e.exec},
		Authorizer: e.authz, Recorder: e.recorder, Registry: e.registry, Minter: natsauth.NewMinter(keys),
		UsersAccount: pub.Users, SigningKeys: pub.UsersSigning, MaxTTL: maxTTL,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func userKey(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

func TestIssueNATS(t *testing.T) {
	e, svc := newIssuer(t, 5*time.Minute)
	p := alice
	p.Expiry = time.Now().Add(time.Hour)
	key := userKey(t)
	before := len(e.records(t))
	cred, err := svc.IssueNATS(t.Context(), broker.NATSRequest{Principal: p, UserKey: key, Via: "creds"})
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(cred.JWT)
	if err != nil {
		t.Fatal(err)
	}
	// Policy says 600s, configuration caps at 5 minutes.
	if left := time.Until(time.Unix(uc.Expires, 0)); left > 5*time.Minute || left < 4*time.Minute {
		t.Errorf("expires in %s, want the 5m cap", left)
	}
	if !strings.Contains(cred.Capped, "configured maximum") {
		t.Errorf("Capped = %q, want it to say the maximum applied", cred.Capped)
	}
	// Pub is the policy's set intersected with the catalog: not.a.route is gone.
	wantPub := []string{brokertest.SubjectCancel, brokertest.SubjectCreate, brokertest.SubjectGet}
	if got := []string(uc.Pub.Allow); strings.Join(got, ",") != strings.Join(wantPub, ",") {
		t.Errorf("pub allow = %v, want %v", got, wantPub)
	}
	if got := []string(uc.Sub.Allow); len(got) != 1 || got[0] != "_INBOX_"+key+".>" {
		t.Errorf("sub allow = %v, want only the user's inbox", got)
	}
	if uc.Name != p.Subject || uc.Subject != key || uc.IssuerAccount == "" {
		t.Errorf("claims name %q subject %q issuer account %q", uc.Name, uc.Subject, uc.IssuerAccount)
	}
	iss, err := e.registry.Get(t.Context(), key)
	if err != nil || iss.Principal.ID() != p.ID() || !iss.Active(time.Now()) {
		t.Errorf("registry = %+v, %v", iss, err)
	}
	recs := e.records(t)[before:]
	if len(recs) != 1 || recs[0].Kind != audit.KindCredential || recs[0].Credential.UserKey != key || recs[0].Credential.Action != "issue" {
		t.Errorf("audit = %v, want one credential issue record", kinds(recs))
	}
	if strings.Contains(string(mustJSON(t, recs)), cred.JWT) {
		t.Error("audit record contains the JWT")
	}
}

// TestIssueNATSSubObligations: the policy's sub obligation adds the
// catalog's emit subjects it names, and nothing else: a wildcard, another
// user's inbox or reply subject is dropped.
func TestIssueNATSSubObligations(t *testing.T) {
	e := newEnv(t)
	var specs []route.Spec
	for _, r := range e.svc.Catalog().Routes() {
		spec := route.Spec{Subject: r.Subject, Database: r.Database, Procedure: r.Target, Params: map[string]any{"type": "object"}}
		if r.Subject == brokertest.SubjectCreate {
			spec.Emit = "test.orders.created"
		}
		specs = append(specs, spec)
	}
	catalog, err := route.New(specs)
	if err != nil {
		t.Fatal(err)
	}
	svc := e.issuer(t, catalog, 0)
	p := alice
	p.Expiry = time.Now().Add(time.Hour)
	key := userKey(t)
	cred, err := svc.IssueNATS(t.Context(), broker.NATSRequest{Principal: p, UserKey: key, Via: "creds"})
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(cred.JWT)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"_INBOX_" + key + ".>", "test.orders.created"}
	if got := []string(uc.Sub.Allow); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("sub allow = %v, want %v", got, want)
	}
}

func TestIssueNATSRefusals(t *testing.T) {
	e, svc := newIssuer(t, time.Hour)
	taken := userKey(t)
	if _, err := svc.IssueNATS(t.Context(), broker.NATSRequest{Principal: alice, UserKey: taken, Via: "creds"}); err != nil {
		t.Fatal(err)
	}
	expiredToken := alice
	expiredToken.Expiry = time.Now().Add(-time.Second)
	// The right shape ('U' and 55 base32 characters) with a wrong checksum.
	badChecksum := "U" + strings.Repeat("A", 55)
	tests := []struct {
		name string
		req  broker.NATSRequest
		want error
	}{
		{"policy_allows_nothing", broker.NATSRequest{Principal: carol, UserKey: userKey(t)}, broker.ErrDenied},
		{"not_a_user_key", broker.NATSRequest{Principal: alice, UserKey: "ABADKEY"}, broker.ErrInvalid},
		{"account_key_not_user_key", broker.NATSRequest{Principal: alice, UserKey: "A" + userKey(t)[1:]}, broker.ErrInvalid},
		{"bad_checksum", broker.NATSRequest{Principal: alice, UserKey: badChecksum}, broker.ErrInvalid},
		{"key_of_another_principal", broker.NATSRequest{Principal: bob, UserKey: taken}, broker.ErrInvalid},
		{"expired_token", broker.NATSRequest{Principal: expiredToken, UserKey: userKey(t)}, identity.ErrUnauthenticated},
		{"no_principal", broker.NATSRequest{UserKey: userKey(t)}, identity.ErrUnauthenticated},
		{"negative_ttl", broker.NATSRequest{Principal: alice, UserKey: userKey(t), TTL: -time.Second}, broker.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cred, err := svc.IssueNATS(t.Context(), tc.req)
			if !errors.Is(err, tc.want) || cred != nil {
				t.Fatalf("IssueNATS = %v, %v; want %v", cred, err, tc.want)
			}
			if _, err := e.registry.Get(t.Context(), tc.req.UserKey); tc.req.UserKey != taken && !errors.Is(err, broker.ErrNotFound) {
				t.Errorf("a refused key is in the registry: %v", err)
			}
		})
	}
	// The deny is audited with the policy's reasons.
	recs := e.records(t)
	var denied *audit.Record
	for _, r := range recs {
		if r.Kind == audit.KindDecision && r.Actor != nil && r.Actor.Subject == carol.Subject {
			denied = r
		}
	}
	if denied == nil || denied.Allow == nil || *denied.Allow || len(denied.Reasons) == 0 {
		t.Errorf("no audited deny for carol: %+v", denied)
	}
	// A malformed key is refused before policy: nothing is decided or
	// recorded about it.
	for _, r := range recs {
		if r.Credential != nil && r.Credential.UserKey == badChecksum {
			t.Errorf("a key with a bad checksum reached policy or audit: %+v", r)
		}
	}
}

func TestRevokeNATS(t *testing.T) {
	e, svc := newIssuer(t, time.Hour)
	key := userKey(t)
	if _, err := svc.IssueNATS(t.Context(), broker.NATSRequest{Principal: alice, UserKey: key}); err != nil {
		t.Fatal(err)
	}
	if err := svc.RevokeNATS(t.Context(), alice, []string{key}, "test"); err != nil {
		t.Fatal(err)
	}
	c := broker.Caller{Transport: "nats", Attested: true, UserKey: key, Account: "", IssuerKey: ""}
	iss, _ := e.registry.Get(t.Context(), key)
	c.Account, c.IssuerKey = iss.Account, iss.SigningKey
	rep := svc.Handle(t.Context(), &broker.Request{Subject: brokertest.SubjectGet, Payload: []byte(`{"id":1}`), Caller: c})
	if rep.OK || rep.Error.Code != broker.CodeUnauthenticated {
		t.Errorf("revoked caller = %s, want unauthenticated", rep.AppendJSON(nil))
	}
	// A revoked key cannot be issued again.
	if _, err := svc.IssueNATS(t.Context(), broker.NATSRequest{Principal: alice, UserKey: key}); !errors.Is(err, broker.ErrInvalid) {
		t.Errorf("re-issue of a revoked key = %v, want ErrInvalid", err)
	}
}

func TestPrincipalInboxPrefix(t *testing.T) {
	// The same test vector as broker/natsclient: client and broker agree.
	got := broker.PrincipalInboxPrefix(identity.Principal{Issuer: "https://idp.example.com", Subject: "alice"})
	if want := "_INBOX_0a30dc1b548a97f70c7cbe41e62f41ea"; got != want {
		t.Errorf("PrincipalInboxPrefix = %q, want %q", got, want)
	}
}

func TestIssueNATSCalloutInbox(t *testing.T) {
	_, svc := newIssuer(t, time.Hour)
	key := userKey(t)
	cred, err := svc.IssueNATS(t.Context(), broker.NATSRequest{Principal: alice, UserKey: key, Via: "callout"})
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(cred.JWT)
	if err != nil {
		t.Fatal(err)
	}
	want := broker.PrincipalInboxPrefix(alice)
	if cred.InboxPrefix != want || len(uc.Sub.Allow) != 1 || uc.Sub.Allow[0] != want+".>" {
		t.Errorf("callout inbox = %q, sub %v; want %q", cred.InboxPrefix, uc.Sub.Allow, want)
	}
}

// TestReissueRevokedKeyRefused: a revoked key is never issued again, not
// even by another instance whose registry cache still holds the key as
// active (a JWT issued after the revocation would pass the NATS servers'
// revocation entry), and the registry keeps it revoked.
func TestReissueRevokedKeyRefused(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	cdb := openControl(t)
	// Two instances over one control database, each caching for an hour.
	regA, regB := control.NewRegistry(cdb, time.Hour, nil), control.NewRegistry(cdb, time.Hour, nil)
	a, b := e.issuerOver(t, regA), e.issuerOver(t, regB)
	key := userKey(t)
	if _, err := a.IssueNATS(ctx, broker.NATSRequest{Principal: alice, UserKey: key, Via: "creds"}); err != nil {
		t.Fatal(err)
	}
	if iss, err := regB.Get(ctx, key); err != nil || !iss.RevokedAt.IsZero() {
		t.Fatalf("instance b: Get = %+v, %v; want the active issuance (now cached)", iss, err)
	}
	if err := a.RevokeNATS(ctx, alice, []string{key}, "test"); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []*broker.Service{b, a} {
		cred, err := svc.IssueNATS(ctx, broker.NATSRequest{Principal: alice, UserKey: key, Via: "creds"})
		if !errors.Is(err, broker.ErrInvalid) || cred != nil || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("re-issue of a revoked key = %v, %v; want ErrInvalid saying it was revoked", cred != nil, err)
		}
	}
	if iss, err := regA.Lookup(ctx, key); err != nil || iss.RevokedAt.IsZero() {
		t.Errorf("registry after the re-issue attempts: %+v, %v; want the key still revoked", iss, err)
	}
}

// issuerOver is a broker like [env.issuer] over another registry.
func (e *env) issuerOver(t *testing.T, reg broker.Registry) *broker.Service {
	t.Helper()
	keys, err := natsauth.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub := keys.Public()
	svc, err := broker.New(broker.Config{
		Catalog: e.svc.Catalog(), Databases: map[string]broker.Executor{"orders": e.exec},
		Authorizer: e.authz, Recorder: e.recorder, Registry: reg, Minter: natsauth.NewMinter(keys),
		UsersAccount: pub.Users, SigningKeys: pub.UsersSigning,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}
