package devidp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
)

// requestedACRS are the Conditional Access authentication-context ids
// (Entra's acrs claim) a sign-in asked for, per token, with the OpenID
// Connect claims request parameter (OpenID Connect Core 1.0 section 5.5):
// claims={"access_token":{"acrs":{"essential":true,"value":"c1"}},
// "id_token":{"acrs":{"essential":true,"value":"c1"}}}.
type requestedACRS struct {
	access, id []string
}

// mintACRS is what tokens minted without a sign-in ([Provider.TokenFor],
// [Provider.IDTokenFor]) carry: those of a sign-in that asked for the c1
// authentication context in both tokens.
var mintACRS = requestedACRS{access: []string{"c1"}, id: []string{"c1"}}

// maxRequestedACRS bounds the values one token's acrs request may name
// (Entra defines c1 to c25).
const maxRequestedACRS = 25

// entraClaimsRequest reads the acrs the claims request parameter of an
// authorization, device authorization or token request asks for. Only the
// entra shape reads it: Entra puts acrs in a token only when the client
// asks for it this way (the API's acrs optional claim aside, which devidp
// does not imitate). Other claims the request names are ignored, as Entra
// ignores those it does not know. A parameter that is not a JSON object of
// objects is invalid_request, as OpenID Connect Core asks.
func (p *Provider) entraClaimsRequest(v url.Values) (requestedACRS, *oauthError) {
	raw := v.Get("claims")
	if p.cfg.shape != ShapeEntra || raw == "" {
		return requestedACRS{}, nil
	}
	acrs, err := parseClaimsRequest(raw)
	if err != nil {
		return requestedACRS{}, errInvalidRequest("claims: " + err.Error())
	}
	return acrs, nil
}

// claimRequest is one claim's request: null, or an object with essential,
// value and values (OpenID Connect Core 1.0 section 5.5.1).
type claimRequest struct {
	Essential bool
	Value     *string
	Values    []string
}

// decodeClaimRequest reads a claim request's members by their exact names:
// OpenID Connect member names are case-sensitive, and encoding/json would
// take "VALUE" for value. req is nil for null.
func decodeClaimRequest(raw json.RawMessage) (*claimRequest, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, err
	}
	if members == nil {
		return nil, nil
	}
	var req claimRequest
	for name, dst := range map[string]any{"essential": &req.Essential, "value": &req.Value, "values": &req.Values} {
		if v, ok := members[name]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return nil, err
			}
		}
	}
	return &req, nil
}

func parseClaimsRequest(raw string) (requestedACRS, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &doc); err != nil || doc == nil {
		return requestedACRS{}, errors.New("not a JSON object")
	}
	var out requestedACRS
	for _, m := range []struct {
		name string
		dst  *[]string
	}{{"access_token", &out.access}, {"id_token", &out.id}} {
		body, ok := doc[m.name]
		if !ok {
			continue
		}
		var claims map[string]json.RawMessage
		if err := json.Unmarshal(body, &claims); err != nil {
			return requestedACRS{}, fmt.Errorf("%s is not an object of claim requests", m.name)
		}
		rawReq, ok := claims["acrs"]
		if !ok {
			continue
		}
		req, err := decodeClaimRequest(rawReq)
		if err != nil {
			return requestedACRS{}, fmt.Errorf("%s.acrs is not a claim request (null, or an object with essential, value, values)", m.name)
		}
		if req == nil {
			continue
		}
		values := req.Values
		if req.Value != nil {
			values = append([]string{*req.Value}, values...)
		}
		for _, x := range values {
			if x == "" {
				return requestedACRS{}, fmt.Errorf("%s.acrs: empty value", m.name)
			}
			if !slices.Contains(*m.dst, x) {
				*m.dst = append(*m.dst, x)
			}
		}
		if len(*m.dst) > maxRequestedACRS {
			return requestedACRS{}, fmt.Errorf("%s.acrs: more than %d values", m.name, maxRequestedACRS)
		}
	}
	return out, nil
}
