// Package natsauth is sqlgate's NATS security setup: it owns the operator,
// account and signing keys ([Keys]), signs the account JWTs that wire the
// broker account's exported routes into the users account
// ([Keys.AccountJWTs]), renders the nats-server configuration for embedded
// and external servers ([EmbeddedOptions], [WriteSetup]), mints users-account
// user JWTs from the broker's decisions ([Minter], a [broker.NATSMinter]),
// pushes revocations to the servers ([Revoker], a [broker.NATSRevoker]) and
// answers the NATS auth callout for clients that hold only an OIDC token
// ([StartCallout] with a consumer-owned [CalloutHandler]).
//
// Accounts:
//
//	SYS             system account; sqlgated's system user pushes account JWTs
//	SQLGATE_BROKER  sqlgated's micro service; exports the route subjects
//	                (services, singleton responses) and emit subjects (streams)
//	SQLGATE_USERS   people and services; imports the routes with share, so each
//	                request carries server-attested Nats-Request-Info
//	SQLGATE_AUTH    the callout service user and the sentinel user; delegates
//	                authentication of SQLGATE_USERS to the callout (xkey-encrypted)
//
// Seeds never appear in logs or errors.
package natsauth
