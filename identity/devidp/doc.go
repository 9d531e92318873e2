// Package devidp is a real OpenID provider for sqlgate's development mode and
// for every test that needs an identity provider: it speaks the same
// protocols as Entra ID or Okta (discovery, JWKS, authorization code with
// PKCE and a login form, the device authorization grant with its
// verification page, the password, client-credentials and refresh-token
// grants, userinfo) and can shape its tokens like either of them, so the
// identity/oidc presets are tested end to end without a cloud tenant.
//
// A [Provider] is a [net/http.Handler] served under the issuer URL given
// with [WithIssuer]; the URL may carry a path prefix (the daemon serves it at
// http://127.0.0.1:PORT/idp beside its API). Tokens are RS256 JWTs signed
// with a key that [Open] keeps in a file, so a restart keeps issuing with the
// same key and earlier tokens still verify. Authorization codes, device codes
// and refresh tokens live in memory: a restart ends open sign-ins and refresh
// sessions, which a development provider may do.
//
// Tests get tokens without HTTP through [Provider.TokenFor],
// [Provider.IDTokenFor] and [Provider.ServiceTokenFor], and forge expired,
// wrongly addressed or foreign tokens signed with the provider's real key
// through [Provider.Mint] and the claim builders.
//
// Nothing is built in: users, passwords and clients are given by the caller
// (the daemon generates the demo passwords with crypto/rand).
package devidp
