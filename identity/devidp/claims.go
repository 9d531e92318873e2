package devidp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// grant is what a token is issued for: a user signing in through a client,
// or a client acting as itself (user == nil).
type grant struct {
	user     *User
	client   *Client
	scopes   []string
	nonce    string
	authTime time.Time
	// mfa is true when the sign-in was interactive and the user has MFA.
	mfa bool
	// acrs are the authentication contexts the request asked for (entra
	// shape): tokens carry them when mfa is true, as if every context
	// were a Conditional Access policy requiring MFA.
	acrs requestedACRS
	// audience of the access token.
	audience string
}

// oidcScopes are the scopes that ask for identity, not for API access.
var oidcScopes = []string{"openid", "profile", "email", "offline_access", "groups", "address", "phone"}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// oktaID returns an Okta-style id: a prefix and 17 characters derived from seed.
func oktaID(prefix, seed string) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	sum := sha256.Sum256([]byte(seed))
	var b strings.Builder
	b.WriteString(prefix)
	for i := range 17 {
		b.WriteByte(alphabet[int(sum[i])%len(alphabet)])
	}
	return b.String()
}

// pairwiseSub imitates Entra's pairwise subject: unique per user and app.
func pairwiseSub(oid, app string) string {
	sum := sha256.Sum256([]byte(oid + "|" + app))
	return base64.RawURLEncoding.EncodeToString(sum[:])[:43]
}

func (p *Provider) userObjectID(u *User) string {
	if u.ObjectID != "" {
		return u.ObjectID
	}
	return p.derivedObjectID(u.Username)
}

// clientObjectID is the service principal / app object id of a client.
func (p *Provider) clientObjectID(c *Client) string {
	if p.cfg.shape == ShapeOkta {
		return oktaID("0oa", p.cfg.issuer+":"+c.ID)
	}
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("devidp-client:"+p.cfg.issuer+":"+c.ID)).String()
}

func (p *Provider) groupClaim(u *User) []string {
	if p.cfg.groupNames {
		return slices.Clone(u.Groups)
	}
	ids := make([]string, len(u.Groups))
	for i, g := range u.Groups {
		ids[i] = GroupID(g)
	}
	return ids
}

func login(u *User) string {
	if u.Email != "" {
		return u.Email
	}
	return u.Username
}

func apiScopes(scopes []string, aud string) []string {
	var out []string
	for _, s := range scopes {
		if slices.Contains(oidcScopes, s) {
			continue
		}
		s = strings.TrimPrefix(s, aud+"/")
		out = append(out, s)
	}
	return out
}

func (p *Provider) times(c map[string]any, now time.Time, nbf bool) {
	c["iat"] = now.Unix()
	c["exp"] = now.Add(p.cfg.tokenTTL).Unix()
	if nbf {
		c["nbf"] = now.Unix()
	}
}

// entraGroups adds groups, or the overage claims when there are too many.
func (p *Provider) entraGroups(c map[string]any, u *User, oid string) {
	if len(u.Groups) == 0 {
		return
	}
	if len(u.Groups) > p.cfg.overageThreshold {
		c["_claim_names"] = map[string]any{"groups": "src1"}
		c["_claim_sources"] = map[string]any{"src1": map[string]any{
			"endpoint": "https://graph.microsoft.com/v1.0/users/" + oid + "/getMemberObjects",
		}}
		return
	}
	c["groups"] = p.groupClaim(u)
}

// accessClaims returns the claims of an access token issued for g.
func (p *Provider) accessClaims(g grant, now time.Time) map[string]any {
	if g.user == nil {
		return p.serviceClaims(g, now)
	}
	u := g.user
	oid := p.userObjectID(u)
	c := map[string]any{"iss": p.cfg.issuer, "aud": g.audience}
	switch p.cfg.shape {
	case ShapeEntra:
		p.times(c, now, true)
		c["aio"] = randomID(24)
		c["azp"] = g.client.ID
		c["azpacr"] = "0"
		if g.client.Secret != "" {
			c["azpacr"] = "1"
		}
		c["name"] = u.Name
		c["oid"] = oid
		c["preferred_username"] = login(u)
		c["rh"] = "0." + randomID(12) + "."
		scp := apiScopes(g.scopes, g.audience)
		if len(scp) == 0 {
			scp = []string{"user_impersonation"}
		}
		c["scp"] = strings.Join(scp, " ")
		c["sub"] = pairwiseSub(oid, p.cfg.audience)
		c["tid"] = p.cfg.tenantID
		c["uti"] = randomID(16)
		c["ver"] = "2.0"
		if len(u.Roles) > 0 {
			c["roles"] = slices.Clone(u.Roles)
		}
		if g.mfa && len(g.acrs.access) > 0 {
			c["acrs"] = slices.Clone(g.acrs.access)
		}
		p.entraGroups(c, u, oid)
	case ShapeOkta:
		p.times(c, now, false)
		c["ver"] = 1
		c["jti"] = "AT." + randomID(32)
		c["cid"] = g.client.ID
		c["uid"] = oid
		c["scp"] = slices.Clone(g.scopes)
		c["auth_time"] = g.authTime.Unix()
		c["sub"] = login(u)
		if len(u.Groups) > 0 {
			c["groups"] = slices.Clone(u.Groups)
		}
	default:
		p.times(c, now, true)
		c["sub"] = oid
		c["jti"] = randomID(16)
		c["client_id"] = g.client.ID
		c["scope"] = strings.Join(g.scopes, " ")
		c["auth_time"] = g.authTime.Unix()
		p.genericProfile(c, u, g.mfa)
	}
	return c
}

func (p *Provider) genericProfile(c map[string]any, u *User, mfa bool) {
	if u.Email != "" {
		c["email"] = u.Email
		c["email_verified"] = true
	}
	if u.Name != "" {
		c["name"] = u.Name
	}
	c["preferred_username"] = u.Username
	if len(u.Groups) > 0 {
		c["groups"] = slices.Clone(u.Groups)
	}
	if len(u.Roles) > 0 {
		c["roles"] = slices.Clone(u.Roles)
	}
	if mfa {
		c["amr"] = []string{"pwd", "mfa", "otp"}
	} else {
		c["amr"] = []string{"pwd"}
	}
}

// idClaims returns the claims of an ID token issued for g.
func (p *Provider) idClaims(g grant, now time.Time) map[string]any {
	u := g.user
	oid := p.userObjectID(u)
	c := map[string]any{"iss": p.cfg.issuer, "aud": g.client.ID}
	if g.nonce != "" {
		c["nonce"] = g.nonce
	}
	switch p.cfg.shape {
	case ShapeEntra:
		p.times(c, now, true)
		c["aio"] = randomID(24)
		c["name"] = u.Name
		c["oid"] = oid
		c["preferred_username"] = login(u)
		if u.Email != "" {
			c["email"] = u.Email
		}
		c["rh"] = "0." + randomID(12) + "."
		c["sub"] = pairwiseSub(oid, p.cfg.audience)
		c["tid"] = p.cfg.tenantID
		c["uti"] = randomID(16)
		c["ver"] = "2.0"
		if len(u.Roles) > 0 {
			c["roles"] = slices.Clone(u.Roles)
		}
		if g.mfa && len(g.acrs.id) > 0 {
			c["acrs"] = slices.Clone(g.acrs.id)
		}
		p.entraGroups(c, u, oid)
	case ShapeOkta:
		p.times(c, now, false)
		c["ver"] = 1
		c["sub"] = oid
		c["jti"] = "ID." + randomID(32)
		c["name"] = u.Name
		if u.Email != "" {
			c["email"] = u.Email
			c["email_verified"] = true
		}
		c["preferred_username"] = login(u)
		c["idp"] = oktaID("00o", p.cfg.issuer)
		c["auth_time"] = g.authTime.Unix()
		if g.mfa {
			c["amr"] = []string{"mfa", "otp", "pwd"}
		} else {
			c["amr"] = []string{"pwd"}
		}
		if len(u.Groups) > 0 {
			c["groups"] = slices.Clone(u.Groups)
		}
	default:
		p.times(c, now, true)
		c["sub"] = oid
		c["azp"] = g.client.ID
		c["jti"] = randomID(16)
		c["auth_time"] = g.authTime.Unix()
		p.genericProfile(c, u, g.mfa)
	}
	return c
}

// serviceClaims returns the claims of a client-credentials access token.
func (p *Provider) serviceClaims(g grant, now time.Time) map[string]any {
	cl := g.client
	c := map[string]any{"iss": p.cfg.issuer, "aud": g.audience}
	switch p.cfg.shape {
	case ShapeEntra:
		p.times(c, now, true)
		oid := p.clientObjectID(cl)
		c["aio"] = randomID(24)
		c["azp"] = cl.ID
		c["azpacr"] = "1"
		c["idtyp"] = "app"
		c["oid"] = oid
		c["rh"] = "0." + randomID(12) + "."
		c["sub"] = oid
		c["tid"] = p.cfg.tenantID
		c["uti"] = randomID(16)
		c["ver"] = "2.0"
		if len(cl.Roles) > 0 {
			c["roles"] = slices.Clone(cl.Roles)
		}
	case ShapeOkta:
		p.times(c, now, false)
		c["ver"] = 1
		c["jti"] = "AT." + randomID(32)
		c["cid"] = cl.ID
		c["scp"] = slices.Clone(g.scopes)
		c["sub"] = cl.ID
		if len(cl.Roles) > 0 {
			c["roles"] = slices.Clone(cl.Roles)
		}
	default:
		p.times(c, now, true)
		c["sub"] = cl.ID
		c["jti"] = randomID(16)
		c["client_id"] = cl.ID
		c["scope"] = strings.Join(g.scopes, " ")
		if len(cl.Roles) > 0 {
			c["roles"] = slices.Clone(cl.Roles)
		}
	}
	return c
}
