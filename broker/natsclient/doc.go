// Package natsclient is the Go library services use to reach sqlgate over
// NATS with a short-lived, policy-scoped credential: [Connect] generates a
// key pair, fetches a user JWT from the broker's `POST /api/v1/nats/creds`
// with the service's OIDC token and keeps it fresh; [ConnectCallout]
// connects through the auth callout with the sentinel credentials and the
// OIDC token. Both use the per-user inbox prefix the credential allows and
// survive the disconnect at credential expiry without losing requests
// ([Client.Request]). It depends on nats.go, the NATS jwt/nkeys libraries
// and sqlgate's wire types (web/api) only.
package natsclient
