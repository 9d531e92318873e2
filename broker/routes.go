package broker

import (
	"context"
	"time"

	"github.com/sqlgate/sqlgate/broker/route"
	"github.com/sqlgate/sqlgate/identity"
	"github.com/sqlgate/sqlgate/policy"
)

// AllowedRoutes returns the routes p may call: the NATS entry's `pub` set
// intersected with the catalog (parameters are checked per call, so a listed
// route may still refuse some parameter values). A policy error lists
// nothing and returns the error.
func (s *Service) AllowedRoutes(ctx context.Context, p identity.Principal) ([]*route.Route, policy.Decision, error) {
	now := s.now()
	in := &policy.Input{
		Principal:  policy.PrincipalOf(p),
		Request:    &policy.Request{CorrelationID: newID(), Time: now.UTC().Format(time.RFC3339Nano), TimeNS: now.UnixNano(), Transport: "http"},
		Credential: &policy.Credential{Type: "nats"},
	}
	dec, err := s.cfg.Authorizer.Decide(ctx, policy.NATS, in)
	if err != nil {
		return nil, dec, err
	}
	if !dec.Allow {
		return []*route.Route{}, dec, nil
	}
	var out []*route.Route
	for _, subj := range intersect(dec.Obligations.Pub, s.cfg.Catalog.Subjects()) {
		if r, ok := s.cfg.Catalog.Lookup(subj); ok {
			out = append(out, r)
		}
	}
	if out == nil {
		out = []*route.Route{}
	}
	return out, dec, nil
}
