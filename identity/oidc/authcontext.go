package oidc

import "encoding/json"

// SignInAuthContext returns the Microsoft Entra authentication context
// (Conditional Access auth context id, such as c1) that user sign-ins with
// the issuer ask for: the first of its MFAACRValues with the entra preset,
// "" otherwise. Entra v2.0 tokens carry no amr, and Entra puts an auth
// context in a token's acrs claim only when the client asks for it with
// the OpenID Connect claims parameter ([AuthContextClaims]), or, when the
// API opted in to the acrs optional claim, when the policies behind it were
// already satisfied: a sign-in that does not ask gets no MFA evidence.
func SignInAuthContext(ic IssuerConfig) string {
	if ic.Preset != PresetEntra || len(ic.MFAACRValues) == 0 {
		return ""
	}
	return ic.MFAACRValues[0]
}

// AuthContextClaims returns the value of the OpenID Connect claims request
// parameter (OpenID Connect Core 1.0 section 5.5) that asks for the Entra
// authentication context authContext as an essential acrs claim of both the
// access token and the ID token, as Microsoft's authentication context
// developer guide shows:
//
//	{"access_token":{"acrs":{"essential":true,"value":"c1"}},"id_token":{"acrs":{"essential":true,"value":"c1"}}}
//
// It returns "" for an empty authContext (nothing to ask for).
func AuthContextClaims(authContext string) string {
	if authContext == "" {
		return ""
	}
	type claim struct {
		Essential bool   `json:"essential"`
		Value     string `json:"value"`
	}
	type token struct {
		ACRS claim `json:"acrs"`
	}
	req := token{ACRS: claim{Essential: true, Value: authContext}}
	b, _ := json.Marshal(struct { // strings and a bool: it cannot fail
		AccessToken token `json:"access_token"`
		IDToken     token `json:"id_token"`
	}{req, req})
	return string(b)
}
