package web

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/sqlgate/sqlgate/broker"
	"github.com/sqlgate/sqlgate/identity"
)

// tenantPlaceholder is identity/oidc's TenantPlaceholder (web does not
// import identity/oidc): in a configured issuer it stands for any one
// Entra tenant.
const tenantPlaceholder = "{tenantid}"

// unknownPrincipalNote ends the reason of a revoke-all of a principal that
// nothing on record names, so that its audit records (the sign-in cutoff)
// do not read as the offboarding of someone who had access.
const unknownPrincipalNote = "no NATS credential or SQL lease on record names this principal"

// checkOffboardee refuses (invalid_request) what revoke-all cannot
// offboard: what cannot be a principal id ([identity.CheckPrincipalID]),
// and, when [Config.Issuers] is set, the id of a principal whose issuer is
// none of them (a trailing slash, another host): its cutoff would end
// nobody's access.
func (s *Server) checkOffboardee(id string) error {
	if err := identity.CheckPrincipalID(id); err != nil {
		return badRequest("principal must be " + identity.PrincipalIDShape + "; " + err.Error())
	}
	iss, _, _ := strings.Cut(id, " ")
	if len(s.cfg.Issuers) == 0 || slices.ContainsFunc(s.cfg.Issuers, func(c string) bool { return issuerMatches(c, iss) }) {
		return nil
	}
	return badRequest(fmt.Sprintf("the principal's issuer %q is none of the configured identity issuers (%s); "+
		"an issuer must match one of them exactly, trailing slash included: principal must be %s",
		iss, strings.Join(s.cfg.Issuers, ", "), identity.PrincipalIDShape))
}

// issuerMatches reports whether iss is the configured issuer: equal to it,
// or, for an Entra multi-tenant issuer, equal to it with one tenant in
// place of its {tenantid} (as identity/oidc matches a token's iss).
func issuerMatches(configured, iss string) bool {
	prefix, suffix, template := strings.Cut(configured, tenantPlaceholder)
	if !template {
		return iss == configured
	}
	tenant, ok := strings.CutPrefix(iss, prefix)
	if !ok {
		return false
	}
	tenant, ok = strings.CutSuffix(tenant, suffix)
	return ok && tenant != "" && !strings.ContainsAny(tenant, "/?# ")
}

// principalOnRecord reports whether a NATS credential or a SQL lease that
// sqlgate keeps names the principal id, in any state (revoked and expired
// ones are kept until they are pruned). It reads at most one row of each
// store.
func (s *Server) principalOnRecord(ctx context.Context, id string) (bool, error) {
	page := broker.ListPage{Limit: 1, Filter: broker.ListAll}
	if s.cfg.Issuances != nil {
		got, err := s.cfg.Issuances.ByPrincipalPage(ctx, id, page)
		if err != nil {
			return false, fmt.Errorf("issuance registry: %w", err)
		}
		if len(got) > 0 {
			return true, nil
		}
	}
	if s.cfg.SQLLeases != nil {
		got, err := s.cfg.SQLLeases.LeasesPage(ctx, id, page)
		if err != nil {
			return false, fmt.Errorf("lease store: %w", err)
		}
		if len(got) > 0 {
			return true, nil
		}
	}
	return false, nil
}
