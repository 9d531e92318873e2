// Package oidc is sqlgate's OpenID Connect relying party: it decides who is
// asking by verifying the tokens people and services bring (ID tokens and
// access tokens addressed to sqlgate), maps their claims to an
// [identity.Principal] through a provider preset (entra, okta, generic), and
// runs the sign-in flows the CLI and the web dashboard offer.
//
// Verification ([Open], [Verifier.Verify]) uses github.com/coreos/go-oidc/v3
// for discovery and signature checks, with a JWKS cache of its own that is
// refreshed on an unknown kid at most once per [Config.JWKSRefreshInterval].
// It checks iss, aud, exp, nbf and iat with a bounded clock skew, accepts
// only asymmetric algorithms from an allow-list, refuses oversized tokens
// before parsing, and keeps a bounded cache of verified tokens (keyed by the
// token's SHA-256, expiring with the token) so that repeats are cheap. Every
// failure is an [*identity.AuthError] whose Reason (one of the Reason*
// constants) names the cause without echoing the token, and is logged once.
//
// Sign-in flows for the CLI ([OpenClient]): authorization code with PKCE on a
// loopback redirect, the device authorization grant (RFC 8628), the
// password grant, client credentials, and refresh; a [TokenStore] keeps the
// result in a 0600 file. The dashboard's login ([NewWebLogin]) is the
// authorization code flow with PKCE, state and nonce held in an encrypted,
// short-lived cookie.
package oidc
