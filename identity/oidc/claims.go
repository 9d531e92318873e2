package oidc

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sqlgate/sqlgate/identity"
)

// claimPath names a claim: a top-level name, or a dotted path into nested
// objects. A top-level claim whose name contains dots (namespaced claims
// such as https://example.com/roles) wins over the path reading.
type claimPath struct {
	literal string
	parts   []string
}

func newPath(s string) claimPath { return claimPath{literal: s, parts: strings.Split(s, ".")} }

func paths(names ...string) []claimPath {
	out := make([]claimPath, len(names))
	for i, n := range names {
		out[i] = newPath(n)
	}
	return out
}

func (cp claimPath) lookup(c map[string]any) (any, bool) {
	if v, ok := c[cp.literal]; ok {
		return v, true
	}
	if len(cp.parts) < 2 {
		return nil, false
	}
	var cur any = c
	for _, p := range cp.parts {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// mfaAMR are the amr values (RFC 8176) that say more than one factor was
// used: mfa (multiple-factor) and mca (multiple-channel). The other values
// name one method each (otp, hwk, swk, sc, fido, pwd...): a one-time code
// or a key alone is one factor. IssuerConfig.MFAAMRValues adds to the list.
var mfaAMR = []string{"mfa", "mca"}

// mapper turns verified claims into a principal, per preset.
type mapper struct {
	preset                                                        Preset
	subject, objectID, email, name, groups, roles, scopes, tenant []claimPath
	groupMap, roleMap                                             map[string]string
	dropUnmapped, dropUnmappedRoles                               bool
	mfaACR, mfaAMR                                                []string
}

func newMapper(ic IssuerConfig) *mapper {
	var m mapper
	switch ic.Preset {
	case PresetEntra:
		m = mapper{
			subject: paths("sub"), objectID: paths("oid"), email: paths("preferred_username", "upn", "email"),
			name: paths("name"), groups: paths("groups"), roles: paths("roles"), scopes: paths("scp"), tenant: paths("tid"),
		}
	case PresetOkta:
		m = mapper{
			subject: paths("uid", "sub"), objectID: paths("uid", "sub"), email: paths("email", "preferred_username"),
			name: paths("name"), groups: paths("groups"), roles: paths("roles"), scopes: paths("scp"),
		}
	default:
		m = mapper{
			subject: paths("sub"), objectID: paths("oid"), email: paths("email"),
			name: paths("name", "preferred_username"), groups: paths("groups"), roles: paths("roles"), scopes: paths("scope", "scp"),
		}
	}
	m.preset = ic.Preset
	for _, o := range []struct {
		dst *[]claimPath
		v   string
	}{
		{&m.subject, ic.Claims.Subject},
		{&m.objectID, ic.Claims.ObjectID},
		{&m.email, ic.Claims.Email},
		{&m.name, ic.Claims.Name},
		{&m.groups, ic.Claims.Groups},
		{&m.roles, ic.Claims.Roles},
		{&m.scopes, ic.Claims.Scopes},
		{&m.tenant, ic.Claims.Tenant},
	} {
		if o.v != "" {
			*o.dst = paths(o.v)
		}
	}
	m.groupMap = ic.GroupMap
	m.dropUnmapped = ic.DropUnmappedGroups
	m.roleMap = ic.RoleMap
	m.dropUnmappedRoles = ic.DropUnmappedRoles
	m.mfaACR = ic.MFAACRValues
	m.mfaAMR = append(slices.Clone(mfaAMR), ic.MFAAMRValues...)
	return &m
}

func claimErr(reason, format string, args ...any) error {
	return identity.Unauthenticated(reason, fmt.Errorf(format, args...))
}

// str reads the first present claim of ps as a string. A present claim of
// another type is an error: malformed tokens are refused, not guessed at.
func str(c map[string]any, ps []claimPath) (string, error) {
	for _, p := range ps {
		v, ok := p.lookup(c)
		if !ok || v == nil {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return "", claimErr(ReasonInvalidClaim, "claim %q is not a string", p.literal)
		}
		if s != "" {
			return s, nil
		}
	}
	return "", nil
}

// strs reads the first present claim of ps as a list of strings; a single
// string is a one-element list, or split on spaces when split is true
// (OAuth scope strings).
func strs(c map[string]any, ps []claimPath, split bool) ([]string, error) {
	for _, p := range ps {
		v, ok := p.lookup(c)
		if !ok || v == nil {
			continue
		}
		switch x := v.(type) {
		case string:
			if split {
				return strings.Fields(x), nil
			}
			if x == "" {
				return nil, nil
			}
			return []string{x}, nil
		case []any:
			out := make([]string, 0, len(x))
			for _, e := range x {
				s, ok := e.(string)
				if !ok {
					return nil, claimErr(ReasonInvalidClaim, "claim %q holds a non-string value", p.literal)
				}
				out = append(out, s)
			}
			return out, nil
		default:
			return nil, claimErr(ReasonInvalidClaim, "claim %q is not a string list", p.literal)
		}
	}
	return nil, nil
}

// numericDate reads a JWT NumericDate (seconds since the epoch, possibly
// fractional).
func numericDate(v any) (time.Time, bool) {
	var f float64
	switch x := v.(type) {
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return time.Time{}, false
		}
	case float64:
		f = x
	case int64:
		f = float64(x)
	case int:
		f = float64(x)
	default:
		return time.Time{}, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
}

// hasOverage reports whether the token says its groups did not fit: the
// groups claim is listed in _claim_names (OIDC distributed claims, Entra's
// overage), or Entra's hasgroups is true.
func (m *mapper) hasOverage(c map[string]any) bool {
	if names, ok := c["_claim_names"].(map[string]any); ok {
		for _, g := range m.groups {
			if _, ok := names[g.parts[0]]; ok {
				return true
			}
			if _, ok := names[g.literal]; ok {
				return true
			}
		}
	}
	if m.preset == PresetEntra {
		if hg, ok := c["hasgroups"]; ok && hg != false {
			return true
		}
	}
	return false
}

// mapGroups translates provider groups to policy group names, sorted and
// without duplicates.
func (m *mapper) mapGroups(raw []string) []string {
	return mapNames(raw, m.groupMap, m.dropUnmapped)
}

// mapRoles translates provider roles to policy role names, sorted and
// without duplicates.
func (m *mapper) mapRoles(raw []string) []string {
	return mapNames(raw, m.roleMap, m.dropUnmappedRoles)
}

// mapNames translates the provider's names raw through the map m, keeping
// the unmapped ones unless drop; the result is sorted, without duplicates
// or empty names.
func mapNames(raw []string, m map[string]string, drop bool) []string {
	out := make([]string, 0, len(raw))
	for _, n := range raw {
		if to, ok := m[n]; ok {
			out = append(out, to)
		} else if !drop && n != "" {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// subjectCheckIssuer stands in for the issuer (which the configuration
// checks) when the mapper checks that a subject can be part of a principal
// ID.
const subjectCheckIssuer = "https://issuer.invalid"

// principal maps verified claims to a principal (without Issuer and
// Expiry, which the verifier sets). overage reports that the groups are
// missing from the token and must be looked up or refused.
func (m *mapper) principal(c map[string]any) (p identity.Principal, overage bool, err error) {
	if p.Subject, err = str(c, m.subject); err != nil {
		return p, false, err
	}
	if p.Subject == "" {
		return p, false, claimErr(ReasonMissingClaim, "no subject claim")
	}
	if identity.CheckPrincipalID(subjectCheckIssuer+" "+p.Subject) != nil {
		// Offboarding (revoke-all) names a principal by its ID; a subject
		// no ID can hold would sign in out of its reach.
		return p, false, claimErr(ReasonInvalidClaim,
			"the subject %q has surrounding space or control characters, so no principal ID could name it", truncate(p.Subject, 64))
	}
	if p.ObjectID, err = str(c, m.objectID); err != nil {
		return p, false, err
	}
	if p.Email, err = str(c, m.email); err != nil {
		return p, false, err
	}
	if p.Name, err = str(c, m.name); err != nil {
		return p, false, err
	}
	if p.Tenant, err = str(c, m.tenant); err != nil {
		return p, false, err
	}
	groups, err := strs(c, m.groups, false)
	if err != nil {
		return p, false, err
	}
	overage = m.hasOverage(c)
	p.Groups = m.mapGroups(groups)
	roles, err := strs(c, m.roles, false)
	if err != nil {
		return p, false, err
	}
	p.Roles = m.mapRoles(roles)
	if p.Scopes, err = strs(c, m.scopes, true); err != nil {
		return p, false, err
	}
	if p.AMR, err = strs(c, paths("amr"), false); err != nil {
		return p, false, err
	}
	if p.ACR, err = str(c, paths("acr")); err != nil {
		return p, false, err
	}
	tokenID := paths("jti")
	if m.preset == PresetEntra {
		tokenID = paths("uti", "jti")
	}
	if p.TokenID, err = str(c, tokenID); err != nil {
		return p, false, err
	}
	if v, ok := c["auth_time"]; ok {
		t, ok := numericDate(v)
		if !ok {
			return p, false, claimErr(ReasonInvalidClaim, "claim auth_time is not a NumericDate")
		}
		p.AuthTime = t
	}
	if v, ok := c["iat"]; ok {
		t, ok := numericDate(v)
		if !ok {
			return p, false, claimErr(ReasonInvalidClaim, "iat is not a NumericDate")
		}
		p.IssuedAt = t
	}
	acrs, err := strs(c, paths("acrs"), false)
	if err != nil {
		return p, false, err
	}
	p.MFA = slices.ContainsFunc(p.AMR, func(a string) bool { return slices.Contains(m.mfaAMR, a) }) ||
		(p.ACR != "" && slices.Contains(m.mfaACR, p.ACR)) ||
		slices.ContainsFunc(acrs, func(a string) bool { return slices.Contains(m.mfaACR, a) })
	m.presetDetails(c, &p)
	return p, overage, nil
}

// presetDetails fills what only a preset knows: which tokens belong to
// services, Okta's login-as-subject.
func (m *mapper) presetDetails(c map[string]any, p *identity.Principal) {
	sub, _ := c["sub"].(string)
	switch m.preset {
	case PresetEntra:
		idtyp, _ := c["idtyp"].(string)
		_, hasScp := c["scp"]
		oid, _ := c["oid"].(string)
		// App-only tokens: idtyp=app when the optional claim is on; else
		// they are the ones without delegated scopes whose sub is the
		// service principal's oid.
		p.Service = idtyp == "app" || (!hasScp && oid != "" && sub == oid)
	case PresetOkta:
		cid, _ := c["cid"].(string)
		_, hasUID := c["uid"]
		p.Service = !hasUID && cid != "" && sub == cid
		if p.Email == "" && hasUID && strings.Contains(sub, "@") {
			// Okta access tokens carry the user's login as sub.
			p.Email = sub
		}
	default:
		for _, k := range []string{"client_id", "cid", "azp"} {
			if v, _ := c[k].(string); v != "" && v == sub {
				p.Service = true
			}
		}
	}
}
